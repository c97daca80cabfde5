"""Benchmarks: each prints its figures next to a baseline measured on the same server in the same run."""

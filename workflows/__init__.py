"""Cashcycle."""

"""Signing the evidence ledger's chain heads: run daily by a Temporal Schedule, and on demand.

The workflow only decides when; the activity reads the heads and signs them with the configured key
(which never enters workflow history)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.types import CheckpointRequest, CheckpointRun

SCHEDULE_PREFIX = "ledger-checkpoints"


def schedule_id(task_queue: str) -> str:
    """One schedule per deployment (task queue), so that deployments sharing a namespace stay apart."""
    return f"{SCHEDULE_PREFIX}/{task_queue}"


@workflow.defn
class LedgerCheckpointWorkflow:
    @workflow.run
    async def run(self, req: CheckpointRequest) -> CheckpointRun:
        run: CheckpointRun = await workflow.execute_activity(
            "sign_ledger_checkpoints",
            req,
            result_type=CheckpointRun,
            start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(minutes=1),
                maximum_attempts=20,
                non_retryable_error_types=["no_entries", "signing_key"],
            ),
        )
        return run

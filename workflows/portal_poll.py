"""Polling a portal that does not push (Coupa-style): one poll per run, started by a Temporal Schedule per
portal. The activity reads from where the previous poll stopped and signals each update to its invoice's
workflow; the invoice workflows themselves never poll, so a thousand open invoices cost one request."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.types import PortalPollRun

SCHEDULE_PREFIX = "portal-poll"


def poll_schedule_id(task_queue: str, portal: str) -> str:
    return f"{SCHEDULE_PREFIX}/{task_queue}/{portal}"


@workflow.defn
class PortalPollWorkflow:
    @workflow.run
    async def run(self, portal: str) -> PortalPollRun:
        run: PortalPollRun = await workflow.execute_activity(
            "poll_and_route",
            portal,
            result_type=PortalPollRun,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=2),
                maximum_interval=timedelta(seconds=30),
                maximum_attempts=5,  # the next scheduled poll starts over anyway
            ),
        )
        return run

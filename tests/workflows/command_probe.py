"""A one-activity workflow that runs `send_invoice_command` as the dispute and credit memo workflows do."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.types import InvoiceCommandRequest, InvoiceState


@workflow.defn
class CommandProbe:
    @workflow.run
    async def run(self, req: InvoiceCommandRequest) -> InvoiceState:
        return await workflow.execute_activity(
            "send_invoice_command",
            req,
            result_type=InvoiceState,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )

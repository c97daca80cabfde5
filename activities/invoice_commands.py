"""Commands other workflows send an invoice: a dispute case taking part of it or letting it go, an issued
credit memo or an approved write-off lowering its amount due.

Workflows cannot send updates themselves, so the dispute, credit memo and write-off workflows run this
activity. The request's `update_id` becomes the Temporal update id: a retried activity is one update, and
its result is the first one's. A refusal comes back as a non-retryable ApplicationError whose type is the
invoice's refusal code (workflows/errors.py), so the calling workflow can record why and move on.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows.types import InvoiceCommandRequest, InvoiceState

UPDATES = ("open_dispute", "end_dispute", "apply_adjustment")


class InvoiceCommandActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn
    async def send_invoice_command(self, req: InvoiceCommandRequest) -> InvoiceState:
        """Send one of UPDATES to the invoice's workflow and return the state it leaves."""
        if req.update not in UPDATES:
            raise ApplicationError(
                f"unknown invoice command {req.update}", type="invalid_command", non_retryable=True
            )
        arg = req.adjustment if req.update == "apply_adjustment" else req.link
        if arg is None:
            raise ApplicationError(
                f"{req.update} needs its command", type="invalid_command", non_retryable=True
            )
        handle = self._client.get_workflow_handle(req.workflow_id, result_type=InvoiceState)
        try:
            state: InvoiceState = await handle.execute_update(
                req.update, arg, id=req.update_id, result_type=InvoiceState
            )
            return state
        except WorkflowUpdateFailedError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError):
                raise ApplicationError(
                    cause.message, *cause.details, type=cause.type, non_retryable=True
                ) from None
            raise
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            # The invoice's workflow has ended (paid, credited or written off in full): a case ending finds
            # it where it stopped; anything else is refused as the workflow itself would.
            try:
                final: InvoiceState = await handle.result()
            except RPCError:
                raise ApplicationError(
                    f"no invoice workflow {req.workflow_id}", type="unknown_reference", non_retryable=True
                ) from None
            if req.update == "end_dispute":
                return final
            raise ApplicationError(
                f"cannot {req.update.replace('_', ' ')}: the invoice is {final.status}",
                {"status": final.status, "event": req.update},
                type="transition_refused",
                non_retryable=True,
            ) from None

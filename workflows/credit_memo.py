"""CreditMemoWorkflow: one durable workflow per credit memo, from its proposal to the credit applied.

Workflow id: `credit_memo/<legal_entity>/<credit_memo_id>` (workflows.credit_memo_types).
States: workflows/credit_memo_states.py. Approval rules: workflows/credit_memo_approval.py.

    propose   (start)  recorded as proposed, then `submit`: the tiers of the matrix's credit_memo section
                       by the amount in the entity's currency, pending_approval
    approve   update   one tier; the last one (the decision) -> approved. Refused for the proposer, the
                       dispute's owner, an earlier tier's approver, a cash applier of the customer in the
                       period, a non-holder of the tier's role, and past the cumulative limit of the tier's
                       role (checked here and again by the recording activity against the store)
    reject    update   pending_approval -> rejected, reason required (an approver of the waiting tier)
    cancel    update   proposed / pending_approval -> cancelled, reason required (the proposer, the case
                       owner, a supervisor, the system)
    state     query    the ResolutionState as last recorded
Once approved: `issue` (gapless number CN-<year>, UBL 381 credit note + PDF, one transaction), `apply` to the
invoice's amount due (update apply_adjustment, kind credit_memo; `hold_on_account` when the invoice no longer
owes that much), for a rebill the corrected invoice started and linked (`rebill`), the outcome signalled to
the dispute (`resolution_outcome`), then `deliver` through the customer's channel (retried until it goes).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows import credit_memo_states as states
from workflows.credit_memo_base import SYSTEM, ResolutionDocument
from workflows.credit_memo_states import Event, Status
from workflows.credit_memo_types import (
    CREDIT_MEMO,
    CreditMemoInput,
    IssueRequest,
    IssueResult,
    RebillRequest,
    RebillResult,
    ResolutionApproveCommand,
    ResolutionRejectCommand,
    ResolutionState,
)
from workflows.credit_note_types import CreditNoteDelivered, CreditNoteDeliveryRequest


@workflow.defn
class CreditMemoWorkflow(ResolutionDocument):
    KIND = CREDIT_MEMO
    NOUN = "credit memo"

    @workflow.init
    def __init__(self, inp: CreditMemoInput) -> None:
        self._setup(inp)
        self._memo: CreditMemoInput = inp
        self._number = ""
        self._issued_at = ""
        self._delivered_at = ""
        self._channel = ""
        self._rebill_invoice_id = ""

    def _apply_table(self, status: StrEnum | None, event: StrEnum) -> StrEnum:
        return states.apply(Status(status) if status else None, Event(event))

    def _status_of(self, value: str) -> StrEnum:
        return Status(value)

    def _extra_state(self) -> dict[str, Any]:
        return {
            "lines": list(self._memo.lines),
            "number": self._number,
            "issued_at": self._issued_at,
            "delivered_at": self._delivered_at,
            "channel": self._channel,
            "rebill_invoice_id": self._rebill_invoice_id,
            "rebill": self._memo.rebill,
        }

    @workflow.run
    async def run(self, inp: CreditMemoInput) -> ResolutionState:
        async with self._lock:
            await self._transition(Event.PROPOSE, inp.proposed_by, inp.reason, inp.request_id)
            await self._submit(Event.SUBMIT)
        await self._wait_for_decision(Status.PENDING_APPROVAL, Event.CANCEL)
        if self._status == Status.APPROVED:
            await self._issue_apply_deliver()
        elif self._status in (Status.REJECTED, Status.CANCELLED):
            await self._tell_dispute(self._status.value, 0)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state()

    async def _issue_apply_deliver(self) -> None:
        cfg = self._config
        async with self._lock:
            record = self._record_of(Event.ISSUE, replace(SYSTEM, rule="workflow:issue"), "")
            issued = await workflow.execute_local_activity(
                "issue_credit_memo",
                IssueRequest(record),
                result_type=IssueResult,
                start_to_close_timeout=timedelta(seconds=cfg.record_timeout_seconds),
                retry_policy=self._retry(),
            )
            self._number, self._issued_at = issued.number, issued.issued_at
            self._commit(replace(record, reason=f"credit note {issued.number}"))

            amount = self._inp.amount_minor
            _, refused = await self._apply_to_invoice(amount, self._number, "")
            if refused:
                await self._transition(
                    Event.HOLD_ON_ACCOUNT, replace(SYSTEM, rule="workflow:apply"), f"not applied: {refused}"
                )
            else:
                self._applied_minor = amount
                await self._transition(
                    Event.APPLY,
                    replace(SYSTEM, rule="workflow:apply"),
                    f"{self._number} applied to the invoice",
                )
                if self._memo.rebill is not None:
                    started = await workflow.execute_activity(
                        "start_rebill_invoice",
                        RebillRequest(
                            self._inp.id,
                            self._inp.legal_entity,
                            self._inp.invoice_id,
                            self._memo.rebill,
                            self._inp.proposed_by,
                        ),
                        result_type=RebillResult,
                        start_to_close_timeout=timedelta(seconds=cfg.delivery_timeout_seconds),
                        retry_policy=RetryPolicy(
                            maximum_interval=timedelta(seconds=cfg.delivery_retry_max_interval_seconds),
                            non_retryable_error_types=["invalid_command", "external_id_conflict"],
                        ),
                    )
                    self._rebill_invoice_id = started.invoice_id
                    await self._transition(
                        Event.REBILL,
                        replace(SYSTEM, rule="workflow:rebill"),
                        f"corrected invoice {started.external_id} started",
                    )
        # Held on account (the invoice no longer owed it): issued, nothing applied to that invoice.
        await self._tell_dispute("applied", self._applied_minor, self._number, self._rebill_invoice_id)
        async with self._lock:
            delivered = await workflow.execute_activity(
                "deliver_credit_note",
                CreditNoteDeliveryRequest(issued.document),
                result_type=CreditNoteDelivered,
                start_to_close_timeout=timedelta(seconds=cfg.delivery_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(seconds=cfg.delivery_retry_max_interval_seconds),
                ),
            )
            self._channel, self._delivered_at = delivered.channel, delivered.sent_at
            await self._transition(
                Event.DELIVER,
                replace(SYSTEM, rule="workflow:deliver"),
                f"{delivered.channel} to {delivered.recipient}",
            )

    # -- updates -------------------------------------------------------------------------------

    @workflow.update
    async def approve(self, cmd: ResolutionApproveCommand) -> ResolutionState:
        await self._approve(cmd, Event.APPROVE_TIER, Event.APPROVE)
        return self._state()

    @approve.validator
    def _validate_approve(self, cmd: ResolutionApproveCommand) -> None:
        self._check_approval(cmd)

    @workflow.update
    async def reject(self, cmd: ResolutionRejectCommand) -> ResolutionState:
        await self._decide_negative(cmd, Event.REJECT)
        return self._state()

    @reject.validator
    def _validate_reject(self, cmd: ResolutionRejectCommand) -> None:
        self._check_reject(cmd, Event.REJECT)

    @workflow.update
    async def cancel(self, cmd: ResolutionRejectCommand) -> ResolutionState:
        await self._decide_negative(cmd, Event.CANCEL)
        return self._state()

    @cancel.validator
    def _validate_cancel(self, cmd: ResolutionRejectCommand) -> None:
        self._check_reject(cmd, Event.CANCEL)

    @workflow.query
    def state(self) -> ResolutionState | None:
        return self._published

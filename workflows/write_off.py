"""WriteOffWorkflow: one durable workflow per write-off of (part of) an invoice's open amount.

Workflow id: `write_off/<legal_entity>/<write_off_id>` (workflows.credit_memo_types).
States: workflows/write_off_states.py. Approval rules: workflows/credit_memo_approval.py (the same as credit
memos: never the requester, never the dispute case's owner, never a cash applier of the customer in the
period, one person per tier, the tier's role, the cumulative limit of the deciding role).

    request   (start)  recorded as requested; below the legal entity's tolerance (policies/disputes.toml
                       [write_off.tolerance]) it is written off at once by `system`, the ledger naming the
                       rule `write_off:auto_tolerance:<entity><=<amount> <currency>`; otherwise `submit`
                       with the tiers of the matrix's write_off section -> pending_approval
    approve   update   one tier; the last one -> approved, then applied to the invoice -> written_off
    reject    update   pending_approval -> rejected, reason required
    cancel    update   requested / pending_approval -> cancelled, reason required
    state     query    the ResolutionState as last recorded
The outcome (applied, rejected, cancelled) is signalled to the dispute (`resolution_outcome`).
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

from temporalio import workflow

from workflows import write_off_states as states
from workflows.credit_memo_base import SYSTEM, ResolutionDocument
from workflows.credit_memo_types import (
    WRITE_OFF,
    ResolutionApproveCommand,
    ResolutionRejectCommand,
    ResolutionState,
    WriteOffInput,
)
from workflows.write_off_states import Event, Status


@workflow.defn
class WriteOffWorkflow(ResolutionDocument):
    KIND = WRITE_OFF
    NOUN = "write-off"

    @workflow.init
    def __init__(self, inp: WriteOffInput) -> None:
        self._setup(inp)

    def _apply_table(self, status: StrEnum | None, event: StrEnum) -> StrEnum:
        return states.apply(Status(status) if status else None, Event(event))

    def _status_of(self, value: str) -> StrEnum:
        return Status(value)

    @workflow.run
    async def run(self, inp: WriteOffInput) -> ResolutionState:
        async with self._lock:
            await self._transition(Event.REQUEST, inp.proposed_by, inp.reason, inp.request_id)
            plan = await self._submit(Event.SUBMIT)
            if plan.auto_rule:
                self._auto_rule = plan.auto_rule
                self._decided_by = SYSTEM.username
                await self._write_off(plan.auto_rule)
        if self._status == Status.PENDING_APPROVAL:
            await self._wait_for_decision(Status.PENDING_APPROVAL, Event.CANCEL)
            if self._status == Status.APPROVED:
                async with self._lock:
                    await self._write_off("")
        if self._status == Status.WRITTEN_OFF:
            await self._tell_dispute("applied", self._applied_minor)
        elif self._status in (Status.REJECTED, Status.CANCELLED):
            await self._tell_dispute(self._status.value, 0)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state()

    async def _write_off(self, auto_rule: str) -> None:
        """Apply it to the invoice, then record `write_off` (by the system; an automatic one under the rule
        that allowed it). Refused by the invoice (paid meanwhile, say): cancelled, saying why."""
        amount = self._inp.amount_minor
        _, refused = await self._apply_to_invoice(amount, "", auto_rule)
        rule = auto_rule or "workflow:write_off"
        if refused:
            self._decision_reason = f"not applied: {refused}"
            await self._transition(Event.CANCEL, replace(SYSTEM, rule=rule), self._decision_reason)
            return
        self._applied_minor = amount
        reason = f"automatic below the tolerance ({auto_rule})" if auto_rule else "approved write-off applied"
        await self._transition(Event.WRITE_OFF, replace(SYSTEM, rule=rule), reason, rule=rule)

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

"""What credit memo and write-off workflows share: the approval tiers (approve, reject, cancel), recording
each transition before it is visible, applying the document to the invoice, and telling the dispute.

The workflows themselves (workflows/credit_memo.py, workflows/write_off.py) declare their updates, signals
and queries and call in here; each has its own literal state table (credit_memo_states, write_off_states).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.credit_memo_approval import current_tier, resolution_refusal
from workflows.credit_memo_types import (
    RESOLUTION_OUTCOME_SIGNAL,
    ResolutionApproveCommand,
    ResolutionAuthority,
    ResolutionConfig,
    ResolutionOutcome,
    ResolutionPlanRequest,
    ResolutionPlanResult,
    ResolutionRecord,
    ResolutionRecorded,
    ResolutionRejectCommand,
    ResolutionState,
)
from workflows.errors import refuse
from workflows.types import Actor, AdjustmentCommand, Approval, InvoiceCommandRequest, InvoiceState

SYSTEM = Actor(username="system", roles=["system"], rule="workflow")
# Refusals the recording activity finds in the store (the approver's role, cash applied for the customer,
# the cumulative limit): the approval is not recorded and the command is refused with them.
STORE_REFUSALS = ["no_authority", "segregation_of_duties", "cumulative_limit"]
# What an invoice answers when the adjustment no longer fits it: it is not applied (and not retried).
INVOICE_REFUSALS = frozenset(
    {"amount_exceeds_open", "transition_refused", "currency_mismatch", "unknown_reference"}
)


class ResolutionDocument:
    """State and mechanics of one credit memo or write-off; subclasses set KIND and the state table."""

    KIND = ""
    NOUN = ""

    def _setup(self, inp: Any) -> None:
        self._inp = inp
        self._config: ResolutionConfig = inp.config
        self._status: StrEnum | None = None
        self._seq = 0
        self._status_since = ""
        self._plan_result: ResolutionPlanResult | None = None
        self._approvals: list[Approval] = []
        self._decided_by = ""
        self._decision_reason = ""
        self._auto_rule = ""
        self._applied_minor = 0
        self._published: ResolutionState | None = None
        self._lock = asyncio.Lock()

    # -- subclass hooks -------------------------------------------------------------------------

    def _apply_table(self, status: StrEnum | None, event: StrEnum) -> StrEnum:
        raise NotImplementedError

    def _status_of(self, value: str) -> StrEnum:
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    # -- state --------------------------------------------------------------------------------

    def _state(self) -> ResolutionState:
        plan = self._plan_result
        return ResolutionState(
            kind=self.KIND,
            id=self._inp.id,
            workflow_id=workflow.info().workflow_id,
            legal_entity=self._inp.legal_entity,
            status=self._status.value if self._status else "",
            invoice_id=self._inp.invoice_id,
            customer_id=self._inp.customer_id,
            currency=self._inp.currency,
            amount_minor=self._inp.amount_minor,
            reason=self._inp.reason,
            proposed_by=self._inp.proposed_by.username,
            dispute_id=self._inp.dispute_id,
            dispute_owner=self._inp.dispute_owner,
            status_since=self._status_since,
            transition_seq=self._seq,
            plan=plan.plan if plan else None,
            tier_bounds=list(plan.tier_bounds) if plan else [],
            cash_appliers=list(plan.cash_appliers) if plan else [],
            approvals=list(self._approvals),
            decided_by=self._decided_by,
            decision_reason=self._decision_reason,
            auto_rule=self._auto_rule,
            applied_minor=self._applied_minor,
            **self._extra_state(),
        )

    # -- recording ------------------------------------------------------------------------------

    def _record_of(
        self,
        event: StrEnum,
        actor: Actor,
        reason: str,
        request_id: str = "",
        authority: ResolutionAuthority | None = None,
        rule: str = "",
        state: ResolutionState | None = None,
    ) -> ResolutionRecord:
        to = self._apply_table(self._status, event)
        now = workflow.now().isoformat()
        info = workflow.info()
        seq = self._seq + 1
        since = self._status_since if to == self._status else now
        base = state or self._state()
        return ResolutionRecord(
            object_type=self.KIND,
            object_id=self._inp.id,
            legal_entity=self._inp.legal_entity,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            transition_seq=seq,
            event=event.value,
            from_status=self._status.value if self._status else None,
            to_status=to.value,
            actor=actor,
            reason=reason,
            at=now,
            request_id=request_id,
            state=replace(base, status=to.value, transition_seq=seq, status_since=since),
            authority=authority,
            rule=rule,
        )

    def _retry(self) -> RetryPolicy:
        return RetryPolicy(
            initial_interval=timedelta(milliseconds=200),
            maximum_interval=timedelta(seconds=10),
            non_retryable_error_types=STORE_REFUSALS,
        )

    async def _record(self, record: ResolutionRecord) -> ResolutionRecorded:
        """Record the transition (ledger + read model); a command's by a regular activity (its acceptance is
        in history first), the workflow's own by a local one (idempotent on workflow id + seq)."""
        timeout = timedelta(seconds=self._config.record_timeout_seconds)
        try:
            recorded: ResolutionRecorded
            if workflow.current_update_info() is not None:
                recorded = await workflow.execute_activity(
                    "record_resolution_transition",
                    record,
                    result_type=ResolutionRecorded,
                    start_to_close_timeout=timeout,
                    retry_policy=self._retry(),
                )
            else:
                recorded = await workflow.execute_local_activity(
                    "record_resolution_transition",
                    record,
                    result_type=ResolutionRecorded,
                    start_to_close_timeout=timeout,
                    retry_policy=self._retry(),
                )
            return recorded
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type in STORE_REFUSALS:
                details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
                raise refuse(cause.type, cause.message, **details) from None
            raise

    def _commit(self, record: ResolutionRecord) -> None:
        self._seq = record.transition_seq
        self._status_since = record.state.status_since
        self._status = self._status_of(record.to_status)
        self._published = self._state()

    async def _transition(
        self,
        event: StrEnum,
        actor: Actor,
        reason: str,
        request_id: str = "",
        authority: ResolutionAuthority | None = None,
        rule: str = "",
    ) -> ResolutionRecorded:
        record = self._record_of(event, actor, reason, request_id, authority, rule)
        recorded = await self._record(record)
        self._commit(record)
        return recorded

    async def _submit(self, event: StrEnum) -> ResolutionPlanResult:
        """The approval tiers under the matrix in force now, recorded with the `submit` transition (for a
        write-off under the entity's tolerance: nothing recorded, `auto_rule` set)."""
        record = self._record_of(event, SYSTEM, "")
        result: ResolutionPlanResult = await workflow.execute_local_activity(
            "submit_resolution",
            ResolutionPlanRequest(
                self._inp.amount_minor, self._inp.currency, self._inp.exchange_rate, record
            ),
            result_type=ResolutionPlanResult,
            start_to_close_timeout=timedelta(seconds=self._config.record_timeout_seconds),
            retry_policy=self._retry(),
        )
        if result.recorded is not None:
            self._plan_result = result
            self._commit(replace(record, reason=result.reason, state=replace(record.state, plan=result.plan)))
        return result

    # -- approval ---------------------------------------------------------------------------------

    def _update_id(self) -> str:
        info = workflow.current_update_info()
        return info.id if info else ""

    def _check(self, event: StrEnum) -> None:
        try:
            self._apply_table(self._status, event)
        except Exception as exc:  # the table's TransitionRefused
            raise refuse(
                "transition_refused",
                str(exc),
                status=self._status.value if self._status else None,
                event=event.value,
            ) from None

    def _check_approval(self, cmd: ResolutionApproveCommand) -> None:
        why = resolution_refusal(self._state(), cmd.actor, cmd.tier)
        if why is None:
            return
        if why.code == "transition_refused":
            raise refuse(
                why.code, why.message, status=self._status.value if self._status else None, event="approve"
            )
        raise refuse(why.code, why.message, rule=why.rule)

    async def _approve(self, cmd: ResolutionApproveCommand, approve_tier: StrEnum, approve: StrEnum) -> None:
        async with self._lock:
            self._check_approval(cmd)
            tier = current_tier(self._state())
            assert tier is not None and self._plan_result is not None
            last = tier.level == len(self._plan_result.plan.tiers)
            self._approvals.append(
                Approval(cmd.actor.username, workflow.now().isoformat(), cmd.comment, tier.level, tier.role)
            )
            decided = self._decided_by
            if last:
                self._decided_by = cmd.actor.username
            reason = f"tier {tier.level} ({tier.role})" + (f": {cmd.comment}" if cmd.comment else "")
            try:
                await self._transition(
                    approve if last else approve_tier,
                    cmd.actor,
                    reason,
                    self._update_id(),
                    authority=ResolutionAuthority(cmd.actor.username, tier.role, tier.level, last),
                )
            except ApplicationError:
                self._approvals.pop()
                self._decided_by = decided
                raise

    def _check_reject(self, cmd: ResolutionRejectCommand, event: StrEnum) -> None:
        self._check(event)
        if not cmd.reason.strip():
            raise refuse("invalid_command", f"a {event.value} needs a reason", field="reason")
        if event.value == "reject":
            tier = current_tier(self._state())
            if cmd.actor.username == self._inp.proposed_by.username:
                raise refuse(
                    "segregation_of_duties",
                    f"{cmd.actor.username} proposed this {self.NOUN}: cancel it instead of rejecting it",
                    rule="proposer_cannot_approve",
                )
            if tier is not None and tier.role not in cmd.actor.roles:
                raise refuse(
                    "no_authority",
                    f"tier {tier.level} needs the role {tier.role} to reject, which {cmd.actor.username} "
                    "does not hold here",
                    rule="tier_role",
                )
        else:
            allowed = {self._inp.proposed_by.username, self._inp.dispute_owner, SYSTEM.username} - {""}
            if cmd.actor.username not in allowed and "ar_supervisor" not in cmd.actor.roles:
                raise refuse(
                    "no_authority",
                    f"only who proposed it, the dispute's owner or a supervisor cancels a {self.NOUN}",
                    rule="cancel",
                )

    async def _decide_negative(self, cmd: ResolutionRejectCommand, event: StrEnum) -> None:
        async with self._lock:
            self._check_reject(cmd, event)
            before = (self._decided_by, self._decision_reason)
            self._decided_by, self._decision_reason = cmd.actor.username, cmd.reason
            try:
                await self._transition(event, cmd.actor, cmd.reason, self._update_id())
            except ApplicationError:
                self._decided_by, self._decision_reason = before
                raise

    async def _wait_for_decision(self, pending: StrEnum, cancel: StrEnum) -> None:
        """Wait for the approvers; cancelled by the system when the configured time runs out (0: never)."""
        seconds = self._config.approval_timeout_seconds
        if seconds <= 0:
            await workflow.wait_condition(lambda: self._status != pending)
            return
        try:
            await workflow.wait_condition(lambda: self._status != pending, timeout=timedelta(seconds=seconds))
        except TimeoutError:
            async with self._lock:
                if self._status == pending:
                    self._decided_by, self._decision_reason = SYSTEM.username, "approval timed out"
                    await self._transition(cancel, SYSTEM, "approval timed out")

    # -- effects on other workflows ------------------------------------------------------------

    async def _apply_to_invoice(
        self, amount_minor: int, number: str, rule: str
    ) -> tuple[InvoiceState | None, str]:
        """Lower the invoice's amount due (update `apply_adjustment`); (state, "") or (None, why refused)."""
        actor = Actor(self._decided_by or SYSTEM.username, [], rule or f"{self.KIND}:apply")
        try:
            state = await workflow.execute_activity(
                "send_invoice_command",
                InvoiceCommandRequest(
                    workflow_id=self._inp.invoice_workflow_id,
                    update="apply_adjustment",
                    update_id=f"{workflow.info().workflow_id}#apply",
                    adjustment=AdjustmentCommand(
                        actor=actor,
                        adjustment_id=self._inp.id,
                        kind=self.KIND,
                        amount_minor=amount_minor,
                        document_number=number,
                        reason=self._inp.reason,
                        rule=rule,
                    ),
                ),
                result_type=InvoiceState,
                start_to_close_timeout=timedelta(seconds=self._config.delivery_timeout_seconds),
                retry_policy=RetryPolicy(
                    maximum_interval=timedelta(seconds=self._config.delivery_retry_max_interval_seconds),
                    non_retryable_error_types=[*INVOICE_REFUSALS, "already_applied", "invalid_command"],
                ),
            )
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == "already_applied":
                return None, ""  # applied by an earlier attempt
            if isinstance(cause, ApplicationError):
                return None, f"{cause.type}: {cause.message}"
            raise
        return state, ""

    async def _tell_dispute(self, status: str, amount_minor: int, number: str = "", rebill: str = "") -> None:
        """Signal the outcome to the dispute that started this document (none: nothing to tell)."""
        target = self._inp.dispute_workflow_id
        if not target:
            return
        outcome = ResolutionOutcome(
            kind=self.KIND,
            document_id=self._inp.id,
            status=status,
            amount_minor=amount_minor,
            number=number,
            by=self._decided_by or SYSTEM.username,
            at=workflow.now().isoformat(),
            reason=self._decision_reason or self._inp.reason,
            rebill_invoice_id=rebill,
        )
        try:
            await workflow.get_external_workflow_handle(target).signal(RESOLUTION_OUTCOME_SIGNAL, outcome)
        except Exception as exc:  # the case's workflow is gone: the outcome is in the ledger all the same
            workflow.logger.warning("could not signal %s to %s: %s", status, target, exc)

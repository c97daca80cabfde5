"""CapaWorkflow: one corrective and preventive action (CAPA) per dispute closed with an internal root cause.

Workflow id: ``capa_workflow_id(legal_entity, capa_id)`` (workflows/capa_types.py); started by the dispute
workflow (or its closing activity) with a `CapaInput`.

Updates (each refusable by a validator that leaves no trace in history; rules in workflows/capa_states.py):
    complete_corrective  -- the corrective action's owner says it is done, with a note
    complete_preventive  -- the preventive action's owner says it is done: the effectiveness check is
                            scheduled `effectiveness_window_seconds` later
    request_extension    -- an action's owner asks for a later due date, with a reason
    approve_extension    -- someone who is NOT the owner, holding an approver role, moves the due date
    refuse_extension     -- the same people refuse it; the due date stands
Queries:
    state                -- the CapaState as last recorded
Timers (durable): reminders to the owner of each open action `reminder_lead_seconds` before its due date,
at the due date, then every `overdue_reminder_seconds` while overdue (at most `max_overdue_reminders`);
the effectiveness check after the window. The check's activity (`capa_recurrence`) counts the cases of the
same root cause for the same customer (or function) and the invoices issued, before and after; the
decision (capa_states.decide) is the workflow's, recorded with its figures. Ineffective: `reopen`, the
preventive action open again, due `reopen_due_seconds` later.
Every transition is appended to the ledger (object_type "capa") and the read model by `record_capa`
before the new state is visible.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import capa_states
from workflows.capa_states import ActionView, Event, Status, due_instant
from workflows.capa_types import (
    ActionState,
    CapaInput,
    CapaState,
    CapaTransition,
    CompleteCommand,
    EffectivenessCheck,
    ExtensionDecision,
    ExtensionRequest,
    PendingExtension,
    RecurrenceFigures,
    RecurrenceRequest,
)
from workflows.errors import refuse
from workflows.types import Actor, RecordResult

SYSTEM = Actor(username="system", roles=["system"], rule="workflow:capa")


@workflow.defn
class CapaWorkflow:
    @workflow.init
    def __init__(self, inp: CapaInput) -> None:
        self._inp = inp
        self._status: Status | None = None
        self._actions: dict[str, ActionState] = {
            "corrective": ActionState(
                "corrective", inp.corrective.owner, inp.corrective.due, inp.corrective.description
            ),
            "preventive": ActionState(
                "preventive", inp.preventive.owner, inp.preventive.due, inp.preventive.description
            ),
        }
        self._checks: list[EffectivenessCheck] = []
        self._check_due_at = ""
        self._reopened = 0
        self._opened_at = ""
        self._closed_at = ""
        self._seq = 0
        self._published: CapaState | None = None
        # Commands and timers record one transition at a time.
        self._lock = asyncio.Lock()

    # -- the lifecycle -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: CapaInput) -> CapaState:
        async with self._lock:
            self._opened_at = workflow.now().isoformat()
            await self._transition(
                Event.OPEN, inp.opened_by, f"root cause {inp.root_cause}, case {inp.case_number}", ""
            )
        while self._status != Status.CLOSED:
            async with self._lock:
                if self._status == Status.CHECKED and self._actions["corrective"].status == "done":
                    self._closed_at = workflow.now().isoformat()
                    await self._transition(Event.CLOSE, SYSTEM, self._last_outcome(), "")
                    continue
            seq = self._seq
            due = self._next_deadline()
            wait = None if due is None else (due[0] - workflow.now()).total_seconds()
            if due is None or (wait is not None and wait > 0):
                # Durable timer (none when nothing is due); any recorded transition (a completion, an
                # extension) wakes the loop to plan again from the new state.
                if await self._moved_within(seq, wait):
                    continue
            assert due is not None
            async with self._lock:
                if self._seq != seq:
                    continue
                if due[1] == "check":
                    await self._check_effectiveness()
                else:
                    await self._remind(due[1])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state()

    async def _moved_within(self, seq: int, seconds: float | None) -> bool:
        try:
            await workflow.wait_condition(lambda: self._seq != seq, timeout=seconds)
            return True
        except TimeoutError:
            return False

    def _reminder_at(self, action: ActionState) -> tuple[datetime, str] | None:
        """When the owner of an open action is next reminded, and of what."""
        if action.status != "open":
            return None
        cfg = self._inp.config
        due = due_instant(action.due)
        sent = action.reminders_sent
        if sent == 0:
            return due - timedelta(seconds=cfg.reminder_lead_seconds), "due_soon"
        if sent == 1:
            return due, "due"
        overdue = sent - 1
        if overdue > cfg.max_overdue_reminders:
            return None
        return due + timedelta(seconds=cfg.overdue_reminder_seconds * overdue), "overdue"

    def _next_deadline(self) -> tuple[datetime, str] | None:
        """(instant, what): "check", or the kind of action whose reminder comes first."""
        candidates: list[tuple[datetime, str]] = []
        if self._status == Status.CHECKING and self._check_due_at:
            candidates.append((datetime.fromisoformat(self._check_due_at), "check"))
        for kind in ("corrective", "preventive"):
            at = self._reminder_at(self._actions[kind])
            if at is not None:
                candidates.append((at[0], kind))
        return min(candidates) if candidates else None

    async def _remind(self, kind: str) -> None:
        action = self._actions[kind]
        at = self._reminder_at(action)
        if at is None:
            return
        self._actions[kind] = replace(action, reminders_sent=action.reminders_sent + 1)
        what = {"due_soon": "due soon", "due": "due now", "overdue": "overdue"}[at[1]]
        await self._transition(
            Event.REMIND,
            SYSTEM,
            f"{at[1]}: the {kind} action is {what} (due {action.due}); reminded {action.owner}",
            "",
            action=kind,
        )

    async def _check_effectiveness(self) -> None:
        """Count, decide, record; ineffective reopens the preventive action."""
        inp, cfg = self._inp, self._inp.config
        split = datetime.fromisoformat(self._actions["preventive"].completed_at)
        window = timedelta(seconds=cfg.effectiveness_window_seconds)
        req = RecurrenceRequest(
            legal_entity=inp.legal_entity,
            root_cause=inp.root_cause,
            customer_id=inp.customer_id,
            function=inp.function,
            before_from=(split - window).isoformat(),
            split=split.isoformat(),
            after_to=(split + window).isoformat(),
        )
        figures = await workflow.execute_activity(
            "capa_recurrence",
            req,
            result_type=RecurrenceFigures,
            start_to_close_timeout=timedelta(seconds=cfg.check_timeout_seconds),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
        )
        outcome, why = capa_states.decide(
            figures.cases_before,
            figures.invoices_before,
            figures.cases_after,
            figures.invoices_after,
            cfg.min_invoices,
        )
        check = EffectivenessCheck(
            number=len(self._checks) + 1,
            outcome=outcome,
            scope="customer" if inp.customer_id else "function",
            before_from=req.before_from,
            split=req.split,
            after_to=req.after_to,
            cases_before=figures.cases_before,
            invoices_before=figures.invoices_before,
            cases_after=figures.cases_after,
            invoices_after=figures.invoices_after,
            rate_before=capa_states.rate_per_100(figures.cases_before, figures.invoices_before),
            rate_after=capa_states.rate_per_100(figures.cases_after, figures.invoices_after),
            why=why,
        )
        self._checks.append(check)
        self._check_due_at = ""
        await self._transition(Event.CHECK, SYSTEM, f"{outcome}: {why}", "", action="preventive", check=check)
        if outcome == "ineffective":
            new_due = (workflow.now() + timedelta(seconds=cfg.reopen_due_seconds)).isoformat()
            prev = self._actions["preventive"]
            self._actions["preventive"] = ActionState(
                "preventive",
                prev.owner,
                new_due,
                prev.description,
                extensions_approved=prev.extensions_approved,
            )
            self._reopened += 1
            await self._transition(
                Event.REOPEN,
                SYSTEM,
                f"check {check.number} ineffective: the preventive action is open again, due {new_due}",
                "",
                action="preventive",
            )

    def _last_outcome(self) -> str:
        return f"check {self._checks[-1].number}: {self._checks[-1].outcome}" if self._checks else ""

    # -- updates -----------------------------------------------------------------------------------

    @workflow.update
    async def complete_corrective(self, cmd: CompleteCommand) -> CapaState:
        return await self._complete("corrective", cmd)

    @complete_corrective.validator
    def _validate_complete_corrective(self, cmd: CompleteCommand) -> None:
        self._check_complete("corrective", cmd)

    @workflow.update
    async def complete_preventive(self, cmd: CompleteCommand) -> CapaState:
        return await self._complete("preventive", cmd)

    @complete_preventive.validator
    def _validate_complete_preventive(self, cmd: CompleteCommand) -> None:
        self._check_complete("preventive", cmd)

    async def _complete(self, kind: str, cmd: CompleteCommand) -> CapaState:
        async with self._lock:
            self._check_complete(kind, cmd)
            now = workflow.now()
            self._actions[kind] = replace(
                self._actions[kind],
                status="done",
                completed_at=now.isoformat(),
                completed_by=cmd.by.username,
                note=cmd.note.strip(),
                extension=None,
            )
            event = Event.COMPLETE_CORRECTIVE if kind == "corrective" else Event.COMPLETE_PREVENTIVE
            if kind == "preventive":
                window = timedelta(seconds=self._inp.config.effectiveness_window_seconds)
                self._check_due_at = (now + window).isoformat()
            await self._transition(event, cmd.by, cmd.note.strip(), self._update_id(), action=kind)
        return self._state()

    def _check_complete(self, kind: str, cmd: CompleteCommand) -> None:
        if not cmd.note.strip():
            raise refuse("invalid_command", "say what was done", field="note")
        self._raise(capa_states.completion_refusal(self._status_value(), self._view(kind), cmd.by.username))

    @workflow.update
    async def request_extension(self, req: ExtensionRequest) -> CapaState:
        async with self._lock:
            self._check_request(req)
            action = self._actions[req.action]
            pending = PendingExtension(
                req.new_due, req.reason.strip(), req.by.username, workflow.now().isoformat()
            )
            self._actions[req.action] = replace(action, extension=pending)
            await self._transition(
                Event.REQUEST_EXTENSION,
                req.by,
                f"{req.action} action: due {action.due} -> {req.new_due}: {req.reason.strip()}",
                self._update_id(),
                action=req.action,
            )
        return self._state()

    @request_extension.validator
    def _validate_request_extension(self, req: ExtensionRequest) -> None:
        self._check_request(req)

    def _check_request(self, req: ExtensionRequest) -> None:
        if req.action not in self._actions:
            raise refuse("invalid_command", f"unknown action {req.action!r}", field="action")
        if not req.reason.strip():
            raise refuse("invalid_command", "an extension needs a reason", field="reason")
        if not capa_states.valid_due(req.new_due):
            raise refuse(
                "invalid_command",
                "new_due must be an ISO date or an instant with its offset",
                field="new_due",
            )
        self._raise(
            capa_states.extension_request_refusal(
                self._status_value(), self._view(req.action), req.by.username
            )
        )
        if due_instant(req.new_due) <= due_instant(self._actions[req.action].due):
            raise refuse(
                "invalid_command",
                f"an extension moves the due date later than {self._actions[req.action].due}",
                field="new_due",
            )

    @workflow.update
    async def approve_extension(self, dec: ExtensionDecision) -> CapaState:
        return await self._decide(dec, approve=True)

    @approve_extension.validator
    def _validate_approve_extension(self, dec: ExtensionDecision) -> None:
        self._check_decision(dec)

    @workflow.update
    async def refuse_extension(self, dec: ExtensionDecision) -> CapaState:
        return await self._decide(dec, approve=False)

    @refuse_extension.validator
    def _validate_refuse_extension(self, dec: ExtensionDecision) -> None:
        self._check_decision(dec)
        if not dec.reason.strip():
            raise refuse("invalid_command", "a refusal needs a reason", field="reason")

    async def _decide(self, dec: ExtensionDecision, approve: bool) -> CapaState:
        async with self._lock:
            self._check_decision(dec)
            undo = self._snapshot()
            action = self._actions[dec.action]
            pending = action.extension
            assert pending is not None
            if approve:
                # The due date moves only here; reminders start again for the new one.
                self._actions[dec.action] = replace(
                    action,
                    due=pending.new_due,
                    extension=None,
                    extensions_approved=action.extensions_approved + 1,
                    reminders_sent=0,
                )
                reason = (
                    f"{dec.action} action: due {action.due} -> {pending.new_due} "
                    f"(asked by {pending.requested_by})"
                )
                event = Event.APPROVE_EXTENSION
            else:
                self._actions[dec.action] = replace(action, extension=None)
                reason = f"{dec.action} action stays due {action.due} (asked {pending.new_due})"
                event = Event.REFUSE_EXTENSION
            if dec.reason.strip():
                reason += f": {dec.reason.strip()}"
            await self._transition(
                event,
                dec.by,
                reason,
                self._update_id(),
                action=dec.action,
                undo=undo,
                required_roles=self._inp.config.extension_approver_roles,
            )
        return self._state()

    def _check_decision(self, dec: ExtensionDecision) -> None:
        if dec.action not in self._actions:
            raise refuse("invalid_command", f"unknown action {dec.action!r}", field="action")
        self._raise(
            capa_states.extension_decision_refusal(
                self._status_value(),
                self._view(dec.action),
                dec.by.username,
                dec.by.roles,
                self._inp.config.extension_approver_roles,
            )
        )

    @workflow.query
    def state(self) -> CapaState | None:
        """The CAPA as last recorded in the ledger (None until its opening is recorded)."""
        return self._published

    # -- recording ---------------------------------------------------------------------------------

    def _status_value(self) -> str:
        return self._status.value if self._status else ""

    def _view(self, kind: str) -> ActionView:
        a = self._actions[kind]
        return ActionView(a.kind, a.owner, a.status, a.extension is not None)

    def _raise(self, refusal: tuple[str, str] | None) -> None:
        if refusal is None:
            return
        code, message = refusal
        if code == "transition_refused":
            raise refuse(code, message, status=self._status_value())
        if code in ("not_owner", "segregation_of_duties", "no_authority"):
            # Who may act is a 403 the API names with its rule.
            raise refuse("segregation_of_duties" if code == "not_owner" else code, message, rule=code)
        raise refuse(code, message, status=self._status_value())

    def _update_id(self) -> str:
        info = workflow.current_update_info()
        return info.id if info else ""

    def _snapshot(self) -> tuple[dict[str, ActionState], str, str]:
        return dict(self._actions), self._check_due_at, self._closed_at

    async def _transition(
        self,
        event: Event,
        actor: Actor,
        reason: str,
        request_id: str,
        action: str = "",
        check: EffectivenessCheck | None = None,
        undo: tuple[dict[str, ActionState], str, str] | None = None,
        required_roles: list[str] | None = None,
    ) -> None:
        """Record the transition (ledger + read model), then make it the workflow's state.

        The record activity checks the roles a decider claims against the store (a client talking to
        Temporal directly cannot claim ar_supervisor): `no_authority` comes back as a refusal, and `undo`
        (the fields as they were before the command changed them) is put back, nothing recorded."""
        to = capa_states.apply(self._status, event)
        info = workflow.info()
        seq = self._seq + 1
        now = workflow.now().isoformat()
        rec = CapaTransition(
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
            state=replace(self._state(), status=to.value, seq=seq),
            action=action,
            check=check,
            required_roles=list(required_roles or []),
        )
        try:
            await workflow.execute_activity(
                "record_capa",
                rec,
                result_type=RecordResult,
                start_to_close_timeout=timedelta(seconds=self._inp.config.record_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=200),
                    maximum_interval=timedelta(seconds=10),
                    non_retryable_error_types=["no_authority"],
                ),
            )
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == "no_authority" and undo is not None:
                self._actions, self._check_due_at, self._closed_at = dict(undo[0]), undo[1], undo[2]
                raise refuse("no_authority", cause.message, rule="capa:approve_extension") from None
            raise
        self._seq, self._status = seq, to
        self._published = self._state()

    def _state(self) -> CapaState:
        inp = self._inp
        return CapaState(
            legal_entity=inp.legal_entity,
            capa_id=inp.capa_id,
            dispute_id=inp.dispute_id,
            case_number=inp.case_number,
            root_cause=inp.root_cause,
            customer_id=inp.customer_id,
            function=inp.function,
            status=self._status_value(),
            corrective=self._actions["corrective"],
            preventive=self._actions["preventive"],
            opened_by=inp.opened_by.username,
            opened_at=self._opened_at,
            check_due_at=self._check_due_at,
            checks=list(self._checks),
            reopened=self._reopened,
            closed_at=self._closed_at,
            currency=inp.currency,
            seq=self._seq,
        )

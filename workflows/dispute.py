"""DisputeWorkflow: one durable workflow per dispute case, from the customer's complaint (or their portal's
word, or a short payment) to the closing with a validated root cause.

Workflow id: `dispute_workflow_id(legal_entity, case_number)` ("dispute/ACME/DSP-2026-000001").

Updates (each refusable by a validator that leaves no trace in history):
    await_opened      -- the state once the case is opened and its invoices hold it (update-with-start);
                         fails with the invoice's refusal when one refused the case (then it is void)
    add_invoice       -- an invoice, or more of one already in the case, joins it (a second deduction, the
                         portal, a collector): the invoice holds the new amount first, then it is recorded
    note, attach      -- the thread: a note; an attachment's metadata and SHA-256 (content in the store)
    assign, reassign  -- the owner (and coordinator); reassigning is a supervisor's
    wait_on_customer  -- the SLA clock pauses, and why is recorded; resume restarts it
    resolve           -- credit_memo / rebill / write_off start their document's workflow (the case waits in
                         `resolving` for its outcome); invalid / withdrawn resolve at once and collections
                         resume (the invoices leave `disputed`)
    close             -- the validated root cause and the validity; an internal root cause starts a CAPA
Signals:
    resolution_outcome -- a credit memo or write-off applied (or rejected, cancelled)
    payment_received   -- a payment on an invoice of the case: `paid`, or `recovered` after `invalid`
Queries:
    state             -- the DisputeState as last recorded
Timers: the SLA reminder, then the escalations (the level only goes up), counted in running time (waiting
on the customer pauses them); the customer's dispute window, an instant that does not pause.
Every transition is appended to the ledger (object_type "dispute") and the read model by the activity
`record_dispute_transition` before the new state is visible. The amounts always add up:
original = open + credited + written_off + paid + recovered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ParentClosePolicy

from workflows import dispute_states as ds
from workflows.capa_types import CapaAction, CapaInput, capa_workflow_id
from workflows.credit_memo_types import (
    CreditMemoInput,
    Rebill,
    ResolutionOutcome,
    WriteOffInput,
    credit_memo_workflow_id,
    write_off_workflow_id,
)
from workflows.dispute_states import Event, Resolution, Status
from workflows.dispute_types import (
    Amounts,
    AssignCommand,
    AttachCommand,
    Attachment,
    CloseCommand,
    DisputedInvoice,
    DisputeInput,
    DisputeRecord,
    DisputeRecorded,
    DisputeState,
    JoinCommand,
    NoteCommand,
    PaymentOnCase,
    ResolutionDocument,
    ResolveCommand,
    WaitCommand,
)
from workflows.errors import refuse
from workflows.root_causes import VALIDITY, RootCause, root_cause
from workflows.types import Actor, DisputeLinkCommand, InvoiceCommandRequest, InvoiceState, Line

SYSTEM = Actor(username="system", roles=["system"], rule="workflow:dispute")


@workflow.defn
class DisputeWorkflow:
    @workflow.init
    def __init__(self, inp: DisputeInput) -> None:
        self._inp = inp
        self._status: Status | None = None
        self._owner = inp.owner
        self._coordinator = inp.coordinator
        self._invoices: list[DisputedInvoice] = [
            DisputedInvoice(
                i.invoice_id, i.invoice_workflow_id, i.invoice_number, i.amount_minor, i.amount_minor
            )
            for i in inp.invoices
        ]
        self._amounts = Amounts()
        self._seq = 0
        self._status_since = ""
        self._opened_at = ""
        self._level = 0
        self._reminded = False
        self._window_passed = False
        self._waiting_reason = ""
        self._paused_seconds = 0.0
        self._paused_since = ""
        self._resolution = ""
        self._resolution_reason = ""
        self._resolved_by = ""
        self._resolved_at = ""
        self._documents: list[ResolutionDocument] = []
        self._root_cause = ""
        self._validity = ""
        self._capa_id = ""
        self._closed_at = ""
        self._attachments: list[Attachment] = []
        self._notes = 0
        self._links = 0  # invoice commands sent: with the workflow id, their update ids
        self._published: DisputeState | None = None
        self._refusal: ApplicationError | None = None  # why the invoices refused the case as it opened
        self._inbox: list[ResolutionOutcome | PaymentOnCase] = []
        self._seen: set[str] = set()
        self._lock = asyncio.Lock()

    # -- the lifecycle -------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: DisputeInput) -> DisputeState:
        async with self._lock:
            await self._open()
        while self._status not in ds.TERMINAL:
            if self._inbox:
                async with self._lock:
                    await self._take(self._inbox.pop(0))
            else:
                await self._watch_clock()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state()

    async def _open(self) -> None:
        """The invoices hold the case first (each may refuse: paid, void, more than is open, another case),
        then the opening is recorded. A refusal still records the case, then voids it: its number is used
        (the series is gapless), and the ledger says why."""
        total = sum(i.original_minor for i in self._invoices)
        self._amounts = Amounts(original_minor=total, open_minor=total)
        self._opened_at = workflow.now().isoformat()
        linked: list[DisputedInvoice] = []
        for inv in self._invoices:
            try:
                await self._invoice_command("open_dispute", inv, inv.open_minor, "case opened")
            except ApplicationError as exc:
                self._refusal = refuse(
                    exc.type or "transition_refused",
                    f"invoice {inv.invoice_number or inv.invoice_id}: {exc.message}",
                    invoice_id=inv.invoice_id,
                    **(exc.details[0] if exc.details and isinstance(exc.details[0], dict) else {}),
                )
                break
            linked.append(inv)
        source = {
            "manual": "recorded by",
            "portal": "the customer's portal, via",
            "deduction": "a deduction, via",
        }
        said = f"{self._inp.source}: {source.get(self._inp.source, 'by')} {self._inp.opened_by.username}"
        await self._transition(
            Event.OPEN,
            self._inp.opened_by,
            f"{said}; claimed {self._inp.claimed_code} -> {self._inp.reason}",
            self._inp.request_id,
            note=self._inp.description,
        )
        if self._refusal is not None:
            for inv in linked:
                await self._end_link(inv, "case void")
            self._invoices = [replace(i, linked=False) for i in self._invoices]
            await self._transition(Event.VOID, SYSTEM, self._refusal.message, "")

    async def _watch_clock(self) -> None:
        """Wait for the next SLA milestone (or anything that changes which one is next) and record it."""
        key = self._clock_key()
        upcoming = self._next_milestone()
        if upcoming is None:
            await workflow.wait_condition(lambda: self._clock_key() != key or bool(self._inbox))
            return
        kind, seconds = upcoming
        if seconds > 0 and await self._wait_until(
            lambda: self._clock_key() != key or bool(self._inbox), seconds
        ):
            # Something moved (a command may still be recording): let it finish, then look again.
            await workflow.wait_condition(lambda: not self._lock.locked())
            return
        async with self._lock:
            if self._clock_key() != key:
                return
            cfg = self._inp.config
            if kind == "remind":
                self._reminded = True
                await self._transition(
                    Event.REMIND,
                    SYSTEM,
                    f"reminder to {self._owner or 'the owner'}: the SLA is running out",
                    "",
                )
            elif kind == "escalate":
                self._level += 1
                role = (
                    cfg.escalation_roles[min(self._level, len(cfg.escalation_roles)) - 1]
                    if cfg.escalation_roles
                    else ""
                )
                await self._transition(
                    Event.ESCALATE,
                    SYSTEM,
                    f"escalation level {self._level} to {role or 'the supervisors'}: past "
                    f"{self._duration(cfg.escalation_seconds[self._level - 1])} of running time",
                    "",
                    payload={"level": self._level, "role": role},
                )
            else:
                self._window_passed = True
                self._level += 1
                await self._transition(
                    Event.ESCALATE,
                    SYSTEM,
                    f"escalation level {self._level}: the customer's dispute window ended at "
                    f"{cfg.window_deadline}",
                    "",
                    payload={"level": self._level, "window_deadline": cfg.window_deadline},
                )

    def _clock_key(self) -> tuple[object, ...]:
        return (self._status, self._paused_since, self._level, self._reminded, self._window_passed)

    def _running_seconds(self) -> float:
        now = workflow.now()
        run = (now - datetime.fromisoformat(self._opened_at)).total_seconds() - self._paused_seconds
        if self._paused_since:
            run -= (now - datetime.fromisoformat(self._paused_since)).total_seconds()
        return run

    def _next_milestone(self) -> tuple[str, float] | None:
        """The next timer: (kind, seconds from now). Reminder and escalations count running time; the
        customer's window is an instant."""
        cfg = self._inp.config
        found: list[tuple[float, str]] = []
        if self._status in ds.CLOCK_RUNS:
            run = self._running_seconds()
            if cfg.reminder_seconds > 0 and not self._reminded and self._level == 0:
                found.append((cfg.reminder_seconds - run, "remind"))
            if self._level < len(cfg.escalation_seconds):
                found.append((cfg.escalation_seconds[self._level] - run, "escalate"))
        if cfg.window_deadline and not self._window_passed and self._status in ds.HOLDS_INVOICES:
            left = (datetime.fromisoformat(cfg.window_deadline) - workflow.now()).total_seconds()
            found.append((left, "window"))
        if not found:
            return None
        seconds, kind = min(found)
        return kind, seconds

    async def _take(self, item: ResolutionOutcome | PaymentOnCase) -> None:
        if isinstance(item, PaymentOnCase):
            await self._apply_payment(item)
        else:
            await self._apply_outcome(item)

    async def _apply_payment(self, p: PaymentOnCase) -> None:
        """What the payment leaves due caps what the case still disputes on that invoice: the difference
        was paid (or, once the case was found invalid, recovered)."""
        if self._status is None or not ds.can(self._status, Event.RECORD_PAYMENT):
            return
        inv = self._invoice(p.invoice_id)
        if inv is None:
            return
        covered = inv.open_minor - min(inv.open_minor, max(p.amount_due_after_minor, 0))
        if covered <= 0:
            return
        recovered = self._resolution == Resolution.INVALID
        self._set_open(inv, inv.open_minor - covered)
        a = self._amounts
        self._amounts = replace(
            a,
            open_minor=a.open_minor - covered,
            paid_minor=a.paid_minor + (0 if recovered else covered),
            recovered_minor=a.recovered_minor + (covered if recovered else 0),
        )
        what = "recovered" if recovered else "paid"
        await self._transition(
            Event.RECORD_PAYMENT,
            replace(SYSTEM, rule="payment"),
            f"payment {p.payment_id} on {inv.invoice_number or inv.invoice_id}: {covered} {what}",
            "",
            payload={"payment_id": p.payment_id, "invoice_id": inv.invoice_id, what: covered},
        )

    async def _apply_outcome(self, o: ResolutionOutcome) -> None:
        doc = next((d for d in self._documents if d.document_id == o.document_id), None)
        if doc is None or doc.status != "pending" or self._status != Status.RESOLVING:
            return
        applied = o.status == "applied"
        counted = 0
        if applied:
            inv = self._invoice(doc.invoice_id)
            counted = min(max(o.amount_minor, 0), inv.open_minor if inv else 0)
            if inv is not None:
                self._set_open(inv, inv.open_minor - counted)
            a = self._amounts
            self._amounts = replace(
                a,
                open_minor=a.open_minor - counted,
                credited_minor=a.credited_minor + (counted if doc.kind == "credit_memo" else 0),
                written_off_minor=a.written_off_minor + (counted if doc.kind == "write_off" else 0),
            )
        self._documents = [
            replace(d, status=o.status, number=o.number, applied_minor=o.amount_minor if applied else 0)
            if d.document_id == doc.document_id
            else d
            for d in self._documents
        ]
        pending = [d for d in self._documents if d.status == "pending"]
        what = f"{doc.kind} {o.number or doc.document_id} {o.status} by {o.by}"
        if applied:
            what += f": {counted} of the case"
        if o.rebill_invoice_id:
            what += f"; corrected invoice {o.rebill_invoice_id}"
        if o.reason:
            what += f" ({o.reason})"
        payload: dict[str, str | int] = {
            "document_id": doc.document_id,
            "outcome": o.status,
            "counted": counted,
        }
        by = Actor(o.by or "system", [], f"{doc.kind}:{o.status}")
        if pending:
            await self._transition(Event.RESOLUTION_OUTCOME, by, what, "", payload=payload)
            return
        if any(d.status == "applied" for d in self._documents):
            await self._transition(Event.RESOLUTION_APPLIED, by, what, "", payload=payload)
            await self._end_links("resolved: " + self._resolution)
        else:
            self._resolution, self._resolution_reason = "", ""
            await self._transition(
                Event.RESOLUTION_REJECTED, by, what + "; the case is open again", "", payload=payload
            )

    async def _wait_until(self, condition: Callable[[], bool], seconds: float) -> bool:
        try:
            await workflow.wait_condition(condition, timeout=seconds)
            return True
        except TimeoutError:
            return False

    # -- signals ---------------------------------------------------------------------------------

    @workflow.signal
    def resolution_outcome(self, outcome: ResolutionOutcome) -> None:
        """A credit memo's or write-off's end (repeats count once)."""
        key = f"outcome|{outcome.document_id}|{outcome.status}"
        if key not in self._seen:
            self._seen.add(key)
            self._inbox.append(outcome)

    @workflow.signal
    def payment_received(self, payment: PaymentOnCase) -> None:
        """A payment applied to an invoice of the case (repeats count once)."""
        key = f"payment|{payment.payment_id}|{payment.invoice_id}"
        if key not in self._seen:
            self._seen.add(key)
            self._inbox.append(payment)

    # -- updates ---------------------------------------------------------------------------------

    @workflow.update
    async def await_opened(self) -> DisputeState:
        await workflow.wait_condition(lambda: self._published is not None and not self._lock.locked())
        if self._refusal is not None:
            raise self._refusal
        return self._state()

    @workflow.update
    async def add_invoice(self, cmd: JoinCommand) -> DisputeState:
        async with self._lock:
            self._check_join(cmd)
            inv = self._invoice(cmd.invoice.invoice_id)
            if inv is None:
                inv = DisputedInvoice(
                    cmd.invoice.invoice_id, cmd.invoice.invoice_workflow_id, cmd.invoice.invoice_number, 0, 0
                )
            hold = inv.open_minor + cmd.invoice.amount_minor
            # The invoice holds the new amount first: its refusal (more than is due, paid meanwhile...) is
            # the caller's answer, and nothing is recorded here.
            await self._invoice_command("open_dispute", inv, hold, cmd.reason or f"{cmd.source} joins")
            joined = replace(
                inv,
                original_minor=inv.original_minor + cmd.invoice.amount_minor,
                open_minor=hold,
                linked=True,
            )
            if self._invoice(inv.invoice_id) is None:
                self._invoices.append(joined)
            else:
                self._invoices = [joined if i.invoice_id == inv.invoice_id else i for i in self._invoices]
            a = self._amounts
            self._amounts = replace(
                a,
                original_minor=a.original_minor + cmd.invoice.amount_minor,
                open_minor=a.open_minor + cmd.invoice.amount_minor,
            )
            await self._transition(
                Event.JOIN,
                cmd.actor,
                f"{cmd.source}: {cmd.invoice.amount_minor} on {inv.invoice_number or inv.invoice_id}"
                + (f": {cmd.reason}" if cmd.reason else ""),
                self._update_id(),
                payload={
                    "invoice_id": inv.invoice_id,
                    "amount_minor": cmd.invoice.amount_minor,
                    "source": cmd.source,
                },
            )
        return self._state()

    @add_invoice.validator
    def _validate_add_invoice(self, cmd: JoinCommand) -> None:
        self._check_join(cmd)

    @workflow.update
    async def note(self, cmd: NoteCommand) -> DisputeState:
        async with self._lock:
            self._check_note(cmd)
            self._notes += 1
            await self._transition(Event.NOTE, cmd.actor, "note", self._update_id(), note=cmd.text)
        return self._state()

    @note.validator
    def _validate_note(self, cmd: NoteCommand) -> None:
        self._check_note(cmd)

    @workflow.update
    async def attach(self, cmd: AttachCommand) -> DisputeState:
        async with self._lock:
            self._check_attach(cmd)
            att = Attachment(cmd.filename, cmd.content_type, cmd.size, cmd.sha256)
            self._attachments.append(att)
            self._notes += 1
            await self._transition(
                Event.ATTACH,
                cmd.actor,
                f"{cmd.filename} ({cmd.size} bytes, sha256 {cmd.sha256})",
                self._update_id(),
                note=cmd.text,
                attachment=att,
                payload={"sha256": cmd.sha256, "filename": cmd.filename, "size": cmd.size},
            )
        return self._state()

    @attach.validator
    def _validate_attach(self, cmd: AttachCommand) -> None:
        self._check_attach(cmd)

    @workflow.update
    async def assign(self, cmd: AssignCommand) -> DisputeState:
        async with self._lock:
            event = self._check_assign(cmd)
            before = self._owner
            self._owner = cmd.owner
            self._coordinator = cmd.coordinator or self._coordinator
            await self._transition(
                event,
                cmd.actor,
                f"owner {before or '(none)'} -> {cmd.owner}" + (f": {cmd.reason}" if cmd.reason else ""),
                self._update_id(),
                payload={"owner": cmd.owner, "coordinator": self._coordinator},
            )
        return self._state()

    @assign.validator
    def _validate_assign(self, cmd: AssignCommand) -> None:
        self._check_assign(cmd)

    @workflow.update
    async def wait_on_customer(self, cmd: WaitCommand) -> DisputeState:
        async with self._lock:
            self._check_reason(Event.WAIT_ON_CUSTOMER, cmd.reason)
            self._paused_since, self._waiting_reason = workflow.now().isoformat(), cmd.reason
            await self._transition(Event.WAIT_ON_CUSTOMER, cmd.actor, cmd.reason, self._update_id())
        return self._state()

    @wait_on_customer.validator
    def _validate_wait(self, cmd: WaitCommand) -> None:
        self._check_reason(Event.WAIT_ON_CUSTOMER, cmd.reason)

    @workflow.update
    async def resume(self, cmd: WaitCommand) -> DisputeState:
        async with self._lock:
            self._check_reason(Event.RESUME, cmd.reason)
            paused = (workflow.now() - datetime.fromisoformat(self._paused_since)).total_seconds()
            self._paused_seconds += paused
            self._paused_since, self._waiting_reason = "", ""
            await self._transition(
                Event.RESUME,
                cmd.actor,
                f"{cmd.reason} (the clock was paused {self._duration(paused)})",
                self._update_id(),
                payload={"paused_seconds": int(paused)},
            )
        return self._state()

    @resume.validator
    def _validate_resume(self, cmd: WaitCommand) -> None:
        self._check_reason(Event.RESUME, cmd.reason)

    @workflow.update
    async def resolve(self, cmd: ResolveCommand) -> DisputeState:
        async with self._lock:
            kind = self._check_resolve(cmd)
            if self._paused_since:  # resolved while waiting on the customer: the pause ends here
                self._paused_seconds += (
                    workflow.now() - datetime.fromisoformat(self._paused_since)
                ).total_seconds()
                self._paused_since, self._waiting_reason = "", ""
            self._resolution, self._resolution_reason = kind.value, cmd.reason
            self._resolved_by, self._resolved_at = cmd.actor.username, workflow.now().isoformat()
            if kind in ds.BY_DOCUMENT:
                await self._start_documents(kind, cmd)
            await self._transition(
                Event.RESOLVE,
                cmd.actor,
                f"{kind.value}: {cmd.reason}",
                self._update_id(),
                resolution=kind,
                payload={"resolution": kind.value, "documents": len(self._documents)},
            )
            if kind not in ds.BY_DOCUMENT:
                await self._end_links(f"resolved: {kind.value}")
        return self._state()

    @resolve.validator
    def _validate_resolve(self, cmd: ResolveCommand) -> None:
        self._check_resolve(cmd)

    @workflow.update
    async def close(self, cmd: CloseCommand) -> DisputeState:
        async with self._lock:
            cause = self._check_close(cmd)
            self._root_cause, self._validity = cmd.root_cause, cmd.validity
            self._closed_at = workflow.now().isoformat()
            if cause.internal:
                assert cmd.corrective is not None and cmd.preventive is not None  # checked above
                self._capa_id = self._inp.case_number
                await workflow.start_child_workflow(
                    "CapaWorkflow",
                    CapaInput(
                        legal_entity=self._inp.legal_entity,
                        capa_id=self._capa_id,
                        dispute_id=self._inp.dispute_id,
                        case_number=self._inp.case_number,
                        root_cause=cause.code,
                        customer_id=self._inp.customer_id,
                        function=cause.function,
                        corrective=CapaAction(
                            cmd.corrective.owner, cmd.corrective.due, cmd.corrective.description
                        ),
                        preventive=CapaAction(
                            cmd.preventive.owner, cmd.preventive.due, cmd.preventive.description
                        ),
                        opened_by=cmd.actor,
                        config=self._inp.config.capa,
                        dispute_workflow_id=workflow.info().workflow_id,
                        currency=self._inp.currency,
                    ),
                    id=capa_workflow_id(self._inp.legal_entity, self._capa_id),
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            await self._transition(
                Event.CLOSE,
                cmd.actor,
                f"root cause {cause.code} ({cause.cause}), {cmd.validity}"
                + (f"; CAPA {self._capa_id}" if self._capa_id else "")
                + (f": {cmd.comment}" if cmd.comment else ""),
                self._update_id(),
                payload={"root_cause": cause.code, "validity": cmd.validity, "capa_id": self._capa_id},
            )
        return self._state()

    @close.validator
    def _validate_close(self, cmd: CloseCommand) -> None:
        self._check_close(cmd)

    @workflow.query
    def state(self) -> DisputeState | None:
        """The case as last recorded in the ledger (None until the opening is recorded)."""
        return self._published

    # -- rules -----------------------------------------------------------------------------------

    def _check(self, event: Event, resolution: Resolution | None = None) -> Status:
        try:
            return ds.apply(self._status, event, resolution)
        except ds.TransitionRefused as exc:
            raise refuse(
                "transition_refused",
                str(exc),
                status=self._status.value if self._status else None,
                event=event.value,
            ) from None

    def _check_join(self, cmd: JoinCommand) -> None:
        self._check(Event.JOIN)
        if cmd.invoice.amount_minor <= 0:
            raise refuse("invalid_command", "the disputed amount must be positive", field="amount")

    def _check_note(self, cmd: NoteCommand) -> None:
        self._check(Event.NOTE)
        if not cmd.text.strip():
            raise refuse("invalid_command", "a note needs text", field="text")

    def _check_attach(self, cmd: AttachCommand) -> None:
        self._check(Event.ATTACH)
        if len(cmd.sha256) != 64 or any(c not in "0123456789abcdef" for c in cmd.sha256):
            raise refuse("invalid_command", "sha256 must be 64 lowercase hex digits", field="sha256")
        if not cmd.filename.strip() or cmd.size <= 0:
            raise refuse("invalid_command", "an attachment needs a file name and content", field="file")

    def _check_assign(self, cmd: AssignCommand) -> Event:
        event = Event.ASSIGN if not self._owner else Event.REASSIGN
        self._check(event)
        if not cmd.owner.strip():
            raise refuse("invalid_command", "name the owner", field="owner")
        if event == Event.REASSIGN:
            if "ar_supervisor" not in cmd.actor.roles:
                raise refuse(
                    "no_authority", "only a supervisor reassigns a case", rule="supervisor_reassigns"
                )
            if not cmd.reason.strip():
                raise refuse("invalid_command", "a reassignment needs a reason", field="reason")
            if cmd.owner == self._owner:
                raise refuse("invalid_command", f"{cmd.owner} owns the case already", field="owner")
        return event

    def _check_reason(self, event: Event, reason: str) -> None:
        self._check(event)
        if not reason.strip():
            raise refuse("invalid_command", f"{event.value.replace('_', ' ')} needs a reason", field="reason")

    def _check_resolve(self, cmd: ResolveCommand) -> Resolution:
        try:
            kind = Resolution(cmd.kind)
        except ValueError:
            raise refuse(
                "invalid_command",
                f"unknown resolution {cmd.kind}: one of {', '.join(Resolution)}",
                field="kind",
            ) from None
        self._check(Event.RESOLVE, kind)
        if not cmd.reason.strip():
            raise refuse("invalid_command", "a resolution needs a reason", field="reason")
        if kind in ds.BY_DOCUMENT:
            for i, amount in enumerate(cmd.amounts):
                inv = self._invoice(amount.invoice_id)
                if inv is None:
                    raise refuse(
                        "invalid_command",
                        f"invoice {amount.invoice_id} is not in this case",
                        field=f"amounts.{i}",
                    )
                if amount.amount_minor <= 0:
                    raise refuse("invalid_command", "amounts must be positive", field=f"amounts.{i}.amount")
                if kind != Resolution.REBILL and amount.amount_minor > inv.open_minor:
                    raise refuse(
                        "amount_exceeds_open",
                        f"{amount.amount_minor} exceeds the {inv.open_minor} still disputed on "
                        f"{inv.invoice_number or inv.invoice_id}",
                        field=f"amounts.{i}.amount",
                        open_minor=inv.open_minor,
                    )
            if not self._planned(cmd):
                raise refuse(
                    "invalid_command", "nothing is left open to resolve by a document", field="amounts"
                )
            if kind == Resolution.REBILL and not cmd.rebill_lines:
                raise refuse(
                    "invalid_command", "a rebill needs the corrected invoice's lines", field="rebill_lines"
                )
        return kind

    def _check_close(self, cmd: CloseCommand) -> RootCause:
        self._check(Event.CLOSE)
        cause = root_cause(cmd.root_cause)
        if cause is None:
            raise refuse(
                "root_cause_required",
                "closing needs a root cause from the taxonomy"
                + (f" ({cmd.root_cause} is not one)" if cmd.root_cause else ""),
                field="root_cause",
            )
        if cmd.validity not in VALIDITY:
            raise refuse("invalid_command", f"validity is one of {', '.join(VALIDITY)}", field="validity")
        if cause.internal:
            for name, plan in (("corrective", cmd.corrective), ("preventive", cmd.preventive)):
                if plan is None or not (plan.owner.strip() and plan.due.strip() and plan.description.strip()):
                    raise refuse(
                        "capa_required",
                        f"root cause {cause.code} is internal: a {name} action with owner, due date and "
                        "description is required",
                        field=name,
                    )
        return cause

    # -- mechanics -------------------------------------------------------------------------------

    def _planned(self, cmd: ResolveCommand) -> list[tuple[DisputedInvoice, int, list[Line], str]]:
        """(invoice, amount, credit lines, exchange rate) of each document a resolution starts: the amounts
        given, or every invoice's open amount."""
        if cmd.amounts:
            out = []
            for a in cmd.amounts:
                inv = self._invoice(a.invoice_id)
                assert inv is not None
                out.append((inv, a.amount_minor, list(a.lines), a.exchange_rate))
            return out
        return [(inv, inv.open_minor, [], "1") for inv in self._invoices if inv.open_minor > 0]

    async def _start_documents(self, kind: Resolution, cmd: ResolveCommand) -> None:
        """One credit memo (rebill: with the corrected invoice) or write-off per invoice, each its own
        workflow that signals its outcome back here. Its id follows from the case and the count, so a
        replay starts the same one."""
        me = workflow.info().workflow_id
        for inv, amount, lines, rate in self._planned(cmd):
            n = len(self._documents) + 1
            suffix = "WO" if kind == Resolution.WRITE_OFF else "CM"
            doc_id = f"{self._inp.case_number}-{suffix}{n}"
            if kind == Resolution.WRITE_OFF:
                wid = write_off_workflow_id(self._inp.legal_entity, doc_id)
                await workflow.start_child_workflow(
                    "WriteOffWorkflow",
                    WriteOffInput(
                        legal_entity=self._inp.legal_entity,
                        id=doc_id,
                        invoice_id=inv.invoice_id,
                        invoice_workflow_id=inv.invoice_workflow_id,
                        customer_id=self._inp.customer_id,
                        currency=self._inp.currency,
                        amount_minor=amount,
                        reason=f"dispute {self._inp.case_number}: {cmd.reason}",
                        proposed_by=cmd.actor,
                        dispute_id=self._inp.dispute_id,
                        dispute_workflow_id=me,
                        dispute_owner=self._owner,
                        exchange_rate=rate,
                        request_id=f"{me}#{doc_id}",
                        config=self._inp.config.resolution,
                    ),
                    id=wid,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            else:
                wid = credit_memo_workflow_id(self._inp.legal_entity, doc_id)
                # The API prices the line at the invoice's tax rate; without one, the gross amount untaxed.
                price = str(Decimal(amount).scaleb(-self._inp.currency_exponent))
                credit_lines = lines or [
                    Line(
                        f"Credit on {inv.invoice_number or inv.invoice_id}: {cmd.reason}",
                        "1",
                        price,
                        "0",
                        amount,
                        0,
                    )
                ]
                await workflow.start_child_workflow(
                    "CreditMemoWorkflow",
                    CreditMemoInput(
                        legal_entity=self._inp.legal_entity,
                        id=doc_id,
                        invoice_id=inv.invoice_id,
                        invoice_workflow_id=inv.invoice_workflow_id,
                        customer_id=self._inp.customer_id,
                        currency=self._inp.currency,
                        amount_minor=amount,
                        reason=f"dispute {self._inp.case_number}: {cmd.reason}",
                        proposed_by=cmd.actor,
                        lines=credit_lines,
                        dispute_id=self._inp.dispute_id,
                        dispute_workflow_id=me,
                        dispute_owner=self._owner,
                        exchange_rate=rate,
                        rebill=Rebill(lines=list(cmd.rebill_lines)) if kind == Resolution.REBILL else None,
                        request_id=f"{me}#{doc_id}",
                        config=self._inp.config.resolution,
                    ),
                    id=wid,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            self._documents.append(
                ResolutionDocument(
                    "write_off" if kind == Resolution.WRITE_OFF else "credit_memo",
                    doc_id,
                    wid,
                    inv.invoice_id,
                    amount,
                )
            )

    def _invoice(self, invoice_id: str) -> DisputedInvoice | None:
        return next((i for i in self._invoices if i.invoice_id == invoice_id), None)

    def _set_open(self, inv: DisputedInvoice, open_minor: int) -> None:
        self._invoices = [
            replace(i, open_minor=open_minor) if i.invoice_id == inv.invoice_id else i for i in self._invoices
        ]

    async def _invoice_command(
        self, update: str, inv: DisputedInvoice, amount_minor: int, reason: str
    ) -> InvoiceState:
        """Send the invoice `open_dispute` / `end_dispute` (through the lead's activity, which turns the
        invoice's refusal into a non-retryable ApplicationError of the same type, raised here)."""
        self._links += 1
        me = workflow.info().workflow_id
        cfg = self._inp.config
        try:
            state: InvoiceState = await workflow.execute_activity(
                "send_invoice_command",
                InvoiceCommandRequest(
                    workflow_id=inv.invoice_workflow_id,
                    update=update,
                    update_id=f"{me}#link-{self._links}",
                    link=DisputeLinkCommand(
                        actor=replace(SYSTEM, rule=f"dispute:{self._inp.case_number}"),
                        dispute_id=self._inp.dispute_id,
                        case_number=self._inp.case_number,
                        amount_minor=amount_minor,
                        reason=reason,
                    ),
                ),
                result_type=InvoiceState,
                start_to_close_timeout=timedelta(seconds=cfg.command_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
                ),
            )
            return state
        except ActivityError as exc:
            if isinstance(exc.cause, ApplicationError) and exc.cause.non_retryable:
                raise exc.cause from None
            raise

    async def _end_link(self, inv: DisputedInvoice, reason: str) -> None:
        """The invoice no longer holds the case (collections resume). An invoice that ended meanwhile
        (paid, credited) has nothing to let go of: its refusal is not the case's concern."""
        try:
            await self._invoice_command("end_dispute", inv, 0, reason)
        except ApplicationError as exc:
            if exc.type != "not_disputed":
                workflow.logger.warning("invoice %s kept by the case: %s", inv.invoice_id, exc.message)

    async def _end_links(self, reason: str) -> None:
        for inv in list(self._invoices):
            if inv.linked:
                await self._end_link(inv, reason)
        self._invoices = [replace(i, linked=False) for i in self._invoices]

    def _update_id(self) -> str:
        info = workflow.current_update_info()
        return info.id if info else ""

    @staticmethod
    def _duration(seconds: float) -> str:
        s = int(seconds)
        if s >= 86400:
            return f"{s / 86400:.1f} days"
        if s >= 3600:
            return f"{s / 3600:.1f} hours"
        return f"{s} seconds"

    def _sla_due_at(self, status: Status) -> str:
        """When the case is past its SLA if its clock keeps running; "" while paused, resolved or closed."""
        if status not in ds.CLOCK_RUNS or self._paused_since:
            return ""
        start = datetime.fromisoformat(self._opened_at)
        return (start + timedelta(seconds=self._inp.config.sla_seconds + self._paused_seconds)).isoformat()

    async def _transition(
        self,
        event: Event,
        actor: Actor,
        reason: str,
        request_id: str,
        *,
        resolution: Resolution | None = None,
        note: str = "",
        attachment: Attachment | None = None,
        payload: dict[str, str | int] | None = None,
    ) -> None:
        """Record the transition (ledger + read model), then make it the workflow's state."""
        to = ds.apply(self._status, event, resolution)
        now = workflow.now().isoformat()
        info = workflow.info()
        seq = self._seq + 1
        since = self._status_since if to == self._status else now
        state = replace(
            self._state(),
            status=to.value,
            transition_seq=seq,
            status_since=since,
            sla_due_at=self._sla_due_at(to),
        )
        # The evidence never shows amounts that do not add up.
        assert state.amounts.adds_up(), f"amounts do not add up: {state.amounts}"
        record = DisputeRecord(
            legal_entity=self._inp.legal_entity,
            dispute_id=self._inp.dispute_id,
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
            state=state,
            note=note,
            attachment=attachment,
            payload=dict(payload or {}),
        )
        timeout = timedelta(seconds=self._inp.config.record_timeout_seconds)
        retry = RetryPolicy(
            initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
        )
        if workflow.current_update_info() is not None:
            # A command's transition: a regular activity, so the command's acceptance is in the history
            # before its effect reaches the store (as the invoice does).
            await workflow.execute_activity(
                "record_dispute_transition",
                record,
                result_type=DisputeRecorded,
                start_to_close_timeout=timeout,
                retry_policy=retry,
            )
        else:
            await workflow.execute_local_activity(
                "record_dispute_transition",
                record,
                result_type=DisputeRecorded,
                start_to_close_timeout=timeout,
                retry_policy=retry,
            )
        self._seq = seq
        self._status = to
        self._status_since = since
        if to == Status.CLOSED and not self._closed_at:
            self._closed_at = now
        self._published = self._state()

    def _state(self) -> DisputeState:
        cfg = self._inp.config
        return DisputeState(
            dispute_id=self._inp.dispute_id,
            workflow_id=workflow.info().workflow_id,
            legal_entity=self._inp.legal_entity,
            case_number=self._inp.case_number,
            customer_id=self._inp.customer_id,
            currency=self._inp.currency,
            source=self._inp.source,
            status=self._status.value if self._status else "",
            claimed_code=self._inp.claimed_code,
            reason=self._inp.reason,
            reason_version=self._inp.reason_version,
            description=self._inp.description,
            owner=self._owner,
            coordinator=self._coordinator,
            invoices=list(self._invoices),
            amounts=self._amounts,
            opened_by=self._inp.opened_by.username,
            opened_at=self._opened_at,
            status_since=self._status_since,
            transition_seq=self._seq,
            escalation_level=self._level,
            reminded=self._reminded,
            window_passed=self._window_passed,
            waiting_reason=self._waiting_reason,
            paused_seconds=self._paused_seconds,
            paused_since=self._paused_since,
            sla_due_at=self._sla_due_at(self._status) if self._status else "",
            window_deadline=cfg.window_deadline,
            sla_rule=cfg.sla_rule,
            resolution=self._resolution,
            resolution_reason=self._resolution_reason,
            resolved_by=self._resolved_by,
            resolved_at=self._resolved_at,
            documents=list(self._documents),
            root_cause=self._root_cause,
            validity=self._validity,
            capa_id=self._capa_id,
            closed_at=self._closed_at,
            attachments=list(self._attachments),
            notes=self._notes,
        )

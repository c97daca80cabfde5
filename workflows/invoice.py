"""InvoiceWorkflow: one durable workflow per invoice, from the ERP's draft to paid (or void).

Workflow id: ``invoice_workflow_id(legal_entity, external_id)``, so a second start for the same ERP
document finds the first.

Updates (each refusable by a validator that leaves no trace in history):
    await_created  -- returns the state once creation is recorded (used with update-with-start)
    edit           -- replace the draft; pulls a pending invoice back to draft, voids every approval
    submit         -- draft -> pending_approval, with the approval tiers the matrix requires now
    approve        -- one tier; the last one moves it to approved (rules in workflows/approval.py)
    reassign       -- a supervisor hands the current tier to a named approver
    remind         -- a supervisor reminds whoever must act now (the tier's approvers, or the preparers
                      of a draft or a rejection to fix); reason required; moves nothing
    escalate       -- a supervisor raises a stuck invoice to a role (the SLA's `escalate_to`); reason
                      required; moves nothing
    reject         -- pending_approval -> draft, reason required
    void           -- before delivery only, reason required
    apply_payment  -- a receipt's allocation: partially_paid or paid; over-allocation refused
    fix            -- portal_rejected -> draft, to correct what the customer's portal refused
    open_dispute   -- a dispute case takes part of the invoice: disputed (sent by DisputeWorkflow)
    end_dispute    -- the case ended: back to accepted or partially_paid
    apply_adjustment -- an issued credit memo or an approved write-off lowers the amount due; the one that
                      leaves nothing moves it to credited or written_off
Signals:
    portal_status  -- what the customer's portal says (pushed to the API, or polled by the portal's
                      poller workflow): accepted, rejected with a reason, in process, paid...
Queries:
    state          -- the InvoiceState as last recorded
Timers: while a tier waits, a reminder to its approvers and then an alert to the supervisors (the
approval SLA); after approval, the release at the issue date, then delivery through the customer's
channel (e-mail, or a portal: pre-submission checks, then one numbered pass) and `submitted`.
Every transition is appended to the evidence ledger and the read model by an activity before the new
state is visible: `record_invoice_transition`; for a submission `submit_invoice`, which reads the
approval tiers in the same transaction; for a delivery by e-mail `deliver_invoice`, which sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import states
from workflows.approval import (
    approval_refusal,
    assignee_among,
    assignee_of,
    current_tier,
    submission_reason,
)
from workflows.errors import refuse
from workflows.states import Event, Status
from workflows.types import (
    Actor,
    AdjustmentCommand,
    Approval,
    ApprovalPlan,
    ApproveCommand,
    Assignment,
    Authority,
    Command,
    DeliveryPlan,
    DeliveryPlanRequest,
    DeliveryRequest,
    DeliveryResult,
    DisputeLinkCommand,
    EditCommand,
    InvoiceDraft,
    InvoiceInput,
    InvoiceState,
    LegacyDeliveryResult,
    NotifyRequest,
    NotifyResult,
    PaymentApplied,
    PaymentCommand,
    PlanRequest,
    PortalDisputeRequest,
    PortalEvent,
    PortalSubmitRequest,
    PortalSubmitResult,
    PortalUpdate,
    ReassignCommand,
    RecordResult,
    SubmitRequest,
    SubmitResult,
    SupervisorCommand,
    TransitionRecord,
)

SA_STATUS = SearchAttributeKey.for_keyword("CashcycleStatus")
SA_ENTITY = SearchAttributeKey.for_keyword("CashcycleLegalEntity")
SA_CUSTOMER = SearchAttributeKey.for_keyword("CashcycleCustomerId")
SA_AMOUNT_DUE = SearchAttributeKey.for_int("CashcycleAmountDue")
SA_DUE_DATE = SearchAttributeKey.for_datetime("CashcycleDueDate")
SA_STATUS_SINCE = SearchAttributeKey.for_datetime("CashcycleStatusSince")
SEARCH_ATTRIBUTES = (SA_STATUS, SA_ENTITY, SA_CUSTOMER, SA_AMOUNT_DUE, SA_DUE_DATE, SA_STATUS_SINCE)

TASK_QUEUE = "cashcycle"
# Portal statuses that say the buyer accepted the invoice (normalised; activities/portals/status.py).
ACCEPTING = frozenset({"accepted", "conditionally_accepted", "payment_scheduled", "paid"})
SYSTEM = Actor(username="system", roles=["system"], rule="workflow")


# Patch ids (`workflow.patched`): one per change of the command sequence, never reused or renamed.
ONE_ACTIVITY_STEPS = "2026-11-23-one-activity-steps"
# A portal saying "under query" or "disputed" opens a dispute case (before: a status that moved nothing).
PORTAL_DISPUTES = "2026-12-05-portal-disputes"
# Portal statuses that say the buyer questions the invoice (normalised; activities/portals/status.py).
DISPUTING = frozenset({"under_query", "disputed"})


def invoice_workflow_id(legal_entity: str, external_id: str) -> str:
    return f"invoice/{legal_entity}/{external_id}"


def search_attributes(
    status: str, legal_entity: str, draft: InvoiceDraft, amount_due_minor: int, status_since: datetime
) -> list[SearchAttributeUpdate[Any]]:
    """The invoice's search attributes: set by whoever starts the workflow (the API, with the draft's),
    then kept up to date by the workflow at every transition."""
    return [
        SA_STATUS.value_set(status),
        SA_ENTITY.value_set(legal_entity),
        SA_CUSTOMER.value_set(draft.customer_id),
        SA_AMOUNT_DUE.value_set(amount_due_minor),
        SA_DUE_DATE.value_set(datetime.fromisoformat(draft.due_date + "T00:00:00+00:00")),
        SA_STATUS_SINCE.value_set(status_since),
    ]


def approved_terms(draft: InvoiceDraft) -> tuple[object, ...]:
    """What an approval approves: the customer, the PO, the currency and every amount and tax rate (a
    changed description or note is not among them)."""
    return (
        draft.customer_id,
        draft.po_number or "",
        draft.currency,
        draft.subtotal_minor,
        draft.tax_total_minor,
        draft.total_minor,
        tuple((ln.quantity, ln.unit_price, ln.tax_rate, ln.net_minor) for ln in draft.lines),
    )


@workflow.defn
class InvoiceWorkflow:
    @workflow.init
    def __init__(self, inp: InvoiceInput) -> None:
        self._inp = inp
        self._status: Status | None = None
        self._draft: InvoiceDraft = inp.draft
        self._number = ""
        self._editors: list[str] = []
        self._submitters: list[str] = []
        self._approvals: list[Approval] = []
        self._plan: ApprovalPlan | None = None
        self._assignments: list[Assignment] = []
        self._tier_since = ""
        self._escalated = False
        self._submission = 0
        self._notifications = 0
        self._payments: list[PaymentApplied] = []
        self._status_since = ""
        self._seq = 0
        self._delivered_at: str | None = None
        self._published: InvoiceState | None = None  # the last recorded state; what queries see
        # True from the start of a delivery until it is recorded. The store says `submitted` as soon as the
        # recording activity commits, before this workflow has moved (and, after a worker crash, until the
        # replay catches up): a payment sent on the store's word then waits for the lock, not a refusal.
        self._delivering = False
        # The customer's channel and where the invoice stands there.
        self._portal = ""
        self._channel = ""
        self._follow_up = ""
        self._pass = 0
        self._portal_ref = ""
        self._portal_status = ""
        self._portal_reason = ""
        self._inbox: list[PortalUpdate] = []
        self._seen_updates: set[str] = set()
        # After a rejection's fix: what the approvers approved (amounts, tax, PO, customer), to tell
        # whether the corrected invoice needs their approval again.
        self._approved_terms: tuple[object, ...] | None = None
        self._reopened = False
        # Disputes and adjustments (issue 11): the open case holding part of the invoice and the amount it
        # holds; the credit memos and write-offs applied, which lower the amount due.
        self._dispute_id = ""
        self._case_number = ""
        self._disputed_minor = 0
        self._adjustments: list[AdjustmentCommand] = []
        # Transitions run one at a time: two approvals racing are serialised here, and the loser is
        # refused against the state the winner left.
        self._lock = asyncio.Lock()
        self._one_activity_steps = self._took_one_activity_steps()

    def _took_one_activity_steps(self) -> bool:
        """Whether this run takes the command sequence of 2026-11-23 (submission and delivery each one
        activity, search attributes upserted only when they change, the approval SLA restarted after a
        command has recorded) or the one before it. Invoices live for months: runs recorded by either are
        in users' stores, and each must replay the commands it recorded (tests/workflows/test_replay.py).

        A new run records the patch marker and takes the newer sequence. A recorded run without the
        marker was written by one of the two releases before versioning: the release of 2026-11-23 started
        every invoice with its search attributes (the API's `search_attributes`), the one before with none.
        Decided once, at the start, so a run never mixes the two."""
        if workflow.patched(ONE_ACTIVITY_STEPS):
            return True
        return workflow.info().typed_search_attributes.get(SA_STATUS) is not None

    # -- the lifecycle -------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: InvoiceInput) -> InvoiceState:
        async with self._lock:
            await self._transition(Event.CREATE, inp.actor, "", inp.request_id)
        while self._status not in states.TERMINAL:
            if self._status == Status.APPROVED:
                await self._release_and_deliver()
            elif self._status == Status.PENDING_APPROVAL:
                await self._watch_approval_sla()
            elif self._follow_up in ("push", "poll") and self._status in states.OPEN_RECEIVABLE:
                await self._follow_portal()
            else:
                await self._wait_to_leave(self._status)
        # Let in-flight update handlers finish so their callers get an answer, not a closed workflow.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state()

    def _sla_key(self) -> tuple[Status | None, int, int, str | None]:
        """What the approval SLA clock runs for: the tier waiting and its assignee. Evaluated on every
        activation while an invoice waits, so it reads the fields, not a whole `_state()`."""
        tier = len(self._approvals) + 1
        return (self._status, self._submission, tier, assignee_among(self._assignments, tier))

    async def _watch_approval_sla(self) -> None:
        """Remind the tier's approvers, then alert the supervisors; any move of the tier restarts it."""
        key = self._sla_key()
        cfg = self._inp.config
        if await self._wait_until(lambda: self._sla_key() != key, cfg.approval_reminder_seconds):
            # The tier moved. A command still recording (an approval, say) has changed the key already:
            # let it finish first, so that the SLA restarts for the state it leaves (often: approved, no
            # SLA at all), not for an intermediate one, with a timer started only to be cancelled.
            if self._one_activity_steps:
                await workflow.wait_condition(lambda: not self._lock.locked())
            return
        await self._notify_and_record(Event.REMIND_APPROVERS, "approval_reminder", key)
        if self._sla_key() != key:
            return
        rest = max(cfg.approval_escalation_seconds - cfg.approval_reminder_seconds, 0.0)
        if await self._wait_until(lambda: self._sla_key() != key, rest):
            return
        await self._notify_and_record(Event.ESCALATE_APPROVAL, "approval_escalation", key)
        await workflow.wait_condition(lambda: self._sla_key() != key)

    async def _notify_and_record(self, event: Event, kind: str, key: tuple[object, ...]) -> None:
        async with self._lock:
            tier = current_tier(self._state())
            if self._sla_key() != key or tier is None:
                return
            self._notifications += 1
            sent = await workflow.execute_activity(
                "notify_approval_sla",
                NotifyRequest(
                    workflow.info().workflow_id,
                    self._notifications,
                    kind,
                    self._state(),
                    tier.level,
                    tier.role,
                    assignee_of(self._state(), tier.level),
                ),
                result_type=NotifyResult,
                start_to_close_timeout=timedelta(seconds=self._inp.config.delivery_timeout_seconds),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
            )
            if event == Event.ESCALATE_APPROVAL:
                self._escalated = True
            who = ", ".join(sent.recipients) or "nobody (no user holds the role)"
            await self._transition(
                event, SYSTEM, f"tier {tier.level} ({tier.role}) waiting; notified {who}", ""
            )

    async def _release_and_deliver(self) -> None:
        release_at = datetime.fromisoformat(self._draft.release_at)
        wait = (release_at - workflow.now()).total_seconds()
        if wait > 0:
            # Durable timer: an invoice approved ahead of its issue date goes out on that date.
            if await self._wait_until(lambda: self._status != Status.APPROVED, wait):
                return
        async with self._lock:
            if self._status != Status.APPROVED:
                return
            self._delivering = True
            try:
                if not self._one_activity_steps:
                    await self._plan_and_deliver_in_three_steps()
                    return
                cfg = self._inp.config
                # One activity plans the channel and, for e-mail, sends the invoice and records this
                # transition (number, recipient and the instant it left filled in there).
                record = self._record_of(Event.DELIVER, replace(SYSTEM, rule="workflow:deliver"), "", "")
                delivery = await workflow.execute_activity(
                    "deliver_invoice",
                    DeliveryRequest(self._inp.invoice_id, record),
                    result_type=DeliveryResult,
                    start_to_close_timeout=timedelta(seconds=cfg.delivery_timeout_seconds),
                    retry_policy=self._delivery_retry(),
                )
                plan = delivery.plan
                self._portal, self._channel, self._follow_up = plan.portal, plan.channel, plan.follow_up
                if plan.problems:
                    await self._block_before_it_leaves(plan.problems)
                elif delivery.recorded is not None:
                    # The activity recorded it as of the instant the mail went.
                    self._delivered_at = delivery.recorded.at or record.at
                    self._commit(record, delivery.recorded, status_since=self._delivered_at)
                else:
                    await self._submit_to_portal()
            finally:
                self._delivering = False

    async def _plan_and_deliver_in_three_steps(self) -> None:
        """Delivery as runs recorded before 2026-11-23 made it: `plan_delivery`, then by e-mail
        `deliver_invoice` (mail only), then the `deliver` transition recorded by the workflow."""
        cfg = self._inp.config
        plan = await workflow.execute_activity(
            "plan_delivery",
            DeliveryPlanRequest(self._inp.invoice_id, self._state()),
            result_type=DeliveryPlan,
            start_to_close_timeout=timedelta(seconds=cfg.delivery_timeout_seconds),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
        self._portal, self._channel, self._follow_up = plan.portal, plan.channel, plan.follow_up
        if plan.problems:
            await self._block_before_it_leaves(plan.problems)
            return
        if plan.channel != "email":
            await self._submit_to_portal()
            return
        mailed = await workflow.execute_activity(
            "deliver_invoice",
            DeliveryRequest(
                self._inp.invoice_id,
                workflow_id=workflow.info().workflow_id,
                transition_seq=self._seq + 1,
                state=self._state(),
            ),
            result_type=LegacyDeliveryResult,
            start_to_close_timeout=timedelta(seconds=cfg.delivery_timeout_seconds),
            retry_policy=self._delivery_retry(),
        )
        self._delivered_at = workflow.now().isoformat()
        self._number = mailed.number or self._number
        await self._transition(
            Event.DELIVER,
            replace(SYSTEM, rule="workflow:deliver"),
            f"{mailed.channel} to {mailed.recipient}",
            "",
        )

    def _delivery_retry(self) -> RetryPolicy:
        """Delivery waits out a mail server or master data being down: retried with backoff, no limit."""
        return RetryPolicy(
            initial_interval=timedelta(seconds=1),
            maximum_interval=timedelta(seconds=self._inp.config.delivery_retry_max_interval_seconds),
        )

    async def _block_before_it_leaves(self, problems: list[str]) -> None:
        """Stopped before it leaves: what the portal would refuse, fixed as a rejection is."""
        self._portal_reason = "pre-submission check: " + "; ".join(problems)
        await self._transition(
            Event.BLOCK_SUBMISSION, replace(SYSTEM, rule="workflow:presubmission"), self._portal_reason, ""
        )
        await self._notify_preparers()

    async def _submit_to_portal(self) -> None:
        """One numbered pass through the customer's portal. Transient failures (5xx, 429, timeouts) are
        retried with backoff under the same pass, hence the same idempotency key: the portal answers a
        retry with its first result, never a second document. A refusal of the document itself is
        recorded as the submission it was, then as the rejection."""
        cfg = self._inp.config
        number = self._pass + 1
        key = f"{self._inp.invoice_id}.pass-{number}"
        try:
            result = await workflow.execute_activity(
                "submit_to_portal",
                PortalSubmitRequest(self._portal, self._inp.invoice_id, number),
                result_type=PortalSubmitResult,
                start_to_close_timeout=timedelta(seconds=cfg.delivery_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(seconds=cfg.delivery_retry_max_interval_seconds),
                    non_retryable_error_types=[
                        "portal_rejected",
                        "portal_refused",
                        "unknown_portal",
                        "document_invalid",
                    ],
                ),
            )
        except ActivityError as exc:
            cause = exc.cause
            if not isinstance(cause, ApplicationError):
                raise
            details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
            if cause.type == "portal_rejected":
                self._pass, self._portal_ref = number, ""
                await self._record_submission(key, "received", workflow.now().isoformat(), "")
                await self._apply_portal_update(
                    PortalUpdate(
                        portal=self._portal,
                        status="rejected",
                        at=workflow.now().isoformat(),
                        submission_key=key,
                        reason_code=str(details.get("reason_code") or ""),
                        reason_text=str(details.get("reason_text") or cause.message),
                        update_id=f"{key}#submit",
                    )
                )
                return
            # Our side is wrong (credentials, configuration, master data): nothing reached the portal.
            self._portal_reason = f"{cause.type}: {cause.message}"
            await self._transition(
                Event.BLOCK_SUBMISSION, replace(SYSTEM, rule="workflow:submit"), self._portal_reason, ""
            )
            await self._notify_preparers()
            return
        self._pass, self._portal_ref = number, result.portal_ref
        await self._record_submission(key, result.status or "received", result.at, result.portal_ref)

    async def _record_submission(self, key: str, status: str, at: str, portal_ref: str) -> None:
        self._delivered_at = workflow.now().isoformat()
        self._reopened = False
        self._portal_status = status
        await self._transition(
            Event.DELIVER,
            replace(SYSTEM, rule="workflow:submit"),
            f"pass {self._pass} to portal {self._portal} ({self._channel}): {status}",
            "",
            portal=PortalEvent(self._portal, self._channel, self._pass, key, status, at, portal_ref),
        )

    async def _follow_portal(self) -> None:
        """Wait for the portal's next word (a signal) and apply it; return when the status moves."""
        status = self._status
        await workflow.wait_condition(lambda: bool(self._inbox) or self._status != status)
        if not self._inbox:
            return
        update = self._inbox.pop(0)
        async with self._lock:
            await self._apply_portal_update(update)

    async def _apply_portal_update(self, u: PortalUpdate) -> None:
        key = f"{self._inp.invoice_id}.pass-{self._pass}"
        if u.submission_key and u.submission_key != key:
            return  # about an earlier pass: that document is history
        if self._status is None:
            return
        reason = f"{u.reason_code}: {u.reason_text}".strip(": ") if (u.reason_code or u.reason_text) else ""
        event = PortalEvent(
            self._portal,
            self._channel,
            self._pass,
            key,
            u.status,
            u.at,
            u.portal_ref or self._portal_ref,
            u.reason_code,
            u.reason_text,
        )
        actor = replace(SYSTEM, username=f"portal:{self._portal}", rule="portal:status")
        if u.status == "rejected" and states.can(self._status, Event.PORTAL_REJECT):
            self._portal_status, self._portal_reason = u.status, reason or "rejected (no reason given)"
            await self._transition(Event.PORTAL_REJECT, actor, self._portal_reason, u.update_id, portal=event)
            await self._notify_preparers()
        elif u.status in ACCEPTING and states.can(self._status, Event.PORTAL_ACCEPT):
            # A portal that reports only where the invoice is now (a pulled list) may be past acceptance
            # already: payment scheduled or paid means the buyer accepted it.
            self._portal_status = u.status
            said = u.message or u.status
            if u.status not in ("accepted", "conditionally_accepted"):
                said = f"accepted (the portal reports {u.status})"
            await self._transition(Event.PORTAL_ACCEPT, actor, said, u.update_id, portal=event)
        elif u.status != self._portal_status and states.can(self._status, Event.PORTAL_STATUS):
            self._portal_status = u.status
            text = u.status + (f" ({reason})" if reason else "") + (f": {u.message}" if u.message else "")
            await self._transition(Event.PORTAL_STATUS, actor, text, u.update_id, portal=event)
            if u.status in DISPUTING and workflow.patched(PORTAL_DISPUTES):
                await self._open_dispute_from_portal(u)

    async def _open_dispute_from_portal(self, u: PortalUpdate) -> None:
        """The portal questions the invoice: open a case through the same door as a collector's complaint
        (or join the open one). The case then takes its part of the invoice with `open_dispute`, which waits
        for this handler's lock: the activity only starts the case, it never waits for the invoice."""
        if not states.can(self._status, Event.DISPUTE):
            return
        try:
            await self._start_portal_dispute(u)
        except ActivityError as exc:
            # Refused for good (nothing due any more, say): the portal's word is in the ledger already, and
            # a collector opens a case by hand if one is needed. Never let it end the invoice's workflow.
            workflow.logger.warning("no dispute case opened from the portal: %s", exc.cause or exc)

    async def _start_portal_dispute(self, u: PortalUpdate) -> None:
        await workflow.execute_activity(
            "open_dispute_from_portal",
            PortalDisputeRequest(
                legal_entity=self._inp.legal_entity,
                invoice_id=self._inp.invoice_id,
                portal=self._portal,
                status=u.status,
                reason_code=u.reason_code,
                reason_text=u.reason_text or u.message,
                update_id=u.update_id or f"{u.submission_key}|{u.status}|{u.at}",
                amount_minor=self._amount_due(),
            ),
            result_type=str,
            start_to_close_timeout=timedelta(seconds=self._inp.config.record_timeout_seconds),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )

    async def _notify_preparers(self) -> None:
        """Tell the preparers what the portal (or the pre-submission check) refused."""
        self._notifications += 1
        await workflow.execute_activity(
            "notify_approval_sla",
            NotifyRequest(
                workflow.info().workflow_id, self._notifications, "portal_rejection", self._state(), 0, ""
            ),
            result_type=NotifyResult,
            start_to_close_timeout=timedelta(seconds=self._inp.config.delivery_timeout_seconds),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
        )

    async def _wait_to_leave(self, status: Status | None) -> None:
        await workflow.wait_condition(lambda: self._status != status)

    async def _wait_until(self, condition: Callable[[], bool], seconds: float) -> bool:
        try:
            await workflow.wait_condition(condition, timeout=seconds)
            return True
        except TimeoutError:
            return False

    # -- updates -------------------------------------------------------------------------------

    @workflow.update
    async def await_created(self) -> InvoiceState:
        await workflow.wait_condition(lambda: self._published is not None)
        return self._state()

    @workflow.update
    async def edit(self, cmd: EditCommand) -> InvoiceState:
        async with self._lock:
            self._check(Event.EDIT)
            self._draft = cmd.draft
            if cmd.actor.username not in self._editors:
                self._editors.append(cmd.actor.username)
            if self._approvals_stand():
                # Correcting what a portal refused without touching what the approvers approved
                # (amounts, tax, PO, customer): their approvals stand; the resubmission goes out.
                reason = (
                    "edited after the portal's rejection; amounts, tax, PO and customer unchanged: "
                    "approvals stand"
                )
            else:
                voided = [f"tier {a.tier} by {a.approver}" for a in self._approvals]
                # Any other edit voids every approval given so far: what was approved is not there now.
                self._approvals, self._plan, self._assignments, self._escalated = [], None, [], False
                reason = f"edited; approvals voided: {', '.join(voided)}" if voided else "edited"
            await self._transition(Event.EDIT, cmd.actor, reason, self._update_id())
        return self._state()

    @edit.validator
    def _validate_edit(self, cmd: EditCommand) -> None:
        self._check(Event.EDIT)
        if cmd.draft.currency != self._draft.currency and self._payments:
            raise refuse("invalid_command", "the currency of an invoice with payments cannot change")

    @workflow.update
    async def submit(self, cmd: Command) -> InvoiceState:
        async with self._lock:
            self._check(Event.SUBMIT)
            if self._approvals_stand():
                self._check(Event.RESUBMIT)
                if cmd.actor.username not in self._submitters:
                    self._submitters.append(cmd.actor.username)
                approvers = ", ".join(f"tier {a.tier} by {a.approver}" for a in self._approvals)
                reason = (
                    f"resubmission after the portal's rejection; amounts, tax, PO and customer as approved "
                    f"({approvers}): approvals stand. {cmd.comment}"
                ).strip()
                await self._transition(Event.RESUBMIT, cmd.actor, reason, self._update_id())
                return self._state()
            if not self._one_activity_steps:
                await self._plan_then_record_submission(cmd)
                return self._state()
            # The tiers come from the matrix as it is now, read by the activity that records the
            # submission: a client cannot choose them, and an invoice already in approval keeps the
            # version it was submitted under.
            before = (
                self._plan,
                self._approvals,
                self._assignments,
                self._escalated,
                self._submission,
                self._tier_since,
                list(self._submitters),
            )
            self._plan, self._approvals, self._assignments, self._escalated = None, [], [], False
            self._submission += 1
            self._tier_since = workflow.now().isoformat()
            if cmd.actor.username not in self._submitters:
                self._submitters.append(cmd.actor.username)
            d = self._draft
            record = self._record_of(Event.SUBMIT, cmd.actor, cmd.comment, self._update_id())
            try:
                submitted = await workflow.execute_activity(
                    "submit_invoice",
                    SubmitRequest(
                        PlanRequest(
                            self._inp.legal_entity, "invoice", d.total_minor, d.currency, d.exchange_rate
                        ),
                        record,
                    ),
                    result_type=SubmitResult,
                    start_to_close_timeout=timedelta(seconds=self._inp.config.record_timeout_seconds),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10)
                    ),
                )
            except BaseException:
                (
                    self._plan,
                    self._approvals,
                    self._assignments,
                    self._escalated,
                    self._submission,
                    self._tier_since,
                    self._submitters,
                ) = before
                raise
            self._plan = submitted.plan
            self._commit(record, submitted.recorded)
        return self._state()

    async def _plan_then_record_submission(self, cmd: Command) -> None:
        """Submission as runs recorded before 2026-11-23 made it: the tiers from a `plan_approval` local
        activity, then the transition recorded like any other."""
        d = self._draft
        plan = await workflow.execute_local_activity(
            "plan_approval",
            PlanRequest(self._inp.legal_entity, "invoice", d.total_minor, d.currency, d.exchange_rate),
            result_type=ApprovalPlan,
            start_to_close_timeout=timedelta(seconds=self._inp.config.record_timeout_seconds),
        )
        self._check(Event.SUBMIT)
        self._plan, self._approvals, self._assignments, self._escalated = plan, [], [], False
        self._submission += 1
        self._tier_since = workflow.now().isoformat()
        if cmd.actor.username not in self._submitters:
            self._submitters.append(cmd.actor.username)
        await self._transition(
            Event.SUBMIT, cmd.actor, submission_reason(cmd.comment, plan), self._update_id()
        )

    @submit.validator
    def _validate_submit(self, cmd: Command) -> None:
        self._check(Event.SUBMIT)

    @workflow.update
    async def approve(self, cmd: ApproveCommand) -> InvoiceState:
        async with self._lock:
            self._check_approval(cmd)
            tier = current_tier(self._state())
            assert tier is not None and self._plan is not None  # checked above
            last = tier.level == len(self._plan.tiers)
            self._approvals.append(
                Approval(
                    cmd.actor.username,
                    workflow.now().isoformat(),
                    cmd.comment,
                    tier.level,
                    tier.role,
                    cmd.on_behalf_of,
                )
            )
            since, self._tier_since, escalated, self._escalated = (
                self._tier_since,
                workflow.now().isoformat(),
                self._escalated,
                False,
            )
            event = Event.APPROVE if last else Event.APPROVE_TIER
            if last:
                self._approved_terms = approved_terms(self._draft)
            reason = f"tier {tier.level} ({tier.role})"
            if cmd.on_behalf_of:
                reason += f" on behalf of {cmd.on_behalf_of}"
            if cmd.comment:
                reason += f": {cmd.comment}"
            try:
                await self._transition(
                    event,
                    cmd.actor,
                    reason,
                    self._update_id(),
                    authority=Authority(cmd.actor.username, tier.role, cmd.on_behalf_of),
                )
            except ApplicationError:
                self._approvals.pop()
                self._tier_since, self._escalated = since, escalated
                raise
        return self._state()

    @approve.validator
    def _validate_approve(self, cmd: ApproveCommand) -> None:
        self._check_approval(cmd)

    @workflow.update
    async def reassign(self, cmd: ReassignCommand) -> InvoiceState:
        async with self._lock:
            self._check_reassign(cmd)
            self._assignments.append(
                Assignment(cmd.tier, cmd.assignee, cmd.actor.username, workflow.now().isoformat(), cmd.reason)
            )
            since, escalated = self._tier_since, self._escalated
            self._tier_since, self._escalated = workflow.now().isoformat(), False
            try:
                await self._transition(
                    Event.REASSIGN_APPROVAL,
                    cmd.actor,
                    f"tier {cmd.tier} reassigned to {cmd.assignee}: {cmd.reason}",
                    self._update_id(),
                    authority=Authority(cmd.actor.username, "ar_supervisor"),
                )
            except ApplicationError:
                self._assignments.pop()
                self._tier_since, self._escalated = since, escalated
                raise
        return self._state()

    @reassign.validator
    def _validate_reassign(self, cmd: ReassignCommand) -> None:
        self._check_reassign(cmd)

    @workflow.update
    async def remind(self, cmd: SupervisorCommand) -> InvoiceState:
        async with self._lock:
            event = self._check_supervisor(Event.REMIND, cmd)
            tier = current_tier(self._state())
            sent = await self._notify_for_supervisor("supervisor_reminder", cmd, tier.role if tier else "")
            if tier is not None:
                whom = f"tier {tier.level} ({tier.role}): {sent}"
            else:
                whom = f"the preparers: {sent}"
            await self._transition(event, cmd.actor, f"reminded {whom}. {cmd.reason}", self._update_id())
        return self._state()

    @remind.validator
    def _validate_remind(self, cmd: SupervisorCommand) -> None:
        self._check_supervisor(Event.REMIND, cmd)

    @workflow.update
    async def escalate(self, cmd: SupervisorCommand) -> InvoiceState:
        async with self._lock:
            event = self._check_supervisor(Event.ESCALATE, cmd)
            sent = await self._notify_for_supervisor("supervisor_escalation", cmd, cmd.escalate_to)
            escalated = self._escalated
            if self._status == Status.PENDING_APPROVAL:
                self._escalated = True  # shown on the approval chain until the tier moves
            try:
                await self._transition(
                    event,
                    cmd.actor,
                    f"escalated to {cmd.escalate_to}: {sent}. {cmd.reason}",
                    self._update_id(),
                )
            except ApplicationError:
                self._escalated = escalated
                raise
        return self._state()

    @escalate.validator
    def _validate_escalate(self, cmd: SupervisorCommand) -> None:
        self._check_supervisor(Event.ESCALATE, cmd)

    async def _notify_for_supervisor(self, kind: str, cmd: SupervisorCommand, role: str) -> str:
        """Send a supervisor's reminder or escalation (the activity picks the recipients); who got it."""
        state = self._state()
        tier = current_tier(state)
        self._notifications += 1
        sent = await workflow.execute_activity(
            "notify_approval_sla",
            NotifyRequest(
                workflow.info().workflow_id,
                self._notifications,
                kind,
                state,
                tier.level if tier else 0,
                role,
                assignee_of(state, tier.level) if tier and kind == "supervisor_reminder" else None,
                note=f"{cmd.actor.username}: {cmd.reason}",
            ),
            result_type=NotifyResult,
            start_to_close_timeout=timedelta(seconds=self._inp.config.delivery_timeout_seconds),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
        )
        return ", ".join(sent.recipients) or "nobody (no user holds the role)"

    @workflow.update
    async def reject(self, cmd: Command) -> InvoiceState:
        async with self._lock:
            self._check(Event.REJECT)
            self._plan, self._approvals, self._assignments, self._escalated = None, [], [], False
            await self._transition(Event.REJECT, cmd.actor, cmd.comment, self._update_id())
        return self._state()

    @reject.validator
    def _validate_reject(self, cmd: Command) -> None:
        self._check(Event.REJECT)
        if not cmd.comment.strip():
            raise refuse("invalid_command", "a rejection needs a reason", field="reason")

    @workflow.update
    async def void(self, cmd: Command) -> InvoiceState:
        async with self._lock:
            self._check(Event.VOID)
            await self._transition(Event.VOID, cmd.actor, cmd.comment, self._update_id())
        return self._state()

    @void.validator
    def _validate_void(self, cmd: Command) -> None:
        self._check(Event.VOID)
        if not cmd.comment.strip():
            raise refuse("invalid_command", "voiding needs a reason", field="reason")

    @workflow.update
    async def apply_payment(self, cmd: PaymentCommand) -> InvoiceState:
        async with self._lock:
            event = self._check_payment(cmd.payment)
            self._payments.append(cmd.payment)
            # Paid beyond the undisputed part: the case holds no more than is still due.
            self._disputed_minor = min(self._disputed_minor, self._amount_due())
            await self._transition(
                event, cmd.actor, f"payment {cmd.payment.reference}", self._update_id(), payment=cmd.payment
            )
        return self._state()

    @apply_payment.validator
    def _validate_apply_payment(self, cmd: PaymentCommand) -> None:
        if self._delivering and self._status == Status.APPROVED:
            return  # the handler checks, under the lock, once the delivery is recorded
        self._check_payment(cmd.payment)

    @workflow.update
    async def open_dispute(self, cmd: DisputeLinkCommand) -> InvoiceState:
        async with self._lock:
            self._check_dispute(cmd)
            again = self._dispute_id == cmd.dispute_id
            self._dispute_id, self._case_number = cmd.dispute_id, cmd.case_number
            self._disputed_minor = cmd.amount_minor
            what = "now holds" if again else "holds"
            said = f"dispute {cmd.case_number} {what} {cmd.amount_minor} (minor units)"
            await self._transition(
                Event.DISPUTE, cmd.actor, f"{said}: {cmd.reason}" if cmd.reason else said, self._update_id()
            )
        return self._state()

    @open_dispute.validator
    def _validate_open_dispute(self, cmd: DisputeLinkCommand) -> None:
        self._check_dispute(cmd)

    @workflow.update
    async def end_dispute(self, cmd: DisputeLinkCommand) -> InvoiceState:
        async with self._lock:
            if self._status in states.TERMINAL:
                return self._state()  # credited, paid or written off in full while the case ran
            event = self._check_end_dispute(cmd)
            self._dispute_id, self._case_number, self._disputed_minor = "", "", 0
            said = f"dispute {cmd.case_number} ended"
            await self._transition(
                event, cmd.actor, f"{said}: {cmd.reason}" if cmd.reason else said, self._update_id()
            )
        return self._state()

    @end_dispute.validator
    def _validate_end_dispute(self, cmd: DisputeLinkCommand) -> None:
        if self._status not in states.TERMINAL:
            self._check_end_dispute(cmd)

    @workflow.update
    async def apply_adjustment(self, cmd: AdjustmentCommand) -> InvoiceState:
        async with self._lock:
            event = self._check_adjustment(cmd)
            self._adjustments.append(cmd)
            self._disputed_minor = min(self._disputed_minor, self._amount_due())
            what = f"credit memo {cmd.document_number}".strip() if cmd.kind == "credit_memo" else "write-off"
            said = f"{what}: {cmd.amount_minor} (minor units)"
            actor = replace(cmd.actor, rule=cmd.rule) if cmd.rule else cmd.actor
            await self._transition(
                event, actor, f"{said}; {cmd.reason}" if cmd.reason else said, self._update_id()
            )
        return self._state()

    @apply_adjustment.validator
    def _validate_apply_adjustment(self, cmd: AdjustmentCommand) -> None:
        self._check_adjustment(cmd)

    @workflow.signal
    def portal_status(self, update: PortalUpdate) -> None:
        """A portal's word about this invoice; repeats (a push sent twice, a poll overlapping) count once."""
        key = update.update_id or f"{update.submission_key}|{update.status}|{update.at}"
        if key in self._seen_updates:
            return
        self._seen_updates.add(key)
        self._inbox.append(update)

    @workflow.update
    async def fix(self, cmd: Command) -> InvoiceState:
        async with self._lock:
            self._check(Event.FIX)
            self._reopened = True
            await self._transition(Event.FIX, cmd.actor, cmd.comment, self._update_id())
        return self._state()

    @fix.validator
    def _validate_fix(self, cmd: Command) -> None:
        self._check(Event.FIX)
        if not cmd.comment.strip():
            raise refuse("invalid_command", "say what is being fixed", field="comment")

    @workflow.query
    def state(self) -> InvoiceState | None:
        """The invoice as last recorded in the ledger (None until creation is recorded)."""
        return self._published

    # -- rules ---------------------------------------------------------------------------------

    def _check(self, event: Event) -> Status:
        try:
            return states.apply(self._status, event)
        except states.TransitionRefused as exc:
            raise refuse(
                "transition_refused",
                str(exc),
                status=self._status.value if self._status else None,
                event=event.value,
            ) from None

    def _check_approval(self, cmd: ApproveCommand) -> None:
        # Checked here as the last line even if the API has a bug; the rules are in workflows/approval.py.
        why = approval_refusal(self._state(), cmd.actor, cmd.tier, cmd.on_behalf_of)
        if why is not None:
            if why.code == "transition_refused":
                raise refuse(
                    why.code,
                    why.message,
                    status=self._status.value if self._status else None,
                    event="approve",
                )
            raise refuse(why.code, why.message, rule=why.rule)

    def _check_reassign(self, cmd: ReassignCommand) -> None:
        self._check(Event.REASSIGN_APPROVAL)
        tier = current_tier(self._state())
        if tier is None or cmd.tier != tier.level:
            raise refuse(
                "tier_already_approved",
                f"tier {cmd.tier} is not the tier waiting for approval",
                rule="reassign_current_tier",
            )
        if not cmd.reason.strip():
            raise refuse("invalid_command", "a reassignment needs a reason", field="reason")
        if "ar_supervisor" not in cmd.actor.roles:
            raise refuse(
                "no_authority", "only a supervisor reassigns an approval", rule="supervisor_reassigns"
            )
        probe = approval_refusal(self._state(), Actor(cmd.assignee, [tier.role]), tier.level)
        if probe is not None and probe.code == "segregation_of_duties" and probe.rule != "reassigned":
            raise refuse(
                "segregation_of_duties",
                f"{cmd.assignee} cannot approve this invoice: {probe.message}",
                rule=probe.rule,
            )

    def _check_supervisor(self, event: Event, cmd: SupervisorCommand) -> Event:
        """The event a supervisor's remind or escalate records here (the approval SLA's own while approval
        is pending), or a refusal."""
        escalating = event == Event.ESCALATE
        what = "an escalation" if escalating else "a reminder"
        self._check(event)
        if self._status == Status.PENDING_APPROVAL:
            event = Event.ESCALATE_APPROVAL if escalating else Event.REMIND_APPROVERS
        if not cmd.reason.strip():
            raise refuse("invalid_command", f"{what} needs a reason", field="reason")
        if "ar_supervisor" not in cmd.actor.roles:
            raise refuse(
                "no_authority", f"only a supervisor sends {what} from the control tower", rule="tower"
            )
        if escalating and not cmd.escalate_to.strip():
            raise refuse("invalid_command", "an escalation names the role it goes to", field="escalate_to")
        if self._delivering:
            # The delivery activity holds the invoice (and the next transition number) until it returns:
            # a transition recorded meanwhile would take its number. Retry the activity instead.
            raise refuse(
                "delivery_in_progress",
                "the invoice is being delivered (its activity is running or retrying): retry the "
                "delivery now, or act once it has returned",
                status=self._status.value if self._status else None,
                event=event.value,
            )
        return event

    def _check_payment(self, payment: PaymentApplied) -> Event:
        if any(p.payment_id == payment.payment_id for p in self._payments):
            raise refuse(
                "already_applied", f"payment {payment.payment_id} is already applied to this invoice"
            )
        if self._status not in states.OPEN_RECEIVABLE:
            where = self._status.value if self._status else None
            raise refuse(
                "transition_refused",
                f"cannot apply a payment to an invoice in status {where}",
                status=where,
                event="record_payment",
            )
        if payment.currency != self._draft.currency:
            raise refuse(
                "currency_mismatch",
                f"payment in {payment.currency} cannot pay an invoice in {self._draft.currency}",
            )
        due = self._amount_due()
        if payment.amount_minor <= 0:
            raise refuse("invalid_command", "an allocation must be positive", field="amount")
        if payment.amount_minor > due:
            raise refuse(
                "over_allocation",
                f"allocation {payment.amount_minor} exceeds the amount due {due}",
                amount_due_minor=due,
                allocated_minor=payment.amount_minor,
            )
        event = Event.RECORD_FINAL_PAYMENT if payment.amount_minor == due else Event.RECORD_PARTIAL_PAYMENT
        self._check(event)
        return event

    def _check_dispute(self, cmd: DisputeLinkCommand) -> None:
        if self._dispute_id and self._dispute_id != cmd.dispute_id:
            raise refuse(
                "already_disputed",
                f"the invoice is already held by dispute {self._case_number}: add to that case",
                dispute_id=self._dispute_id,
            )
        self._check(Event.DISPUTE)
        if self._delivering:
            raise refuse(
                "transition_refused",
                "the invoice is being delivered: dispute it once the customer has it",
                status=self._status.value if self._status else None,
                event=Event.DISPUTE.value,
            )
        due = self._amount_due()
        if cmd.amount_minor <= 0:
            raise refuse("invalid_command", "a disputed amount must be positive", field="amount")
        if cmd.amount_minor > due:
            raise refuse(
                "amount_exceeds_open",
                f"disputed amount {cmd.amount_minor} exceeds the amount due {due}",
                amount_due_minor=due,
            )

    def _check_end_dispute(self, cmd: DisputeLinkCommand) -> Event:
        if self._status != Status.DISPUTED or self._dispute_id != cmd.dispute_id:
            raise refuse(
                "not_disputed",
                f"the invoice is not held by dispute {cmd.case_number}",
                status=self._status.value if self._status else None,
            )
        return Event.RESOLVE_DISPUTE_PAID_IN_PART if self._payments else Event.RESOLVE_DISPUTE

    def _check_adjustment(self, cmd: AdjustmentCommand) -> Event:
        if any(a.adjustment_id == cmd.adjustment_id for a in self._adjustments):
            raise refuse("already_applied", f"{cmd.kind} {cmd.adjustment_id} is already applied")
        if cmd.kind not in ("credit_memo", "write_off"):
            raise refuse("invalid_command", f"unknown adjustment kind {cmd.kind}", field="kind")
        if self._delivering or self._status not in states.OPEN_RECEIVABLE:
            where = self._status.value if self._status else None
            raise refuse(
                "transition_refused",
                f"cannot apply a {cmd.kind.replace('_', ' ')} to an invoice in status {where}",
                status=where,
                event=cmd.kind,
            )
        due = self._amount_due()
        if cmd.amount_minor <= 0:
            raise refuse("invalid_command", "an adjustment must be positive", field="amount")
        if cmd.amount_minor > due:
            raise refuse(
                "amount_exceeds_open",
                f"{cmd.kind.replace('_', ' ')} {cmd.amount_minor} exceeds the amount due {due}",
                amount_due_minor=due,
            )
        final = cmd.amount_minor == due
        if cmd.kind == "credit_memo":
            event = Event.APPLY_FINAL_CREDIT if final else Event.APPLY_CREDIT
        else:
            event = Event.WRITE_OFF if final else Event.WRITE_OFF_PART
        self._check(event)
        return event

    # -- mechanics -----------------------------------------------------------------------------

    def _approvals_stand(self) -> bool:
        """After a portal's rejection and its fix: every tier is approved, and the draft still says what
        the approvers approved (then the resubmission needs no new approval)."""
        return (
            self._reopened
            and self._status == Status.DRAFT
            and self._plan is not None
            and len(self._approvals) == len(self._plan.tiers)
            and self._approved_terms == approved_terms(self._draft)
        )

    def _amount_due(self) -> int:
        paid = sum(p.amount_minor for p in self._payments)
        return self._draft.total_minor - paid - sum(a.amount_minor for a in self._adjustments)

    def _update_id(self) -> str:
        info = workflow.current_update_info()
        return info.id if info else ""

    def _record_of(
        self,
        event: Event,
        actor: Actor,
        reason: str,
        request_id: str,
        payment: PaymentApplied | None = None,
        authority: Authority | None = None,
        portal: PortalEvent | None = None,
    ) -> TransitionRecord:
        """The transition as the ledger and the read model will receive it: the next seq, the state it
        leaves the invoice in."""
        to = states.apply(self._status, event)
        now = workflow.now().isoformat()
        info = workflow.info()
        seq = self._seq + 1
        since = self._status_since if to == self._status else now
        started = info.typed_search_attributes.get(SA_STATUS_SINCE)
        if self._status is None and started is not None:
            since = started.isoformat()  # created when the ERP's request started it (the API's clock)
        next_state = replace(self._state(), status=to.value, transition_seq=seq, status_since=since)
        return TransitionRecord(
            legal_entity=self._inp.legal_entity,
            object_type="invoice",
            object_id=self._inp.invoice_id,
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
            state=next_state,
            payment=payment,
            authority=authority,
            portal=portal,
        )

    async def _transition(
        self,
        event: Event,
        actor: Actor,
        reason: str,
        request_id: str,
        payment: PaymentApplied | None = None,
        authority: Authority | None = None,
        portal: PortalEvent | None = None,
    ) -> None:
        """Record the transition (ledger + read model), then make it the workflow's state.

        Raises a `no_authority` refusal, recording nothing, when the store says the approver does not
        hold the role the tier needs (so a client talking to Temporal directly cannot claim roles)."""
        record = self._record_of(event, actor, reason, request_id, payment, authority, portal)
        timeout = timedelta(seconds=self._inp.config.record_timeout_seconds)
        retry = RetryPolicy(
            initial_interval=timedelta(milliseconds=200),
            maximum_interval=timedelta(seconds=10),
            non_retryable_error_types=["no_authority"],
        )
        try:
            if workflow.current_update_info() is not None:
                # A command's transition is recorded by a regular activity. Scheduling it completes the
                # workflow task, so the command's acceptance is in the history before its effects reach
                # the store: a worker that dies now leaves a command Temporal finishes on another worker,
                # never a ledger entry the workflow knows nothing about (as a local activity inside the
                # accepting task would, if the task is lost with the worker).
                result = await workflow.execute_activity(
                    "record_invoice_transition",
                    record,
                    result_type=RecordResult,
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                )
            else:
                # Transitions the workflow makes by itself follow an event already in the history (a
                # timer, an activity's result, the start): a lost task replays to the same record. A local
                # activity then spares a round trip through the task queue; the write is idempotent on
                # (workflow id, seq).
                result = await workflow.execute_local_activity(
                    "record_invoice_transition",
                    record,
                    result_type=RecordResult,
                    start_to_close_timeout=timeout,
                    retry_policy=retry,
                )
        except ActivityError as exc:
            cause = exc.cause
            if isinstance(cause, ApplicationError) and cause.type == "no_authority":
                raise refuse("no_authority", cause.message, rule="tier_role") from None
            raise
        self._commit(record, result)

    def _commit(self, record: TransitionRecord, result: RecordResult, status_since: str = "") -> None:
        """A recorded transition becomes the workflow's state, and its search attributes.
        `status_since`: when the activity that recorded it chose the instant (a delivery: when it left)."""
        to = Status(record.to_status)
        self._seq = record.transition_seq
        self._status_since = status_since or record.state.status_since
        self._status = to
        self._number = result.number or self._number
        self._published = self._state()
        # Only the attributes that changed: each upsert costs the server a visibility write, and the
        # start already carried the draft's (see `search_attributes`). Runs of the earlier shape upserted
        # all of them at every transition.
        current = workflow.info().typed_search_attributes
        changed = [
            update
            for update in search_attributes(
                to.value,
                self._inp.legal_entity,
                self._draft,
                self._amount_due(),
                datetime.fromisoformat(self._status_since),
            )
            if current.get(update.key) != update.value or not self._one_activity_steps
        ]
        if changed:
            workflow.upsert_search_attributes(changed)

    def _state(self) -> InvoiceState:
        return InvoiceState(
            invoice_id=self._inp.invoice_id,
            workflow_id=workflow.info().workflow_id,
            legal_entity=self._inp.legal_entity,
            external_id=self._inp.external_id,
            number=self._number,
            status=self._status.value if self._status else "",
            draft=self._draft,
            created_by=self._inp.actor.username,
            editors=list(self._editors),
            approvals=list(self._approvals),
            amount_paid_minor=sum(p.amount_minor for p in self._payments),
            payments=[p.payment_id for p in self._payments],
            status_since=self._status_since,
            transition_seq=self._seq,
            delivered_at=self._delivered_at,
            submitters=list(self._submitters),
            plan=self._plan,
            assignments=list(self._assignments),
            tier_since=self._tier_since,
            escalated=self._escalated,
            submission=self._submission,
            portal=self._portal,
            submission_pass=self._pass,
            portal_status=self._portal_status,
            portal_reason=self._portal_reason,
            reopened=self._reopened,
            dispute_id=self._dispute_id,
            disputed_minor=self._disputed_minor,
            amount_credited_minor=sum(a.amount_minor for a in self._adjustments if a.kind == "credit_memo"),
            amount_written_off_minor=sum(a.amount_minor for a in self._adjustments if a.kind == "write_off"),
            adjustments=[a.adjustment_id for a in self._adjustments],
        )

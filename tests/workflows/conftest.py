"""Fixtures and helpers for workflow tests: invoice workflows on real Temporal servers with the
outside world replaced by fakes registered under the real activity names."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.converter import DATA_CONVERTER
from workflows.approval import submission_reason
from workflows.invoice import SEARCH_ATTRIBUTES, InvoiceWorkflow, invoice_workflow_id
from workflows.types import (
    Actor,
    ApprovalPlan,
    Command,
    DeliveryPlan,
    DeliveryRequest,
    DeliveryResult,
    InvoiceConfig,
    InvoiceDraft,
    InvoiceInput,
    InvoiceState,
    Line,
    NotifyRequest,
    NotifyResult,
    PaymentApplied,
    PaymentCommand,
    PlanRequest,
    PortalSubmitRequest,
    PortalSubmitResult,
    RecordResult,
    SubmitRequest,
    SubmitResult,
    TierRequirement,
    TransitionRecord,
)

T = TypeVar("T")
Handle = WorkflowHandle[Any, InvoiceState]

TEST_SERVER = Path(sys.executable).parent / "temporal-test-server"
# Generous: the machine is small and shared with other test runs.
CALL_TIMEOUT = 60.0

ROLES = {
    "erp": "erp_integration",
    "preparer": "ar_preparer",
    "preparer2": "ar_preparer",
    "approver": "ar_approver",
    "approver2": "ar_approver",
    "controller": "controller",
    "cashier": "cash_applier",
    "manager": "finance_manager",
    "manager2": "finance_manager",
    "supervisor": "ar_supervisor",
}


def actor(username: str) -> Actor:
    role = ROLES[username]
    return Actor(username=username, roles=[role], rule=f"p, {role}, *, test")


def draft(
    *, release_at: datetime, currency: str = "EUR", unit_price: str = "125.00", net_minor: int = 125000
) -> InvoiceDraft:
    """10 x unit price at 20 % VAT (totals given in minor units, as the API computes them)."""
    tax = net_minor // 5
    return InvoiceDraft(
        customer_id="customer-initech",
        currency=currency,
        issue_date="2026-11-02",
        due_date="2026-12-02",
        po_number="PO-4711",
        lines=[Line("Consulting, October", "10", unit_price, "20", net_minor, tax)],
        subtotal_minor=net_minor,
        tax_total_minor=tax,
        total_minor=net_minor + tax,
        release_at=release_at.isoformat(),
        payload_hash=uuid.uuid4().hex,
    )


TOTAL = 150000  # the default draft's total: 1,500.00 EUR


# -- fakes for the outside world -------------------------------------------------------------------


class FakeActivities:
    """The ledger/read-model writer, the matrix, the mailer and the notifier, as fakes that remember
    what they were asked. The writer checks approval authority against ROLES, as the real one checks the
    store: a role claimed in the command is not enough."""

    def __init__(self, tiers: list[str] | None = None) -> None:
        self.records: list[TransitionRecord] = []
        self.deliveries: list[DeliveryRequest] = []
        self.notifications: list[NotifyRequest] = []
        self.tiers = tiers or ["ar_approver"]
        self.delegations: set[tuple[str, str, str]] = set()  # (delegator, delegate, role)
        # The customer's channel: "email" by default; a portal name makes deliveries go through the fake
        # portal, which answers each pass from `portal_answers` (a result, or an error type to raise).
        self.portal = "email"
        self.presubmission_problems: list[str] = []
        self.portal_answers: list[str] = []
        self.submissions: list[PortalSubmitRequest] = []

    @activity.defn(name="record_invoice_transition")
    async def record_invoice_transition(self, rec: TransitionRecord) -> RecordResult:
        auth = rec.authority
        if auth is not None:
            holder = auth.on_behalf_of or auth.username
            delegated = (
                auth.on_behalf_of is None or (auth.on_behalf_of, auth.username, auth.role) in self.delegations
            )
            if ROLES.get(holder) != auth.role or not delegated:
                raise ApplicationError(
                    f"{auth.username} does not hold {auth.role}", type="no_authority", non_retryable=True
                )
        self.records.append(rec)
        seq = len(self.records)
        return RecordResult(number="INV-2026-000001", ledger_seq=seq, entry_hash=f"{seq:064x}")

    @activity.defn(name="deliver_invoice")
    async def deliver_invoice(self, req: DeliveryRequest) -> DeliveryResult:
        """The channel; by e-mail, the mail "sent" and its transition recorded, as the real one does."""
        if self.portal != "email":
            return DeliveryResult(
                DeliveryPlan(self.portal, "cxml", "push", list(self.presubmission_problems))
            )
        self.deliveries.append(req)
        recipient = "ap@initech.example"
        rec = replace(req.transition, reason=f"email to {recipient}")
        recorded = await self.record_invoice_transition(rec)
        return DeliveryResult(
            DeliveryPlan("email", "email", "none"),
            message_id=f"<{rec.workflow_id}/{rec.transition_seq}@test>",
            recipient=recipient,
            number=recorded.number,
            recorded=recorded,
            reason=rec.reason,
        )

    @activity.defn(name="submit_to_portal")
    async def submit_to_portal(self, req: PortalSubmitRequest) -> PortalSubmitResult:
        self.submissions.append(req)
        answer = self.portal_answers.pop(0) if self.portal_answers else "received"
        if answer == "portal_rejected":
            raise ApplicationError(
                "PO unknown",
                {"reason_code": "REF", "reason_text": "purchase order PO-4711 is unknown"},
                type="portal_rejected",
                non_retryable=True,
            )
        key = f"{req.invoice_id}.pass-{req.submission_pass}"
        return PortalSubmitResult(
            req.portal, "cxml", key, f"ref-{req.submission_pass}", answer, "2026-11-02T10:00:00+00:00", "push"
        )

    @activity.defn(name="submit_invoice")
    async def submit_invoice(self, req: SubmitRequest) -> SubmitResult:
        """The tiers (from `tiers`) and the submission recorded with them, as the real one does."""
        plan = await self.plan_approval(req.plan)
        rec = req.transition
        reason = submission_reason(rec.reason, plan)
        recorded = await self.record_invoice_transition(
            replace(rec, reason=reason, state=replace(rec.state, plan=plan))
        )
        return SubmitResult(plan, recorded, reason)

    async def plan_approval(self, req: PlanRequest) -> ApprovalPlan:
        return ApprovalPlan(
            matrix_version="test+0",
            document_kind=req.document_kind,
            amount_minor=req.total_minor,
            currency=req.currency,
            tiers=[TierRequirement(i, role) for i, role in enumerate(self.tiers, start=1)],
        )

    @activity.defn(name="notify_approval_sla")
    async def notify_approval_sla(self, req: NotifyRequest) -> NotifyResult:
        self.notifications.append(req)
        return NotifyResult(recipients=[req.assignee or req.role])

    def events(self) -> list[str]:
        return [rec.event for rec in self.records]


@dataclass
class Invoices:
    """Invoice workflows on one task queue of their own, served by workers with the fakes."""

    client: Client
    task_queue: str = field(default_factory=lambda: f"invoice-test-{uuid.uuid4().hex[:8]}")
    fakes: FakeActivities = field(default_factory=FakeActivities)
    started: list[Handle] = field(default_factory=list)
    env: WorkflowEnvironment | None = None  # the time-skipping server, to move its clock

    async def client_sleep(self, duration: timedelta) -> None:
        """Let `duration` pass on the time-skipping server (timers fire, activities run)."""
        assert self.env is not None, "only the time-skipping environment moves time"
        await self.env.sleep(duration)

    @asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        async with Worker(
            self.client,
            task_queue=self.task_queue,
            workflows=[InvoiceWorkflow],
            activities=[
                self.fakes.record_invoice_transition,
                self.fakes.deliver_invoice,
                self.fakes.submit_invoice,
                self.fakes.notify_approval_sla,
                self.fakes.submit_to_portal,
            ],
        ) as worker:
            yield worker

    async def start(
        self,
        *,
        preparer: str = "preparer",
        release_at: datetime,
        currency: str = "EUR",
        config: InvoiceConfig | None = None,
    ) -> Handle:
        external_id = f"ERP-{uuid.uuid4().hex[:10]}"
        inp = InvoiceInput(
            invoice_id=str(uuid.uuid4()),
            legal_entity="ACME",
            external_id=external_id,
            draft=draft(release_at=release_at, currency=currency),
            actor=actor(preparer),
            request_id=f"create-{external_id}",
            config=config
            or InvoiceConfig(
                record_timeout_seconds=30, delivery_timeout_seconds=30, delivery_retry_max_interval_seconds=1
            ),
        )
        handle: Handle = await self.client.start_workflow(
            InvoiceWorkflow.run, inp, id=invoice_workflow_id("ACME", external_id), task_queue=self.task_queue
        )
        self.started.append(handle)
        await bounded(handle.execute_update(InvoiceWorkflow.await_created))
        return handle

    async def terminate_running(self) -> None:
        """Leave nothing waiting on the shared server."""
        for handle in self.started:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test finished")


async def bounded(call: Awaitable[T], seconds: float = CALL_TIMEOUT) -> T:
    """A workflow round trip that fails the test instead of hanging it when no worker answers."""
    return await asyncio.wait_for(call, timeout=seconds)


@asynccontextmanager
async def served(invoices: Invoices) -> AsyncIterator[Invoices]:
    try:
        async with invoices.worker():
            yield invoices
    finally:
        await invoices.terminate_running()


@asynccontextmanager
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server. It refuses search attributes it does not know, so the workflow's
    custom ones are added first (it implements AddSearchAttributes, not ListSearchAttributes)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=DATA_CONVERTER
    )
    try:
        await env.client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=env.client.namespace,
                search_attributes={
                    key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
                    for key in SEARCH_ATTRIBUTES
                },
            )
        )
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The invoice tests' time-skipping server, shared by the session."""
    async with time_skipping_server() as env:
        yield env


@pytest.fixture(scope="module")
async def own_time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for one module. The server's clock is one for all its workflows and skips
    ahead to the next timer whenever a client waits and no task is outstanding: a module whose workflows
    keep long timers (a CAPA's 90 days, a dispute's SLA) would otherwise move every other module's clock,
    whose tests date things by the machine's clock."""
    async with time_skipping_server() as env:
        yield env


@pytest.fixture
async def timed(time_env: WorkflowEnvironment) -> AsyncIterator[Invoices]:
    async with served(Invoices(time_env.client, env=time_env)) as invoices:
        yield invoices


@pytest.fixture
async def invoices(temporal_env: WorkflowEnvironment) -> AsyncIterator[Invoices]:
    async with served(Invoices(temporal_env.client)) as running:
        yield running


async def state_of(handle: Handle) -> InvoiceState:
    state = await bounded(handle.query(InvoiceWorkflow.state))
    assert state is not None
    return state


async def wait_for_status(handle: Handle, status: str, seconds: float = CALL_TIMEOUT) -> InvoiceState:
    """Poll the `state` query for a transition the workflow makes on its own (delivery)."""
    deadline = asyncio.get_running_loop().time() + seconds
    state = await state_of(handle)
    while state.status != status and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        state = await state_of(handle)
    assert state.status == status
    return state


async def notified(invoices: Invoices, seconds: float = CALL_TIMEOUT) -> list[str]:
    """The kinds of notification sent so far, once there is one: the workflow records a rejection
    first and tells the preparers after, so the status is visible before the notification has gone."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        if invoices.fakes.notifications:
            break
        await asyncio.sleep(0.05)
    return [n.kind for n in invoices.fakes.notifications]


async def updates_in_history(handle: Handle) -> set[str]:
    """Ids of every update the workflow history mentions (admitted, accepted, rejected or completed)."""
    ids: set[str] = set()
    for event in (await bounded(handle.fetch_history())).events:
        if event.HasField("workflow_execution_update_admitted_event_attributes"):
            ids.add(event.workflow_execution_update_admitted_event_attributes.request.meta.update_id)
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            ids.add(event.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id)
        if event.HasField("workflow_execution_update_rejected_event_attributes"):
            ids.add(event.workflow_execution_update_rejected_event_attributes.rejected_request.meta.update_id)
        if event.HasField("workflow_execution_update_completed_event_attributes"):
            ids.add(event.workflow_execution_update_completed_event_attributes.meta.update_id)
    return ids


async def refused(call: Awaitable[Any], code: str) -> ApplicationError:
    """The update fails with the typed, non-retryable refusal `code` (see workflows/errors.py)."""
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await bounded(call)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    assert (cause.type, cause.non_retryable) == (code, True), cause.message
    return cause


def details(error: ApplicationError) -> dict[str, Any]:
    assert error.details and isinstance(error.details[0], dict)
    return error.details[0]


async def assert_left_no_trace(
    handle: Handle, update_id: str, fakes: FakeActivities, recorded_before: list[str]
) -> None:
    assert fakes.events() == recorded_before, "a refused command must not be recorded"
    assert update_id not in await updates_in_history(handle), "a refused update must not enter the history"


def in_ten_days() -> datetime:
    return datetime.now(UTC) + timedelta(days=10)


def yesterday() -> datetime:
    return datetime.now(UTC) - timedelta(days=1)


async def submit(handle: Handle) -> None:
    await bounded(handle.execute_update(InvoiceWorkflow.submit, Command(actor("preparer")), id="submit-1"))


async def delivered(invoices: Invoices, *, currency: str = "EUR") -> Handle:
    """An invoice whose release instant has passed, approved, hence delivered at once: it is owed."""
    handle = await invoices.start(release_at=yesterday(), currency=currency)
    await submit(handle)
    await bounded(handle.execute_update(InvoiceWorkflow.approve, Command(actor("approver"))))
    await wait_for_status(handle, "submitted")
    return handle


def payment(amount_minor: int, *, payment_id: str | None = None, currency: str = "EUR") -> PaymentCommand:
    return PaymentCommand(
        actor("cashier"),
        PaymentApplied(
            payment_id=payment_id or str(uuid.uuid4()),
            customer_id="customer-initech",
            amount_minor=amount_minor,
            currency=currency,
            received_on="2026-11-20",
            reference="BANK-1",
            payment_total_minor=amount_minor,
        ),
    )


# -- durable timers (time-skipping test server) ------------------------------------------------------

"""DisputeWorkflow on the time-skipping test server, the outside world replaced by fakes registered under the
real activity names (the ledger writer, the invoice commands) and the real workflow type names (the credit
memo, write-off and CAPA workflows of the other parts, here fakes that signal their outcome back).

Specifications: the SLA reminder then escalation (the level only goes up), the clock paused while waiting on
the customer, a deduction joining the case a second time, closing without a root cause refused, the
amounts always adding up, bad input (more than is open, a paid invoice, a resolution sent twice) refused
with nothing changed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.converter import DATA_CONVERTER
from tests.workflows.conftest import bounded, refused, updates_in_history
from workflows.capa_types import CapaInput
from workflows.credit_memo_types import CreditMemoInput, ResolutionOutcome, WriteOffInput
from workflows.dispute import DisputeWorkflow
from workflows.dispute_types import (
    ActionPlan,
    AssignCommand,
    CloseCommand,
    DisputeConfig,
    DisputedInvoiceIn,
    DisputeInput,
    DisputeRecord,
    DisputeRecorded,
    DisputeState,
    InvoiceAmount,
    JoinCommand,
    NoteCommand,
    PaymentOnCase,
    ResolveCommand,
    WaitCommand,
    dispute_workflow_id,
)
from workflows.types import Actor, InvoiceCommandRequest, InvoiceDraft, InvoiceState

Handle = WorkflowHandle[Any, DisputeState]
HISTORIES = Path(__file__).parent / "histories"


def actor(username: str, role: str = "collector") -> Actor:
    return Actor(username, [role], f"p, {role}, *, test")


COLLECTOR = actor("collector")
SUPERVISOR = actor("supervisor", "ar_supervisor")
SLA = DisputeConfig(
    sla_seconds=300,
    reminder_seconds=100,
    escalation_seconds=[300, 600],
    escalation_roles=["ar_supervisor", "finance_manager"],
    record_timeout_seconds=10,
    command_timeout_seconds=10,
)


# -- fakes ---------------------------------------------------------------------------------------------


@dataclass
class FakeInvoice:
    total: int
    paid: int = 0
    status: str = "accepted"
    dispute_id: str = ""
    held: int = 0


@dataclass
class Fakes:
    """The ledger writer and the invoices, as the dispute sees them through `send_invoice_command`: each
    invoice refuses what the real one refuses (more than is due, a paid or void invoice, another case)."""

    records: list[DisputeRecord] = field(default_factory=list)
    invoices: dict[str, FakeInvoice] = field(default_factory=dict)
    commands: list[InvoiceCommandRequest] = field(default_factory=list)

    @activity.defn(name="record_dispute_transition")
    async def record_dispute_transition(self, rec: DisputeRecord) -> DisputeRecorded:
        assert rec.state.amounts.adds_up(), rec.state.amounts
        if not any(
            r.transition_seq == rec.transition_seq and r.workflow_id == rec.workflow_id for r in self.records
        ):
            self.records.append(rec)
        return DisputeRecorded(
            ledger_seq=len(self.records), entry_hash=f"{len(self.records):064x}", at=rec.at
        )

    @activity.defn(name="send_invoice_command")
    async def send_invoice_command(self, req: InvoiceCommandRequest) -> InvoiceState:
        self.commands.append(req)
        inv = self.invoices[req.workflow_id]
        link = req.link
        assert link is not None
        if req.update == "open_dispute":
            if inv.status in ("paid", "void", "draft"):
                raise ApplicationError(
                    f"cannot dispute an invoice in status {inv.status}",
                    {"status": inv.status},
                    type="transition_refused",
                    non_retryable=True,
                )
            if inv.dispute_id and inv.dispute_id != link.dispute_id:
                raise ApplicationError("another case", type="already_disputed", non_retryable=True)
            if link.amount_minor > inv.total - inv.paid:
                raise ApplicationError(
                    f"{link.amount_minor} exceeds the amount due {inv.total - inv.paid}",
                    type="amount_exceeds_open",
                    non_retryable=True,
                )
            inv.status, inv.dispute_id, inv.held = "disputed", link.dispute_id, link.amount_minor
        elif req.update == "end_dispute" and inv.status == "disputed":
            inv.status, inv.dispute_id, inv.held = "accepted", "", 0
        return invoice_state(req.workflow_id, inv)

    def events(self) -> list[str]:
        return [r.event for r in self.records]

    def last(self) -> DisputeState:
        return self.records[-1].state


def invoice_state(workflow_id: str, inv: FakeInvoice) -> InvoiceState:
    draft = InvoiceDraft("c1", "EUR", "2026-11-02", "2026-12-02", None, [], inv.total, 0, inv.total, "", "")
    return InvoiceState(
        invoice_id=workflow_id.rsplit("/", 1)[-1],
        workflow_id=workflow_id,
        legal_entity="ACME",
        external_id="x",
        number="INV-1",
        status=inv.status,
        draft=draft,
        created_by="preparer",
        editors=[],
        approvals=[],
        amount_paid_minor=inv.paid,
        payments=[],
        status_since="",
        transition_seq=1,
        dispute_id=inv.dispute_id,
        disputed_minor=inv.held,
    )


@dataclass
class Decision:
    status: str
    amount_minor: int


@workflow.defn(name="CreditMemoWorkflow")
class FakeCreditMemo:
    """The credit memo part's workflow as the dispute knows it: it signals its outcome when decided."""

    def __init__(self) -> None:
        self._decision: Decision | None = None

    @workflow.run
    async def run(self, inp: CreditMemoInput) -> str:
        await workflow.wait_condition(lambda: self._decision is not None)
        assert self._decision is not None
        applied = self._decision.status == "applied"
        await workflow.get_external_workflow_handle(inp.dispute_workflow_id).signal(
            "resolution_outcome",
            ResolutionOutcome(
                "credit_memo",
                inp.id,
                self._decision.status,
                self._decision.amount_minor if applied else 0,
                "CN-2026-000001" if applied else "",
                "approver",
                workflow.now().isoformat(),
            ),
        )
        return self._decision.status

    @workflow.signal
    def decide(self, decision: Decision) -> None:
        self._decision = decision


@workflow.defn(name="WriteOffWorkflow")
class FakeWriteOff:
    """An automatic write-off (below the tolerance): applied at once."""

    @workflow.run
    async def run(self, inp: WriteOffInput) -> str:
        await workflow.get_external_workflow_handle(inp.dispute_workflow_id).signal(
            "resolution_outcome",
            ResolutionOutcome(
                "write_off", inp.id, "applied", inp.amount_minor, "", "system", workflow.now().isoformat()
            ),
        )
        return "applied"


@workflow.defn(name="CapaWorkflow")
class FakeCapa:
    """The CAPA part's workflow: answers with what it was started with."""

    @workflow.run
    async def run(self, inp: CapaInput) -> str:
        return f"{inp.capa_id}|{inp.root_cause}|{inp.function}|{inp.preventive.owner}"


# -- the harness -----------------------------------------------------------------------------------------


@dataclass
class Cases:
    client: Client
    env: WorkflowEnvironment
    fakes: Fakes = field(default_factory=Fakes)
    task_queue: str = field(default_factory=lambda: f"dispute-test-{uuid.uuid4().hex[:8]}")
    started: list[Handle] = field(default_factory=list)

    def invoice(self, total: int = 100000, paid: int = 0, status: str = "accepted") -> DisputedInvoiceIn:
        invoice_id = str(uuid.uuid4())
        wid = f"invoice/ACME/{invoice_id}"
        self.fakes.invoices[wid] = FakeInvoice(total, paid, status)
        return DisputedInvoiceIn(invoice_id, wid, f"INV-{invoice_id[:4]}", 0)

    async def open(
        self, *invoices: tuple[DisputedInvoiceIn, int], config: DisputeConfig = SLA, source: str = "manual"
    ) -> Handle:
        number = f"DSP-2026-{uuid.uuid4().hex[:6]}"
        inp = DisputeInput(
            legal_entity="ACME",
            dispute_id=str(uuid.uuid4()),
            case_number=number,
            customer_id="c1",
            currency="EUR",
            source=source,
            claimed_code="PRICE",
            reason="PRC",
            reason_version="default.toml 2026.1+abc",
            description="price differs from the contract",
            owner="collector",
            coordinator="supervisor",
            invoices=[replace(inv, amount_minor=amount) for inv, amount in invoices],
            opened_by=COLLECTOR,
            request_id=f"open-{number}",
            config=config,
        )
        handle: Handle = await self.client.start_workflow(
            DisputeWorkflow.run, inp, id=dispute_workflow_id("ACME", number), task_queue=self.task_queue
        )
        self.started.append(handle)
        return handle

    async def opened(self, *invoices: tuple[DisputedInvoiceIn, int], config: DisputeConfig = SLA) -> Handle:
        handle = await self.open(*invoices, config=config)
        await bounded(handle.execute_update(DisputeWorkflow.await_opened))
        return handle

    async def sleep(self, seconds: float) -> None:
        await self.env.sleep(timedelta(seconds=seconds))

    def held(self, inv: DisputedInvoiceIn) -> FakeInvoice:
        return self.fakes.invoices[inv.invoice_workflow_id]


@asynccontextmanager
async def serving(env: WorkflowEnvironment) -> AsyncIterator[Cases]:
    cases = Cases(env.client, env)
    async with Worker(
        env.client,
        task_queue=cases.task_queue,
        workflows=[DisputeWorkflow, FakeCreditMemo, FakeWriteOff, FakeCapa],
        activities=[cases.fakes.record_dispute_transition, cases.fakes.send_invoice_command],
    ):
        try:
            yield cases
        finally:
            for handle in cases.started:
                desc = await handle.describe()
                if desc.status is not None and desc.status.name == "RUNNING":
                    await handle.terminate("test finished")


@pytest.fixture
async def cases(own_time_env: WorkflowEnvironment) -> AsyncIterator[Cases]:
    async with serving(own_time_env) as running:
        yield running


async def state_of(handle: Handle) -> DisputeState:
    state = await bounded(handle.query(DisputeWorkflow.state))
    assert state is not None
    return state


async def settled(handle: Handle, condition: Any, seconds: float = 30) -> DisputeState:
    """The state once `condition(state)` holds (for what the workflow does on its own: timers, signals)."""
    deadline = asyncio.get_running_loop().time() + seconds
    state = await state_of(handle)
    while not condition(state) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
        state = await state_of(handle)
    assert condition(state), state
    return state


# -- opening ---------------------------------------------------------------------------------------------


async def test_opening_puts_the_invoice_in_dispute_for_the_disputed_amount(cases: Cases) -> None:
    inv = cases.invoice(100000)
    handle = await cases.opened((inv, 25000))
    state = await state_of(handle)
    assert state.status == "open"
    assert (cases.held(inv).status, cases.held(inv).held) == ("disputed", 25000)
    assert state.amounts.original_minor == state.amounts.open_minor == 25000
    assert cases.fakes.events() == ["open"]
    assert cases.fakes.records[0].note == "price differs from the contract"


async def test_a_dispute_on_a_paid_invoice_is_refused_and_the_case_is_void(cases: Cases) -> None:
    inv = cases.invoice(100000, paid=100000, status="paid")
    handle = await cases.open((inv, 100))
    error = await refused(handle.execute_update(DisputeWorkflow.await_opened), "transition_refused")
    assert "paid" in error.message
    assert cases.fakes.events() == ["open", "void"]  # the number is used, and the ledger says why
    assert cases.held(inv).status == "paid"


async def test_more_than_is_open_on_the_invoice_is_refused(cases: Cases) -> None:
    inv = cases.invoice(100000, paid=90000, status="partially_paid")
    handle = await cases.open((inv, 10001))
    await refused(handle.execute_update(DisputeWorkflow.await_opened), "amount_exceeds_open")
    assert cases.held(inv).held == 0


async def test_a_second_deduction_joins_the_open_case(cases: Cases) -> None:
    inv = cases.invoice(100000)
    handle = await cases.opened((inv, 5000))
    joined = await bounded(
        handle.execute_update(
            DisputeWorkflow.add_invoice,
            JoinCommand(
                actor("cashier", "cash_applier"), replace(inv, amount_minor=3000), "deduction", "short paid"
            ),
            id="deduction-2",
        )
    )
    assert joined.amounts.original_minor == joined.amounts.open_minor == 8000
    assert [i.open_minor for i in joined.invoices] == [8000]
    assert cases.held(inv).held == 8000
    assert cases.fakes.events() == ["open", "join"]


async def test_a_join_above_what_is_due_is_refused_and_records_nothing(cases: Cases) -> None:
    inv = cases.invoice(10000)
    handle = await cases.opened((inv, 5000))
    await refused(
        handle.execute_update(
            DisputeWorkflow.add_invoice, JoinCommand(COLLECTOR, replace(inv, amount_minor=5001), "deduction")
        ),
        "amount_exceeds_open",
    )
    state = await state_of(handle)
    assert state.amounts.original_minor == 5000 and cases.held(inv).held == 5000
    assert cases.fakes.events() == ["open"]


# -- SLA -------------------------------------------------------------------------------------------------


async def test_the_sla_reminds_the_owner_then_escalates_and_the_level_only_goes_up(cases: Cases) -> None:
    handle = await cases.opened((cases.invoice(), 1000))
    await cases.sleep(90)
    assert cases.fakes.events() == ["open"]
    await cases.sleep(20)
    await settled(handle, lambda s: s.reminded)
    assert cases.fakes.events() == ["open", "remind"]
    await cases.sleep(200)
    state = await settled(handle, lambda s: s.escalation_level == 1)
    assert cases.fakes.records[-1].payload["role"] == "ar_supervisor"
    assert state.sla_due_at  # past it now
    await cases.sleep(300)
    await settled(handle, lambda s: s.escalation_level == 2)
    assert cases.fakes.records[-1].payload["role"] == "finance_manager"
    await cases.sleep(3000)
    assert cases.fakes.events() == ["open", "remind", "escalate", "escalate"]


async def test_waiting_on_the_customer_pauses_the_clock_and_records_why(cases: Cases) -> None:
    handle = await cases.opened((cases.invoice(), 1000))
    await cases.sleep(50)
    waiting = await bounded(
        handle.execute_update(
            DisputeWorkflow.wait_on_customer, WaitCommand(COLLECTOR, "asked for the proof of delivery")
        )
    )
    assert waiting.status == "waiting_on_customer" and waiting.sla_due_at == ""
    assert cases.fakes.records[-1].reason == "asked for the proof of delivery"
    await cases.sleep(1000)  # far past the reminder and both escalations, in wall time
    assert cases.fakes.events() == ["open", "wait_on_customer"]
    resumed = await bounded(
        handle.execute_update(DisputeWorkflow.resume, WaitCommand(COLLECTOR, "POD received"))
    )
    assert resumed.status == "open" and resumed.paused_seconds >= 1000
    await cases.sleep(40)  # 90 s of running time: not yet
    assert "remind" not in cases.fakes.events()
    await cases.sleep(20)
    await settled(handle, lambda s: s.reminded)


async def test_the_customers_window_escalates_even_while_waiting(cases: Cases) -> None:
    window = (datetime.now(UTC) + timedelta(seconds=200)).isoformat()
    handle = await cases.opened((cases.invoice(), 1000), config=replace(SLA, window_deadline=window))
    await bounded(handle.execute_update(DisputeWorkflow.wait_on_customer, WaitCommand(COLLECTOR, "asked")))
    await cases.sleep(400)
    state = await settled(handle, lambda s: s.window_passed)
    assert state.escalation_level == 1 and state.status == "waiting_on_customer"


# -- resolutions and closing ---------------------------------------------------------------------------------


async def test_a_credit_memo_applied_resolves_the_case_and_the_amounts_add_up(cases: Cases) -> None:
    inv = cases.invoice(100000)
    handle = await cases.opened((inv, 20000))
    await bounded(
        handle.execute_update(
            DisputeWorkflow.resolve,
            ResolveCommand(COLLECTOR, "credit_memo", "price agreed", [InvoiceAmount(inv.invoice_id, 15000)]),
            id="resolve-1",
        )
    )
    state = await state_of(handle)
    assert state.status == "resolving" and [d.kind for d in state.documents] == ["credit_memo"]
    memo = cases.client.get_workflow_handle(state.documents[0].workflow_id)
    await memo.signal("decide", Decision("applied", 15000))
    state = await settled(handle, lambda s: s.status == "resolved")
    a = state.amounts
    assert (a.original_minor, a.open_minor, a.credited_minor) == (20000, 5000, 15000)
    assert a.adds_up()
    assert cases.held(inv).status == "accepted"  # the invoice left `disputed`: collections resume
    # A payment that leaves more due than the case disputes pays the undisputed part first: nothing here.
    await handle.signal(
        DisputeWorkflow.payment_received, PaymentOnCase(inv.invoice_id, "pay-1", 5000, 80000, "x")
    )
    # The rest paid in full: the disputed 5000 is paid.
    await handle.signal(
        DisputeWorkflow.payment_received, PaymentOnCase(inv.invoice_id, "pay-2", 80000, 0, "x")
    )
    state = await settled(handle, lambda s: s.amounts.paid_minor == 5000)
    assert state.amounts.open_minor == 0 and state.amounts.adds_up()


async def test_a_rejected_credit_memo_reopens_the_case(cases: Cases) -> None:
    inv = cases.invoice(100000)
    handle = await cases.opened((inv, 20000))
    state = await bounded(
        handle.execute_update(
            DisputeWorkflow.resolve, ResolveCommand(COLLECTOR, "credit_memo", "price agreed")
        )
    )
    await cases.client.get_workflow_handle(state.documents[0].workflow_id).signal(
        "decide", Decision("rejected", 0)
    )
    state = await settled(handle, lambda s: s.status == "open")
    assert state.resolution == "" and state.amounts.open_minor == 20000
    assert cases.held(inv).status == "disputed"


async def test_a_resolution_sent_twice_takes_effect_once(cases: Cases) -> None:
    inv = cases.invoice(100000)
    handle = await cases.opened((inv, 20000))
    cmd = ResolveCommand(COLLECTOR, "write_off", "small difference")
    first = await bounded(handle.execute_update(DisputeWorkflow.resolve, cmd, id="resolve-key"))
    again = await bounded(handle.execute_update(DisputeWorkflow.resolve, cmd, id="resolve-key"))
    assert first == again  # the same update id: the first outcome, nothing twice
    state = await settled(handle, lambda s: s.status == "resolved")
    assert state.amounts.written_off_minor == 20000 and len(state.documents) == 1
    # Another request (another key): refused, naming the status, nothing recorded.
    before = cases.fakes.events()
    error = await refused(
        handle.execute_update(DisputeWorkflow.resolve, cmd, id="resolve-other"), "transition_refused"
    )
    assert "resolved" in error.message
    assert cases.fakes.events() == before
    assert "resolve-other" not in await updates_in_history(cast(Any, handle))


async def test_invalid_resumes_collections_and_later_payments_count_as_recovered(cases: Cases) -> None:
    inv = cases.invoice(100000)
    handle = await cases.opened((inv, 20000))
    await bounded(
        handle.execute_update(DisputeWorkflow.resolve, ResolveCommand(COLLECTOR, "invalid", "contract price"))
    )
    assert cases.held(inv).status == "accepted"
    await handle.signal(
        DisputeWorkflow.payment_received, PaymentOnCase(inv.invoice_id, "pay-9", 100000, 0, "x")
    )
    state = await settled(handle, lambda s: s.amounts.recovered_minor == 20000)
    assert state.amounts.paid_minor == 0 and state.amounts.open_minor == 0 and state.amounts.adds_up()


async def test_closing_without_a_root_cause_is_refused_and_changes_nothing(cases: Cases) -> None:
    handle = await cases.opened((cases.invoice(), 1000))
    await bounded(
        handle.execute_update(DisputeWorkflow.resolve, ResolveCommand(COLLECTOR, "withdrawn", "they paid"))
    )
    before = cases.fakes.events()
    error = await refused(
        handle.execute_update(DisputeWorkflow.close, CloseCommand(COLLECTOR, "", "valid"), id="close-1"),
        "root_cause_required",
    )
    assert error.details[0]["field"] == "root_cause"
    await refused(
        handle.execute_update(DisputeWorkflow.close, CloseCommand(COLLECTOR, "PRC", "valid"), id="close-2"),
        "capa_required",
    )
    await refused(
        handle.execute_update(DisputeWorkflow.close, CloseCommand(COLLECTOR, "CUS", "maybe")),
        "invalid_command",
    )
    assert cases.fakes.events() == before
    assert not {"close-1", "close-2"} & await updates_in_history(cast(Any, handle))
    closed = await bounded(
        handle.execute_update(DisputeWorkflow.close, CloseCommand(COLLECTOR, "CUS", "invalid"))
    )
    assert (closed.status, closed.root_cause, closed.validity, closed.capa_id) == (
        "closed",
        "CUS",
        "invalid",
        "",
    )


async def test_an_internal_root_cause_starts_the_capa(cases: Cases) -> None:
    handle = await cases.opened((cases.invoice(), 1000))
    await bounded(
        handle.execute_update(DisputeWorkflow.resolve, ResolveCommand(COLLECTOR, "withdrawn", "settled"))
    )
    closed = await bounded(
        handle.execute_update(
            DisputeWorkflow.close,
            CloseCommand(
                COLLECTOR,
                "PRC",
                "partly_valid",
                corrective=ActionPlan("collector", "2026-12-31", "credit the difference"),
                preventive=ActionPlan("supervisor", "2027-01-31", "price list synced with contracts"),
            ),
        )
    )
    assert closed.capa_id == closed.case_number
    assert (await bounded(handle.result())).status == "closed"
    capa = cases.client.get_workflow_handle(f"capa/ACME/{closed.capa_id}")
    assert await bounded(capa.result()) == f"{closed.case_number}|PRC|pricing|supervisor"


async def test_only_a_supervisor_reassigns_and_notes_need_text(cases: Cases) -> None:
    handle = await cases.opened((cases.invoice(), 1000))
    await refused(
        handle.execute_update(DisputeWorkflow.assign, AssignCommand(COLLECTOR, "collector2", "holiday")),
        "no_authority",
    )
    state = await bounded(
        handle.execute_update(DisputeWorkflow.assign, AssignCommand(SUPERVISOR, "collector2", "holiday"))
    )
    assert state.owner == "collector2"
    await refused(
        handle.execute_update(DisputeWorkflow.note, NoteCommand(COLLECTOR, "  ")), "invalid_command"
    )
    noted = await bounded(handle.execute_update(DisputeWorkflow.note, NoteCommand(COLLECTOR, "called AP")))
    assert noted.notes == 1 and cases.fakes.records[-1].note == "called AP"


# -- replay ----------------------------------------------------------------------------------------------


async def test_a_whole_case_replays_and_its_history_is_the_golden_one(cases: Cases) -> None:
    """A case through the SLA, a pause, a join, a credit memo, a payment and the closing with a CAPA:
    its history replays through the sandbox; CASHCYCLE_RECORD_HISTORIES=1 writes it as the golden history
    (tests/workflows/histories/v3/dispute_lifecycle.json) the replay gate replays."""
    inv = cases.invoice(100000)
    handle = await cases.opened((inv, 20000))
    await cases.sleep(110)
    await settled(handle, lambda s: s.reminded)
    await bounded(handle.execute_update(DisputeWorkflow.wait_on_customer, WaitCommand(COLLECTOR, "asked")))
    await bounded(handle.execute_update(DisputeWorkflow.resume, WaitCommand(COLLECTOR, "answered")))
    await bounded(
        handle.execute_update(
            DisputeWorkflow.add_invoice, JoinCommand(COLLECTOR, replace(inv, amount_minor=1000), "deduction")
        )
    )
    await bounded(handle.execute_update(DisputeWorkflow.note, NoteCommand(COLLECTOR, "agreed with AP")))
    state = await bounded(
        handle.execute_update(DisputeWorkflow.resolve, ResolveCommand(COLLECTOR, "credit_memo", "price"))
    )
    await cases.client.get_workflow_handle(state.documents[0].workflow_id).signal(
        "decide", Decision("applied", 21000)
    )
    await settled(handle, lambda s: s.status == "resolved")
    await bounded(
        handle.execute_update(
            DisputeWorkflow.close,
            CloseCommand(
                COLLECTOR,
                "PRC",
                "valid",
                corrective=ActionPlan("collector", "2026-12-31", "credit"),
                preventive=ActionPlan("supervisor", "2027-01-31", "sync price list"),
            ),
        )
    )
    await bounded(handle.result())
    history = await handle.fetch_history()
    replayer = Replayer(
        workflows=[DisputeWorkflow], workflow_runner=SandboxedWorkflowRunner(), data_converter=DATA_CONVERTER
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, repr(result.replay_failure)
    import os

    if os.environ.get("CASHCYCLE_RECORD_HISTORIES"):
        path = HISTORIES / "v3" / "dispute_lifecycle.json"
        path.write_text(WorkflowHistory(history.workflow_id, history.events).to_json())

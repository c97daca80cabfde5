"""Credit memos and write-offs on the time-skipping server, with their real activities on a real store
(SQLite and PostgreSQL): approval tiers from the matrix, segregation of duties checked in the validator and
again against the store (the proposer, the dispute's owner, a cash applier of the customer in the period),
the cumulative limit per approver, customer and period, the credit note issued and applied to the invoice,
the automatic write-off under the entity's tolerance with its rule in the ledger, the outcome signalled to
the dispute. The invoice's side (apply_adjustment) and the credit note's delivery are fakes here."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, delete, select
from temporalio import activity, workflow
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.approval_matrix import MatrixFile
from activities.converter import DATA_CONVERTER
from activities.credit_memos import CreditMemo, CreditMemoActivities, WriteOff
from activities.db import Store, migrate, open_store, reading, writing
from activities.directory import grant
from activities.models import Invoice, LedgerEntry, Payment, PaymentAllocation, RoleAssignment
from tests.conftest import seed_cast
from tests.workflows.conftest import bounded
from workflows.credit_memo import CreditMemoWorkflow
from workflows.credit_memo_types import (
    CreditMemoInput,
    ResolutionApproveCommand,
    ResolutionOutcome,
    ResolutionRejectCommand,
    ResolutionState,
    WriteOffInput,
    credit_memo_workflow_id,
    write_off_workflow_id,
)
from workflows.credit_note_types import CreditNoteDelivered, CreditNoteDeliveryRequest
from workflows.types import Actor, InvoiceCommandRequest, Line
from workflows.write_off import WriteOffWorkflow

ROOT = Path(__file__).resolve().parents[2]
INVOICE_TOTAL = 150000  # 1,500.00 EUR


def who(username: str, *roles: str) -> Actor:
    return Actor(username, list(roles), "test")


APPROVER = who("approver", "ar_approver")
APPROVER2 = who("approver2", "ar_approver")


@workflow.defn(name="DisputeWorkflow", sandboxed=False)
class FakeDispute:
    """Receives the outcomes, as the dispute's workflow does."""

    def __init__(self) -> None:
        self.outcomes: list[ResolutionOutcome] = []

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def resolution_outcome(self, outcome: ResolutionOutcome) -> None:
        self.outcomes.append(outcome)

    @workflow.query
    def received(self) -> list[ResolutionOutcome]:
        return self.outcomes


@dataclass
class Fakes:
    """The invoice (its amount due) and the credit note's delivery."""

    due: int = INVOICE_TOTAL
    applied: list[InvoiceCommandRequest] = field(default_factory=list)
    delivered: list[CreditNoteDeliveryRequest] = field(default_factory=list)

    @activity.defn(name="send_invoice_command")
    async def send_invoice_command(self, req: InvoiceCommandRequest) -> Any:
        assert req.update == "apply_adjustment" and req.adjustment is not None
        if any(r.update_id == req.update_id for r in self.applied):
            raise ApplicationError("already applied", type="already_applied", non_retryable=True)
        if req.adjustment.amount_minor > self.due:
            raise ApplicationError("more than is open", type="amount_exceeds_open", non_retryable=True)
        self.applied.append(req)
        self.due -= req.adjustment.amount_minor
        return None

    @activity.defn(name="deliver_credit_note")
    async def deliver_credit_note(self, req: CreditNoteDeliveryRequest) -> CreditNoteDelivered:
        self.delivered.append(req)
        return CreditNoteDelivered(
            credit_memo_id=req.document.credit_memo_id,
            number=req.document.number,
            portal="email",
            channel="email",
            recipient="ap@initech.example",
            message_id=f"<{req.document.number}@test>",
            portal_ref="",
            subtotal_minor=0,
            tax_total_minor=0,
            total_minor=0,
            ubl_sha256="",
            pdf_sha256="",
            sent_at=datetime.now(UTC).isoformat(),
        )


@dataclass
class Memos:
    env: WorkflowEnvironment
    store: Store
    customers: dict[str, str]
    invoice_id: str
    task_queue: str
    fakes: Fakes
    started: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    async def propose(self, amount_minor: int, by: Actor = who("collector", "collector"), **kw: Any) -> Any:
        memo_id = str(uuid.uuid4())
        net = round(amount_minor / 1.2)
        inp = CreditMemoInput(
            legal_entity="ACME",
            id=memo_id,
            invoice_id=self.invoice_id,
            invoice_workflow_id=f"invoice/ACME/{self.invoice_id}",
            customer_id=self.customers["initech"],
            currency="EUR",
            amount_minor=amount_minor,
            reason="price difference",
            proposed_by=by,
            lines=[Line("Price difference", "1", f"{net / 100:.2f}", "20", net, amount_minor - net)],
            **kw,
        )
        handle = await self.env.client.start_workflow(
            CreditMemoWorkflow.run,
            inp,
            id=credit_memo_workflow_id("ACME", memo_id),
            task_queue=self.task_queue,
        )
        self.started.append(handle)
        await self.until(handle, lambda s: s.status == "pending_approval")
        return handle

    async def request_write_off(
        self, amount_minor: int, by: Actor = who("collector", "collector"), **kw: Any
    ) -> Any:
        write_off_id = str(uuid.uuid4())
        inp = WriteOffInput(
            legal_entity="ACME",
            id=write_off_id,
            invoice_id=self.invoice_id,
            invoice_workflow_id=f"invoice/ACME/{self.invoice_id}",
            customer_id=self.customers["initech"],
            currency="EUR",
            amount_minor=amount_minor,
            reason="small balance",
            proposed_by=by,
            **kw,
        )
        handle = await self.env.client.start_workflow(
            WriteOffWorkflow.run,
            inp,
            id=write_off_workflow_id("ACME", write_off_id),
            task_queue=self.task_queue,
        )
        self.started.append(handle)
        await self.until(handle, lambda s: s.status not in ("", "requested"))
        return handle

    async def until(self, handle: Any, condition: Any, seconds: float = 30) -> ResolutionState:
        import asyncio

        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            state = await bounded(handle.query("state", result_type=ResolutionState))
            if state is not None and condition(state):
                return state  # type: ignore[no-any-return]
            assert asyncio.get_running_loop().time() < deadline, state
            await asyncio.sleep(0.05)

    def ledger(self, object_id: str) -> list[LedgerEntry]:
        with reading(self.store) as s:
            return list(
                s.exec(
                    select(LedgerEntry)
                    .where(LedgerEntry.object_id == object_id)
                    .order_by(col(LedgerEntry.seq))
                )
            )


@pytest.fixture
async def memos(db_url: str, own_time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Memos]:
    migrate(db_url)
    store = open_store(db_url)
    customers = seed_cast(store)
    invoice_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with writing(store) as s:
        s.add(
            Invoice(
                id=invoice_id,
                legal_entity="ACME",
                external_id="ERP-CM-1",
                number="INV-2026-000001",
                status="accepted",
                customer_id=customers["initech"],
                currency="EUR",
                subtotal_minor=125000,
                tax_total_minor=25000,
                total_minor=INVOICE_TOTAL,
                amount_due_minor=INVOICE_TOTAL,
                issue_date=date(2026, 11, 2),
                due_date=date(2026, 12, 2),
                workflow_id=f"invoice/ACME/{invoice_id}",
                created_by="erp",
                payload_hash="0" * 64,
                status_since=now,
                created_at=now,
                updated_at=now,
            )
        )
    policy = tmp_path / "disputes.toml"
    policy.write_text('[write_off.tolerance]\nACME = "5.00"\n')
    matrix = tmp_path / "approval_matrix.toml"
    matrix.write_text((ROOT / "policies" / "approval_matrix.toml").read_text())
    acts = CreditMemoActivities(store, MatrixFile(matrix), disputes_policy=policy)
    fakes = Fakes()
    memos = Memos(own_time_env, store, customers, invoice_id, f"cm-{uuid.uuid4().hex[:8]}", fakes)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            own_time_env.client,
            task_queue=memos.task_queue,
            workflows=[CreditMemoWorkflow, WriteOffWorkflow, FakeDispute],
            activities=[
                acts.record_resolution_transition,
                acts.submit_resolution,
                acts.issue_credit_memo,
                fakes.send_invoice_command,
                fakes.deliver_credit_note,
            ],
            activity_executor=executor,
        ):
            try:
                yield memos
            finally:
                for handle in memos.started:
                    desc = await handle.describe()
                    if desc.status is not None and desc.status.name == "RUNNING":
                        await handle.terminate("test finished")
    store.dispose()


async def assert_replays(handle: Any, golden: str) -> None:
    """The history the run wrote replays with the current code, through the sandbox. With
    RECORD_GOLDEN_HISTORIES=1 it is also written as the golden history `histories/v3/<golden>.json`
    (replayed by test_replay.py with every release)."""
    history = await handle.fetch_history()
    if os.environ.get("RECORD_GOLDEN_HISTORIES") == "1":
        (Path(__file__).parent / "histories" / "v3" / f"{golden}.json").write_text(history.to_json())
    replayer = Replayer(workflows=[CreditMemoWorkflow, WriteOffWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def become_approver(s: Any, username: str) -> None:
    """The user's roles change: no longer a cash applier (incompatible duties), an approver now."""
    s.execute(delete(RoleAssignment).where(col(RoleAssignment.username) == username))
    grant(s, username, "ar_approver", "ACME", "test")


async def refusal(call: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await bounded(call)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


def approve(handle: Any, actor: Actor, update_id: str | None = None) -> Any:
    return handle.execute_update(CreditMemoWorkflow.approve, ResolutionApproveCommand(actor), id=update_id)


# -- credit memos ---------------------------------------------------------------------------------------


async def test_an_approved_credit_memo_is_issued_applied_and_delivered(memos: Memos) -> None:
    handle = await memos.propose(60000)
    state = await memos.until(handle, lambda s: s.status == "pending_approval")
    assert state.plan is not None and [t.role for t in state.plan.tiers] == ["ar_approver"]
    assert state.tier_bounds == ["1000"]
    await bounded(approve(handle, APPROVER))
    final = await memos.until(handle, lambda s: s.delivered_at != "")
    assert final.status == "applied" and final.number.startswith("CN-")
    assert memos.fakes.due == INVOICE_TOTAL - 60000
    (applied,) = memos.fakes.applied
    assert applied.adjustment is not None and applied.adjustment.kind == "credit_memo"
    assert applied.adjustment.document_number == final.number
    doc = memos.fakes.delivered[0].document
    assert (doc.invoice_number, doc.number) == ("INV-2026-000001", final.number)
    events = [e.event for e in memos.ledger(final.id)]
    assert events == ["propose", "submit", "approve", "issue", "apply", "deliver"]
    with reading(memos.store) as s:
        row = s.get(CreditMemo, final.id)
        assert row is not None and row.status == "applied" and row.decided_by == "approver"
        assert row.number == final.number
    await memos.until(handle, lambda s: True)
    await bounded(handle.result())
    await assert_replays(handle, "credit_memo_applied")


async def test_a_full_credit_credits_the_whole_invoice(memos: Memos) -> None:
    handle = await memos.propose(INVOICE_TOTAL)
    state = await memos.until(handle, lambda s: s.status == "pending_approval")
    assert state.plan is not None and [t.role for t in state.plan.tiers] == ["ar_approver", "finance_manager"]
    await bounded(approve(handle, APPROVER))
    with writing(memos.store) as s:
        grant(s, "supervisor", "finance_manager", "ACME", "test")
    await bounded(approve(handle, who("supervisor", "finance_manager")))
    await memos.until(handle, lambda s: s.status == "applied")
    assert memos.fakes.due == 0


async def test_the_proposer_and_the_dispute_owner_cannot_approve_and_nothing_is_recorded(
    memos: Memos,
) -> None:
    handle = await memos.propose(60000, by=who("approver", "ar_approver"), dispute_owner="approver2")
    before = [e.event for e in memos.ledger((await memos.until(handle, lambda s: True)).id)]
    own = await refusal(approve(handle, APPROVER))
    assert (own.type, own.details[0]["rule"]) == ("segregation_of_duties", "proposer_cannot_approve")
    owner = await refusal(approve(handle, APPROVER2))
    assert owner.type == "segregation_of_duties" and "owns the dispute case" in owner.message
    state = await memos.until(handle, lambda s: True)
    assert state.status == "pending_approval" and state.approvals == []
    assert [e.event for e in memos.ledger(state.id)] == before


async def test_a_role_claimed_but_not_held_is_refused_by_the_store(memos: Memos) -> None:
    handle = await memos.propose(60000)
    refused = await refusal(approve(handle, who("collector2", "ar_approver")))
    assert refused.type == "no_authority"
    assert (await memos.until(handle, lambda s: True)).approvals == []


async def test_a_credit_split_in_two_under_a_tier_is_refused_by_the_cumulative_limit(memos: Memos) -> None:
    first = await memos.propose(60000)
    second = await memos.propose(60000)
    await bounded(approve(first, APPROVER))
    refused = await refusal(approve(second, APPROVER))
    assert refused.type == "cumulative_limit"
    assert "1200.00 EUR" in refused.message and "1000.00 EUR" in refused.message
    state = await memos.until(second, lambda s: True)
    assert state.status == "pending_approval" and state.approvals == []
    # Another approver, with nothing decided for this customer this month, may.
    await bounded(approve(second, APPROVER2))
    await memos.until(second, lambda s: s.status == "applied")


async def test_approve_sent_twice_takes_effect_once(memos: Memos) -> None:
    handle = await memos.propose(60000)
    one = await bounded(approve(handle, APPROVER, update_id="approve-1"))
    two = await bounded(approve(handle, APPROVER, update_id="approve-1"))
    assert one.approvals == two.approvals and len(one.approvals) == 1
    again = await refusal(approve(handle, APPROVER))
    assert again.type in ("transition_refused", "segregation_of_duties")
    state = await memos.until(handle, lambda s: s.status == "applied")
    assert [e.event for e in memos.ledger(state.id)].count("approve") == 1
    assert len(memos.fakes.applied) == 1


async def test_a_rejected_credit_memo_tells_the_dispute_and_changes_nothing_on_the_invoice(
    memos: Memos,
) -> None:
    dispute = await memos.env.client.start_workflow(
        FakeDispute.run, id=f"dispute/ACME/{uuid.uuid4()}", task_queue=memos.task_queue
    )
    memos.started.append(dispute)
    handle = await memos.propose(60000, dispute_id="case-1", dispute_workflow_id=dispute.id)
    no_reason = await refusal(
        handle.execute_update(CreditMemoWorkflow.reject, ResolutionRejectCommand(APPROVER, " "))
    )
    assert no_reason.type == "invalid_command"
    await bounded(
        handle.execute_update(CreditMemoWorkflow.reject, ResolutionRejectCommand(APPROVER, "not agreed"))
    )
    await memos.until(handle, lambda s: s.status == "rejected")
    import asyncio

    for _ in range(100):
        got = await dispute.query(FakeDispute.received)
        if got:
            break
        await asyncio.sleep(0.05)
    (outcome,) = got
    assert (outcome.kind, outcome.status, outcome.by, outcome.amount_minor) == (
        "credit_memo",
        "rejected",
        "approver",
        0,
    )
    assert memos.fakes.applied == [] and memos.fakes.due == INVOICE_TOTAL


# -- write-offs ---------------------------------------------------------------------------------------------


async def test_a_write_off_below_the_tolerance_is_automatic_and_names_its_rule(memos: Memos) -> None:
    handle = await memos.request_write_off(300)
    state = await memos.until(handle, lambda s: s.status == "written_off")
    assert state.auto_rule == "write_off:auto_tolerance:ACME<=5.00 EUR"
    entries = memos.ledger(state.id)
    assert [e.event for e in entries] == ["request", "write_off"]
    assert (entries[-1].actor, entries[-1].rule) == ("system", "write_off:auto_tolerance:ACME<=5.00 EUR")
    assert memos.fakes.due == INVOICE_TOTAL - 300
    assert memos.fakes.applied[0].adjustment is not None
    assert memos.fakes.applied[0].adjustment.rule == state.auto_rule
    await bounded(handle.result())
    await assert_replays(handle, "write_off_automatic")


async def test_a_write_off_is_refused_for_the_case_owner_and_for_a_cash_applier(memos: Memos) -> None:
    with writing(memos.store) as s:
        become_approver(s, "cashier")  # a cash applier earlier this month, an approver now
        s.add(
            Payment(
                id="pay-1",
                legal_entity="ACME",
                customer_id=memos.customers["initech"],
                amount_minor=1000,
                currency="EUR",
                received_on=date.today(),
                reference="RF18",
            )
        )
        s.flush()
        s.add(
            PaymentAllocation(
                payment_id="pay-1",
                invoice_id=memos.invoice_id,
                amount_minor=1000,
                applied_by="cashier",
                applied_at=await memos.env.get_current_time(),  # the workflows' clock
            )
        )
    handle = await memos.request_write_off(20000, dispute_owner="approver")
    state = await memos.until(handle, lambda s: s.status == "pending_approval")
    assert state.cash_appliers == ["cashier"]
    owner = await refusal(handle.execute_update(WriteOffWorkflow.approve, ResolutionApproveCommand(APPROVER)))
    assert (owner.type, owner.details[0]["rule"]) == ("segregation_of_duties", "case_owner_cannot_approve")
    cashier = await refusal(
        handle.execute_update(
            WriteOffWorkflow.approve, ResolutionApproveCommand(who("cashier", "ar_approver"))
        )
    )
    assert (cashier.type, cashier.details[0]["rule"]) == (
        "segregation_of_duties",
        "cash_applier_cannot_approve",
    )
    assert [e.event for e in memos.ledger(state.id)] == ["request", "submit"]
    await bounded(handle.execute_update(WriteOffWorkflow.approve, ResolutionApproveCommand(APPROVER2)))
    done = await memos.until(handle, lambda s: s.status == "written_off")
    assert done.applied_minor == 20000 and memos.fakes.due == INVOICE_TOTAL - 20000
    with reading(memos.store) as s:
        row = s.get(WriteOff, state.id)
        assert row is not None and row.status == "written_off" and row.decided_by == "approver2"


async def test_a_cash_applier_after_submission_is_refused_by_the_store(memos: Memos) -> None:
    with writing(memos.store) as s:
        become_approver(s, "cashier")
    handle = await memos.request_write_off(20000)
    with writing(memos.store) as s:
        s.add(
            Payment(
                id="pay-2",
                legal_entity="ACME",
                customer_id=memos.customers["initech"],
                amount_minor=1000,
                currency="EUR",
                received_on=date.today(),
                reference="RF18",
            )
        )
        s.flush()
        s.add(
            PaymentAllocation(
                payment_id="pay-2",
                invoice_id=memos.invoice_id,
                amount_minor=1000,
                applied_by="cashier",
                applied_at=await memos.env.get_current_time(),  # the workflows' clock
            )
        )
    refused = await refusal(
        handle.execute_update(
            WriteOffWorkflow.approve, ResolutionApproveCommand(who("cashier", "ar_approver"))
        )
    )
    assert refused.type == "segregation_of_duties" and "applied cash" in refused.message
    state = await memos.until(handle, lambda s: True)
    assert state.status == "pending_approval" and state.approvals == []

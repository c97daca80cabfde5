"""The store: the recording activity that writes the invoice read model and the ledger in one transaction,
idempotent on (workflow id, transition seq). Runs on SQLite and PostgreSQL. The migrations that build it are
tested in test_migrations.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import date, datetime

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col, func, select

from activities.db import Store, open_store, reading, writing
from activities.directory import add_user, grant
from activities.ledger import GENESIS_HASH, verify_chain
from activities.models import (
    Customer,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    LegalEntity,
    NumberSequence,
    Payment,
    PaymentAllocation,
)
from activities.numbering import issue_number
from activities.queries import invoice_lines
from activities.transitions import record_transition
from workflows.types import (
    Actor,
    Approval,
    InvoiceDraft,
    InvoiceState,
    Line,
    PaymentApplied,
    RecordResult,
    TransitionRecord,
)

AT = "2026-11-02T09:00:00+00:00"
INITECH = "c0000000-0000-4000-8000-000000000001"
HOOLI = "c0000000-0000-4000-8000-000000000002"
ERP = Actor("erp", ["erp_integration"], "p, erp_integration, *, invoice:create")


# --- factories (keyword-only, fixed defaults) -----------------------------------------------------------


def line(
    *,
    description: str = "Consulting, October",
    quantity: str = "10",
    unit_price: str = "125.00",
    tax_rate: str = "20",
    net_minor: int = 125000,
    tax_minor: int = 25000,
) -> Line:
    return Line(
        description=description,
        quantity=quantity,
        unit_price=unit_price,
        tax_rate=tax_rate,
        net_minor=net_minor,
        tax_minor=tax_minor,
    )


def draft(
    *,
    customer_id: str = INITECH,
    currency: str = "EUR",
    issue_date: str = "2026-11-02",
    due_date: str = "2026-12-02",
    po_number: str | None = "PO-4711",
    lines: tuple[Line, ...] = (line(),),
    payload_hash: str = "d" * 64,
) -> InvoiceDraft:
    subtotal = sum(ln.net_minor for ln in lines)
    tax = sum(ln.tax_minor for ln in lines)
    return InvoiceDraft(
        customer_id=customer_id,
        currency=currency,
        issue_date=issue_date,
        due_date=due_date,
        po_number=po_number,
        lines=list(lines),
        subtotal_minor=subtotal,
        tax_total_minor=tax,
        total_minor=subtotal + tax,
        release_at=f"{issue_date}T00:00:00+00:00",
        payload_hash=payload_hash,
    )


def invoice_state(
    *,
    n: int = 1,
    legal_entity: str = "ACME",
    number: str = "",
    status: str = "draft",
    invoice_draft: InvoiceDraft | None = None,
    editors: tuple[str, ...] = (),
    approvals: tuple[Approval, ...] = (),
    amount_paid_minor: int = 0,
    payments: tuple[str, ...] = (),
    status_since: str = AT,
    transition_seq: int = 1,
    delivered_at: str | None = None,
) -> InvoiceState:
    """The n-th invoice of a legal entity, as its workflow holds it."""
    return InvoiceState(
        invoice_id=f"{legal_entity}-invoice-{n}",
        workflow_id=f"invoice-{legal_entity}-ERP-{n}",
        legal_entity=legal_entity,
        external_id=f"ERP-{n}",
        number=number,
        status=status,
        draft=invoice_draft or draft(),
        created_by="erp",
        editors=list(editors),
        approvals=list(approvals),
        amount_paid_minor=amount_paid_minor,
        payments=list(payments),
        status_since=status_since,
        transition_seq=transition_seq,
        delivered_at=delivered_at,
    )


def transition(
    *,
    state: InvoiceState,
    event: str = "create",
    from_status: str | None = None,
    actor: Actor = ERP,
    reason: str = "",
    at: str = AT,
    request_id: str = "",
    payment: PaymentApplied | None = None,
) -> TransitionRecord:
    return TransitionRecord(
        legal_entity=state.legal_entity,
        object_type="invoice",
        object_id=state.invoice_id,
        workflow_id=state.workflow_id,
        run_id="run-1",
        transition_seq=state.transition_seq,
        event=event,
        from_status=from_status,
        to_status=state.status,
        actor=actor,
        reason=reason,
        at=at,
        request_id=request_id,
        state=state,
        payment=payment,
    )


def payment_applied(
    *,
    payment_id: str = "20000000-0000-4000-8000-000000000001",
    customer_id: str = INITECH,
    amount_minor: int = 100000,
    currency: str = "EUR",
    received_on: str = "2026-11-20",
    reference: str = "BANK-1",
    payment_total_minor: int = 100000,
) -> PaymentApplied:
    return PaymentApplied(
        payment_id=payment_id,
        customer_id=customer_id,
        amount_minor=amount_minor,
        currency=currency,
        received_on=received_on,
        reference=reference,
        payment_total_minor=payment_total_minor,
    )


# --- fixtures and helpers -------------------------------------------------------------------------------


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        session.add(
            LegalEntity(code="ACME", name="Acme Industries SAS", currency="EUR", timezone="Europe/Paris")
        )
        session.add(LegalEntity(code="GLOBEX", name="Globex Corp", currency="USD"))
        session.flush()
        session.add(
            Customer(id=INITECH, legal_entity="ACME", name="Initech GmbH", currency="EUR", created_by="test")
        )
        session.add(
            Customer(id=HOOLI, legal_entity="GLOBEX", name="Hooli Inc", currency="USD", created_by="test")
        )
    yield s
    s.dispose()


def record(store: Store, rec: TransitionRecord) -> RecordResult:
    with writing(store) as session:
        return record_transition(session, rec)


def create(
    store: Store, *, n: int = 1, legal_entity: str = "ACME", issue_date: str = "2026-11-02"
) -> RecordResult:
    """Record an invoice's creation and issue it (the number is allocated at issue, by delivery)."""
    customer = INITECH if legal_entity == "ACME" else HOOLI
    state = invoice_state(
        n=n, legal_entity=legal_entity, invoice_draft=draft(customer_id=customer, issue_date=issue_date)
    )
    created = record(store, transition(state=state))
    assert created.number == ""  # drafts are not numbered: a voided draft leaves no gap
    with writing(store) as session:
        number = issue_number(session, state.invoice_id)
    return replace(created, number=number)


def invoice(store: Store, n: int = 1, legal_entity: str = "ACME") -> Invoice:
    with reading(store) as session:
        inv = session.get(Invoice, invoice_state(n=n, legal_entity=legal_entity).invoice_id)
        assert inv is not None
        return inv


def ledger(store: Store, legal_entity: str = "ACME") -> list[LedgerEntry]:
    with reading(store) as session:
        return list(
            session.exec(
                select(LedgerEntry)
                .where(LedgerEntry.legal_entity == legal_entity)
                .order_by(col(LedgerEntry.seq))
            )
        )


def count(store: Store, model: type[SQLModel]) -> int:
    with reading(store) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


# --- recording transitions ------------------------------------------------------------------------------


def test_create_builds_the_read_model_with_the_first_number_of_the_year(store: Store) -> None:
    two_lines = (
        line(),
        line(description="Travel", quantity="1", unit_price="310.55", net_minor=31055, tax_minor=6211),
    )
    state = invoice_state(invoice_draft=draft(lines=two_lines))
    result = record(store, transition(state=state, request_id="req-create"))

    assert result.number == "" and invoice(store).number is None
    entries = ledger(store)
    assert (result.ledger_seq, result.entry_hash) == (entries[-1].seq, entries[-1].entry_hash)
    with writing(store) as session:
        assert issue_number(session, state.invoice_id) == "INV-2026-000001"
        assert issue_number(session, state.invoice_id) == "INV-2026-000001"  # asked again: the same
    inv = invoice(store)
    assert (inv.number, inv.status, inv.legal_entity, inv.external_id, inv.workflow_id) == (
        "INV-2026-000001",
        "draft",
        "ACME",
        "ERP-1",
        "invoice-ACME-ERP-1",
    )
    assert (inv.subtotal_minor, inv.tax_total_minor, inv.total_minor) == (156055, 31211, 187266)
    assert (inv.amount_paid_minor, inv.amount_due_minor) == (0, 187266)
    assert (inv.issue_date, inv.due_date, inv.po_number) == (date(2026, 11, 2), date(2026, 12, 2), "PO-4711")
    assert inv.customer_id == INITECH and inv.currency == "EUR" and inv.created_by == "erp"
    assert inv.payload_hash == "d" * 64 and inv.transition_seq == 1
    with reading(store) as session:
        lines = invoice_lines(session, inv.id)
    assert [(ln.line_no, ln.description, ln.net_minor, ln.tax_minor) for ln in lines] == [
        (1, "Consulting, October", 125000, 25000),
        (2, "Travel", 31055, 6211),
    ]


def test_a_transition_is_ledgered_with_actor_rule_reason_and_workflow_ids(store: Store) -> None:
    create(store)
    with writing(store) as session:
        add_user(session, "approver", "long-enough-password", "test")
        grant(session, "approver", "ar_approver", "ACME", "test")
    # The roles in evidence are the ones the store says the actor held, whatever the command claimed.
    approver = Actor("approver", ["ar_approver", "controller"], "p, ar_approver, *, invoice:approve")
    state = invoice_state(number="INV-2026-000001", status="pending_approval", transition_seq=2)
    record(
        store,
        transition(
            state=state,
            event="submit",
            from_status="draft",
            actor=approver,
            reason="please sign",
            request_id="submit:approver:k1",
        ),
    )
    entry = ledger(store)[-1]
    assert (entry.object_type, entry.object_id, entry.event, entry.from_status, entry.to_status) == (
        "invoice",
        state.invoice_id,
        "submit",
        "draft",
        "pending_approval",
    )
    assert (entry.actor, json.loads(entry.actor_roles), entry.rule) == (
        "approver",
        ["ar_approver"],
        "p, ar_approver, *, invoice:approve",
    )
    assert (entry.reason, entry.request_id, entry.workflow_id, entry.run_id, entry.at) == (
        "please sign",
        "submit:approver:k1",
        "invoice-ACME-ERP-1",
        "run-1",
        AT,
    )
    assert entry.business_key == "invoice-ACME-ERP-1#2"
    assert json.loads(entry.payload)["number"] == "INV-2026-000001"


def test_numbers_are_gapless_per_legal_entity_and_year(store: Store) -> None:
    numbers = [create(store, n=n).number for n in (1, 2, 3)]
    numbers.append(create(store, n=4, issue_date="2027-01-04").number)
    numbers.append(create(store, n=5).number)
    numbers.append(create(store, n=1, legal_entity="GLOBEX").number)
    assert numbers == [
        "INV-2026-000001",
        "INV-2026-000002",
        "INV-2026-000003",
        "INV-2027-000001",
        "INV-2026-000004",
        "INV-2026-000001",
    ]
    assert invoice(store, 1, "GLOBEX").number == "INV-2026-000001"
    assert invoice(store, 1, "ACME").number == "INV-2026-000001"


def test_later_transitions_update_status_approvals_and_sequence(store: Store) -> None:
    create(store)
    record(
        store,
        transition(
            state=invoice_state(
                number="INV-2026-000001",
                status="pending_approval",
                transition_seq=2,
                status_since="2026-11-03T10:00:00+00:00",
            ),
            event="submit",
            from_status="draft",
        ),
    )
    approval = Approval(approver="approver", at="2026-11-04T11:00:00+00:00", comment="ok")
    record(
        store,
        transition(
            state=invoice_state(
                number="INV-2026-000001",
                status="approved",
                transition_seq=3,
                approvals=(approval,),
                status_since=approval.at,
            ),
            event="approve",
            from_status="pending_approval",
            at="2026-11-04T11:00:00+00:00",
        ),
    )
    inv = invoice(store)
    assert (inv.status, inv.transition_seq, inv.number) == ("approved", 3, "INV-2026-000001")
    assert inv.status_since == datetime.fromisoformat("2026-11-04T11:00:00+00:00")
    assert inv.updated_at == datetime.fromisoformat("2026-11-04T11:00:00+00:00")
    assert json.loads(inv.approvals_json) == [
        {
            "approver": "approver",
            "at": approval.at,
            "comment": "ok",
            "tier": 1,
            "role": "",
            "on_behalf_of": None,
        }
    ]
    assert [e.event for e in ledger(store)] == ["create", "submit", "approve"]


def test_edit_replaces_the_lines_and_the_totals(store: Store) -> None:
    create(store)
    edited = draft(
        lines=(line(description="Consulting, revised", quantity="8", net_minor=100000, tax_minor=20000),),
        due_date="2026-12-31",
        po_number=None,
    )
    record(
        store,
        transition(
            state=invoice_state(
                number="INV-2026-000001", invoice_draft=edited, editors=("preparer",), transition_seq=2
            ),
            event="edit",
            from_status="draft",
        ),
    )
    inv = invoice(store)
    assert (inv.total_minor, inv.amount_due_minor, inv.due_date, inv.po_number) == (
        120000,
        120000,
        date(2026, 12, 31),
        None,
    )
    assert json.loads(inv.editors_json) == ["preparer"]
    with reading(store) as session:
        lines = invoice_lines(session, inv.id)
    assert [(ln.line_no, ln.description, ln.quantity) for ln in lines] == [(1, "Consulting, revised", "8")]
    assert count(store, InvoiceLine) == 1


def test_a_payment_event_writes_the_payment_once_and_one_allocation_per_invoice(store: Store) -> None:
    create(store, n=1)
    create(store, n=2)
    pay = payment_applied(amount_minor=100000, payment_total_minor=250000)
    first = invoice_state(
        n=1,
        number="INV-2026-000001",
        status="partially_paid",
        amount_paid_minor=100000,
        payments=(pay.payment_id,),
        transition_seq=2,
    )
    record(
        store,
        transition(
            state=first,
            event="record_partial_payment",
            from_status="submitted",
            reason="payment BANK-1",
            payment=pay,
        ),
    )
    second_pay = replace(pay, amount_minor=150000)
    second = invoice_state(
        n=2,
        number="INV-2026-000002",
        status="partially_paid",
        amount_paid_minor=150000,
        payments=(pay.payment_id,),
        transition_seq=2,
    )
    record(
        store,
        transition(state=second, event="record_partial_payment", from_status="submitted", payment=second_pay),
    )

    with reading(store) as session:
        payments = list(session.exec(select(Payment)))
        allocations = list(
            session.exec(select(PaymentAllocation).order_by(col(PaymentAllocation.amount_minor)))
        )
    assert [
        (p.id, p.amount_minor, p.currency, p.received_on, p.reference, p.customer_id) for p in payments
    ] == [(pay.payment_id, 250000, "EUR", date(2026, 11, 20), "BANK-1", INITECH)]
    assert [(a.invoice_id, a.amount_minor, a.applied_by) for a in allocations] == [
        (first.invoice_id, 100000, "erp"),
        (second.invoice_id, 150000, "erp"),
    ]
    inv = invoice(store, 1)
    assert (inv.status, inv.amount_paid_minor, inv.amount_due_minor) == ("partially_paid", 100000, 50000)
    payload = json.loads(ledger(store)[-2].payload)
    assert payload["payment"] == {"payment_id": pay.payment_id, "amount_minor": 100000, "reference": "BANK-1"}


def test_recording_the_same_create_twice_yields_one_entry_one_invoice_and_the_same_result(
    store: Store,
) -> None:
    rec = transition(state=invoice_state())
    first = record(store, rec)
    again = record(store, rec)
    assert again == first
    assert len(ledger(store)) == 1
    assert count(store, Invoice) == 1 and count(store, InvoiceLine) == 1
    assert create(store, n=2).number == "INV-2026-000001"  # the draft took no number; the retry none either


def test_recording_the_same_payment_twice_allocates_it_once(store: Store) -> None:
    create(store)
    pay = payment_applied(amount_minor=150000, payment_total_minor=150000)
    state = invoice_state(
        number="INV-2026-000001",
        status="paid",
        amount_paid_minor=150000,
        payments=(pay.payment_id,),
        transition_seq=2,
    )
    rec = transition(state=state, event="record_final_payment", from_status="submitted", payment=pay)
    assert record(store, rec) == record(store, rec)
    assert count(store, Payment) == 1 and count(store, PaymentAllocation) == 1
    assert [e.event for e in ledger(store)] == ["create", "record_final_payment"]


def test_the_recorded_chain_verifies(store: Store) -> None:
    create(store, n=1)
    create(store, n=2)
    record(
        store,
        transition(
            state=invoice_state(number="INV-2026-000001", status="pending_approval", transition_seq=2),
            event="submit",
            from_status="draft",
        ),
    )
    entries = ledger(store)
    assert entries[0].prev_hash == GENESIS_HASH
    with reading(store) as session:
        result = verify_chain(session, "ACME")
    assert (result.intact, result.entries, result.head_hash) == (True, 3, entries[-1].entry_hash)


def test_a_failed_recording_leaves_neither_read_model_nor_ledger_nor_number(store: Store) -> None:
    state = invoice_state(invoice_draft=draft(customer_id="no-such-customer"))
    with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
        record(store, transition(state=state))
    assert count(store, Invoice) == 0 and ledger(store) == []
    with reading(store) as session:
        assert session.exec(select(NumberSequence)).all() == []
    assert create(store).number == "INV-2026-000001"


THREADS, PER_THREAD = 4, 10


def test_concurrent_creates_allocate_distinct_gapless_numbers(store: Store) -> None:
    start = threading.Barrier(THREADS)

    def creator(t: int) -> list[str]:
        start.wait(timeout=60)
        return [create(store, n=t * PER_THREAD + i).number for i in range(1, PER_THREAD + 1)]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        numbers = [num for batch in pool.map(creator, range(THREADS), timeout=600) for num in batch]
    total = THREADS * PER_THREAD
    assert sorted(numbers) == [f"INV-2026-{i:06d}" for i in range(1, total + 1)]
    with reading(store) as session:
        stored = sorted(session.exec(select(Invoice.number)))
        assert stored == sorted(numbers)
        result = verify_chain(session, "ACME")
    assert (result.intact, result.entries) == (True, total)

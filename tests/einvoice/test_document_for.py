"""From the store to the document: `document_for` builds an issued invoice's InvoiceDocument from the read
model, the legal entity and the customer, on SQLite and PostgreSQL. The demo company's master data gives
every demo customer valid e-invoices: standard rates in France, reverse charge in the EU, exports outside."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from activities.db import Store, open_store, reading, writing
from activities.directory import create_customer, ensure_legal_entity
from activities.einvoice import EInvoiceError, NotIssued, document_for, parse_ubl, render_ubl
from activities.einvoice_validation import validate_en16931
from activities.models import Customer, CustomerBase, Invoice, InvoiceLine, LegalEntity
from api.invoices import build_draft
from api.schemas import CustomerCreate, LineIn
from demo import DEMO_CUSTOMERS, DEMO_ENTITY_ROW, DemoCustomer, plan_invoices
from tests.einvoice.conftest import EINVOICE_DATA, OfficialValidators

TODAY = date(2026, 11, 23)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    with writing(s) as session:
        ensure_legal_entity(session, LegalEntity.model_validate(DEMO_ENTITY_ROW.model_dump()))
    yield s
    s.dispose()


def add_customer(store: Store, demo: DemoCustomer) -> Customer:
    body = CustomerCreate.model_validate(demo.body())  # the API's validation, as the demo seed meets it
    data = CustomerBase.model_validate(body.model_dump(exclude={"legal_entity", "external_ref"}))
    with writing(store) as session:
        customer = create_customer(session, "ACME", data, "erp", external_ref=demo.ref)
        session.refresh(customer)
        session.expunge(customer)
    return customer


def add_invoice(
    store: Store, customer: Customer, lines: list[dict[str, str]], *, number: str | None, currency: str
) -> str:
    """An invoice in the read model, as the workflow's recording activity leaves it once issued."""
    entity = LegalEntity.model_validate(DEMO_ENTITY_ROW.model_dump())
    draft = build_draft(
        customer=customer,
        entity=entity,
        currency=currency,
        issue_date=date(2026, 11, 2),
        due_date=None,
        po_number="4500123456",
        lines=[LineIn(**ln) for ln in lines],
        body_hash="0" * 64,
        exchange_rate=None if currency == "EUR" else "1.1",
    )
    invoice_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with writing(store) as session:
        session.add(
            Invoice(
                id=invoice_id,
                legal_entity="ACME",
                external_id=f"ERP-{invoice_id[:8]}",
                number=number,
                status="submitted" if number else "approved",
                customer_id=customer.id,
                currency=currency,
                subtotal_minor=draft.subtotal_minor,
                tax_total_minor=draft.tax_total_minor,
                total_minor=draft.total_minor,
                amount_due_minor=draft.total_minor,
                issue_date=date(2026, 11, 2),
                due_date=date.fromisoformat(draft.due_date),
                po_number=draft.po_number,
                workflow_id=f"invoice-ACME-{invoice_id}",
                created_by="erp",
                payload_hash="0" * 64,
                status_since=now,
                created_at=now,
                updated_at=now,
            )
        )
        session.flush()
        for n, ln in enumerate(draft.lines, start=1):
            session.add(
                InvoiceLine(
                    invoice_id=invoice_id,
                    line_no=n,
                    description=ln.description,
                    quantity=ln.quantity,
                    unit_price=ln.unit_price,
                    tax_rate=ln.tax_rate,
                    net_minor=ln.net_minor,
                    tax_minor=ln.tax_minor,
                )
            )
    return invoice_id


def test_every_demo_customer_gets_valid_einvoices(store: Store, request: pytest.FixtureRequest) -> None:
    official: OfficialValidators | None = (
        request.getfixturevalue("official") if EINVOICE_DATA.is_dir() else None
    )
    planned = plan_invoices(120, TODAY)
    seen: set[str] = set()
    for n, demo in enumerate(DEMO_CUSTOMERS, start=1):
        customer = add_customer(store, demo)
        mine = [p for p in planned if p.customer.ref == demo.ref][:2] or planned[:1]
        for k, plan in enumerate(mine):
            invoice_id = add_invoice(
                store, customer, plan.lines, number=f"INV-2026-{n:04d}{k}", currency=demo.currency
            )
            with reading(store) as session:
                doc = document_for(session, invoice_id)
            seen |= {ln.tax_category for ln in doc.lines}
            xml = render_ubl(doc)
            assert [f for f in validate_en16931(xml) if f.fatal] == [], demo.name
            if official is not None:
                assert official.fatal(xml) == [], (demo.name, official.fatal(xml))
            parsed = parse_ubl(xml)
            assert parsed.recomputed == parsed.stated
    assert seen == {"S", "AE", "G"}  # France at home, the EU by reverse charge, exports to GB, US, CH


def test_the_document_carries_the_parties_and_the_invoice(store: Store) -> None:
    lyon = next(c for c in DEMO_CUSTOMERS if c.ref == "CUST-1015")  # Atelier Brunet, Lyon: French VAT
    customer = add_customer(store, lyon)
    lines = [
        {"description": "Consulting, senior consultant (days)", "quantity": "3.5", "unit_price": "1100.00",
         "tax_rate": "20"},
        {"description": "On-site workshop catering (persons)", "quantity": "12", "unit_price": "25.00",
         "tax_rate": "10"},
    ]  # fmt: skip
    invoice_id = add_invoice(store, customer, lines, number="INV-2026-000123", currency="EUR")
    with reading(store) as session:
        doc = document_for(session, invoice_id)
    assert (doc.kind, doc.number, doc.currency, doc.po_number) == (
        "invoice",
        "INV-2026-000123",
        "EUR",
        "4500123456",
    )
    assert (doc.issue_date, doc.due_date) == ("2026-11-02", "2026-11-17")  # 15 days' terms
    assert (doc.subtotal_minor, doc.tax_total_minor, doc.total_minor) == (415000, 80000, 495000)
    assert doc.supplier.endpoint_scheme == "0009" and doc.supplier.endpoint_id == "12345678900017"
    assert doc.supplier.telephone and doc.payee_iban == DEMO_ENTITY_ROW.iban
    assert (doc.customer.name, doc.customer.city, doc.customer.postal_code) == (
        "Atelier Brunet SARL",
        "Lyon",
        "69002",
    )
    assert doc.buyer_reference == "BRUNET"
    assert [(ln.tax_category, ln.tax_rate, ln.net_minor) for ln in doc.lines] == [
        ("S", "20", 385000),
        ("S", "10", 30000),
    ]


def test_an_invoice_without_a_number_is_not_a_document_yet(store: Store) -> None:
    customer = add_customer(store, DEMO_CUSTOMERS[0])
    lines = [{"description": "Freight", "quantity": "1", "unit_price": "100", "tax_rate": "0"}]
    invoice_id = add_invoice(store, customer, lines, number=None, currency="EUR")
    with reading(store) as session:
        with pytest.raises(NotIssued, match="is approved and has no number yet"):
            document_for(session, invoice_id)
        with pytest.raises(LookupError, match="no invoice nope"):
            document_for(session, "nope")


def test_a_customer_without_a_peppol_endpoint_gets_no_document_and_is_told_why(store: Store) -> None:
    bare = CustomerBase(name="Initech GmbH", currency="EUR", country="DE", vat_id="DE123456789")
    with writing(store) as session:
        customer = create_customer(session, "ACME", bare, "erp")
        session.refresh(customer)
        session.expunge(customer)
    lines = [{"description": "Consulting", "quantity": "1", "unit_price": "100", "tax_rate": "0"}]
    invoice_id = add_invoice(store, customer, lines, number="INV-2026-000124", currency="EUR")
    with reading(store) as session:
        doc = document_for(session, invoice_id)
    with pytest.raises(EInvoiceError, match=r"buyer: the Peppol endpoint .* is missing"):
        render_ubl(doc)

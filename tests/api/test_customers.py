"""Customer master data over HTTP: created by the ERP (idempotently), read within the legal entity,
refused with the field named when malformed, ledgered; and an invoice's due date defaults from the
customer's payment terms."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import col, func, select

from activities.db import reading
from activities.ledger import verify_chain
from activities.models import Customer, LedgerEntry
from tests.conftest import Stack, invoice_body

# --- factories and helpers ------------------------------------------------------------------------------


def customer_body(
    *,
    legal_entity: str | None = "ACME",
    external_ref: str | None = "ERP-CUST-1",
    name: str = "Wayne Enterprises",
    currency: str = "EUR",
    payment_terms_days: int = 14,
    email: str = "ap@wayne.example",
    contact_name: str = "Lucius Fox",
    address: str = "1007 Mountain Drive, Gotham",
    country: str = "US",
    vat_id: str = "US123456789",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "currency": currency,
        "payment_terms_days": payment_terms_days,
        "email": email,
        "contact_name": contact_name,
        "address": address,
        "country": country,
        "vat_id": vat_id,
    }
    if legal_entity is not None:
        body["legal_entity"] = legal_entity
    if external_ref is not None:
        body["external_ref"] = external_ref
    return body


def customers_named(stack: Stack, name: str) -> list[Customer]:
    with reading(stack.store) as session:
        return list(session.exec(select(Customer).where(Customer.name == name)))


def counts(stack: Stack) -> tuple[int, int]:
    """(customers, ledger entries) in the store."""
    with reading(stack.store) as session:
        return (
            int(session.exec(select(func.count()).select_from(Customer)).one()),
            int(session.exec(select(func.count()).select_from(LedgerEntry)).one()),
        )


def fields_named(body: dict[str, Any]) -> set[str]:
    """The fields a 422 names: from request validation (details.fields) or a domain check (details.field)."""
    details = body["error"]["details"]
    named = {f["field"] for f in details.get("fields", [])}
    if "field" in details:
        named.add(details["field"])
    return named


# --- creation and idempotency ---------------------------------------------------------------------------


async def test_erp_creates_a_customer_with_terms_currency_and_contacts(stack: Stack) -> None:
    erp = await stack.client("erp")
    r = await erp.post("/api/v1/customers", json=customer_body())
    assert r.status_code == 201, r.text
    created = r.json()
    expected = customer_body()
    for key, value in expected.items():
        assert created[key] == value, key
    assert created["created_by"] == "erp" and created["id"]
    [stored] = customers_named(stack, "Wayne Enterprises")
    assert (stored.id, stored.legal_entity, stored.payment_terms_days, stored.currency, stored.email) == (
        created["id"],
        "ACME",
        14,
        "EUR",
        "ap@wayne.example",
    )


async def test_the_same_external_ref_and_body_again_returns_the_same_customer_with_200(stack: Stack) -> None:
    erp = await stack.client("erp")
    first = await erp.post("/api/v1/customers", json=customer_body())
    again = await erp.post("/api/v1/customers", json=customer_body())
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json() == first.json()
    assert len(customers_named(stack, "Wayne Enterprises")) == 1


async def test_the_same_external_ref_with_a_different_body_is_a_409_and_changes_nothing(stack: Stack) -> None:
    erp = await stack.client("erp")
    first = (await erp.post("/api/v1/customers", json=customer_body())).json()
    before = counts(stack)
    r = await erp.post("/api/v1/customers", json=customer_body(payment_terms_days=60))
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "external_ref_conflict"
    assert error["details"]["customer_id"] == first["id"]
    assert counts(stack) == before
    assert (await erp.get(f"/api/v1/customers/{first['id']}")).json()["payment_terms_days"] == 14


async def test_an_idempotency_key_without_external_ref_creates_one_customer(stack: Stack) -> None:
    erp = await stack.client("erp")
    body = customer_body(external_ref=None)
    headers = {"Idempotency-Key": "cust-create-7f3a"}
    first = await erp.post("/api/v1/customers", json=body, headers=headers)
    again = await erp.post("/api/v1/customers", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    assert len(customers_named(stack, "Wayne Enterprises")) == 1

    other = await erp.post("/api/v1/customers", json=body, headers={"Idempotency-Key": "cust-create-9b1c"})
    assert other.status_code == 201, other.text
    assert other.json()["id"] != first.json()["id"]


async def test_without_external_ref_or_idempotency_key_every_post_creates_a_customer(stack: Stack) -> None:
    erp = await stack.client("erp")
    body = customer_body(external_ref=None)
    ids = {(await erp.post("/api/v1/customers", json=body)).json()["id"] for _ in range(2)}
    assert len(ids) == 2


async def test_a_caller_maintaining_several_legal_entities_must_name_one(stack: Stack) -> None:
    erp = await stack.client("erp")  # erp_integration in ACME and GLOBEX
    before = counts(stack)
    r = await erp.post("/api/v1/customers", json=customer_body(legal_entity=None))
    assert r.status_code == 422, r.text
    assert fields_named(r.json()) == {"legal_entity"}
    assert counts(stack) == before


# --- reading --------------------------------------------------------------------------------------------


async def test_customers_are_listed_by_name_and_read_by_id(stack: Stack) -> None:
    erp = await stack.client("erp")
    created = (await erp.post("/api/v1/customers", json=customer_body())).json()
    preparer = await stack.client("preparer")
    listed = (await preparer.get("/api/v1/customers")).json()
    assert [c["name"] for c in listed] == ["Initech GmbH", "Umbrella Plc", "Wayne Enterprises"]
    assert listed[-1] == created
    r = await preparer.get(f"/api/v1/customers/{created['id']}")
    assert r.status_code == 200 and r.json() == created
    r = await preparer.get("/api/v1/customers/no-such-customer")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


async def test_a_user_of_another_legal_entity_cannot_see_the_customer(stack: Stack) -> None:
    erp = await stack.client("erp")
    created = (await erp.post("/api/v1/customers", json=customer_body())).json()
    outsider = await stack.client("globex_approver")
    r = await outsider.get(f"/api/v1/customers/{created['id']}")
    assert r.status_code == 404, r.text
    assert r.json()["error"]["code"] == "not_found"  # the same answer as for an id that does not exist
    listed = (await outsider.get("/api/v1/customers")).json()
    assert [c["name"] for c in listed] == ["Hooli Inc"]


# --- bad input ------------------------------------------------------------------------------------------


BAD_INPUT: list[tuple[str, dict[str, Any]]] = [
    ("currency", {"currency": "ZZZ"}),
    ("currency", {"currency": "XAU"}),  # an ISO code without minor unit: not an invoicing currency
    ("currency", {"currency": "eur"}),
    ("email", {"email": "accounts payable at wayne"}),
    ("payment_terms_days", {"payment_terms_days": -1}),
    ("payment_terms_days", {"payment_terms_days": 366}),
    ("name", {"name": None}),
    ("name", {"name": "   "}),
    ("country", {"country": "France"}),
    ("external_ref", {"external_ref": "has spaces"}),
    ("unexpected", {"unexpected": "field"}),
]


async def test_bad_input_is_a_422_naming_the_field_and_creates_nothing(stack: Stack) -> None:
    erp = await stack.client("erp")
    before = counts(stack)
    for field, change in BAD_INPUT:
        body = {k: v for k, v in (customer_body() | change).items() if v is not None}
        r = await erp.post("/api/v1/customers", json=body)
        assert r.status_code == 422, f"{change}: {r.status_code} {r.text}"
        assert r.json()["error"]["code"] == "invalid_input", change
        assert fields_named(r.json()) == {field}, f"{change}: {r.text}"
        assert counts(stack) == before, change
    r = await erp.post("/api/v1/customers", json=customer_body())  # and the same body, corrected, passes
    assert r.status_code == 201, r.text


# --- evidence -------------------------------------------------------------------------------------------


async def test_customer_creation_is_ledgered(stack: Stack) -> None:
    erp = await stack.client("erp")
    created = (await erp.post("/api/v1/customers", json=customer_body())).json()
    with reading(stack.store) as session:
        entries = list(
            session.exec(
                select(LedgerEntry)
                .where(LedgerEntry.object_id == created["id"])
                .order_by(col(LedgerEntry.seq))
            )
        )
        chain = verify_chain(session, "ACME")
    assert [(e.event, e.object_type, e.actor, e.legal_entity) for e in entries] == [
        ("customer_created", "customer", "erp", "ACME")
    ]
    assert json.loads(entries[0].actor_roles) == ["erp_integration"]
    payload = json.loads(entries[0].payload)
    assert (payload["name"], payload["payment_terms_days"], payload["currency"]) == (
        "Wayne Enterprises",
        14,
        "EUR",
    )
    assert chain.intact and chain.head_hash == entries[0].entry_hash

    await erp.post("/api/v1/customers", json=customer_body())  # the idempotent repeat adds no evidence
    with reading(stack.store) as session:
        assert len(list(session.exec(select(LedgerEntry).where(LedgerEntry.object_id == created["id"])))) == 1


# --- terms drive the due date ---------------------------------------------------------------------------


async def test_an_invoice_without_due_date_is_due_after_the_customers_payment_terms(stack: Stack) -> None:
    erp = await stack.client("erp")
    customer = (await erp.post("/api/v1/customers", json=customer_body(payment_terms_days=14))).json()
    body = invoice_body(customer["id"], issue_date="2026-11-02")
    assert "due_date" not in body
    r = await erp.post("/api/v1/invoices", json=body)
    assert r.status_code == 201, r.text
    assert (r.json()["issue_date"], r.json()["due_date"]) == ("2026-11-02", "2026-11-16")

    umbrella = invoice_body(
        stack.customers["umbrella"], currency="GBP", issue_date="2026-12-20", exchange_rate="1.16"
    )
    r = await erp.post("/api/v1/invoices", json=umbrella)  # 45 days, across the year end
    assert r.status_code == 201, r.text
    assert r.json()["due_date"] == "2027-02-03"


async def test_an_explicit_due_date_wins_over_the_terms(stack: Stack) -> None:
    erp = await stack.client("erp")
    customer = (await erp.post("/api/v1/customers", json=customer_body(payment_terms_days=14))).json()
    r = await erp.post("/api/v1/invoices", json=invoice_body(customer["id"], due_date="2026-12-31"))
    assert r.status_code == 201, r.text
    assert r.json()["due_date"] == "2026-12-31"


async def test_an_idempotency_key_of_the_longest_allowed_length_creates_one_customer(stack: Stack) -> None:
    erp = await stack.client("erp")
    headers = {"Idempotency-Key": "k" * 200}
    body = customer_body(external_ref=None)
    first = await erp.post("/api/v1/customers", json=body, headers=headers)
    again = await erp.post("/api/v1/customers", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert again.json()["id"] == first.json()["id"]
    r = await erp.post("/api/v1/customers", json=body, headers={"Idempotency-Key": "k" * 201})
    assert r.status_code == 422 and fields_named(r.json()) == {"Idempotency-Key"}, r.text

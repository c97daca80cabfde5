"""The whole path through HTTP with a worker running: ERP creates, preparer submits, approver approves,
the invoice is mailed, payments come in, it is paid; every step in the history."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime

from pypdf import PdfReader

from tests.conftest import Stack, invoice_body
from workflows.invoice import SA_AMOUNT_DUE, SA_CUSTOMER, SA_DUE_DATE, SA_STATUS, SA_STATUS_SINCE


async def test_invoice_goes_from_erp_to_paid(stack: Stack) -> None:
    erp, preparer, approver, cashier = await stack.clients("erp", "preparer", "approver", "cashier")
    body = invoice_body(stack.customers["initech"])
    r = await erp.post("/api/v1/invoices", json=body)
    assert r.status_code == 201, r.text
    inv = r.json()
    assert inv["status"] == "draft"
    assert (inv["subtotal"], inv["tax_total"], inv["total"], inv["amount_due"]) == (
        "1560.55",
        "312.11",
        "1872.66",
        "1872.66",
    )
    assert inv["due_date"] == "2026-12-02"  # Initech's 30-day terms
    assert inv["number"] is None  # numbered when issued, so voided drafts leave no gap
    # Searchable from the start: the API starts the workflow with the draft's search attributes, and the
    # creation changes none of them, so it upserts none. The one upsert is Temporal's own record of the
    # patch the run took (TemporalChangeVersion, written with the patch marker).
    handle = stack.temporal.get_workflow_handle(inv["workflow_id"])
    attrs = (await handle.describe()).typed_search_attributes
    assert (attrs.get(SA_STATUS), attrs.get(SA_AMOUNT_DUE), attrs.get(SA_CUSTOMER)) == (
        "draft",
        187266,
        stack.customers["initech"],
    )
    assert attrs.get(SA_DUE_DATE) == datetime(2026, 12, 2, tzinfo=UTC)
    upserts = [
        sorted(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in (await handle.fetch_history()).events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    assert upserts == [["TemporalChangeVersion"]]

    r = await preparer.post(f"/api/v1/invoices/{inv['id']}/submit")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "pending_approval"

    r = await approver.post(f"/api/v1/invoices/{inv['id']}/approve", json={"comment": "ok"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] in ("approved", "submitted")

    issued = await stack.wait_status(inv["id"], "submitted")
    assert issued["status"] == "submitted" and issued["number"].startswith("INV-2026-")
    inv["number"] = issued["number"]
    mails = [m for m in stack.mails() if m["To"] == "ap@initech.example"]
    assert len(mails) == 1
    pdf = next(p for p in mails[0].iter_attachments() if p.get_content_type() == "application/pdf")
    text = PdfReader(io.BytesIO(pdf.get_payload(decode=True))).pages[0].extract_text()
    assert inv["number"] in text and "1872.66" in text

    r = await cashier.post(
        "/api/v1/payments",
        json={
            "customer_id": stack.customers["initech"],
            "amount": "1000.00",
            "currency": "EUR",
            "received_on": "2026-11-20",
            "reference": "BANK-1",
            "allocations": [{"invoice_id": inv["id"], "amount": "1000.00"}],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["allocations"][0]["invoice_status"] == "partially_paid"
    r = await cashier.post(
        "/api/v1/payments",
        json={
            "customer_id": stack.customers["initech"],
            "amount": "872.66",
            "currency": "EUR",
            "received_on": "2026-11-21",
            "reference": "BANK-2",
            "allocations": [{"invoice_id": inv["id"], "amount": "872.66"}],
        },
    )
    assert r.status_code == 201, r.text
    r = await approver.get(f"/api/v1/invoices/{inv['id']}")
    assert r.json()["status"] == "paid" and r.json()["amount_due"] == "0.00"

    r = await approver.get(f"/api/v1/invoices/{inv['id']}/history")
    hist = r.json()
    assert [h["event"] for h in hist] == [
        "create",
        "submit",
        "approve",
        "deliver",
        "record_partial_payment",
        "record_final_payment",
    ]
    assert [h["to_status"] for h in hist] == [
        "draft",
        "pending_approval",
        "approved",
        "submitted",
        "partially_paid",
        "paid",
    ]
    for prev, cur in itertools.pairwise(hist):
        assert cur["seq"] > prev["seq"]
    assert hist[0]["actor"] == "erp" and hist[2]["actor"] == "approver"
    attrs = (await handle.describe()).typed_search_attributes
    assert (attrs.get(SA_STATUS), attrs.get(SA_AMOUNT_DUE)) == ("paid", 0)
    paid = (await approver.get(f"/api/v1/invoices/{inv['id']}")).json()
    since = attrs.get(SA_STATUS_SINCE)
    assert since is not None and since == datetime.fromisoformat(paid["status_since"]).replace(tzinfo=UTC)
    # The worker ran it unsandboxed: its history replays through the sandbox.
    await stack.assert_replays(inv["workflow_id"])

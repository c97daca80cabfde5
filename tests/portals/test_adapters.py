"""Each adapter (cXML, Coupa-style REST, Peppol) against the simulator over real HTTP: the same stories,
told once and run for every protocol."""

from __future__ import annotations

from typing import Any

import pytest

from activities.documents import InvoiceDocument
from activities.portals.base import PermanentError, StatusUpdate, TransientError
from activities.portals.status import PortalStatus, ReasonCode, StatusReason
from tests.portals.conftest import (
    DAY,
    OTHER_ENTITY,
    WIDGETS,
    Harness,
    Sim,
    invoice,
    make_adapter,
    submission,
    with_backoff,
)

S = PortalStatus

# What each protocol says on the way to paid (cXML has no word for "received" after the Response,
# Peppol none for "payment scheduled").
LIFE = {
    "cxml": [S.IN_PROCESS, S.ACCEPTED, S.PAYMENT_SCHEDULED, S.PAID],
    "coupa": [S.RECEIVED, S.IN_PROCESS, S.ACCEPTED, S.PAYMENT_SCHEDULED, S.PAID],
    "peppol": [S.RECEIVED, S.IN_PROCESS, S.ACCEPTED, S.PAID],
}


def test_a_clean_invoice_is_received_then_accepted_then_paid(harness: Harness) -> None:
    receipt = harness.submit(invoice())
    assert receipt.status is S.RECEIVED
    assert receipt.submission_key == "inv-INV-2026-0001.pass-1"
    assert receipt.portal_ref and not receipt.replayed
    seen: list[StatusUpdate] = []
    for step in (0, 60, 3600, DAY, 2 * DAY):
        seen += harness.statuses(advance=step)
    assert [u.status for u in seen] == LIFE[harness.channel]
    assert all(u.invoice_number == "INV-2026-0001" and not u.reasons for u in seen)
    assert [u.at for u in seen] == sorted(u.at for u in seen)


def rejection(harness: Harness, doc: InvoiceDocument, submission_pass: int = 1) -> StatusReason:
    """The reason the buyer gives: at once (Coupa-style 422) or as the next status (cXML, Peppol)."""
    try:
        receipt = harness.submit(doc, submission_pass)
    except PermanentError as exc:
        assert harness.channel == "coupa", f"{harness.channel} validates after receipt, not at submission"
        assert exc.http_status == 422 and exc.reason is not None
        return exc.reason
    assert harness.channel != "coupa", "the Coupa-style API refuses invalid invoices at once"
    assert receipt.status is S.RECEIVED
    updates = [u for u in harness.statuses(advance=60) if u.invoice_number == doc.number]
    assert updates[-1].status is S.REJECTED, updates
    reason = updates[-1].reason
    assert reason is not None
    return reason


BAD = {
    "missing PO": (invoice(po=""), ReasonCode.REFERENCES, "po_missing"),
    "unknown PO": (invoice(po="PO-9999"), ReasonCode.REFERENCES, "po_unknown"),
    "price": (
        invoice(lines=(("WIDGET", "Widget", "10", "13.00", "19"),)),
        ReasonCode.PRICES,
        "price_mismatch",
    ),
    "quantity": (
        invoice(lines=(("WIDGET", "Widget", "11", "12.50", "19"),)),
        ReasonCode.QUANTITY,
        "quantity",
    ),
    "tax": (
        invoice(lines=(("WIDGET", "Widget", "10", "12.50", "7"),)),
        ReasonCode.LEGAL,
        "tax_rate_mismatch",
    ),
    "bill-to": (invoice(customer=OTHER_ENTITY), ReasonCode.RECEIVER_UNKNOWN, "bill_to_mismatch"),
    "item": (invoice(lines=(("GADGET", "Gadget", "1", "5.00", "19"),)), ReasonCode.ITEMS, "item_not_on_po"),
}
PEPPOL_CODES = {"po_missing": "REF", "po_unknown": "REF", "price_mismatch": "PRI", "quantity": "QTY"} | {
    "tax_rate_mismatch": "LEG",
    "bill_to_mismatch": "REC",
    "item_not_on_po": "ITM",
}


@pytest.mark.parametrize("case", list(BAD))
def test_each_validation_rejection_comes_back_with_its_normalised_reason(harness: Harness, case: str) -> None:
    doc, reason, portal_code = BAD[case]
    found = rejection(harness, doc)
    assert found.code is reason
    if harness.channel == "peppol":
        assert found.portal_code == PEPPOL_CODES[portal_code]
    else:
        assert found.portal_code.startswith(portal_code)
    assert found.text  # the buyer's explanation is kept for the preparer


def test_a_second_invoice_with_a_live_number_is_a_duplicate(harness: Harness) -> None:
    first = invoice("INV-DUP-1", lines=(("WIDGET", "Widget", "2", "12.50", "19"),))
    harness.submit(first)
    # Another document (another invoice id, so another key) under the same number.
    second = InvoiceDocument(**{**first.__dict__, "id": "another-invoice"})
    found = rejection(harness, second)
    assert found.code is ReasonCode.DUPLICATE
    assert "INV-DUP-1" in found.text


def test_a_new_pass_of_a_live_invoice_is_a_duplicate_while_a_retry_of_the_same_pass_is_not(
    harness: Harness, sim: Sim
) -> None:
    doc = invoice("INV-PASS-1", lines=(("WIDGET", "Widget", "2", "12.50", "19"),))
    first = harness.submit(doc, 1)
    again = harness.submit(doc, 1)  # a retry of pass 1: the portal's first answer, no second document
    assert again.replayed and again.portal_ref == first.portal_ref
    assert len(sim.invoices(number="INV-PASS-1")) == 1
    assert rejection(harness, doc, submission_pass=2).code is ReasonCode.DUPLICATE


def test_a_rejected_invoice_may_come_back_under_the_same_number(harness: Harness, sim: Sim) -> None:
    wrong = invoice("INV-FIX-1", lines=(("WIDGET", "Widget", "10", "13.00", "19"),))
    assert rejection(harness, wrong, 1).code is ReasonCode.PRICES
    fixed = invoice("INV-FIX-1", lines=(("WIDGET", "Widget", "10", "12.50", "19"),))
    receipt = harness.submit(fixed, 2)
    assert receipt.status is S.RECEIVED and not receipt.replayed
    later = [u.status for u in harness.statuses(advance=60) if u.invoice_number == "INV-FIX-1"]
    assert later[-1] is S.IN_PROCESS
    kept = [i for i in sim.invoices(number="INV-FIX-1") if i["status"] != "rejected"]
    assert len(kept) == 1


def test_resending_the_same_attempt_after_a_lost_reply_creates_no_duplicate(
    harness: Harness, sim: Sim
) -> None:
    adapter = make_adapter(harness.channel, sim.url, timeout=0.5)
    try:
        adapter.poll(None)  # signed in (Coupa fetches its token): the next request is the submission
        sim.faults(lose_next_replies=1, lost_reply_delay=1.5)
        doc = invoice("INV-LOST-1")
        with pytest.raises(TransientError, match="no answer in time"):
            adapter.submit(submission(doc, 1, harness.channel))
        # The portal did the work before the reply was lost.
        assert len(sim.invoices(number="INV-LOST-1")) == 1
        receipt = adapter.submit(submission(doc, 1, harness.channel))
        assert receipt.replayed
    finally:
        adapter.close()
    assert len(sim.invoices(number="INV-LOST-1")) == 1
    after = [u.status for u in harness.statuses(advance=60) if u.invoice_number == "INV-LOST-1"]
    assert after[-1] is S.IN_PROCESS  # not a duplicate rejection


def test_rate_limited_requests_get_429_and_succeed_after_retry_after(harness: Harness, sim: Sim) -> None:
    sim.control("POST", "rate-limit", {"capacity": 2, "refill_per_second": 0.5})
    outcomes: list[Any] = []
    for n in range(1, 5):
        try:
            outcomes.append(
                harness.submit(invoice(f"INV-RL-{n}", lines=(("WIDGET", "Widget", "1", "12.50", "19"),)))
            )
        except TransientError as exc:
            outcomes.append(exc)
            break
    limited = outcomes[-1]
    assert isinstance(limited, TransientError), outcomes
    assert (limited.http_status, limited.retry_after) == (429, 2.0)
    sim.advance(limited.retry_after or 0.0)
    n = len(outcomes)
    receipt = harness.submit(invoice(f"INV-RL-{n}", lines=(("WIDGET", "Widget", "1", "12.50", "19"),)))
    assert receipt.status is S.RECEIVED
    assert sum(1 for r in sim.requests() if r["status"] == 429) == 1


def test_a_5xx_storm_is_survived_with_backoff_and_leaves_one_document(harness: Harness, sim: Sim) -> None:
    sim.faults(fail_next=4, status=503)
    receipt, failures = with_backoff(lambda: harness.submit(invoice("INV-STORM-1")))
    assert failures == 4
    assert receipt.status is S.RECEIVED
    injected = [r for r in sim.requests() if r["note"] == "injected"]
    assert [r["status"] for r in injected] == [503] * 4
    assert len(sim.invoices(number="INV-STORM-1")) == 1


def test_a_5xx_carries_the_portals_retry_after(harness: Harness, sim: Sim) -> None:
    sim.faults(fail_next=1, status=503, retry_after=7)
    with pytest.raises(TransientError) as failed:
        harness.submit(invoice("INV-503-1"))
    assert (failed.value.http_status, failed.value.retry_after) == (503, 7.0)


def test_review_can_reject_after_approval_of_the_documents_checks(harness: Harness, sim: Sim) -> None:
    sim.control(
        "POST",
        "review-rules",
        {
            "invoice_number": "INV-REV-*",
            "outcome": "reject",
            "reason": "missing_attachment",
            "message": "Attach the delivery note",
        },
    )
    harness.submit(invoice("INV-REV-1"))
    seen = harness.statuses(advance=60) + harness.statuses(advance=3600)
    last = [u for u in seen if u.invoice_number == "INV-REV-1"][-1]
    assert last.status is S.REJECTED
    assert last.reason is not None and "delivery note" in last.reason.text


def test_review_can_query_an_invoice_and_then_accept_it(harness: Harness, sim: Sim) -> None:
    sim.control(
        "POST",
        "review-rules",
        {
            "invoice_number": "INV-Q-*",
            "outcome": "query",
            "reason": "price_mismatch",
            "message": "Confirm the price",
        },
    )
    harness.submit(invoice("INV-Q-1"))
    seen = harness.statuses(advance=60) + harness.statuses(advance=3600)
    queried = [u for u in seen if u.invoice_number == "INV-Q-1"][-1]
    # cXML has no "under query": the network says processing, with the question in Comments typed "query".
    assert queried.status is S.UNDER_QUERY
    assert "Confirm the price" in queried.message or (queried.reason and "Confirm" in queried.reason.text)
    resolved = [u for u in harness.statuses(advance=7200) if u.invoice_number == "INV-Q-1"]
    assert resolved[-1].status is S.ACCEPTED


def test_credit_notes_are_accepted_for_a_known_invoice_and_refused_for_an_unknown_one(
    harness: Harness,
) -> None:
    harness.submit(invoice("INV-CN-1", lines=(("WIDGET", "Widget", "2", "12.50", "19"),)))
    credit = invoice(
        "CN-1", kind="credit_note", preceding="INV-CN-1", lines=(("WIDGET", "Widget", "1", "12.50", "19"),)
    )
    assert harness.submit(credit).status is S.RECEIVED
    orphan = invoice("CN-2", kind="credit_note", preceding="INV-NONE", lines=(WIDGETS,))
    assert rejection(harness, orphan).code is ReasonCode.REFERENCES

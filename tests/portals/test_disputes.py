"""The buyer's dispute answers, in each protocol's own words, and what the adapters make of them: an
invoice on a purchase order the buyer questions or contests comes back as the normalised `under_query` or
`disputed`, with the reason (our code, the portal's code and its text), as the invoice workflow receives it
(activities.portals.activity.portal_update)."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml

from activities.portals.activity import portal_update
from activities.portals.base import StatusUpdate
from activities.portals.config import portals_from_mapping
from activities.portals.coupa import CoupaAdapter
from activities.portals.peppol import parse_invoice_response
from activities.portals.status import PortalStatus, ReasonCode
from tests.portals.conftest import (
    DAY,
    PEPPOL_DATA,
    Harness,
    PushReceiver,
    Sim,
    invoice,
    make_adapter,
    scenario,
    submission,
)

S = PortalStatus
PRICE = "Hourly rate above the framework agreement: credit the difference"
TIMESHEETS = "Please send the signed timesheets"
# How each protocol carries the buyer's reason code "price_mismatch" (Peppol: its OPStatusReason).
PORTAL_CODE = {"cxml": "price_mismatch", "coupa": "price_mismatch", "peppol": "PRI"}
# The protocol's own word for each answer, kept as evidence on the update.
WORD = {
    ("cxml", S.DISPUTED): "processing",
    ("coupa", S.DISPUTED): "disputed",
    ("peppol", S.DISPUTED): "UQ",
    ("cxml", S.UNDER_QUERY): "processing",
    ("coupa", S.UNDER_QUERY): "on_hold",
    ("peppol", S.UNDER_QUERY): "UQ",
}


def dispute(po: str = "PO-1001", **over: Any) -> dict[str, Any]:
    return {"po_number": po, "status": "disputed", "reason": "price_mismatch", "message": PRICE, **over}


def about(updates: list[StatusUpdate], number: str) -> list[StatusUpdate]:
    return [u for u in updates if u.invoice_number == number]


def through_review(harness: Harness, number: str) -> list[StatusUpdate]:
    """Submit a clean invoice on PO-1001 and move the buyer past its review (in process after a minute,
    reviewed an hour later)."""
    harness.submit(invoice(number, lines=(("WIDGET", "Widget", "2", "12.50", "19"),)))
    return about(harness.statuses(advance=60) + harness.statuses(advance=3600), number)


def test_a_disputed_purchase_order_comes_back_disputed_with_the_reason(harness: Harness, sim: Sim) -> None:
    sim.control("POST", "disputes", dispute())
    seen = through_review(harness, "INV-DSP-1")
    last = seen[-1]
    assert last.status is S.DISPUTED, [u.status for u in seen]
    assert last.portal_status == WORD[harness.channel, S.DISPUTED]
    assert last.reason is not None
    assert (last.reason.code, last.reason.portal_code) == (ReasonCode.PRICES, PORTAL_CODE[harness.channel])
    assert PRICE in last.reason.text
    if harness.channel == "peppol":
        assert last.actions == ("CNP",)  # "issue a partial credit note"
    # As the invoice workflow receives it.
    update = portal_update(last)
    assert (update.status, update.reason_code, update.portal_reason_code) == (
        "disputed",
        "PRI",
        PORTAL_CODE[harness.channel],
    )
    assert PRICE in update.reason_text


def test_a_dispute_is_held_until_a_credit_note_for_the_invoice_arrives(harness: Harness, sim: Sim) -> None:
    sim.control("POST", "disputes", dispute())
    assert through_review(harness, "INV-DSP-2")[-1].status is S.DISPUTED
    # A week on, the buyer still holds it: nothing more is said.
    assert about(harness.statuses(advance=7 * DAY), "INV-DSP-2") == []
    [held] = sim.invoices(number="INV-DSP-2")
    assert (held["status"], held["next_status"]) == ("disputed", None)
    credit = invoice(
        "CN-DSP-2",
        kind="credit_note",
        preceding="INV-DSP-2",
        lines=(("WIDGET", "Widget", "2", "0.50", "19"),),
    )
    assert harness.submit(credit).status is S.RECEIVED
    later = about(harness.statuses(advance=7200) + harness.statuses(advance=DAY), "INV-DSP-2")
    # Peppol has no code for "payment scheduled": it says nothing until paid.
    assert [u.status for u in later] == [S.ACCEPTED] + (
        [] if harness.channel == "peppol" else [S.PAYMENT_SCHEDULED]
    )
    assert not later[0].reasons


def test_a_queried_purchase_order_comes_back_under_query_then_accepted(harness: Harness, sim: Sim) -> None:
    sim.control(
        "POST",
        "disputes",
        dispute(status="under_query", reason="missing_attachment", message=TIMESHEETS),
    )
    seen = through_review(harness, "INV-UQ-1")
    last = seen[-1]
    assert last.status is S.UNDER_QUERY, [u.status for u in seen]
    assert last.portal_status == WORD[harness.channel, S.UNDER_QUERY]
    assert last.reason is not None and TIMESHEETS in last.reason.text
    assert last.reason.code is ReasonCode.OTHER
    if harness.channel == "peppol":
        assert last.actions == ("PIN",)  # "provide information"
    assert portal_update(last).status == "under_query"
    # A query is answered: the buyer approves after the resolution time (not held).
    resolved = about(harness.statuses(advance=7200), "INV-UQ-1")
    assert resolved[-1].status is S.ACCEPTED


def test_the_standing_answer_follows_the_purchase_order_pattern_and_the_protocol(
    sim: Sim, receiver: PushReceiver
) -> None:
    other = {**scenario(receiver.url)["purchase_orders"][0], "number": "PO-2001"}
    sim.load(
        scenario(
            receiver.url,
            purchase_orders=[*scenario(receiver.url)["purchase_orders"], other],
            disputes=[dispute("PO-2*", protocol="coupa")],
        )
    )
    adapter = CoupaAdapter("initech-coupa", _coupa_config(sim.url))
    try:
        for number, po in (("INV-PAT-1", "PO-1001"), ("INV-PAT-2", "PO-2001")):
            doc = invoice(number, po=po, lines=(("WIDGET", "Widget", "1", "12.50", "19"),))
            adapter.submit(submission(doc))
        sim.advance(60)
        sim.advance(3600)
        statuses = {u.invoice_number: u.status for u in adapter.poll(None)}
    finally:
        adapter.close()
    assert statuses == {"INV-PAT-1": S.ACCEPTED, "INV-PAT-2": S.DISPUTED}


def _coupa_config(base: str, **over: Any) -> Any:
    return portals_from_mapping(
        {
            "initech-coupa": {
                "channel": "coupa",
                "base_url": f"{base}/coupa",
                "client_id": "nordlicht",
                "client_secret": "env:T_COUPA_SECRET",
                **over,
            }
        },
        {"T_COUPA_SECRET": "coupa-client-secret-93fe"},
    )["initech-coupa"]


def test_a_coupa_instance_that_sends_invoices_back_as_disputed_reads_it_as_a_rejection(sim: Sim) -> None:
    sim.control("POST", "disputes", dispute())
    adapter = CoupaAdapter("initech-coupa", _coupa_config(sim.url, disputed_status="rejected"))
    try:
        adapter.submit(submission(invoice("INV-BACK-1", lines=(("WIDGET", "Widget", "1", "12.50", "19"),))))
        sim.advance(60)
        sim.advance(3600)
        [update] = [u for u in adapter.poll(None) if u.invoice_number == "INV-BACK-1"]
    finally:
        adapter.close()
    assert (update.status, update.portal_status) == (S.REJECTED, "disputed")
    assert update.reason is not None and update.reason.code is ReasonCode.PRICES


def test_the_protocols_own_words_for_a_dispute(harness: Harness, sim: Sim) -> None:
    """What goes over the wire: cXML typed Comments and a DisputeReasonCode Extrinsic, the Coupa-style
    status and dispute_reason, the Peppol Invoice Response UQ with OPStatusReason and OPStatusAction."""
    sim.control("POST", "disputes", dispute())
    through_review(harness, "INV-WIRE-1")
    if harness.channel == "coupa":
        [found] = sim.invoices(number="INV-WIRE-1")
        assert found["status"] == "disputed"
        assert found["reason"]["code"] == "price_mismatch"
        return
    [last] = [m for m in sim.control("GET", f"messages?protocol={harness.channel}")][-1:]
    root = etree.fromstring(last["content"].encode())
    if harness.channel == "cxml":
        status = root.find("Request/StatusUpdateRequest/InvoiceStatus")
        assert status.get("type") == "processing"
        comments = status.find("Comments")
        assert comments.get("type") == "dispute" and PRICE in comments.text
        extrinsic = root.find("Request/StatusUpdateRequest/Extrinsic")
        assert (extrinsic.get("name"), extrinsic.text) == ("DisputeReasonCode", "price_mismatch")
    else:
        ns = {"cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"}
        assert root.findtext(".//cbc:ResponseCode", namespaces=ns) == "UQ"
        codes = {c.get("listID"): c.text for c in root.iterfind(".//cbc:StatusReasonCode", ns)}
        assert codes == {"OPStatusReason": "PRI", "OPStatusAction": "CNP"}


def test_the_simulators_dispute_and_query_responses_pass_the_official_t111_validator(sim: Sim) -> None:
    validation = pytest.importorskip(
        "activities.einvoice_validation", reason="the Schematron runner (saxonche)"
    )
    xslt = PEPPOL_DATA / "xslt" / "PEPPOLBIS-T111.xslt"
    if not xslt.exists():
        pytest.skip("the Peppol T111 validator lives in ../shared/data")
    validator = validation.SchematronValidator(xslt)
    sim.control("POST", "disputes", dispute(po="PO-1001", reason="quantity_exceeds_po"))
    sim.control(
        "POST", "review-rules", {"invoice_number": "INV-T111-Q", "outcome": "query", "reason": "po_unknown"}
    )
    adapter = make_adapter("peppol", sim.url)
    try:
        for number in ("INV-T111-D", "INV-T111-Q"):
            doc = invoice(number, lines=(("WIDGET", "Widget", "1", "12.50", "19"),))
            adapter.submit(submission(doc, 1, "peppol"))
        sim.advance(60)
        sim.advance(3600)
    finally:
        adapter.close()
    statuses = set()
    for message in sim.control("GET", "messages?protocol=peppol"):
        body = message["content"].encode()
        statuses.add(parse_invoice_response("sim", body).status)
        assert [f"{f.id}: {f.text}" for f in validator.check(body) if f.fatal] == []
    assert {S.DISPUTED, S.UNDER_QUERY} <= statuses

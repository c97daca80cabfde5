"""Our parsers and builders against the published references in ../shared/data: the official cXML
samples and DTD, the 13 Peppol Invoice Response use cases and their validator (T111). Each test skips
with a clear reason in a clone without ../shared."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from activities.portals.base import PermanentError, Submission
from activities.portals.cxml import (
    CxmlAdapter,
    Envelope,
    get_pending_request,
    invoice_detail_request,
    parse_status_update_request,
    response_document,
)
from activities.portals.peppol import parse_invoice_response
from activities.portals.status import PortalStatus, ReasonCode
from tests.portals.conftest import CXML_DATA, NO_SHARED, PEPPOL_DATA, Sim, invoice, make_adapter, ubl_of

S = PortalStatus
R = ReasonCode


def shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(NO_SHARED)
    return path


@pytest.fixture(scope="module")
def cxml_dtd() -> Any:
    return etree.DTD(str(shared(CXML_DATA / "cXML-1.2.063.dtd")))


def dtd_errors(dtd: Any, element: Any) -> list[str]:
    """DTD validation of a document or of one subtree (copied, so that it is validated on its own)."""
    ok = dtd.validate(copy.deepcopy(element))
    return [] if ok else [str(e) for e in dtd.error_log.filter_from_errors()]


# -- cXML ---------------------------------------------------------------------------------------------


def test_the_official_status_update_request_sample_parses() -> None:
    body = shared(CXML_DATA / "StatusUpdateRequest.sample.xml").read_bytes()
    [update] = parse_status_update_request("ariba", body)
    # A StatusUpdateRequest without an InvoiceStatus: the network's acknowledgement of a document.
    assert update.status is S.RECEIVED
    assert update.portal_ref == "0c300508b7863dcclb_14999"
    assert update.submission_key == ""  # not a payloadID we minted
    assert update.message == "Forwarded to supplier"
    assert update.portal_status == "Status 200"
    assert update.update_id == "0c30050@supplierorg.com"
    assert update.at == datetime(2021, 1, 9, 7, 0, 6, tzinfo=UTC)


def test_the_official_order_request_sample_is_not_taken_for_a_status() -> None:
    body = shared(CXML_DATA / "OrderRequest.sample.xml").read_bytes()
    with pytest.raises(PermanentError, match="not a cXML StatusUpdateRequest"):
        parse_status_update_request("ariba", body)


def test_the_status_update_requests_the_simulator_pushes_are_valid_cxml(cxml_dtd: Any, sim: Sim) -> None:
    adapter = make_adapter("cxml", sim.url)
    try:
        for n, price in enumerate(("12.50", "99.00")):
            doc = invoice(f"INV-DTD-{n}", lines=(("WIDGET", "Widget", "1", price, "19"),))
            adapter.submit(Submission(doc.id, 1, doc))
        sim.advance(3 * 86400 + 3600 + 60)
        pending = adapter.poll(None)
    finally:
        adapter.close()
    messages = sim.control("GET", "messages?protocol=cxml")
    assert {m["content"].count("InvoiceStatus type=") for m in messages} == {1}
    assert {u.status for u in pending} == {S.IN_PROCESS, S.REJECTED, S.ACCEPTED, S.PAYMENT_SCHEDULED, S.PAID}
    for message in messages:
        assert dtd_errors(cxml_dtd, etree.fromstring(message["content"].encode())) == []


def test_our_cxml_responses_and_requests_are_valid_against_the_dtd(cxml_dtd: Any) -> None:
    env = Envelope("AN-NORDLICHT", "AN-INITECH", "AN-NORDLICHT", "s3cret")
    documents = [
        response_document(200, "OK"),
        response_document(401, "Unauthorized", "wrong shared secret"),
        get_pending_request(
            payload_id="p@cashcycle", timestamp=datetime.now(UTC), envelope=env, since=None, max_messages=10
        ),
        get_pending_request(
            payload_id="q@cashcycle",
            timestamp=datetime.now(UTC),
            envelope=env,
            since=datetime.now(UTC),
            max_messages=1,
        ),
    ]
    for body in documents:
        assert dtd_errors(cxml_dtd, etree.fromstring(body)) == []


def test_the_push_reply_of_the_adapter_is_valid_cxml(cxml_dtd: Any, sim: Sim) -> None:
    adapter = make_adapter("cxml", sim.url)
    assert isinstance(adapter, CxmlAdapter)
    try:
        for error in (None, PermanentError("x", "push refused: wrong shared secret", http_status=401)):
            assert dtd_errors(cxml_dtd, etree.fromstring(adapter.push_reply(error).body)) == []
    finally:
        adapter.close()


# InvoiceDetail.dtd (not in ../shared) content models of the elements we write, in order.
INVOICE_DETAIL_ORDER = {
    "InvoiceDetailRequest": ["InvoiceDetailRequestHeader", "InvoiceDetailOrder", "InvoiceDetailSummary"],
    "InvoiceDetailRequestHeader": [
        "InvoiceDetailHeaderIndicator",
        "InvoiceDetailLineIndicator",
        "InvoicePartner",
        "DocumentReference",
        "InvoiceIDInfo",
        "PaymentTerm",
        "Comments",
        "IdReference",
        "Extrinsic",
    ],
    "InvoicePartner": ["Contact", "IdReference"],
    "InvoiceDetailOrder": ["InvoiceDetailOrderInfo", "InvoiceDetailItem"],
    "InvoiceDetailItem": [
        "UnitOfMeasure",
        "UnitPrice",
        "InvoiceDetailItemReference",
        "SubtotalAmount",
        "Tax",
    ],
    "InvoiceDetailItemReference": ["ItemID", "Description"],
    "InvoiceDetailSummary": ["SubtotalAmount", "Tax", "GrossAmount", "NetAmount", "DueAmount"],
}


@pytest.mark.parametrize("kind", ["invoice", "credit_note"])
def test_the_invoice_detail_request_follows_the_dtds(cxml_dtd: Any, kind: str) -> None:
    """cXML.dtd has no InvoiceDetailRequest (InvoiceDetail.dtd is not in ../shared): the envelope and
    every subtree cXML.dtd declares are validated against it, the rest is checked for order."""
    env = Envelope("AN-NORDLICHT", "AN-INITECH", "AN-NORDLICHT", "s3cret")
    doc = invoice(kind=kind, preceding="INV-1" if kind == "credit_note" else "")
    root = etree.fromstring(
        invoice_detail_request(doc, payload_id="k@cashcycle", timestamp=datetime.now(UTC), envelope=env)
    )
    declared = {e.name for e in cxml_dtd.elements()}
    idr = root.find("Request/InvoiceDetailRequest")
    covered = [el for el in idr.iter() if el.tag in declared and el.getparent().tag not in declared]
    assert {el.tag for el in covered} >= {
        "Contact",
        "IdReference",
        "OrderIDInfo",
        "UnitPrice",
        "ItemID",
        "Tax",
    }
    for el in covered:
        assert dtd_errors(cxml_dtd, el) == [], el.tag
    envelope = copy.deepcopy(root)
    request = envelope.find("Request")
    request.remove(request[0])
    etree.SubElement(request, "ProfileRequest")
    assert dtd_errors(cxml_dtd, envelope) == []
    for parent, order in INVOICE_DETAIL_ORDER.items():
        for el in idr.iter(parent):
            tags = [child.tag for child in el]
            assert [t for t in order if t in tags] == list(dict.fromkeys(tags)), (parent, tags)
    head = idr.find("InvoiceDetailRequestHeader")
    assert head.get("invoiceID") == doc.number and head.get("operation") == "new"
    assert head.get("purpose") == ("lineLevelCreditMemo" if kind == "credit_note" else "standard")
    assert idr.find("InvoiceDetailOrder/InvoiceDetailOrderInfo/OrderIDInfo").get("orderID") == "PO-1001"
    sign = "-" if kind == "credit_note" else ""
    assert idr.findtext("InvoiceDetailSummary/NetAmount/Money") == f"{sign}148.75"
    assert idr.findtext("InvoiceDetailSummary/Tax/Money") == f"{sign}23.75"
    assert idr.find("InvoiceDetailOrder/InvoiceDetailItem").get("quantity") == f"{sign}10"


# -- Peppol Invoice Response (T111) ---------------------------------------------------------------------

USE_CASES: dict[str, tuple[PortalStatus, tuple[ReasonCode, ...], tuple[str, ...], str]] = {
    "uc001-Invoice_in_process": (S.IN_PROCESS, (), (), ""),
    "uc002a-Additional_reference_data": (S.IN_PROCESS, (), ("NOA",), "Buyer process reference: X001"),
    "uc002b-In_process_but_postponed": (S.IN_PROCESS, (), (), "Shipment has not yet been received"),
    "uc003-Invoice_is_accepted": (S.ACCEPTED, (), (), ""),
    "uc004a-Invoice_is_rejected": (S.REJECTED, (R.REFERENCES,), (), "PO reference is missing"),
    "uc004b-Rejected_requesting_reissue": (S.REJECTED, (R.REFERENCES,), ("NIN",), ""),
    "uc004c-Rejected_requesting_replacement": (S.REJECTED, (R.REFERENCES,), ("CNF", "NIN"), ""),
    "uc005-Invoice_is_conditionally_accepted": (
        S.CONDITIONALLY_ACCEPTED,
        (R.PAYMENT_TERMS,),
        (),
        "BT-9: 2018-01-15",
    ),
    "uc006a-Under_query_missing_information": (S.UNDER_QUERY, (R.REFERENCES,), ("PIN",), "BT-13: PO0001"),
    "uc006b-Missing_PO": (S.UNDER_QUERY, (R.REFERENCES,), ("PIN",), "BT-13: PO0001"),
    # Under query asking for a partial credit note: the buyer contests the amount, a dispute.
    "uc006c-Wrong_detail_partial_credit": (
        S.DISPUTED,
        (R.DELIVERY,),
        ("CNP",),
        "Send credit note for 3 unit",
    ),
    "uc007-Payment_has_been_initiated": (S.PAID, (), (), ""),
    "uc008-Invoice_is_accepted_by_third_party": (S.ACCEPTED, (), (), ""),
}


def test_all_thirteen_use_cases_are_covered() -> None:
    files = sorted(p.stem for p in shared(PEPPOL_DATA / "invoice-response").glob("T111-*.xml"))
    assert [f.removeprefix("T111-") for f in files] == sorted(USE_CASES)


@pytest.mark.parametrize("case", list(USE_CASES))
def test_the_official_invoice_responses_parse(case: str) -> None:
    body = shared(PEPPOL_DATA / "invoice-response" / f"T111-{case}.xml").read_bytes()
    update = parse_invoice_response("peppol", body)
    status, reasons, actions, said = USE_CASES[case]
    assert update.status is status
    assert tuple(r.code for r in update.reasons) == reasons
    assert update.actions == actions
    assert said in update.message
    assert update.invoice_number == "inv021"
    assert update.at.tzinfo is not None


def test_the_simulators_invoice_responses_pass_the_official_t111_validator(sim: Sim) -> None:
    validation = pytest.importorskip(
        "activities.einvoice_validation", reason="the Schematron runner (saxonche)"
    )
    validator = validation.SchematronValidator(shared(PEPPOL_DATA / "xslt" / "PEPPOLBIS-T111.xslt"))
    adapter = make_adapter("peppol", sim.url)
    try:
        for n, rate in enumerate(("19", "7")):
            doc = invoice(f"INV-T111-{n}", lines=(("WIDGET", "Widget", "1", "12.50", rate),))
            adapter.submit(Submission(doc.id, 1, doc, ubl_of(doc)))
        sim.control(
            "POST",
            "review-rules",
            {"invoice_number": "INV-T111-0", "outcome": "query", "reason": "po_unknown"},
        )
        sim.advance(5 * 86400)
    finally:
        adapter.close()
    messages = sim.control("GET", "messages?protocol=peppol")
    codes = set()
    for message in messages:
        body = message["content"].encode()
        codes.add(parse_invoice_response("sim", body).portal_status)
        assert [f"{f.id}: {f.text}" for f in validator.check(body) if f.fatal] == []
    assert codes == {"AB", "IP", "UQ", "AP", "PD", "RE"}

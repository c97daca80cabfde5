"""The normalised status and reason set: every row of every protocol's table, checked against the
official code lists where they are at hand (the Peppol T111 validator, the cXML DTD)."""

from __future__ import annotations

import re

import pytest

from activities.portals.status import (
    COUPA_STATUS,
    CXML_INVOICE_STATUS,
    PEPPOL_CODE_OF,
    PEPPOL_REASON_CODES,
    PEPPOL_RESPONSE_CODES,
    PORTAL_REASON_CODES,
    REASON_LABELS,
    PortalStatus,
    ReasonCode,
    UnmappedStatus,
    coupa_status,
    cxml_status,
    is_accepted,
    is_disputed,
    needs_fix,
    peppol_reason,
    peppol_status,
    portal_reason,
    reason_from_text,
)
from tests.portals.conftest import CXML_DATA, NO_SHARED, PEPPOL_DATA

S = PortalStatus
R = ReasonCode


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AB", S.RECEIVED),
        ("IP", S.IN_PROCESS),
        ("UQ", S.UNDER_QUERY),
        ("CA", S.CONDITIONALLY_ACCEPTED),
        ("RE", S.REJECTED),
        ("AP", S.ACCEPTED),
        ("PD", S.PAID),
    ],
)
def test_peppol_response_codes_map_onto_the_normalised_statuses(code: str, status: PortalStatus) -> None:
    assert peppol_status(code) is status
    assert PEPPOL_CODE_OF[status] == code


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("processing", S.IN_PROCESS),
        ("reconciled", S.ACCEPTED),
        ("paying", S.PAYMENT_SCHEDULED),
        ("paid", S.PAID),
        ("rejected", S.REJECTED),
        ("canceled", S.REJECTED),
    ],
)
def test_cxml_invoice_statuses_map_onto_the_normalised_statuses(word: str, status: PortalStatus) -> None:
    assert cxml_status(word) is status


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("new", S.RECEIVED),
        ("pending_approval", S.IN_PROCESS),
        ("on_hold", S.UNDER_QUERY),
        ("approved", S.ACCEPTED),
        ("scheduled", S.PAYMENT_SCHEDULED),
        ("paid", S.PAID),
        ("disputed", S.DISPUTED),
        ("Voided", S.REJECTED),
    ],
)
def test_coupa_statuses_map_onto_the_normalised_statuses(word: str, status: PortalStatus) -> None:
    assert coupa_status(word) is status


def test_every_normalised_status_is_reachable_from_some_protocol() -> None:
    reached = (
        set(PEPPOL_RESPONSE_CODES.values()) | set(CXML_INVOICE_STATUS.values()) | set(COUPA_STATUS.values())
    )
    assert reached == set(PortalStatus)


def test_payment_scheduled_has_no_peppol_code() -> None:
    assert S.PAYMENT_SCHEDULED not in PEPPOL_CODE_OF


@pytest.mark.parametrize(
    "call", [lambda: peppol_status("XX"), lambda: cxml_status("approved"), lambda: coupa_status("archived")]
)
def test_unknown_protocol_words_are_refused_not_guessed(call: object) -> None:
    with pytest.raises(UnmappedStatus):
        call()  # type: ignore[operator]


def test_every_reason_has_a_label() -> None:
    assert set(REASON_LABELS) == set(ReasonCode)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("po_missing", R.REFERENCES),
        ("po_unknown", R.REFERENCES),
        ("price_mismatch", R.PRICES),
        ("quantity_exceeds_po", R.QUANTITY),
        ("tax_rate_mismatch", R.LEGAL),
        ("bill_to_mismatch", R.RECEIVER_UNKNOWN),
        ("duplicate_invoice_number", R.DUPLICATE),
        ("item_not_on_po", R.ITEMS),
        ("PRI", R.PRICES),  # a portal that sends the Peppol code itself
    ],
)
def test_portal_reason_codes_map_onto_the_normalised_reasons(code: str, reason: ReasonCode) -> None:
    found = portal_reason(code, "some text")
    assert (found.code, found.portal_code, found.text) == (reason, code, "some text")


def test_a_portals_own_reason_codes_come_from_its_configuration() -> None:
    assert portal_reason("WRONG-PO-01", "", {"WRONG-PO-01": "REF"}).code is R.REFERENCES
    assert portal_reason("WRONG-PO-01", "").code is R.OTHER


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Duplicate invoice number INV-1", R.DUPLICATE),
        ("Invoice is a duplicate of 4711", R.DUPLICATE),
        ("Bill-to legal entity does not match", R.RECEIVER_UNKNOWN),
        ("VAT rate 7% is wrong for this item", R.LEGAL),
        ("Unit price differs from contract", R.PRICES),
        ("Quantity exceeds the goods receipt", R.QUANTITY),
        ("PO reference is missing", R.REFERENCES),
        ("Please attach the delivery note", R.OTHER),
        ("", R.OTHER),
    ],
)
def test_prose_is_read_for_a_reason_only_when_no_code_says_it(text: str, reason: ReasonCode) -> None:
    assert reason_from_text(text) is reason
    assert portal_reason("", text).code is reason


def test_a_code_beats_the_text() -> None:
    assert portal_reason("price_mismatch", "duplicate?").code is R.PRICES
    assert peppol_reason("QTY", "Duplicate invoice").code is R.QUANTITY


def test_peppol_other_is_refined_from_its_explanation_as_buyers_send_duplicates_there() -> None:
    found = peppol_reason("OTH", "Duplicate invoice number")
    assert (found.code, found.portal_code) == (R.DUPLICATE, "OTH")
    assert peppol_reason("OTH", "Something else").code is R.OTHER


def test_which_statuses_need_the_supplier_and_which_count_as_accepted() -> None:
    assert {s for s in PortalStatus if needs_fix(s)} == {S.REJECTED, S.UNDER_QUERY, S.DISPUTED}
    assert {s for s in PortalStatus if is_accepted(s)} == {
        S.ACCEPTED,
        S.CONDITIONALLY_ACCEPTED,
        S.PAYMENT_SCHEDULED,
        S.PAID,
    }


def test_reason_table_rows_all_name_real_reasons() -> None:
    assert set(PORTAL_REASON_CODES.values()) <= set(ReasonCode)


# -- against the official code lists ---------------------------------------------------------------------


def _xslt_code_list(name: str) -> set[str]:
    xslt = PEPPOL_DATA / "xslt" / "PEPPOLBIS-T111.xslt"
    if not xslt.exists():
        pytest.skip(NO_SHARED)
    found = re.search(rf'name="{re.escape(name)}" select="tokenize\(\'([^\']*)\'', xslt.read_text())
    assert found, f"{name} not found in {xslt.name}"
    return set(found.group(1).split())


def test_response_codes_are_exactly_the_t111_validators_list() -> None:
    assert set(PEPPOL_RESPONSE_CODES) == _xslt_code_list("clUNCL4343-T111")


def test_reason_codes_are_the_t111_validators_list_plus_duplicate() -> None:
    assert set(PEPPOL_REASON_CODES) == _xslt_code_list("clOPStatusReason")
    assert {c.value for c in ReasonCode} - set(PEPPOL_REASON_CODES) == {"DUP"}


def test_cxml_invoice_status_types_are_exactly_the_dtds_enumeration() -> None:
    dtd = CXML_DATA / "cXML-1.2.063.dtd"
    if not dtd.exists():
        pytest.skip(NO_SHARED)
    found = re.search(r"<!ATTLIST InvoiceStatus\s+type\s+\(([^)]*)\)", dtd.read_text())
    assert found
    assert set(CXML_INVOICE_STATUS) == {w.strip() for w in found.group(1).split("|")}


# -- under query and disputed: each protocol's way of saying it ------------------------------------------


@pytest.mark.parametrize(
    ("types", "status"),
    [
        ((), S.IN_PROCESS),
        (("",), S.IN_PROCESS),
        (("query",), S.UNDER_QUERY),
        (("Under_Query",), S.UNDER_QUERY),
        (("dispute",), S.DISPUTED),
        (("query", "dispute"), S.DISPUTED),
        (("delivery",), S.IN_PROCESS),
    ],
)
def test_cxml_processing_with_typed_comments_is_under_query_or_disputed(
    types: tuple[str, ...], status: PortalStatus
) -> None:
    assert cxml_status("processing", types) is status


def test_typed_comments_do_not_change_a_final_cxml_status() -> None:
    assert cxml_status("rejected", ("dispute",)) is S.REJECTED
    assert cxml_status("paid", ("query",)) is S.PAID


@pytest.mark.parametrize(
    ("actions", "status"),
    [
        ((), S.UNDER_QUERY),
        (("PIN",), S.UNDER_QUERY),
        (("NOA",), S.UNDER_QUERY),
        (("CNP",), S.DISPUTED),
        (("CNF",), S.DISPUTED),
        (("PIN", "CNA"), S.DISPUTED),
    ],
)
def test_peppol_under_query_asking_for_a_credit_is_a_dispute(
    actions: tuple[str, ...], status: PortalStatus
) -> None:
    assert peppol_status("UQ", actions) is status


def test_a_credit_action_does_not_make_a_rejection_a_dispute() -> None:
    assert peppol_status("RE", ("CNF", "NIN")) is S.REJECTED
    assert peppol_status("CA", ("CNP",)) is S.CONDITIONALLY_ACCEPTED


def test_under_query_and_disputed_are_the_statuses_that_open_a_dispute() -> None:
    assert {s for s in PortalStatus if is_disputed(s)} == {S.UNDER_QUERY, S.DISPUTED}
    assert S.DISPUTED.value == "disputed" and S.UNDER_QUERY.value == "under_query"


def test_the_new_reason_codes_name_delivery_and_quality() -> None:
    assert portal_reason("delivery_short").code is R.DELIVERY
    assert portal_reason("quality").code is R.QUALITY

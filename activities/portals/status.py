"""One set of portal statuses and rejection reasons, whatever the channel: the Peppol Invoice Response
(BIS T111) codes are the reference, and every protocol's own words are mapped onto them here.

Why one set: first-pass acceptance, rejections by reason and time in portal are reported across 20-50
portals, and the workflow decides what to do (wait, fix, resubmit) from the status alone. Each table is a
literal, so that a reviewer can read the whole mapping in one screen and a test can walk every row.

Statuses (UNCL4343 subset used by Peppol, plus the one step cXML names and Peppol does not, and the
dispute every portal can express but none has one code for):

    received  AB   in_process  IP   under_query  UQ   conditionally_accepted  CA
    rejected  RE   accepted    AP   payment_scheduled (cXML "paying")         paid  PD
    disputed  Peppol UQ asking for a credit note (OPStatusAction CNF, CNP, CNA: use case 6c);
              cXML processing with Comments type="dispute"; Coupa "disputed"

Under query and disputed are the customer's word that it will not pay the invoice as it stands: the
invoice workflow opens (or joins) a dispute case for both; "under query" asks a question, "disputed"
contests the amount and wants a credit. cXML has no word for either: buyers say `processing` and type
their Comments ("query", "dispute"; the DTD's Comments@type is there to structure comments).

Reasons are Peppol's OPStatusReason codes plus DUP (duplicate invoice number), which Peppol lacks: buyers
send duplicates as OTH with an explanation, so OTH and free text are refined from the text (see
`reason_from_text`). Tax errors are LEG ("legal information incorrect"), a wrong bill-to legal entity is
REC ("receiver unknown"), a missing or unknown purchase order is REF ("references incorrect").

Pure standard library: the workflow side may copy or import these tables without I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class PortalStatus(StrEnum):
    RECEIVED = "received"
    IN_PROCESS = "in_process"
    UNDER_QUERY = "under_query"
    DISPUTED = "disputed"
    CONDITIONALLY_ACCEPTED = "conditionally_accepted"
    REJECTED = "rejected"
    ACCEPTED = "accepted"
    PAYMENT_SCHEDULED = "payment_scheduled"
    PAID = "paid"


class ReasonCode(StrEnum):
    """Peppol OPStatusReason (BIS Invoice Response 3, code list as in PEPPOLBIS-T111.xslt) plus DUP."""

    NO_ISSUE = "NON"
    REFERENCES = "REF"
    LEGAL = "LEG"
    RECEIVER_UNKNOWN = "REC"
    QUALITY = "QUA"
    DELIVERY = "DEL"
    PRICES = "PRI"
    QUANTITY = "QTY"
    ITEMS = "ITM"
    PAYMENT_TERMS = "PAY"
    NOT_RECOGNIZED = "UNR"
    FINANCE_TERMS = "FIN"
    PARTIALLY_PAID = "PPD"
    OTHER = "OTH"
    DUPLICATE = "DUP"  # not a Peppol code: Cashcycle's, for the duplicate-number rejection every portal has


REASON_LABELS: Mapping[ReasonCode, str] = {
    ReasonCode.NO_ISSUE: "No issue",
    ReasonCode.REFERENCES: "References incorrect (purchase order missing or wrong)",
    ReasonCode.LEGAL: "Legal information incorrect (tax)",
    ReasonCode.RECEIVER_UNKNOWN: "Receiver unknown (bill-to legal entity)",
    ReasonCode.QUALITY: "Item quality insufficient",
    ReasonCode.DELIVERY: "Delivery issues",
    ReasonCode.PRICES: "Prices incorrect",
    ReasonCode.QUANTITY: "Quantity incorrect",
    ReasonCode.ITEMS: "Items incorrect",
    ReasonCode.PAYMENT_TERMS: "Payment terms incorrect",
    ReasonCode.NOT_RECOGNIZED: "Not recognized",
    ReasonCode.FINANCE_TERMS: "Finance terms incorrect",
    ReasonCode.PARTIALLY_PAID: "Partially paid",
    ReasonCode.OTHER: "Other",
    ReasonCode.DUPLICATE: "Duplicate invoice number",
}


@dataclass(frozen=True)
class StatusReason:
    """Why a portal rejected or queried a document: the normalised code, the portal's own words and code."""

    code: ReasonCode
    text: str = ""
    portal_code: str = ""  # the code as the portal sent it (evidence; "" when it sent text only)


class UnmappedStatus(ValueError):
    """A protocol status word this module has no row for: a portal speaking a dialect we do not know."""


# -- Peppol Invoice Response (UNCL4343 subset, T111) ------------------------------------------------

PEPPOL_RESPONSE_CODES: Mapping[str, PortalStatus] = {
    "AB": PortalStatus.RECEIVED,  # message acknowledgement
    "IP": PortalStatus.IN_PROCESS,
    "UQ": PortalStatus.UNDER_QUERY,
    "CA": PortalStatus.CONDITIONALLY_ACCEPTED,
    "RE": PortalStatus.REJECTED,
    "AP": PortalStatus.ACCEPTED,
    # Peppol's use case 7 calls PD "payment has been initiated": the buyer's side is done. Cash is still
    # matched from the bank statement; this is the customer's word, not the money.
    "PD": PortalStatus.PAID,
}

# The other way, for whoever speaks Peppol (the simulator). PAYMENT_SCHEDULED has no Peppol code;
# DISPUTED is UQ with a credit action (PEPPOL_DISPUTE_ACTIONS).
PEPPOL_CODE_OF: Mapping[PortalStatus, str] = {status: code for code, status in PEPPOL_RESPONSE_CODES.items()}

# Under query, asking for a credit note (fully, partially, or a refund of what was paid): the buyer contests
# the amount, it does not ask a question. The official use case 6c ("wrong detail, partial credit") is one.
PEPPOL_DISPUTE_ACTIONS: frozenset[str] = frozenset({"CNF", "CNP", "CNA"})

PEPPOL_REASON_CODES: Mapping[str, ReasonCode] = {
    code.value: code for code in ReasonCode if code is not ReasonCode.DUPLICATE
}

# OPStatusAction: what the buyer asks the seller to do. Kept as Peppol codes (no normalisation needed).
PEPPOL_ACTION_LABELS: Mapping[str, str] = {
    "NOA": "No action required",
    "PIN": "Provide information",
    "NIN": "Issue new invoice",
    "CNF": "Credit fully",
    "CNP": "Credit partially",
    "CNA": "Credit the amount",
    "OTH": "Other",
}

# -- cXML StatusUpdateRequest / InvoiceStatus@type (cXML 1.2.063) ------------------------------------

CXML_INVOICE_STATUS: Mapping[str, PortalStatus] = {
    "processing": PortalStatus.IN_PROCESS,
    "reconciled": PortalStatus.ACCEPTED,  # matched to order and receipt: approved for payment
    "paying": PortalStatus.PAYMENT_SCHEDULED,
    "paid": PortalStatus.PAID,
    "rejected": PortalStatus.REJECTED,
    # The buyer withdrew it: for the supplier the invoice was not accepted and must be dealt with.
    "canceled": PortalStatus.REJECTED,
}

# A `processing` InvoiceStatus whose Comments are typed (Comments@type, case-insensitive) says more than
# "in process": the buyer has a question, or contests the invoice.
CXML_PROCESSING_COMMENTS: Mapping[str, PortalStatus] = {
    "query": PortalStatus.UNDER_QUERY,
    "under_query": PortalStatus.UNDER_QUERY,
    "dispute": PortalStatus.DISPUTED,
    "disputed": PortalStatus.DISPUTED,
}

# -- Coupa-style REST invoice status ------------------------------------------------------------------

COUPA_STATUS: Mapping[str, PortalStatus] = {
    "new": PortalStatus.RECEIVED,
    "draft": PortalStatus.RECEIVED,
    "pending_receipt": PortalStatus.IN_PROCESS,
    "pending_approval": PortalStatus.IN_PROCESS,
    "on_hold": PortalStatus.UNDER_QUERY,
    "ap_hold": PortalStatus.UNDER_QUERY,
    "approved": PortalStatus.ACCEPTED,
    "scheduled": PortalStatus.PAYMENT_SCHEDULED,
    "paid": PortalStatus.PAID,
    # The buyer contests the invoice (a dispute reason with it) and wants it credited. Some instances use
    # it to send an invoice back for a fix: a portal's `disputed_status = "rejected"` says so.
    "disputed": PortalStatus.DISPUTED,
    "voided": PortalStatus.REJECTED,
    "abandoned": PortalStatus.REJECTED,
}

# -- portal reason codes (Coupa dispute reasons, Ariba-style rejection codes) -------------------------
# Each customer's portal instance configures its own codes; these are the common ones (and the
# simulator's). A portal's configuration can add or override rows (`reason_codes` in the portal config).

PORTAL_REASON_CODES: Mapping[str, ReasonCode] = {
    "po_missing": ReasonCode.REFERENCES,
    "po_unknown": ReasonCode.REFERENCES,
    "po_closed": ReasonCode.REFERENCES,
    "invoice_reference_unknown": ReasonCode.REFERENCES,
    "bill_to_mismatch": ReasonCode.RECEIVER_UNKNOWN,
    "item_not_on_po": ReasonCode.ITEMS,
    "price_mismatch": ReasonCode.PRICES,
    "currency_mismatch": ReasonCode.PRICES,
    "quantity_exceeds_po": ReasonCode.QUANTITY,
    "tax_rate_mismatch": ReasonCode.LEGAL,
    "tax_missing": ReasonCode.LEGAL,
    "duplicate_invoice_number": ReasonCode.DUPLICATE,
    "payment_terms_mismatch": ReasonCode.PAYMENT_TERMS,
    "missing_attachment": ReasonCode.OTHER,
    "delivery_short": ReasonCode.DELIVERY,
    "quality": ReasonCode.QUALITY,
    "other": ReasonCode.OTHER,
}

# -- free text --------------------------------------------------------------------------------------
# Many portals give prose only, and Peppol buyers put duplicates under OTH. First match wins; the
# patterns are deliberately narrow (a word that names the problem), and a code always beats the text.

TEXT_REASONS: tuple[tuple[re.Pattern[str], ReasonCode], ...] = (
    (re.compile(r"\bduplicat", re.I), ReasonCode.DUPLICATE),
    (re.compile(r"\bbill[- ]?to\b|\blegal entity\b|\breceiver\b", re.I), ReasonCode.RECEIVER_UNKNOWN),
    (re.compile(r"\b(tax|vat)\b", re.I), ReasonCode.LEGAL),
    (re.compile(r"\bprice", re.I), ReasonCode.PRICES),
    (re.compile(r"\bquantit", re.I), ReasonCode.QUANTITY),
    (re.compile(r"\bpurchase order\b|\bPO\b|\border (number|reference)\b", re.I), ReasonCode.REFERENCES),
)


def reason_from_text(text: str) -> ReasonCode:
    for pattern, code in TEXT_REASONS:
        if pattern.search(text):
            return code
    return ReasonCode.OTHER


def peppol_status(response_code: str, actions: Iterable[str] = ()) -> PortalStatus:
    """A response code; UQ with a credit action (OPStatusAction CNF, CNP, CNA) is a dispute."""
    try:
        status = PEPPOL_RESPONSE_CODES[response_code.strip()]
    except KeyError:
        raise UnmappedStatus(f"Peppol response code {response_code!r} is not in UNCL4343 (T111)") from None
    if status is PortalStatus.UNDER_QUERY and PEPPOL_DISPUTE_ACTIONS & {a.strip() for a in actions}:
        return PortalStatus.DISPUTED
    return status


def cxml_status(invoice_status_type: str, comment_types: Iterable[str] = ()) -> PortalStatus:
    """An InvoiceStatus type; `processing` with typed Comments ("query", "dispute") is refined."""
    try:
        status = CXML_INVOICE_STATUS[invoice_status_type.strip()]
    except KeyError:
        raise UnmappedStatus(f"cXML InvoiceStatus type {invoice_status_type!r} is unknown") from None
    if status is PortalStatus.IN_PROCESS:
        refined = [
            CXML_PROCESSING_COMMENTS[t]
            for t in (c.strip().lower() for c in comment_types)
            if t in CXML_PROCESSING_COMMENTS
        ]
        if refined:
            # A dispute beats a question when a buyer types both.
            return PortalStatus.DISPUTED if PortalStatus.DISPUTED in refined else refined[0]
    return status


def coupa_status(status: str) -> PortalStatus:
    try:
        return COUPA_STATUS[status.strip().lower()]
    except KeyError:
        raise UnmappedStatus(f"portal invoice status {status!r} is unknown") from None


def peppol_reason(code: str, text: str = "") -> StatusReason:
    """An OPStatusReason code; OTH (and an unknown code) is refined from the text, as buyers put
    duplicates there."""
    found = PEPPOL_REASON_CODES.get(code.strip())
    if found is None or found is ReasonCode.OTHER:
        found = reason_from_text(text)
    return StatusReason(found, text, code.strip())


def portal_reason(code: str, text: str = "", extra: Mapping[str, str] | None = None) -> StatusReason:
    """A portal's own reason code (plus the portal's configured extra rows, code -> Peppol reason code);
    an unknown or missing code is read from the text."""
    key = code.strip()
    found: ReasonCode | None = None
    if extra and key in extra:
        found = ReasonCode(extra[key])
    elif key.lower() in PORTAL_REASON_CODES:
        found = PORTAL_REASON_CODES[key.lower()]
    elif key in PEPPOL_REASON_CODES:  # some portals send the Peppol code itself
        found = PEPPOL_REASON_CODES[key]
    if found is None or found is ReasonCode.OTHER:
        found = reason_from_text(text)
    return StatusReason(found, text, key)


def needs_fix(status: PortalStatus) -> bool:
    """The supplier must act before the invoice can be paid (fix and resubmit, answer a query, or settle
    a dispute)."""
    return status in (PortalStatus.REJECTED, PortalStatus.UNDER_QUERY, PortalStatus.DISPUTED)


def is_disputed(status: PortalStatus) -> bool:
    """The customer will not pay the invoice as it stands and says why: a dispute case opens (or joins)."""
    return status in (PortalStatus.UNDER_QUERY, PortalStatus.DISPUTED)


def is_accepted(status: PortalStatus) -> bool:
    """The customer has accepted the invoice (first-pass acceptance counts these)."""
    return status in (
        PortalStatus.ACCEPTED,
        PortalStatus.CONDITIONALLY_ACCEPTED,
        PortalStatus.PAYMENT_SCHEDULED,
        PortalStatus.PAID,
    )

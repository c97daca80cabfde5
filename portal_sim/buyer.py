"""The buyer's side, whatever the protocol: the checks an invoice must pass, and its life over simulated
time (received -> in process -> approved -> payment scheduled -> paid), with the review's other answers:
rejected, under query, disputed (review rules per invoice, standing answers per purchase order).

Pure functions over the simulator's books; the Simulator (simulator.py) holds the lock and the state, and
turns each recorded event into the protocol's message.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from portal_sim.documents import Line, Parsed, norm
from portal_sim.scenario import BillTo, Protocol, PurchaseOrder, PurchaseOrderLine, Scenario

# The buyer's statuses (each protocol module says how it words them).
STATUSES = (
    "received",
    "in_process",
    "under_query",
    "disputed",
    "approved",
    "payment_scheduled",
    "paid",
    "rejected",
)
Then = Literal["accept", "reject", "hold"]


@dataclass(frozen=True)
class Rejection:
    """Why the buyer refuses, queries or disputes: its reason code (peppol.REASON_TO_PEPPOL's keys)."""

    code: str
    message: str
    field: str = ""

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "field": self.field, "message": self.message}


@dataclass
class Event:
    at: datetime
    status: str
    reason: Rejection | None = None


Reservation = tuple[str, int, Decimal]  # purchase order, line, quantity


@dataclass
class SimInvoice:
    id: int
    protocol: Protocol
    client: str
    supplier: str
    key: str  # the submission's idempotency key (cXML: its payloadID)
    parsed: Parsed
    created_at: datetime
    status: str = "received"
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    reason: Rejection | None = None
    next_status: str | None = None
    next_at: datetime | None = None
    pending: Rejection | None = None  # the validation outcome, announced at the in_process step
    after_query: Then = "accept"  # what follows under_query / disputed
    reservations: list[Reservation] = field(default_factory=list)
    history: list[Event] = field(default_factory=list)
    sender: str = ""  # Peppol participants
    receiver: str = ""
    external_reference: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "protocol": self.protocol,
            "client": self.client,
            "supplier": self.supplier,
            "key": self.key,
            "invoice_number": self.parsed.number,
            "kind": self.parsed.kind,
            "po_number": self.parsed.po_number,
            "status": self.status,
            "reason": self.reason.as_json() if self.reason else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "next_status": self.next_status,
            "next_at": self.next_at.isoformat() if self.next_at else None,
            "history": [
                {
                    "at": e.at.isoformat(),
                    "status": e.status,
                    "reason": e.reason.as_json() if e.reason else None,
                }
                for e in self.history
            ],
        }


# -- the checks ------------------------------------------------------------------------------------------

Checked = tuple[Rejection | None, list[Reservation]]


def live_invoice(invoices: Iterable[SimInvoice], supplier: str, number: str) -> SimInvoice | None:
    """The supplier's invoice with this number that still counts (not rejected)."""
    for inv in invoices:
        if inv.supplier == supplier and inv.parsed.number == number and inv.status != "rejected":
            return inv
    return None


def consumed(invoices: Iterable[SimInvoice], po: str, line: int) -> Decimal:
    return sum(
        (q for inv in invoices for (p, n, q) in inv.reservations if (p, n) == (po, line)),
        Decimal(0),
    )


def validate(
    supplier: str, doc: Parsed, invoices: list[SimInvoice], orders: Mapping[str, PurchaseOrder]
) -> Checked:
    """The buyer's checks, in the order portals apply them; the reservations a valid invoice takes
    on its purchase order's lines."""
    live = live_invoice(invoices, supplier, doc.number)
    if live is not None:
        return Rejection(
            "duplicate_invoice_number",
            f"Duplicate invoice number {doc.number}: already received (portal id {live.id}, {live.status})",
            "invoice_number",
        ), []
    if doc.kind == "credit_note":
        return _check_credit_note(supplier, doc, invoices), []
    po_number = doc.po_number.strip()
    if not po_number or po_number.upper() == "NA":
        return Rejection("po_missing", "A purchase order number is required", "po_number"), []
    po = orders.get(po_number)
    if po is None:
        return Rejection("po_unknown", f"Purchase order {po_number} is not known", "po_number"), []
    refused = _check_header(po, doc)
    if refused is not None:
        return refused, []
    wanted, refused = _check_lines(po, doc.lines)
    if refused is not None:
        return refused, []
    refused = _check_quantities(po, wanted, invoices)
    if refused is not None:
        return refused, []
    return None, [(po.number, n, q) for n, q in wanted.items()]


def _check_credit_note(supplier: str, doc: Parsed, invoices: list[SimInvoice]) -> Rejection | None:
    if not doc.preceding or live_invoice(invoices, supplier, doc.preceding) is None:
        return Rejection(
            "invoice_reference_unknown",
            f"The credited invoice {doc.preceding or '(none given)'} is not known",
            "original_invoice_number",
        )
    return None


def _check_header(po: PurchaseOrder, doc: Parsed) -> Rejection | None:
    if doc.currency and doc.currency != po.currency:
        return Rejection(
            "currency_mismatch", f"Currency {doc.currency} differs from the order's {po.currency}", "currency"
        )
    if not bill_to_matches(po.bill_to, doc):
        return Rejection(
            "bill_to_mismatch",
            f"Bill-to legal entity {doc.bill_to_name or doc.bill_to_vat or '(none)'} does not match "
            f"purchase order {po.number} ({po.bill_to.name})",
            "bill_to",
        )
    return None


def _check_lines(po: PurchaseOrder, lines: list[Line]) -> tuple[dict[int, Decimal], Rejection | None]:
    wanted: dict[int, Decimal] = {}
    for i, line in enumerate(lines, start=1):
        po_line = po_line_of(po, line)
        if po_line is None:
            what = line.item or line.description or "(no item)"
            return wanted, Rejection(
                "item_not_on_po", f"Line {i}: item {what} is not on purchase order {po.number}", "item"
            )
        if line.unit_price != po_line.unit_price:
            return wanted, Rejection(
                "price_mismatch",
                f"Line {i}: unit price {line.unit_price} does not match the purchase order price "
                f"{po_line.unit_price}",
                "price",
            )
        if line.tax_rate is None or line.tax_rate != po_line.tax_rate:
            given = "(none)" if line.tax_rate is None else f"{line.tax_rate}%"
            return wanted, Rejection(
                "tax_rate_mismatch",
                f"Line {i}: tax rate {given} does not match the purchase order's {po_line.tax_rate}%",
                "tax_rate",
            )
        wanted[po_line.line] = wanted.get(po_line.line, Decimal(0)) + line.quantity
    return wanted, None


def _check_quantities(
    po: PurchaseOrder, wanted: dict[int, Decimal], invoices: list[SimInvoice]
) -> Rejection | None:
    for po_line in po.lines:
        if po_line.line not in wanted:
            continue
        left = po_line.quantity - consumed(invoices, po.number, po_line.line)
        if wanted[po_line.line] > left:
            return Rejection(
                "quantity_exceeds_po",
                f"Quantity {wanted[po_line.line]} exceeds what is left on purchase order {po.number} "
                f"line {po_line.line}: {left} of {po_line.quantity}",
                "quantity",
            )
    return None


def bill_to_matches(bill_to: BillTo, doc: Parsed) -> bool:
    if bill_to.vat_id and doc.bill_to_vat:
        return norm(bill_to.vat_id) == norm(doc.bill_to_vat)
    return bool(doc.bill_to_name) and norm(bill_to.name) == norm(doc.bill_to_name)


def po_line_of(po: PurchaseOrder, line: Line) -> PurchaseOrderLine | None:
    for po_line in po.lines:
        if line.item and po_line.item and norm(line.item) == norm(po_line.item):
            return po_line
    for po_line in po.lines:
        if line.description and norm(line.description) == norm(po_line.description or po_line.item):
            return po_line
    return None


def unanswered(scenario: Scenario, doc: Parsed) -> bool:
    return any(fnmatch.fnmatchcase(doc.po_number, p) for p in scenario.unanswered_po_numbers)


# -- the review's answers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the review says instead of approving: a status with its reason, and what follows."""

    status: Literal["rejected", "under_query", "disputed"]
    reason: Rejection
    then: Then = "accept"


REVIEW_OUTCOME: Mapping[str, Literal["rejected", "under_query", "disputed"]] = {
    "reject": "rejected",
    "query": "under_query",
    "dispute": "disputed",
}


def review_answer(inv: SimInvoice, scenario: Scenario, rule_uses: dict[int, int]) -> Answer | None:
    """The first review rule still in force for this invoice (it is used up), else the standing answer
    for its purchase order (`scenario.disputes`), else None: approved."""
    for index, rule in enumerate(scenario.review_rules):
        if rule_uses.get(index, 0) >= rule.times or rule.protocol not in ("any", inv.protocol):
            continue
        if fnmatch.fnmatchcase(inv.parsed.number, rule.invoice_number) and fnmatch.fnmatchcase(
            inv.parsed.po_number, rule.po_number
        ):
            rule_uses[index] = rule_uses.get(index, 0) + 1
            return Answer(REVIEW_OUTCOME[rule.outcome], Rejection(rule.reason, rule.message), rule.then)
    for dispute in scenario.disputes:
        if dispute.protocol in ("any", inv.protocol) and fnmatch.fnmatchcase(
            inv.parsed.po_number, dispute.po_number
        ):
            return Answer(
                dispute.status, Rejection(dispute.reason, dispute.message), dispute.then or "accept"
            )
    return None


# -- life over time ------------------------------------------------------------------------------------

Record = Callable[[SimInvoice, Event], None]


def schedule(inv: SimInvoice, status: str | None, seconds: float, since: datetime | None = None) -> None:
    """The invoice's next step, `seconds` after its last change (or after `since`)."""
    inv.next_status = status
    inv.next_at = (since or inv.updated_at) + timedelta(seconds=seconds) if status else None


def step(inv: SimInvoice, scenario: Scenario, rule_uses: dict[int, int], record: Record) -> None:
    """Apply the invoice's due step (its next_status at next_at)."""
    at, target = inv.next_at, inv.next_status
    assert at is not None and target is not None
    inv.next_at = inv.next_status = None
    STEPS[target](inv, at, scenario, rule_uses, record)


def _to_in_process(
    inv: SimInvoice, at: datetime, scenario: Scenario, _: dict[int, int], record: Record
) -> None:
    if inv.pending is not None:
        reject(inv, at, inv.pending, record)
        return
    record(inv, Event(at, "in_process"))
    schedule(inv, "reviewed", scenario.delays.review)


def _reviewed(
    inv: SimInvoice, at: datetime, scenario: Scenario, uses: dict[int, int], record: Record
) -> None:
    answer = review_answer(inv, scenario, uses)
    if answer is None:
        approve(inv, at, scenario, record)
    elif answer.status == "rejected":
        reject(inv, at, answer.reason, record)
    else:
        inv.reason = answer.reason
        inv.after_query = answer.then
        record(inv, Event(at, answer.status, answer.reason))
        if answer.then != "hold":
            schedule(inv, "query_resolved", scenario.delays.query_resolution)


def _query_resolved(
    inv: SimInvoice, at: datetime, scenario: Scenario, _: dict[int, int], record: Record
) -> None:
    if inv.after_query == "reject" and inv.reason is not None:
        reject(inv, at, inv.reason, record)
        return
    approve(inv, at, scenario, record)


def _payment_scheduled(
    inv: SimInvoice, at: datetime, scenario: Scenario, _: dict[int, int], record: Record
) -> None:
    record(inv, Event(at, "payment_scheduled"))
    schedule(inv, "paid", scenario.delays.paid)


def _paid(inv: SimInvoice, at: datetime, _s: Scenario, _u: dict[int, int], record: Record) -> None:
    record(inv, Event(at, "paid"))


STEPS: Mapping[str, Callable[[SimInvoice, datetime, Scenario, dict[int, int], Record], None]] = {
    "in_process": _to_in_process,
    "reviewed": _reviewed,
    "query_resolved": _query_resolved,
    "payment_scheduled": _payment_scheduled,
    "paid": _paid,
}


def approve(inv: SimInvoice, at: datetime, scenario: Scenario, record: Record) -> None:
    inv.reason = None
    record(inv, Event(at, "approved"))
    schedule(inv, "payment_scheduled", scenario.delays.payment_scheduled)


def reject(inv: SimInvoice, at: datetime, reason: Rejection, record: Record) -> None:
    inv.reason = reason
    inv.reservations = []  # the quantity goes back to the purchase order
    inv.pending = None
    record(inv, Event(at, "rejected", reason))


def credited(original: SimInvoice, now: datetime, scenario: Scenario) -> None:
    """A credit note for an invoice the buyer holds under query or in dispute settles it: approved
    after the usual resolution time (from now: the hold may be long past)."""
    if original.status in ("under_query", "disputed") and original.next_status is None:
        original.after_query = "accept"
        schedule(original, "query_resolved", scenario.delays.query_resolution, since=now)

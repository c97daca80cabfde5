"""What the demo's invoices are and where the AR team leaves them: drawn from a seeded random generator,
relative to today, so that every run plans the same invoices, amounts, customers and statuses, with open
invoices in every aging bucket; and the receipts the ERP reports for the paid ones."""

from __future__ import annotations

import os
import random
from calendar import month_name
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from demo.company import CENT, DEMO_CUSTOMERS, FX, DemoCustomer

DEFAULT_INVOICES = 300
SEED = 20260401

# The statuses the seed leaves invoices in: every status an invoice can reach today without a
# customer portal (portal_rejected, accepted, disputed and written_off need portals and disputes).
DEMO_STATUSES = ("draft", "pending_approval", "approved", "submitted", "partially_paid", "paid", "void")
_STATUS_WEIGHTS = {
    "draft": 7,
    "pending_approval": 8,
    "approved": 4,
    "void": 4,
    "submitted": 32,
    "partially_paid": 13,
    "paid": 32,
}

# Aging buckets (days past due, inclusive) that open invoices are spread over.
AGING_BUCKETS: dict[str, tuple[int, int]] = {
    "current": (-60, 0),
    "1-30": (1, 30),
    "31-60": (31, 60),
    "61-90": (61, 90),
    "91-120": (91, 120),
    "120+": (121, 10_000),
}
_BUCKET_WEIGHTS = {"current": 35, "1-30": 25, "31-60": 15, "61-90": 10, "91-120": 7, "120+": 8}


@dataclass
class PlannedInvoice:
    """One invoice of the demo: what the ERP sends, and the status the AR team leaves it in."""

    external_id: str
    customer: DemoCustomer
    issue_date: date
    po_number: str | None
    lines: list[dict[str, str]]
    target: str
    bucket: str | None = None  # aging bucket, for open invoices
    rejected_first: bool = False  # an approver sent it back once; the preparer fixed it
    void_after_submit: bool = False
    installments: int = 1  # paid invoices: paid in one payment or two
    paid_on: date | None = None
    partial_share: Decimal = Decimal(0)
    # Filled in while seeding
    invoice_id: str = ""
    number: str = ""
    total: Decimal = Decimal(0)
    status: str = ""

    @property
    def due_date(self) -> date:
        return self.issue_date + timedelta(days=self.customer.terms)

    def body(self, customer_id: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "external_id": self.external_id,
            "customer_id": customer_id,
            "currency": self.customer.currency,
            "issue_date": self.issue_date.isoformat(),
            "lines": self.lines,
        }
        if self.po_number:
            body["po_number"] = self.po_number
        if self.customer.currency != "EUR":
            # ACME keeps its books in EUR: approval tiers apply to the amount at the booking rate.
            body["exchange_rate"] = str((1 / FX[self.customer.currency]).quantize(Decimal("0.000001")))
        return body


def _price(rng: random.Random, low: int, high: int, currency: str, step: int = 10) -> str:
    eur = Decimal(rng.randrange(low, high + 1, step))
    return str((eur * FX[currency]).quantize(CENT))


def _lines(rng: random.Random, customer: DemoCustomer, issue: date) -> list[dict[str, str]]:
    """Invoice lines for one of Acme's businesses: services, software licences or hardware.

    French customers pay French VAT (20 % standard, 10 % on-site catering, 5.5 % printed books); EU
    customers outside France are invoiced under the reverse charge and non-EU customers as exports,
    both at 0 %.
    """
    cur = customer.currency
    domestic = customer.country == "FR"
    std = "20" if domestic else "0"
    month = month_name[(issue.month - 2) % 12 + 1]  # services are billed for the month just ended
    kind = rng.choices(["services", "licences", "hardware", "support"], weights=[4, 3, 3, 2])[0]
    lines: list[dict[str, str]] = []

    def add(description: str, quantity: str, unit_price: str, tax_rate: str) -> None:
        lines.append(
            {"description": description, "quantity": quantity, "unit_price": unit_price, "tax_rate": tax_rate}
        )

    if kind == "services":
        days = Decimal(rng.randrange(2, 41)) / 2
        add(f"Consulting, senior consultant, {month} (days)", str(days), _price(rng, 950, 1250, cur, 50), std)
        if rng.random() < 0.5:
            add(
                f"Project management, {month} (days)",
                str(Decimal(rng.randrange(1, 9)) / 2),
                _price(rng, 800, 1000, cur, 50),
                std,
            )
        if rng.random() < 0.3:
            add(
                "Travel and accommodation, at cost",
                "1",
                str((Decimal(rng.randrange(18000, 142000)) / 100 * FX[cur]).quantize(CENT)),
                std,
            )
        if domestic and rng.random() < 0.25:
            add(
                "On-site workshop catering (persons)",
                str(rng.randrange(8, 31)),
                _price(rng, 20, 40, cur, 5),
                "10",
            )
    elif kind == "licences":
        add(
            f"Cashflow Analytics licence, annual subscription from {issue:%d.%m.%Y} (seats)",
            str(rng.choice([5, 10, 15, 20, 25, 40, 50, 75])),
            _price(rng, 180, 420, cur, 10),
            std,
        )
        if rng.random() < 0.4:
            add("Premium support add-on, annual", "1", _price(rng, 1500, 6000, cur, 250), std)
        if domestic and rng.random() < 0.3:
            add(
                "Printed user handbook (copies)",
                str(rng.randrange(5, 41)),
                _price(rng, 25, 45, cur, 5),
                "5.5",
            )
    elif kind == "hardware":
        catalogue = [
            ("Barcode scanner ZX-200", 190),
            ("Rugged tablet T10 with dock", 750),
            ("Thermal label printer LP-4", 330),
            ("Network switch, 24 ports", 410),
            ("Handheld mobile computer MC-33", 1180),
            ("Docking cradle, 4 slots", 240),
        ]
        for name, eur in rng.sample(catalogue, rng.randint(1, 3)):
            add(
                name,
                str(rng.choice([2, 4, 5, 8, 10, 12, 20, 25, 40, 60, 120])),
                str((Decimal(eur) * FX[cur] - Decimal("0.10")).quantize(CENT)),
                std,
            )
        add("Delivery and installation", "1", _price(rng, 150, 900, cur, 50), std)
    else:
        add(f"Managed support retainer, {month}", "1", _price(rng, 1200, 3600, cur, 100), std)
        if rng.random() < 0.5:
            add(
                f"Additional support hours, {month}",
                str(Decimal(rng.randrange(2, 33)) / 4),
                _price(rng, 95, 140, cur, 5),
                std,
            )
    return lines


def _issue_date_for(rng: random.Random, target: str, bucket: str | None, terms: int, today: date) -> date:
    """An issue date that puts the invoice where its status says it should be."""
    if target == "approved":
        # Approved ahead of its issue date: the workflow holds it until that date, then delivers it.
        return today + timedelta(days=rng.randint(3, 25))
    if target in ("draft", "pending_approval"):
        return today - timedelta(days=rng.randint(0, 12))
    if target == "void":
        return today - timedelta(days=rng.randint(2, 120))
    if target == "paid":
        return today - timedelta(days=rng.randint(terms // 2 + 5, 180))
    assert bucket is not None, "open invoices always get an aging bucket"
    low, high = AGING_BUCKETS[bucket]
    if bucket == "current":
        low = -terms  # issued at the earliest today
    else:
        high = min(high, max(low + 4, 185 - terms))  # no invoice older than about six months
    return today - timedelta(days=terms + rng.randint(low, high))


def plan_invoices(count: int, today: date, seed: int = SEED) -> list[PlannedInvoice]:
    """The demo invoices, in issue-date order: at least one in each status of DEMO_STATUSES and open
    invoices in each aging bucket (when `count` allows: 12 invoices are enough), the rest drawn by weight."""
    rng = random.Random(seed)
    must: list[tuple[str, str | None]] = [
        (s, None) for s in ("draft", "pending_approval", "approved", "void", "paid")
    ]
    for i, aging in enumerate(AGING_BUCKETS):
        must.append(("partially_paid" if i % 3 == 1 else "submitted", aging))
    targets: list[tuple[str, str | None]] = []
    for i in range(count):
        if i < len(must):
            targets.append(must[i])
            continue
        status = rng.choices(list(_STATUS_WEIGHTS), weights=list(_STATUS_WEIGHTS.values()))[0]
        drawn: str | None = None
        if status in ("submitted", "partially_paid"):
            drawn = rng.choices(list(_BUCKET_WEIGHTS), weights=list(_BUCKET_WEIGHTS.values()))[0]
        targets.append((status, drawn))
    rng.shuffle(targets)
    weights = [c.weight for c in DEMO_CUSTOMERS]
    planned: list[PlannedInvoice] = []
    for status, bucket in targets:
        customer = rng.choices(DEMO_CUSTOMERS, weights=weights)[0]
        issue = _issue_date_for(rng, status, bucket, customer.terms, today)
        po = None
        with_po = rng.random() < 0.7
        if with_po or customer.party.po_required:  # their AP refuses invoices without one
            po = (
                f"4500{rng.randrange(100000, 999999)}"
                if customer.country in ("DE", "AT", "GB")
                else f"PO-{rng.randrange(10000, 99999)}"
            )
        inv = PlannedInvoice(
            external_id="",
            customer=customer,
            issue_date=issue,
            po_number=po,
            lines=_lines(rng, customer, issue),
            target=status,
            bucket=bucket,
        )
        inv.rejected_first = status in ("draft", "pending_approval", "submitted") and rng.random() < 0.2
        inv.void_after_submit = status == "void" and rng.random() < 0.5
        if status == "paid":
            inv.installments = 2 if rng.random() < 0.2 else 1
            due = inv.due_date
            paid = due + timedelta(days=rng.randint(-10, 35))
            inv.paid_on = max(issue + timedelta(days=3), min(paid, today))
        if status == "partially_paid":
            inv.partial_share = Decimal(rng.randrange(20, 75)) / 100
        planned.append(inv)
    planned.sort(key=lambda p: (p.issue_date, p.customer.ref))
    for i, inv in enumerate(planned, start=1):
        inv.external_id = f"BILL-{90_000_000 + i}"  # the ERP's billing document number
    return planned


def demo_invoice_count() -> int:
    raw = os.environ.get("CASHCYCLE_DEMO_INVOICES", "")
    if not raw:
        return DEFAULT_INVOICES
    try:
        count = int(raw)
    except ValueError:
        raise SystemExit(f"CASHCYCLE_DEMO_INVOICES must be a whole number, not {raw!r}") from None
    if not 0 <= count <= 100_000:
        raise SystemExit(f"CASHCYCLE_DEMO_INVOICES must be between 0 and 100000, not {count}")
    return count


def approver_for(inv: PlannedInvoice) -> str:
    """Who sends it back when it is wrong: the most senior tier the amount reaches."""
    return approvers_for(inv)[-1]


def approvers_for(inv: PlannedInvoice) -> list[str]:
    """Who signs it off, tier by tier, as the default approval matrix requires: an AR approver up to
    10,000 EUR, then a finance manager up to 100,000, then the controller; a different person each."""
    eur = inv.total / FX[inv.customer.currency]
    chain = ["approver"]
    if eur > 10_000:
        chain.append("approver2")
    if eur > 100_000:
        chain.append("controller")
    return chain


VOID_REASONS = (
    "Duplicate of an invoice already sent for the same order",
    "Customer cancelled the order before delivery",
    "Billed to the wrong customer account; reissued under the right one",
)


def _bank_reference(rng: random.Random, currency: str) -> str:
    scheme = {"EUR": "SEPA CT", "GBP": "BACS", "USD": "ACH", "CHF": "SIC"}[currency]
    return f"{scheme} {rng.randrange(10**9, 10**10)}"


def money(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


@dataclass
class Receipt:
    customer: DemoCustomer
    received_on: date
    reference: str
    allocations: list[tuple[PlannedInvoice, Decimal]]


def plan_receipts(invoices: list[PlannedInvoice], rng: random.Random, today: date) -> list[list[Receipt]]:
    """The receipts the ERP reports, as chains: the receipts of one chain touch the same invoice and
    are recorded in order; chains run concurrently. A customer often pays several invoices at once."""
    chains: list[list[Receipt]] = []
    for inv in invoices:
        if inv.target == "partially_paid":
            part = (inv.total * inv.partial_share).quantize(Decimal(1))
            part = min(max(part, Decimal(1)), inv.total - CENT)
            received = min(today, inv.due_date + timedelta(days=rng.randint(-5, 20)))
            received = max(received, inv.issue_date + timedelta(days=1))
            chains.append(
                [Receipt(inv.customer, received, _bank_reference(rng, inv.customer.currency), [(inv, part)])]
            )
        elif inv.target == "paid" and inv.installments == 2:
            assert inv.paid_on is not None
            first = (inv.total / 2).quantize(Decimal(1))
            first_on = max(
                inv.issue_date + timedelta(days=1), inv.paid_on - timedelta(days=rng.randint(10, 30))
            )
            chains.append(
                [
                    Receipt(
                        inv.customer, first_on, _bank_reference(rng, inv.customer.currency), [(inv, first)]
                    ),
                    Receipt(
                        inv.customer,
                        inv.paid_on,
                        _bank_reference(rng, inv.customer.currency),
                        [(inv, inv.total - first)],
                    ),
                ]
            )
    by_customer: dict[str, list[PlannedInvoice]] = {}
    for inv in invoices:
        if inv.target == "paid" and inv.installments == 1:
            by_customer.setdefault(inv.customer.ref, []).append(inv)
    for group in by_customer.values():
        group.sort(key=lambda i: (i.paid_on or i.issue_date, i.external_id))
        while group:
            size = rng.choice([1, 1, 1, 2, 2, 3])
            batch, group = group[:size], group[size:]
            received = max(i.paid_on or today for i in batch)
            chains.append(
                [
                    Receipt(
                        batch[0].customer,
                        received,
                        _bank_reference(rng, batch[0].customer.currency),
                        [(i, i.total) for i in batch],
                    )
                ]
            )
    return chains

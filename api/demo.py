"""The demo company that `cashcycle up --demo` seeds on first start.

Only the legal entity and the users are written straight into the store (there is no API for them:
access is administered with `cashcycle users`). Everything else goes through the HTTP API as the demo
users, the same path the ERP and the AR team take, so that every invoice is a real workflow with its
transitions in the evidence ledger: a demo that bypassed the workflows would show data that no workflow
could have produced.

The data is drawn from a seeded random generator, relative to today: the same invoices, amounts,
customers and statuses every time, with open invoices in every aging bucket. Invoices are created in
issue-date order, one at a time, so that their numbers are reproducible and chronological; the moves
that follow (submit, approve, void, payments) run concurrently, bounded by a semaphore.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from calendar import month_name
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx

from activities import queries
from activities.db import open_store, reading, writing
from activities.directory import add_user, ensure_legal_entity, grant
from activities.models import LegalEntity, User

DEMO_PASSWORD = "cashcycle-demo"  # published: the demo is for trying Cashcycle out
DEMO_ENTITY = "ACME"
DEMO_OPERATOR = "cashcycle-demo"  # who granted the demo roles, in the ledger
DEFAULT_INVOICES = 300
SEED = 20260401
CONCURRENCY = 8

# username, roles in the demo legal entity
DEMO_USERS: list[tuple[str, list[str]]] = [
    ("preparer", ["ar_preparer"]),
    ("approver", ["ar_approver"]),
    ("approver2", ["ar_approver", "finance_manager"]),
    ("controller", ["controller"]),
    ("collector", ["collector"]),
    ("supervisor", ["ar_supervisor"]),
    ("compliance", ["compliance"]),
    ("erp", ["erp_integration"]),
    ("admin", ["admin"]),
]

_PEOPLE: dict[str, tuple[str, str]] = {
    "preparer": ("Camille Martin", "camille.martin@acme-industrie.example"),
    "approver": ("Julien Bernard", "julien.bernard@acme-industrie.example"),
    "approver2": ("Sophie Lefèvre", "sophie.lefevre@acme-industrie.example"),
    "controller": ("Nathalie Dubois", "nathalie.dubois@acme-industrie.example"),
    "collector": ("Thomas Moreau", "thomas.moreau@acme-industrie.example"),
    "supervisor": ("Isabelle Laurent", "isabelle.laurent@acme-industrie.example"),
    "compliance": ("Marc Girard", "marc.girard@acme-industrie.example"),
    "erp": ("ERP integration (billing interface)", "erp-integration@acme-industrie.example"),
    "admin": ("Cashcycle administrator", "it-admin@acme-industrie.example"),
}

DEMO_ENTITY_ROW = LegalEntity(
    code=DEMO_ENTITY,
    name="Acme Industrie SAS",
    currency="EUR",
    timezone="Europe/Paris",
    country="FR",
    vat_id="FR40123456789",
    address="18 rue des Entrepreneurs, 69007 Lyon, France",
    # The seller on e-invoices: Peppol participant by SIRET (EAS 0009), SIREN as legal registration number.
    street="18 rue des Entrepreneurs",
    postal_code="69007",
    city="Lyon",
    endpoint_scheme="0009",
    endpoint_id="12345678900017",
    company_id="123456789",
    iban="FR8030004000310001234567890",
    contact_name="Service comptabilité clients",
    email="comptabilite-clients@acme-industrie.example",
    telephone="+33 4 72 10 20 30",
)

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


@dataclass(frozen=True)
class DemoParty:
    """What e-invoices to a customer need: the address in parts, the Peppol participant (EAS scheme and
    identifier), the legal registration number, the reference their AP asks for, and whether it refuses
    invoices without a purchase order."""

    street: str
    postal_code: str
    city: str
    endpoint_scheme: str
    endpoint_id: str
    company_id: str
    buyer_reference: str
    po_required: bool = False

    def fields(self) -> dict[str, Any]:
        return {
            "street": self.street,
            "postal_code": self.postal_code,
            "city": self.city,
            "endpoint_scheme": self.endpoint_scheme,
            "endpoint_id": self.endpoint_id,
            "company_id": self.company_id,
            "buyer_reference": self.buyer_reference,
            "po_required": self.po_required,
        }


@dataclass(frozen=True)
class DemoCustomer:
    ref: str
    name: str
    country: str
    currency: str
    terms: int
    contact: str
    email: str
    address: str
    vat_id: str
    weight: int  # how much business the customer does with Acme, relative to the others
    party: DemoParty

    def body(self) -> dict[str, Any]:
        return self.party.fields() | {
            "legal_entity": DEMO_ENTITY,
            "external_ref": self.ref,
            "name": self.name,
            "currency": self.currency,
            "payment_terms_days": self.terms,
            "email": self.email,
            "contact_name": self.contact,
            "address": self.address,
            "country": self.country,
            "vat_id": self.vat_id,
        }


def _customer(
    n: int,
    name: str,
    country: str,
    currency: str,
    terms: int,
    contact: str,
    domain: str,
    address: str,
    vat_id: str,
    weight: int,
) -> DemoCustomer:
    return DemoCustomer(
        f"CUST-{n:04d}",
        name,
        country,
        currency,
        terms,
        contact,
        f"ap@{domain}.example",
        address,
        vat_id,
        weight,
        replace(_PARTIES[n], po_required=n in _PO_REQUIRED),
    )


# What e-invoices to each customer need, by customer number: street, postal code, city, Peppol EAS scheme and
# endpoint, legal registration number, the reference their AP asks for. Endpoints by country: SIRET (0009)
# in France, VAT numbers in Germany (9930), Spain (9920), Italy (0211), Poland (9945), Portugal (9946),
# Austria (9914) and the UK (9932), KvK (0106), OVT (0216), Swiss UID (0183), GLN (0088), D-U-N-S (0060).
_P = DemoParty  # short, for the table
# fmt: off
_PARTIES: dict[int, DemoParty] = {
    1001: _P("Hafenstraße 12", "20457", "Hamburg", "9930", "DE287451936", "HRB 154321", "KST-4410"),
    1002: _P("42 avenue Jean Médecin", "06000", "Nice", "0009", "51234567800027", "512345678", "LH-ACHATS"),
    1003: _P("Calle de Alcalá 210", "28028", "Madrid", "9920", "ESB84512397", "B84512397", "CA-CP-2210"),
    1004: _P("Keizersgracht 301", "1016 ED", "Amsterdam", "0106", "34512907", "34512907", "VDB-INKOOP"),
    1005: _P("Via Torino 88", "10036", "Settimo Torinese", "0211", "IT04518230018", "TO-1054321", "RM-AMM"),
    1006: _P("ul. Grunwaldzka 14", "80-236", "Gdańsk", "9945", "PL5842719364", "0000412345", "KE-ZAKUPY"),
    1007: _P("14 Brindleyplace", "B1 2HZ", "Birmingham", "9932", "GB284719305", "08412345", "HF-AP-01"),
    1008: _P("1 Canada Square", "E14 5AB", "London", "0088", "5012345000015", "02345678", "PR-AP-LDN"),
    1009: _P("9 Union Street", "AB11 6BD", "Aberdeen", "9932", "GB415820937", "SC412345", "TE-FIN-09"),
    1010: _P("500 Boylston Street", "02116", "Boston, MA", "0060", "081466849", "", "NW-AP-BOS"),
    1011: _P("2200 Bardstown Road", "40205", "Louisville, KY", "0088", "0614141000012", "", "BMS-AP"),
    1012: _P("Bahnhofstrasse 45", "8001", "Zürich", "0183", "CHE113428596", "CHE-113.428.596", "AV-KRED"),
    1013: _P("Industriestrasse 7", "3930", "Visp", "0183", "CHE245871903", "CHE-245.871.903", "MP-EINKAUF"),
    1014: _P("3 quai des Chartrons", "33000", "Bordeaux", "0009", "83051246700015", "830512467", "OC-COMPTA"),
    1015: _P("27 rue de la République", "69002", "Lyon", "0009", "44390281500021", "443902815", "BRUNET"),
    1016: _P("110 boulevard Haussmann", "75008", "Paris", "0009", "39102755400034", "391027554", "GVI-CF"),
    1017: _P("Mannerheimintie 12", "00100", "Helsinki", "0216", "003727481930", "2748193-0", "KS-OSTOT"),
    1018: _P("Rua de Santa Catarina 512", "4000-446", "Porto", "9946", "PT509482713", "509482713", "DT-COMP"),
    1019: _P("8 rue du Faubourg Saint-Denis", "75010", "Paris", "0009", "85203971600012", "852039716", "BDF"),
    1020: _P("Wiedner Hauptstraße 64", "1040", "Wien", "9914", "ATU68413927", "FN 412345x", "KP-EINKAUF"),
}
# fmt: on
# Large buyers whose AP refuses invoices without their purchase order number.
_PO_REQUIRED = frozenset({1001, 1007, 1008, 1016, 1020})

# A table reads better one customer a line, hence no formatter here.
# ref, name, country, currency, terms (days), AP contact, e-mail domain, address, VAT id, business weight
# fmt: off
DEMO_CUSTOMERS: list[DemoCustomer] = [
    _customer(1001, "Bergmann Logistik GmbH", "DE", "EUR", 30, "Katrin Vogel", "bergmann-logistik",
              "Hafenstraße 12, 20457 Hamburg", "DE287451936", 9),
    _customer(1002, "Lumière Hôtels SA", "FR", "EUR", 45, "Élodie Marchand", "lumiere-hotels",
              "42 avenue Jean Médecin, 06000 Nice", "FR72512345678", 8),
    _customer(1003, "Castellano Alimentación S.L.", "ES", "EUR", 60, "Javier Ortega", "castellano",
              "Calle de Alcalá 210, 28028 Madrid", "ESB84512397", 5),
    _customer(1004, "Van Dijk Bouw B.V.", "NL", "EUR", 30, "Pieter de Groot", "vandijk-bouw",
              "Keizersgracht 301, 1016 ED Amsterdam", "NL853412907B01", 6),
    _customer(1005, "Rossi Meccanica S.p.A.", "IT", "EUR", 60, "Giulia Ferraro", "rossi-meccanica",
              "Via Torino 88, 10036 Settimo Torinese", "IT04518230018", 6),
    _customer(1006, "Kowalski Elektro Sp. z o.o.", "PL", "EUR", 30, "Marta Nowak", "kowalski-elektro",
              "ul. Grunwaldzka 14, 80-236 Gdańsk", "PL5842719364", 3),
    _customer(1007, "Hartley & Finch Ltd", "GB", "GBP", 30, "Oliver Hartley", "hartley-finch",
              "14 Brindleyplace, Birmingham B1 2HZ", "GB284719305", 5),
    _customer(1008, "Pembroke Retail plc", "GB", "GBP", 45, "Accounts Payable team", "pembroke-retail",
              "1 Canada Square, London E14 5AB", "GB731904826", 7),
    _customer(1009, "Thistle Energy Ltd", "GB", "GBP", 15, "Fiona MacLeod", "thistle-energy",
              "9 Union Street, Aberdeen AB11 6BD", "GB415820937", 3),
    _customer(1010, "Northwind Analytics Inc.", "US", "USD", 30, "Rebecca Alvarez", "northwind-analytics",
              "500 Boylston Street, Boston, MA 02116", "", 5),
    _customer(1011, "Bluegrass Medical Supply LLC", "US", "USD", 45, "Daniel Whitaker", "bluegrass-medical",
              "2200 Bardstown Road, Louisville, KY 40205", "", 3),
    _customer(1012, "Alpenblick Versicherungen AG", "CH", "CHF", 30, "Reto Baumann", "alpenblick",
              "Bahnhofstrasse 45, 8001 Zürich", "CHE-113.428.596 MWST", 5),
    _customer(1013, "Matterhorn Präzision AG", "CH", "CHF", 60, "Andrea Imboden", "matterhorn-praezision",
              "Industriestrasse 7, 3930 Visp", "CHE-245.871.903 MWST", 3),
    _customer(1014, "Océane Cosmétiques SAS", "FR", "EUR", 30, "Claire Fontaine", "oceane-cosmetiques",
              "3 quai des Chartrons, 33000 Bordeaux", "FR29830512467", 7),
    _customer(1015, "Atelier Brunet SARL", "FR", "EUR", 15, "Luc Brunet", "atelier-brunet",
              "27 rue de la République, 69002 Lyon", "FR61443902815", 3),
    _customer(1016, "Groupe Vauban Immobilier SA", "FR", "EUR", 60, "Hélène Rousseau", "vauban-immobilier",
              "110 boulevard Haussmann, 75008 Paris", "FR83391027554", 6),
    _customer(1017, "Kestrel Software Oy", "FI", "EUR", 30, "Mikko Laine", "kestrel-software",
              "Mannerheimintie 12, 00100 Helsinki", "FI27481930", 4),
    _customer(1018, "Duarte Têxteis Lda", "PT", "EUR", 45, "Ana Duarte", "duarte-texteis",
              "Rua de Santa Catarina 512, 4000-446 Porto", "PT509482713", 3),
    _customer(1019, "Brasserie du Faubourg SAS", "FR", "EUR", 15, "Antoine Girard", "brasserie-faubourg",
              "8 rue du Faubourg Saint-Denis, 75010 Paris", "FR14852039716", 2),
    _customer(1020, "Kronberg Pharma GmbH", "AT", "EUR", 45, "Stefan Huber", "kronberg-pharma",
              "Wiedner Hauptstraße 64, 1040 Wien", "ATU68413927", 6),
]
# fmt: on

# Price lists are in EUR; other currencies are converted at these (rounded, demo) rates.
_FX = {"EUR": Decimal("1"), "GBP": Decimal("0.86"), "USD": Decimal("1.09"), "CHF": Decimal("0.96")}
_CENT = Decimal("0.01")


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
            body["exchange_rate"] = str((1 / _FX[self.customer.currency]).quantize(Decimal("0.000001")))
        return body


def _price(rng: random.Random, low: int, high: int, currency: str, step: int = 10) -> str:
    eur = Decimal(rng.randrange(low, high + 1, step))
    return str((eur * _FX[currency]).quantize(_CENT))


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
                str((Decimal(rng.randrange(18000, 142000)) / 100 * _FX[cur]).quantize(_CENT)),
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
                str((Decimal(eur) * _FX[cur] - Decimal("0.10")).quantize(_CENT)),
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


async def wait_healthy(base_url: str, timeout: float) -> None:  # noqa: ASYNC109 (a deadline with a message)
    """Poll /healthz until the API answers 200 (store, Temporal and a worker all reachable): seeding
    before the worker polls would leave every creation waiting on a workflow nobody runs."""
    _quiet_http_log()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "no answer"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while True:
            try:
                r = await client.get("/healthz")
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code} {r.text}"
            except httpx.HTTPError as exc:
                last = f"{exc.__class__.__name__}: {exc}"
            if loop.time() >= deadline:
                raise SystemExit(
                    f"Cashcycle at {base_url} is not healthy after {timeout:.0f}s "
                    f"(last answer from /healthz: {last}); see the logs"
                )
            await asyncio.sleep(0.5)


def _seed_directory(db_url: str) -> bool:
    """The legal entity, users and roles (idempotent). False, and nothing written, when the store
    already holds invoices: a second `up --demo` must not seed the demo again."""
    store = open_store(db_url)
    try:
        with reading(store) as session:
            if queries.count_invoices(session) > 0:
                return False
        with writing(store) as session:
            ensure_legal_entity(session, LegalEntity.model_validate(DEMO_ENTITY_ROW.model_dump()))
            for username, roles in DEMO_USERS:
                if session.get(User, username) is None:
                    full_name, email = _PEOPLE[username]
                    add_user(
                        session, username, DEMO_PASSWORD, DEMO_OPERATOR, full_name=full_name, email=email
                    )
                for role in roles:
                    grant(session, username, role, DEMO_ENTITY, DEMO_OPERATOR)
        return True
    finally:
        store.dispose()


class DemoSeedError(RuntimeError):
    """Seeding stopped: the API refused or failed a request the demo expected to succeed."""


@dataclass
class _Api:
    """The demo users' HTTP client: one token per user, bounded concurrency, retries of 503s and lost
    connections with the same Idempotency-Key (so a retried command is applied once)."""

    client: httpx.AsyncClient
    semaphore: asyncio.Semaphore
    tokens: dict[str, str] = field(default_factory=dict)

    async def login(self, username: str) -> None:
        r = await self.client.post(
            "/api/v1/auth/token", data={"username": username, "password": DEMO_PASSWORD}
        )
        if r.status_code != 200:
            raise DemoSeedError(f"demo user {username} cannot log in: HTTP {r.status_code} {r.text}")
        self.tokens[username] = r.json()["access_token"]

    async def call(
        self,
        username: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[username]}"}
        if key:
            headers["Idempotency-Key"] = key
        problem = ""
        for attempt in range(6):
            try:
                async with self.semaphore:
                    r = await self.client.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:
                problem = f"{exc.__class__.__name__}: {exc}"
            else:
                if r.status_code in (200, 201):
                    result: dict[str, Any] = r.json()
                    return result
                problem = f"HTTP {r.status_code} {r.text}"
                if r.status_code != 503:
                    break
            await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
        raise DemoSeedError(f"demo seeding failed: {username} {method} {path}: {problem}")


class _Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def say(self, message: str) -> None:
        if self.enabled:
            print(f"  {message}", flush=True)

    def counter(self, what: str, total: int) -> Callable[[], None]:
        done = 0
        step = max(1, total // 10)

        def tick() -> None:
            nonlocal done
            done += 1
            if done % step == 0 or done == total:
                self.say(f"{what}: {done}/{total}")

        return tick


def _approver_for(inv: PlannedInvoice) -> str:
    """Who sends it back when it is wrong: the most senior tier the amount reaches."""
    return _approvers_for(inv)[-1]


_SIGNER = {"ar_approver": "approver", "finance_manager": "approver2", "controller": "controller"}


def _approvers_for(inv: PlannedInvoice) -> list[str]:
    """Who signs it off, tier by tier, as the default approval matrix requires: an AR approver up to
    10,000 EUR, then a finance manager up to 100,000, then the controller; a different person each."""
    eur = inv.total / _FX[inv.customer.currency]
    chain = ["approver"]
    if eur > 10_000:
        chain.append("approver2")
    if eur > 100_000:
        chain.append("controller")
    return chain


_VOID_REASONS = (
    "Duplicate of an invoice already sent for the same order",
    "Customer cancelled the order before delivery",
    "Billed to the wrong customer account; reissued under the right one",
)


async def _wait_delivered(api: _Api, inv: PlannedInvoice, within: float = 180.0) -> None:
    """After approval the workflow delivers by e-mail on its own; payments apply only once submitted."""
    inv.status = await _wait_sent(api, inv.invoice_id, inv.number or inv.external_id, within)


async def _wait_sent(api: _Api, invoice_id: str, label: str, within: float) -> str:
    """Wait for an approved invoice to leave (delivered, or refused at a portal's door); its status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pause = 0.2
    while True:
        state = await api.call("supervisor", "GET", f"/api/v1/invoices/{invoice_id}")
        if state["status"] != "approved":
            status: str = state["status"]
            return status
        if loop.time() >= deadline:
            raise DemoSeedError(f"invoice {label} was not delivered within {within:.0f}s; see the worker log")
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 2.0)


async def _move(api: _Api, inv: PlannedInvoice, rng: random.Random) -> None:
    """Take a created draft to its planned pre-payment status, as the AR team would."""
    base = f"/api/v1/invoices/{inv.invoice_id}"
    key = f"demo-{inv.external_id}"

    async def act(user: str, action: str, body: dict[str, Any] | None = None, n: int = 1) -> None:
        state = await api.call(user, "POST", f"{base}/{action}", body, key=f"{key}-{action}-{n}")
        inv.status = state["status"]

    if inv.target == "void" and not inv.void_after_submit:
        await act("preparer", "void", {"reason": rng.choice(_VOID_REASONS)})
        return
    if inv.rejected_first:
        # The approver sends it back for its purchase order; the preparer fixes it and, unless it is
        # to stay a draft, submits it again (the ledger shows the whole loop).
        await act("preparer", "submit")
        if inv.po_number is None:
            reason, comment = "PO number missing: the customer's AP rejects invoices without one", "PO added"
        else:
            reason, comment = "PO number does not match the customer's order confirmation", "PO corrected"
        await act(_approver_for(inv), "reject", {"reason": reason})
        fixed_po = f"PO-{rng.randrange(10000, 99999)}"
        state = await api.call("preparer", "PATCH", base, {"po_number": fixed_po}, key=f"{key}-edit-1")
        inv.status = state["status"]
        if inv.target == "draft":
            return
        await act("preparer", "submit", {"comment": f"{comment}; resubmitted"}, n=2)
    elif inv.target == "draft":
        return
    else:
        await act("preparer", "submit")
    if inv.target == "pending_approval":
        return
    if inv.target == "void":
        await act("preparer", "void", {"reason": rng.choice(_VOID_REASONS)})
        return
    # The tiers are the ones the workflow planned from the matrix at submission: follow its chain.
    state = await api.call("supervisor", "GET", base)
    for step in state["approval"]["steps"]:
        comment = rng.choice(["", "OK", "Checked against the PO", "Matches the delivery note"])
        await act(
            _SIGNER[step["role"]], "approve", {"comment": comment, "tier": step["tier"]}, n=step["tier"]
        )
    if inv.target != "approved":
        await _wait_delivered(api, inv)


def _bank_reference(rng: random.Random, currency: str) -> str:
    scheme = {"EUR": "SEPA CT", "GBP": "BACS", "USD": "ACH", "CHF": "SIC"}[currency]
    return f"{scheme} {rng.randrange(10**9, 10**10)}"


def _money(amount: Decimal) -> str:
    return str(amount.quantize(_CENT))


@dataclass
class _Receipt:
    customer: DemoCustomer
    received_on: date
    reference: str
    allocations: list[tuple[PlannedInvoice, Decimal]]


def plan_receipts(invoices: list[PlannedInvoice], rng: random.Random, today: date) -> list[list[_Receipt]]:
    """The receipts the ERP reports, as chains: the receipts of one chain touch the same invoice and
    are recorded in order; chains run concurrently. A customer often pays several invoices at once."""
    chains: list[list[_Receipt]] = []
    for inv in invoices:
        if inv.target == "partially_paid":
            part = (inv.total * inv.partial_share).quantize(Decimal(1))
            part = min(max(part, Decimal(1)), inv.total - _CENT)
            received = min(today, inv.due_date + timedelta(days=rng.randint(-5, 20)))
            received = max(received, inv.issue_date + timedelta(days=1))
            chains.append(
                [_Receipt(inv.customer, received, _bank_reference(rng, inv.customer.currency), [(inv, part)])]
            )
        elif inv.target == "paid" and inv.installments == 2:
            assert inv.paid_on is not None
            first = (inv.total / 2).quantize(Decimal(1))
            first_on = max(
                inv.issue_date + timedelta(days=1), inv.paid_on - timedelta(days=rng.randint(10, 30))
            )
            chains.append(
                [
                    _Receipt(
                        inv.customer, first_on, _bank_reference(rng, inv.customer.currency), [(inv, first)]
                    ),
                    _Receipt(
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
                    _Receipt(
                        batch[0].customer,
                        received,
                        _bank_reference(rng, batch[0].customer.currency),
                        [(i, i.total) for i in batch],
                    )
                ]
            )
    return chains


async def _record_chain(api: _Api, chain: list[_Receipt], customer_ids: dict[str, str], n: int) -> None:
    for k, receipt in enumerate(chain, start=1):
        amount = sum((a for _, a in receipt.allocations), Decimal(0))
        body = {
            "customer_id": customer_ids[receipt.customer.ref],
            "amount": _money(amount),
            "currency": receipt.customer.currency,
            "received_on": receipt.received_on.isoformat(),
            "reference": receipt.reference,
            "allocations": [
                {"invoice_id": inv.invoice_id, "amount": _money(a)} for inv, a in receipt.allocations
            ],
        }
        result = await api.call("erp", "POST", "/api/v1/payments", body, key=f"demo-receipt-{n}-{k}")
        by_id = {inv.invoice_id: inv for inv, _ in receipt.allocations}
        for alloc in result["allocations"]:
            by_id[alloc["invoice_id"]].status = alloc["invoice_status"]


async def _gather_all(tasks: list[Awaitable[None]]) -> None:
    """Run every task; on the first failure cancel the others so the error is reported at once."""
    running = [asyncio.ensure_future(t) for t in tasks]
    try:
        await asyncio.gather(*running)
    except BaseException:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise


def _quiet_http_log() -> None:
    """httpx logs every request at INFO: hundreds of lines that would bury the progress lines."""
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))


async def seed_if_empty(base_url: str, db_url: str, progress: bool = False) -> bool:
    """Seed the demo company unless the store already holds invoices; True when it seeded.
    SystemExit with the reason when a request the demo relies on is refused."""
    _quiet_http_log()
    try:
        return await _seed(base_url, db_url, _Progress(progress))
    except DemoSeedError as exc:
        raise SystemExit(str(exc)) from None


async def _seed(base_url: str, db_url: str, out: _Progress) -> bool:
    count = demo_invoice_count()
    if not await asyncio.to_thread(_seed_directory, db_url):
        out.say("the store already holds invoices: demo data is not seeded again")
        return False
    out.say(f"legal entity {DEMO_ENTITY} and {len(DEMO_USERS)} demo users ready")
    today = date.today()
    planned = plan_invoices(count, today)
    limits = httpx.Limits(max_connections=CONCURRENCY + 2)
    async with httpx.AsyncClient(base_url=base_url, timeout=90, limits=limits) as client:
        api = _Api(client, asyncio.Semaphore(CONCURRENCY))
        for username, _ in DEMO_USERS:
            await api.login(username)
        customer_ids: dict[str, str] = {}
        for customer in DEMO_CUSTOMERS:
            created = await api.call("erp", "POST", "/api/v1/customers", customer.body())
            customer_ids[customer.ref] = created["id"]
        out.say(f"customers: {len(customer_ids)} created by erp")
        await _create_and_move(api, planned, customer_ids, out)
        chains = plan_receipts(planned, random.Random(SEED + 1), today)
        if chains:
            tick = out.counter("receipts recorded by erp", len(chains))

            async def record(chain: list[_Receipt], n: int) -> None:
                await _record_chain(api, chain, customer_ids, n)
                tick()

            await _gather_all([record(chain, n) for n, chain in enumerate(chains, start=1)])

        if os.environ.get("CASHCYCLE_DEMO_PORTALS") == "1":
            await _seed_portals(api, out)

    wrong = [
        f"{inv.number} is {inv.status}, planned {inv.target}" for inv in planned if inv.status != inv.target
    ]
    if wrong:
        raise DemoSeedError("demo seeding left invoices in unexpected statuses: " + "; ".join(wrong[:10]))
    counts = {s: sum(1 for inv in planned if inv.status == s) for s in DEMO_STATUSES}
    out.say(
        f"demo data ready: {len(planned)} invoices ("
        + ", ".join(f"{s} {n}" for s, n in counts.items() if n)
        + ")"
    )
    return True


async def _create_and_move(
    api: _Api, planned: list[PlannedInvoice], customer_ids: dict[str, str], out: _Progress
) -> None:
    """Create the invoices one at a time in issue-date order (reproducible, chronological numbers);
    each created invoice moves on concurrently while the next ones are created."""
    tick = out.counter("invoices created and moved", len(planned))
    failed = asyncio.Event()
    moves: list[asyncio.Task[None]] = []

    async def move(inv: PlannedInvoice, n: int) -> None:
        try:
            # One generator per invoice: its choices do not depend on how the tasks interleave.
            await _move(api, inv, random.Random(SEED * 1000 + n))
        except BaseException:
            failed.set()
            raise
        tick()

    try:
        for n, inv in enumerate(planned):
            if failed.is_set():
                break
            created = await api.call(
                "erp", "POST", "/api/v1/invoices", inv.body(customer_ids[inv.customer.ref])
            )
            inv.invoice_id, inv.status = created["id"], created["status"]
            inv.number = created["number"] or inv.external_id  # numbered when issued
            inv.total = Decimal(created["total"])
            moves.append(asyncio.create_task(move(inv, n)))
        await _gather_all(list(moves))
    finally:
        for task in moves:
            task.cancel()
        await asyncio.gather(*moves, return_exceptions=True)


# -- the customer portals (`cashcycle up --demo` runs the portal simulator, `cashcycle portal-sim`) -------

# The simulated buyer: Initech GmbH, reachable through a Coupa-style API and an Ariba-style cXML network
# (api.portal_sim.default_scenario), with three purchase orders for consulting and travel. Its identity must
# match the orders' bill-to (VAT id), as a real portal checks.
_INITECH = {
    "legal_entity": DEMO_ENTITY,
    "currency": "EUR",
    "payment_terms_days": 30,
    "contact_name": "Kreditorenbuchhaltung",
    "country": "DE",
    "vat_id": "DE129273398",
    "street": "Lindenstrasse 5",
    "postal_code": "20095",
    "city": "Hamburg",
    "endpoint_scheme": "0088",
    "endpoint_id": "4000001000005",
    "company_id": "HRB 12345",
    "po_required": True,
}
PORTAL_CUSTOMERS = [
    {
        **_INITECH,
        "external_ref": "CUST-PORTAL-COUPA",
        "name": "Initech GmbH",
        "email": "ap@initech.example",
        "portal": "demo-coupa",
        "buyer_reference": "INITECH-AP",
    },
    {
        **_INITECH,
        "external_ref": "CUST-PORTAL-ARIBA",
        "name": "Initech GmbH (Ariba network)",
        "email": "ap-ariba@initech.example",
        "portal": "demo-ariba",
        "buyer_reference": "INITECH-ARIBA",
    },
]
# (customer, PO, lines, what the buyer will do): the first passes of a week's billing to Initech.
_CONSULTING, _TRAVEL = ("Consulting", "125.00"), ("Travel expenses", "310.55")
PORTAL_INVOICES: list[tuple[int, str, list[tuple[str, str, str]], str]] = [
    (0, "PO-4711", [(_CONSULTING[0], "8", _CONSULTING[1])], "accepted"),
    (0, "PO-4711", [(_CONSULTING[0], "6", "130.00")], "rejected: price not as ordered"),
    (0, "PO-4712", [(_CONSULTING[0], "12", _CONSULTING[1]), (_TRAVEL[0], "2", _TRAVEL[1])], "accepted"),
    (1, "PO-4713", [(_CONSULTING[0], "4", _CONSULTING[1])], "accepted"),
    (1, "PO-9999", [(_CONSULTING[0], "3", _CONSULTING[1])], "rejected: unknown PO"),
    (1, "PO-4712", [(_TRAVEL[0], "1", _TRAVEL[1])], "accepted"),
]


async def _seed_portals(api: _Api, out: _Progress) -> None:
    """Invoices to customers behind portals, approved today: they leave for the simulated portal at once,
    and their statuses move on in real time (received, in process, approved, payment scheduled, paid) as
    the portal poller brings them back; the ones the buyer refuses wait in portal_rejected for a fix."""
    ids = []
    for body in PORTAL_CUSTOMERS:
        created = await api.call("erp", "POST", "/api/v1/customers", body)
        ids.append(created["id"])
    today = date.today().isoformat()
    for n, (customer, po, lines, _fate) in enumerate(PORTAL_INVOICES, start=1):
        key = f"demo-portal-{n}"
        inv = await api.call(
            "erp",
            "POST",
            "/api/v1/invoices",
            {
                "external_id": f"BILL-PORTAL-{n:04d}",
                "customer_id": ids[customer],
                "currency": "EUR",
                "issue_date": today,
                "po_number": po,
                "lines": [
                    {"description": d, "quantity": q, "unit_price": p, "tax_rate": "19"} for d, q, p in lines
                ],
            },
            key=key,
        )
        base = f"/api/v1/invoices/{inv['id']}"
        await api.call("preparer", "POST", f"{base}/submit", None, key=f"{key}-submit")
        state = await api.call("supervisor", "GET", base)
        for step in state["approval"]["steps"]:
            await api.call(
                _SIGNER[step["role"]], "POST", f"{base}/approve", {"tier": step["tier"]}, key=f"{key}-approve"
            )
        await _wait_sent(api, inv["id"], f"BILL-PORTAL-{n:04d}", 120)
    out.say(f"portals: {len(PORTAL_INVOICES)} invoices sent to Initech's portals (Coupa-style, cXML)")

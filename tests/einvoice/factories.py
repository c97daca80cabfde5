"""Invoice documents for the e-invoice tests: keyword-only factories with fixed defaults, realistic parties
(valid check digits, VAT ids with their country prefix), and a seeded generator of random but realistic
invoices and credit notes across countries, currencies, VAT categories and rounding edges."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal
from typing import Literal

from activities.documents import DocumentLine, InvoiceDocument, Party
from activities.einvoice import EU_VAT_AREA, STANDARD
from activities.money import exponent, line_amounts, tax_by_rate


def piva(first_ten: str) -> str:
    """An Italian VAT number (partita IVA) with its check digit."""
    total = 0
    for i, c in enumerate(first_ten):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return first_ten + str((10 - total % 10) % 10)


# Legal entities of a group issuing invoices: one per country, with what each country's Peppol rules need.
SELLERS: dict[str, Party] = {
    "FR": Party(
        name="Acme Industrie SAS",
        country="FR",
        vat_id="FR40123456789",
        street="18 rue des Entrepreneurs",
        city="Lyon",
        postal_code="69007",
        endpoint_scheme="0009",
        endpoint_id="12345678900017",
        company_id="123456789",
    ),
    "DE": Party(
        name="Nordlicht Maschinenbau GmbH",
        country="DE",
        vat_id="DE811569869",
        street="Am Wall 120",
        city="Bremen",
        postal_code="28195",
        endpoint_scheme="9930",
        endpoint_id="DE811569869",
        company_id="HRB 31745",
        contact_name="Debitorenbuchhaltung",
        telephone="+49 421 3360 120",
        email="debitoren@nordlicht-maschinenbau.example",
    ),
    "BE": Party(
        name="Brabant Data NV",
        country="BE",
        vat_id="BE0477472701",
        street="Tiensestraat 41",
        city="Leuven",
        postal_code="3000",
        endpoint_scheme="0208",
        endpoint_id="0477472701",
        company_id="0477472701",
    ),
    "AT": Party(
        name="Donau Systeme GmbH",
        country="AT",
        vat_id="ATU57412369",
        street="Landstraße 49",
        city="Linz",
        postal_code="4020",
        endpoint_scheme="9914",
        endpoint_id="ATU57412369",
        company_id="FN 204512k",
    ),
    "ES": Party(
        name="Iberia Componentes S.A.",
        country="ES",
        vat_id="ESA46103834",
        street="Avenida del Puerto 180",
        city="Valencia",
        postal_code="46023",
        endpoint_scheme="9920",
        endpoint_id="ESA46103834",
    ),
    "IT": Party(
        name="Lombardia Strumenti S.r.l.",
        country="IT",
        vat_id="IT" + piva("0764352056"),
        street="Via Solferino 32",
        city="Milano",
        postal_code="20121",
        endpoint_scheme="0211",
        endpoint_id="IT" + piva("0764352056"),
    ),
    "FI": Party(
        name="Saimaa Analytics Oy",
        country="FI",
        vat_id="FI24816935",
        street="Hämeenkatu 9",
        city="Tampere",
        postal_code="33100",
        endpoint_scheme="0216",
        endpoint_id="003724816935",
        company_id="2481693-5",
    ),
    "SE": Party(
        name="Göta Verktyg AB",
        country="SE",
        vat_id="SE556065340301",
        street="Lindholmspiren 5",
        city="Göteborg",
        postal_code="417 56",
        endpoint_scheme="0007",
        endpoint_id="5560653403",
        company_id="5560653403",
    ),
    "NO": Party(
        name="Fjord Energi AS",
        country="NO",
        vat_id="NO984363214MVA",
        street="Bryggen 15",
        city="Bergen",
        postal_code="5003",
        endpoint_scheme="0192",
        endpoint_id="984363214",
        company_id="984363214",
    ),
    "PT": Party(
        name="Tejo Serviços Lda",
        country="PT",
        vat_id="PT514208791",
        street="Avenida da Liberdade 110",
        city="Lisboa",
        postal_code="1250-146",
        endpoint_scheme="9946",
        endpoint_id="PT514208791",
    ),
    "IE": Party(
        name="Liffey Software Ltd",
        country="IE",
        vat_id="IE6388047V",
        street="25 Sir John Rogerson's Quay",
        city="Dublin",
        postal_code="D02 HK44",
        endpoint_scheme="9935",
        endpoint_id="IE6388047V",
    ),
    "PL": Party(
        name="Wisła Logistyka Sp. z o.o.",
        country="PL",
        vat_id="PL6762468751",
        street="ul. Wielicka 28",
        city="Kraków",
        postal_code="30-552",
        endpoint_scheme="9945",
        endpoint_id="PL6762468751",
    ),
}

# Customers in and out of the EU, with the endpoint schemes their countries use.
BUYERS: dict[str, Party] = {
    "DE": Party(
        name="Bergmann Logistik GmbH",
        country="DE",
        vat_id="DE287451936",
        street="Hafenstraße 12",
        city="Hamburg",
        postal_code="20457",
        endpoint_scheme="9930",
        endpoint_id="DE287451936",
        email="ap@bergmann-logistik.example",
        contact_name="Katrin Vogel",
    ),
    "FR": Party(
        name="Lumière Hôtels SA",
        country="FR",
        vat_id="FR72512345678",
        street="42 avenue Jean Médecin",
        city="Nice",
        postal_code="06000",
        endpoint_scheme="0009",
        endpoint_id="51234567800027",
        company_id="512345678",
    ),
    "NL": Party(
        name="Van Dijk Bouw B.V.",
        country="NL",
        vat_id="NL853412907B01",
        street="Keizersgracht 301",
        city="Amsterdam",
        postal_code="1016 ED",
        endpoint_scheme="0106",
        endpoint_id="34512907",
    ),
    "BE": Party(
        name="Gentse Brouwerij BV",
        country="BE",
        vat_id="BE0872356434",
        city="Gent",
        endpoint_scheme="0208",
        endpoint_id="0872356434",
    ),
    "SE": Party(
        name="Norrland Trä AB",
        country="SE",
        vat_id="SE556123459101",
        city="Umeå",
        postal_code="903 26",
        endpoint_scheme="0007",
        endpoint_id="5561234591",
    ),
    "NO": Party(
        name="Bergen Havn AS",
        country="NO",
        vat_id="NO974156326MVA",
        city="Bergen",
        endpoint_scheme="0192",
        endpoint_id="974156326",
    ),
    "DK": Party(
        name="Aarhus Design ApS",
        country="DK",
        vat_id="DK31274593",
        street="Åboulevarden 23",
        city="Aarhus",
        postal_code="8000",
        endpoint_scheme="0184",
        endpoint_id="DK31274593",
    ),
    "IT": Party(
        name="Rossi Meccanica S.p.A.",
        country="IT",
        vat_id="IT04518230018",
        city="Settimo Torinese",
        endpoint_scheme="0211",
        endpoint_id="IT04518230018",
    ),
    "ES": Party(
        name="Castellano Alimentación S.L.",
        country="ES",
        vat_id="ESB84512397",
        city="Madrid",
        endpoint_scheme="9920",
        endpoint_id="ESB84512397",
    ),
    "AT": Party(
        name="Kronberg Pharma GmbH",
        country="AT",
        vat_id="ATU68413927",
        street="Wiedner Hauptstraße 64",
        city="Wien",
        postal_code="1040",
        endpoint_scheme="9914",
        endpoint_id="ATU68413927",
    ),
    "FI": Party(
        name="Kestrel Software Oy",
        country="FI",
        vat_id="FI27481930",
        city="Helsinki",
        endpoint_scheme="0216",
        endpoint_id="003727481930",
    ),
    "PT": Party(
        name="Duarte Têxteis Lda",
        country="PT",
        vat_id="PT509482713",
        city="Porto",
        endpoint_scheme="9946",
        endpoint_id="PT509482713",
    ),
    "IE": Party(
        name="Shannon Medical Devices Ltd",
        country="IE",
        vat_id="IE3206488LH",
        city="Limerick",
        endpoint_scheme="0088",
        endpoint_id="5391234567892",
    ),
    "PL": Party(
        name="Kowalski Elektro Sp. z o.o.",
        country="PL",
        vat_id="PL5842719364",
        street="ul. Grunwaldzka 14",
        city="Gdańsk",
        postal_code="80-236",
        endpoint_scheme="9945",
        endpoint_id="PL5842719364",
    ),
    "GB": Party(
        name="Pembroke Retail plc",
        country="GB",
        vat_id="GB731904826",
        street="1 Canada Square",
        city="London",
        postal_code="E14 5AB",
        endpoint_scheme="0088",
        endpoint_id="5012345000015",
    ),
    "US": Party(
        name="Northwind Analytics Inc.",
        country="US",
        street="500 Boylston Street",
        city="Boston, MA",
        postal_code="02116",
        endpoint_scheme="0060",
        endpoint_id="081466849",
    ),
    "CH": Party(
        name="Alpenblick Versicherungen AG",
        country="CH",
        vat_id="CHE-113.428.596 MWST",
        city="Zürich",
        endpoint_scheme="0183",
        endpoint_id="CHE113428596",
    ),
    "AU": Party(
        name="Koala Freight Pty Ltd",
        country="AU",
        city="Brisbane",
        endpoint_scheme="0151",
        endpoint_id="51824753556",
    ),
    "JP": Party(
        name="Sakura Trading K.K.",
        country="JP",
        city="Osaka",
        endpoint_scheme="0088",
        endpoint_id="4569951116179",
    ),
}

# Standard and reduced VAT rates by seller country (percent).
RATES: dict[str, tuple[str, ...]] = {
    "FR": ("20", "10", "5.5", "2.1"),
    "DE": ("19", "7"),
    "BE": ("21", "12", "6"),
    "AT": ("20", "13", "10"),
    "ES": ("21", "10", "4"),
    "IT": ("22", "10", "5", "4"),
    "FI": ("25.5", "14", "10"),
    "SE": ("25", "12", "6"),
    "NO": ("25", "15", "12"),
    "PT": ("23", "13", "6"),
    "IE": ("23", "13.5", "9", "4.8"),
    "PL": ("23", "8", "5"),
}
# The currencies a buyer in each country is invoiced in (besides the seller's euro).
BUYER_CURRENCIES: dict[str, tuple[str, ...]] = {
    "SE": ("SEK",),
    "NO": ("NOK",),
    "DK": ("DKK",),
    "GB": ("GBP",),
    "US": ("USD",),
    "CH": ("CHF",),
    "AU": ("AUD",),
    "JP": ("JPY",),
}
ITEMS = (
    ("Consulting, senior consultant", "DAY"),
    ("Project management", "HUR"),
    ("Cashflow Analytics licence, annual seat", "C62"),
    ("Barcode scanner ZX-200", "C62"),
    ("Thermal label printer LP-4", "C62"),
    ("Managed support retainer", "MON"),
    ("Freight, pallets", "C62"),
    ("Hydraulic hose, per metre", "MTR"),
    ("Diesel fuel", "LTR"),
    ("Steel brackets", "KGM"),
)


# --- factories -------------------------------------------------------------------------------------------


def line(
    *,
    line_no: int = 1,
    description: str = "Consulting, October",
    quantity: str = "10",
    unit_price: str = "125.00",
    tax_rate: str = "20",
    tax_category: str = STANDARD,
    currency: str = "EUR",
    unit_code: str = "C62",
) -> DocumentLine:
    """A line whose net is computed as the API computes it (money.line_amounts)."""
    net = line_amounts(Decimal(quantity), Decimal(unit_price), Decimal(tax_rate), currency).net_minor
    return DocumentLine(
        line_no=line_no,
        description=description,
        quantity=quantity,
        unit_price=unit_price,
        net_minor=net,
        tax_rate=tax_rate,
        tax_category=tax_category,
        unit_code=unit_code,
    )


def document(
    *,
    kind: Literal["invoice", "credit_note"] = "invoice",
    number: str = "INV-2026-000042",
    currency: str = "EUR",
    supplier: Party = SELLERS["FR"],
    customer: Party = BUYERS["FR"],
    lines: tuple[DocumentLine, ...] | None = None,
    po_number: str = "PO-4711",
    buyer_reference: str = "",
    preceding_invoice: str = "",
    delivery_date: str = "",
    payee_iban: str = "FR7630006000011234567890189",
    exemption_reason: str = "",
) -> InvoiceDocument:
    """A document whose totals are computed the EN 16931 way: tax per (category, rate) on summed nets."""
    lines = lines if lines is not None else (line(currency=currency),)
    subtotal = sum(ln.net_minor for ln in lines)
    tax = sum(
        tax_by_rate(
            (Decimal(ln.tax_rate), ln.net_minor) for ln in lines if ln.tax_category == STANDARD
        ).values()
    )
    return InvoiceDocument(
        kind=kind,
        id=f"id-{number}",
        number=number,
        issue_date="2026-11-02",
        due_date="2026-12-02",
        currency=currency,
        supplier=supplier,
        customer=customer,
        lines=lines,
        subtotal_minor=subtotal,
        tax_total_minor=tax,
        total_minor=subtotal + tax,
        po_number=po_number,
        buyer_reference=buyer_reference,
        payment_terms="Payment within 30 days of the invoice date",
        payee_iban=payee_iban,
        preceding_invoice=preceding_invoice,
        delivery_date=delivery_date,
        exemption_reason=exemption_reason,
    )


# --- the generator ---------------------------------------------------------------------------------------


def _decimal_text(value: Decimal) -> str:
    return format(value, "f")


def _quantity(rng: random.Random) -> str:
    shape = rng.random()
    if shape < 0.5:
        return str(rng.randint(1, 60))
    if shape < 0.75:
        return _decimal_text(Decimal(rng.randint(1, 160)) / 4)  # quarter days or hours
    if shape < 0.9:
        return _decimal_text(Decimal(rng.randint(1, 99_999)) / 1000)  # litres, kilograms, metres
    return str(rng.choice([100, 250, 1000, 5000]))


def _price(rng: random.Random, currency: str) -> str:
    places = exponent(currency)
    scale = {"JPY": 150, "SEK": 11, "NOK": 11, "DKK": 7, "PLN": 4}.get(currency, 1)
    shape = rng.random()
    if shape < 0.15:  # prices with more places than the currency: nets round, halves included
        value = Decimal(rng.randint(1, 99_999)) / 1000 * scale
        return _decimal_text(value.quantize(Decimal("0.0001")))
    if shape < 0.25:  # half a minor unit exactly: the rounding rule decides
        return _decimal_text((Decimal(rng.randint(1, 9999)) + Decimal("0.5")).scaleb(-places))
    value = Decimal(rng.randint(50, 250_000)) / 100 * scale
    return _decimal_text(value.quantize(Decimal(1).scaleb(-places)))


def _category(rng: random.Random, seller: Party, buyer: Party) -> tuple[str, str]:
    """(category, rate) of a line between these parties, as a business would have it."""
    rates = RATES[seller.country]
    if buyer.country == seller.country:
        draw = rng.random()
        if draw < 0.08:
            return "Z", "0"
        if draw < 0.15:
            return "E", "0"
        return STANDARD, rng.choice(rates)
    if seller.country in EU_VAT_AREA and buyer.country in EU_VAT_AREA:
        return "AE", "0"  # services to a business in another member state: the buyer accounts for VAT
    return "G", "0"


def random_document(rng: random.Random, n: int) -> InvoiceDocument:
    """The n-th random document: an invoice or a credit note between two realistic parties, with 1 to 40
    lines (sometimes up to 300), in the seller's or the buyer's currency."""
    seller = SELLERS[rng.choice(sorted(SELLERS))]
    # Half the business is domestic (standard and reduced rates, zero-rated and exempt lines).
    buyer = BUYERS[seller.country if rng.random() < 0.5 else rng.choice(sorted(BUYERS))]
    if buyer.country == seller.country == "DE":
        buyer = replace(buyer, city=buyer.city or "Hamburg", postal_code=buyer.postal_code or "20457")
    currency = rng.choice(("EUR", *BUYER_CURRENCIES.get(buyer.country, ())))
    if seller.country in ("SE", "NO", "PL") and rng.random() < 0.5:
        currency = {"SE": "SEK", "NO": "NOK", "PL": "PLN"}[seller.country]
    kind: Literal["invoice", "credit_note"] = "credit_note" if rng.random() < 0.25 else "invoice"
    count = rng.randint(150, 300) if rng.random() < 0.1 else rng.randint(1, 40)
    intra_community_goods = (
        buyer.country != seller.country
        and seller.country in EU_VAT_AREA
        and buyer.country in EU_VAT_AREA
        and rng.random() < 0.3
    )
    # Norway's rules want the seller's VAT id on every document (NO-R-001): no "not subject to VAT" there.
    not_subject = seller.country != "NO" and rng.random() < 0.04
    lines = []
    for i in range(1, count + 1):
        category, rate = _category(rng, seller, buyer)
        if intra_community_goods:
            category = "K"
        if not_subject:
            category, rate = "O", "0"
        description, unit = rng.choice(ITEMS)
        quantity = _quantity(rng)
        if kind == "invoice" and i > 1 and rng.random() < 0.05:
            quantity = "-" + quantity  # a correction or discount line on an invoice
            description = f"Credit for returned goods: {description}"
        lines.append(
            line(
                line_no=i,
                description=description,
                quantity=quantity,
                unit_price=_price(rng, currency),
                tax_rate=rate,
                tax_category=category,
                currency=currency,
                unit_code=unit,
            )
        )
    if not_subject:  # outside the scope of VAT: no VAT ids at all (BR-O-02); registration number instead
        seller = replace(seller, vat_id="", company_id=seller.company_id or "REG-1234567")
        buyer = replace(buyer, vat_id="")
    prefix = "CN" if kind == "credit_note" else "INV"
    doc = document(
        kind=kind,
        number=f"{prefix}-2026-{n:06d}",
        currency=currency,
        supplier=seller,
        customer=buyer,
        lines=tuple(lines),
        po_number=rng.choice(["", f"4500{rng.randint(100000, 999999)}", f"PO-{rng.randint(10000, 99999)}"]),
        buyer_reference=rng.choice(["", "KST-4410", "AP-EU-01", "0150abc"]),
        preceding_invoice=f"INV-2026-{rng.randint(1, n + 1):06d}" if kind == "credit_note" else "",
        delivery_date="2026-10-28" if intra_community_goods or rng.random() < 0.3 else "",
        payee_iban=rng.choice(["", "DE89370400440532013000", "FR7630006000011234567890189"]),
        exemption_reason=rng.choice(["", "Article 135(1)(g) of Directive 2006/112/EC"]),
    )
    if not (doc.po_number or doc.buyer_reference):
        doc = replace(doc, buyer_reference="AP-DEFAULT")  # Peppol needs one of the two
    if seller.country == buyer.country == "DE":
        doc = replace(doc, buyer_reference=doc.buyer_reference or "04011000-12345-67")
        doc = replace(doc, payee_iban=doc.payee_iban or "DE89370400440532013000")
    return doc

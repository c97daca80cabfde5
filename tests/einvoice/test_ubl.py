"""Every UBL document Cashcycle emits passes the official validators: the CEN EN 16931 UBL rules and the
Peppol BIS Billing 3.0 rules (no fatal assertion), and the UBL 2.1 schema; read back, its totals recompute
to what it states. Documents that could not pass are refused before any XML is written, saying why."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

import pytest
from lxml import etree  # type: ignore[import-untyped, unused-ignore]

from activities.documents import InvoiceDocument
from activities.einvoice import (
    CAC,
    CBC,
    CREDIT_NOTE_NS,
    CUSTOMIZATION_ID,
    INVOICE_NS,
    PROFILE_ID,
    EInvoiceError,
    document_problems,
    parse_ubl,
    render_ubl,
)
from activities.einvoice_validation import validate_en16931
from activities.money import round_minor, tax_minor, to_minor
from tests.einvoice.conftest import OfficialValidators, UblSchemas
from tests.einvoice.factories import BUYERS, SELLERS, document, line, random_document

NS = {"cac": CAC, "cbc": CBC}
SEED = 20261123
GENERATED = 40


def assert_valid(xml: bytes, official: OfficialValidators, schemas: UblSchemas) -> None:
    assert schemas.errors(xml) == []
    fatal = official.fatal(xml)
    assert fatal == [], "\n".join(f"{f.id}: {f.text} at {f.location}" for f in fatal)


def assert_totals(xml: bytes, doc: InvoiceDocument) -> None:
    """Read back: the recomputed totals are the stated ones, which are the document's own figures."""
    parsed = parse_ubl(xml)
    assert parsed.recomputed == parsed.stated
    stated = parsed.stated
    assert [to_minor(a, doc.currency) for a in (stated.line_extension, stated.tax, stated.payable)] == [
        doc.subtotal_minor,
        doc.tax_total_minor,
        doc.amount_due_minor,
    ]
    assert parsed.kind == doc.kind and parsed.number == doc.number and parsed.currency == doc.currency


# --- many documents, drawn at random ---------------------------------------------------------------------


def generated() -> list[InvoiceDocument]:
    rng = random.Random(SEED)
    return [random_document(rng, n) for n in range(1, GENERATED + 1)]


def test_the_generated_sample_covers_kinds_currencies_categories_and_long_documents() -> None:
    docs = generated()
    kinds = Counter(d.kind for d in docs)
    categories = Counter(ln.tax_category for d in docs for ln in d.lines)
    assert kinds["invoice"] and kinds["credit_note"]
    assert len({d.currency for d in docs}) >= 4
    assert {"S", "Z", "E", "AE", "G"} <= set(categories)
    assert max(len(d.lines) for d in docs) >= 150
    assert any(Decimal(ln.quantity) < 0 for d in docs for ln in d.lines)  # correction lines on invoices


@pytest.mark.parametrize("doc", generated(), ids=lambda d: f"{d.number}-{d.currency}-{len(d.lines)}lines")
def test_random_documents_pass_both_official_validators_and_read_back(
    doc: InvoiceDocument, official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    xml = render_ubl(doc)
    assert_valid(xml, official, ubl_schemas)
    assert_totals(xml, doc)
    assert [f for f in validate_en16931(xml) if f.fatal] == []  # the check the product runs agrees


# --- the shape of the document ---------------------------------------------------------------------------


def test_an_invoice_is_type_380_in_the_peppol_billing_profile() -> None:
    root = etree.fromstring(render_ubl(document()))
    assert root.tag == f"{{{INVOICE_NS}}}Invoice"
    assert root.findtext("cbc:CustomizationID", namespaces=NS) == CUSTOMIZATION_ID
    assert root.findtext("cbc:ProfileID", namespaces=NS) == PROFILE_ID
    assert root.findtext("cbc:InvoiceTypeCode", namespaces=NS) == "380"
    assert root.findtext("cbc:DueDate", namespaces=NS) == "2026-12-02"
    assert root.findtext("cac:OrderReference/cbc:ID", namespaces=NS) == "PO-4711"
    assert root.findtext("cac:PaymentMeans/cbc:PaymentID", namespaces=NS) == "INV-2026-000042"
    supplier = root.find("cac:AccountingSupplierParty/cac:Party", NS)
    assert supplier.find("cbc:EndpointID", NS).get("schemeID") == "0009"
    assert supplier.findtext("cac:PartyTaxScheme/cbc:CompanyID", namespaces=NS) == "FR40123456789"


def test_a_credit_note_is_type_381_and_names_the_invoice_it_corrects(
    official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    doc = document(kind="credit_note", number="CN-2026-000007", preceding_invoice="INV-2026-000042")
    xml = render_ubl(doc)
    root = etree.fromstring(xml)
    assert root.tag == f"{{{CREDIT_NOTE_NS}}}CreditNote"
    assert root.findtext("cbc:CreditNoteTypeCode", namespaces=NS) == "381"
    assert root.findtext("cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID", namespaces=NS) == (
        "INV-2026-000042"
    )
    assert root.find("cac:CreditNoteLine/cbc:CreditedQuantity", NS) is not None
    assert_valid(xml, official, ubl_schemas)
    assert_totals(xml, doc)


def test_yen_amounts_have_no_decimals_and_a_net_rounded_to_the_yen_is_priced_per_whole_quantity(
    official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    # 1.5 hours at 333 JPY is 499.5 JPY: the net is 500 JPY, which no unit price times 1.5 gives within the
    # Peppol rule's 0.02, so the price is stated for the whole quantity (base quantity 1.5).
    lines = (
        line(line_no=1, quantity="1.5", unit_price="333", tax_rate="0", tax_category="G", currency="JPY"),
        line(line_no=2, quantity="3", unit_price="12000", tax_rate="0", tax_category="G", currency="JPY"),
    )
    doc = document(currency="JPY", customer=BUYERS["JP"], lines=lines)
    xml = render_ubl(doc)
    root = etree.fromstring(xml)
    assert root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=NS) == "36500"
    first = root.find("cac:InvoiceLine", NS)
    assert first.findtext("cbc:LineExtensionAmount", namespaces=NS) == "500"
    assert first.findtext("cac:Price/cbc:PriceAmount", namespaces=NS) == "500"
    assert first.findtext("cac:Price/cbc:BaseQuantity", namespaces=NS) == "1.5"
    second = root.findall("cac:InvoiceLine", NS)[1]
    assert second.findtext("cac:Price/cbc:PriceAmount", namespaces=NS) == "12000"
    assert second.find("cac:Price/cbc:BaseQuantity", NS) is None
    assert_valid(xml, official, ubl_schemas)
    assert_totals(xml, doc)


def test_yen_tax_is_rounded_once_per_rate_to_whole_yen(
    official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    # A Japanese customer of a German seller's domestic-style invoice is unusual, but the arithmetic is the
    # point: 3 lines of 5 JPY at 19 % are 2.85 JPY of VAT, stated as 3 JPY (not 1 + 1 + 1).
    lines = tuple(
        line(line_no=i, quantity="1", unit_price="5", tax_rate="19", currency="JPY") for i in (1, 2, 3)
    )
    buyer = replace(BUYERS["DE"], name="Tanaka Handel GmbH")
    doc = document(
        currency="JPY",
        supplier=SELLERS["DE"],
        customer=buyer,
        lines=lines,
        buyer_reference="04011000-12345-67",
        payee_iban="DE89370400440532013000",
    )
    assert doc.tax_total_minor == 3
    xml = render_ubl(doc)
    assert etree.fromstring(xml).findtext("cac:TaxTotal/cbc:TaxAmount", namespaces=NS) == "3"
    assert_valid(xml, official, ubl_schemas)


@pytest.mark.parametrize(
    ("category", "seller", "buyer", "extra"),
    [
        ("S", "FR", "FR", {}),
        ("Z", "FR", "FR", {}),
        ("E", "BE", "BE", {"exemption_reason": "Article 44 of the Belgian VAT Code"}),
        ("AE", "FR", "DE", {}),
        ("K", "DE", "FR", {"delivery_date": "2026-10-28"}),
        ("G", "FR", "US", {}),
        ("O", "FR", "GB", {}),
    ],
)
def test_each_vat_category_gets_its_breakdown_and_exemption_reason(
    category: str,
    seller: str,
    buyer: str,
    extra: dict[str, str],
    official: OfficialValidators,
    ubl_schemas: UblSchemas,
) -> None:
    rate = "20" if category == "S" else "0"
    supplier, customer = SELLERS[seller], BUYERS[buyer]
    if category == "O":  # outside the scope of VAT: no VAT identifiers anywhere (BR-O-02)
        supplier, customer = replace(supplier, vat_id=""), replace(customer, vat_id="")
    lines = (
        line(line_no=1, tax_rate=rate, tax_category=category),
        line(line_no=2, quantity="3", unit_price="19.99", tax_rate=rate, tax_category=category),
    )
    doc = document(supplier=supplier, customer=customer, lines=lines, **extra)  # type: ignore[arg-type]
    xml = render_ubl(doc)
    subtotals = etree.fromstring(xml).findall("cac:TaxTotal/cac:TaxSubtotal", NS)
    assert [s.findtext("cac:TaxCategory/cbc:ID", namespaces=NS) for s in subtotals] == [category]
    reason = subtotals[0].findtext("cac:TaxCategory/cbc:TaxExemptionReason", namespaces=NS)
    assert (reason is None) == (category in ("S", "Z"))
    assert_valid(xml, official, ubl_schemas)
    assert_totals(xml, doc)


def test_one_breakdown_per_category_and_rate(official: OfficialValidators, ubl_schemas: UblSchemas) -> None:
    lines = (
        line(line_no=1, tax_rate="20"),
        line(line_no=2, tax_rate="10", unit_price="33.33"),
        line(line_no=3, tax_rate="5.5", unit_price="17.05"),
        line(line_no=4, tax_rate="20.0", unit_price="0.01"),  # the same rate written differently
        line(line_no=5, tax_rate="0", tax_category="Z"),
        line(line_no=6, tax_rate="0", tax_category="E"),
    )
    xml = render_ubl(document(lines=lines))
    subtotals = etree.fromstring(xml).findall("cac:TaxTotal/cac:TaxSubtotal", NS)
    keys = [
        (
            s.findtext("cac:TaxCategory/cbc:ID", namespaces=NS),
            s.findtext("cac:TaxCategory/cbc:Percent", namespaces=NS),
        )
        for s in subtotals
    ]
    assert keys == [("E", "0"), ("S", "5.5"), ("S", "10"), ("S", "20"), ("Z", "0")]
    assert_valid(xml, official, ubl_schemas)


def test_a_negative_half_of_tax_rounds_away_from_zero_as_the_validators_expect(
    official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    # At 10 %: +1.00 and -1.25 (a returned item) make a taxable -0.25, whose VAT is -0.025. The validators
    # expect round(abs(-0.25) x 10 %) = 0.03 in magnitude (BR-CO-17 rounds the absolute value with XPath
    # round()), so -0.03; XPath round() on the signed value would give -0.02. Python's ROUND_HALF_UP agrees
    # with the validators here; on a line net (-0.125 -> -0.12) the rule is round_minor's.
    lines = (
        line(line_no=1, quantity="10", unit_price="125.00", tax_rate="20"),
        line(line_no=2, quantity="1", unit_price="1.00", tax_rate="10"),
        line(line_no=3, quantity="-1", unit_price="1.25", tax_rate="10", description="Returned adapter"),
        line(line_no=4, quantity="-1", unit_price="0.125", tax_rate="20", description="Rounding credit"),
    )
    assert lines[3].net_minor == -12  # -12.5 cents: halves toward +infinity for nets (round_minor)
    assert round_minor(Decimal("-2.5")) == -2
    assert Decimal("-0.025").quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) == Decimal("-0.03")
    doc = document(lines=lines)
    xml = render_ubl(doc)
    subtotals = etree.fromstring(xml).findall("cac:TaxTotal/cac:TaxSubtotal", NS)
    ten = next(s for s in subtotals if s.findtext("cac:TaxCategory/cbc:Percent", namespaces=NS) == "10")
    assert (
        ten.findtext("cbc:TaxableAmount", namespaces=NS),
        ten.findtext("cbc:TaxAmount", namespaces=NS),
    ) == (
        "-0.25",
        "-0.03",
    )
    assert parse_ubl(xml).recomputed.breakdown[0].tax == Decimal("-0.03")
    assert_valid(xml, official, ubl_schemas)
    assert_totals(xml, doc)


def test_five_hundred_lines_of_half_cents(official: OfficialValidators, ubl_schemas: UblSchemas) -> None:
    # 500 lines (the API's maximum) whose nets are halves before rounding and whose own taxes are halves too:
    # per line the tax would be 500 x 0.01 = 5.00 EUR, per rate it is 500 x 0.05 x 10 % = 2.50 EUR.
    lines = tuple(line(line_no=i, quantity="1", unit_price="0.045", tax_rate="10") for i in range(1, 501))
    doc = document(lines=lines)
    assert (doc.subtotal_minor, doc.tax_total_minor) == (2500, 250)
    xml = render_ubl(doc)
    assert_valid(xml, official, ubl_schemas)
    assert_totals(xml, doc)


def test_a_german_seller_invoicing_a_german_buyer_meets_the_german_rules(
    official: OfficialValidators, ubl_schemas: UblSchemas
) -> None:
    doc = document(
        supplier=SELLERS["DE"],
        customer=BUYERS["DE"],
        lines=(line(tax_rate="19"), line(line_no=2, tax_rate="7", unit_price="49.90")),
        buyer_reference="04011000-12345-67",
        payee_iban="DE89370400440532013000",
    )
    xml = render_ubl(doc)
    contact = etree.fromstring(xml).find("cac:AccountingSupplierParty/cac:Party/cac:Contact", NS)
    assert contact.findtext("cbc:Telephone", namespaces=NS) == "+49 421 3360 120"
    assert_valid(xml, official, ubl_schemas)


# --- refusals -----------------------------------------------------------------------------------------------


def problems_of(doc: InvoiceDocument) -> str:
    with pytest.raises(EInvoiceError) as refused:
        render_ubl(doc)
    message = str(refused.value)
    assert message.startswith(f"{doc.number} cannot be an e-invoice: ")
    assert "; ".join(document_problems(doc)) in message
    return message


def test_a_currency_with_three_decimals_cannot_be_an_en16931_invoice() -> None:
    doc = document(currency="BHD", lines=(line(unit_price="1.2345", currency="BHD"),))
    assert "BHD has 3 decimals; EN 16931 amounts have at most 2" in problems_of(doc)


def test_missing_peppol_data_is_named_all_at_once() -> None:
    buyer = replace(BUYERS["DE"], endpoint_id="", country="XX")
    message = problems_of(document(customer=buyer, po_number="", buyer_reference=""))
    assert "buyer: the Peppol endpoint (identifier and EAS scheme) is missing" in message
    assert "buyer: 'XX' is not an ISO 3166 country code" in message
    assert "buyer reference or the purchase order number" in message


def test_an_endpoint_with_a_wrong_check_digit_is_refused() -> None:
    buyer = replace(BUYERS["GB"], endpoint_id="5012345000016")
    assert "buyer: Peppol endpoint: '5012345000016' is not a valid GLN" in problems_of(
        document(customer=buyer)
    )


def test_a_tax_total_computed_line_by_line_is_refused_with_the_en16931_figure() -> None:
    lines = tuple(line(line_no=i, quantity="1", unit_price="0.05", tax_rate="10") for i in range(1, 202))
    doc = document(lines=lines)
    per_line = sum(tax_minor(ln.net_minor, Decimal(10)) for ln in lines)
    assert (per_line, doc.tax_total_minor) == (201, 101)
    stale = replace(doc, tax_total_minor=per_line, total_minor=doc.subtotal_minor + per_line)
    message = problems_of(stale)
    assert (
        "the tax total 2.01 is not EN 16931's 1.01 (tax per category and rate on the summed nets" in message
    )


def test_categories_need_their_rates_and_their_parties_data() -> None:
    message = problems_of(
        document(
            customer=replace(BUYERS["DE"], vat_id=""),
            lines=(
                line(line_no=1, tax_rate="0", tax_category="S"),
                line(line_no=2, tax_rate="19", tax_category="AE"),
                line(line_no=3, tax_rate="0", tax_category="L"),
                line(line_no=4, tax_rate="0", tax_category="K"),
            ),
        )
    )
    assert "line 1: a standard-rated line needs a positive VAT rate" in message
    assert "line 2: category AE is rated 0 %" in message
    assert "line 3: VAT category 'L' is not one of" in message
    assert "a reverse charge needs the buyer's VAT id" in message
    assert "an intra-Community supply needs the delivery date" in message


def test_sellers_under_national_rules_cashcycle_does_not_implement_are_refused() -> None:
    dutch = replace(SELLERS["FR"], country="NL", vat_id="NL853412907B01")
    assert "Peppol's Dutch rules for Dutch sellers are not implemented" in problems_of(
        document(supplier=dutch)
    )


def test_german_parties_need_the_sellers_contact_and_account() -> None:
    seller = replace(SELLERS["DE"], telephone="")
    message = problems_of(document(supplier=seller, customer=BUYERS["DE"], payee_iban=""))
    assert "contact name, telephone and e-mail are required in Germany" in message
    assert "the payee account (IBAN) is required in Germany" in message
    assert "the buyer reference (Leitweg-ID or other) is required in Germany" in message


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (b"not xml", "not well-formed XML"),
        (b"<Order/>", "is neither a UBL 2.1 Invoice nor a CreditNote"),
        (f'<Invoice xmlns="{INVOICE_NS}"/>'.encode(), "unknown ISO 4217 currency code"),
    ],
)
def test_reading_something_else_than_a_ubl_invoice_says_what_it_is(xml: bytes, reason: str) -> None:
    with pytest.raises(EInvoiceError, match=reason):
        parse_ubl(xml)

"""Draft totals the EN 16931 way: the API computes an invoice's VAT per rate on the summed line nets
(BR-CO-17), so that every invoice it accepts can become a valid e-invoice; a line's own tax stays a figure
for information."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from activities.models import Customer, LegalEntity
from activities.money import line_amounts, round_minor, round_tax, tax_by_rate, tax_minor
from api.invoices import build_draft
from api.schemas import LineIn

ACME = LegalEntity(
    code="ACME", name="Acme Industrie SAS", currency="EUR", timezone="Europe/Paris", country="FR"
)
INITECH = Customer(id="c-1", legal_entity="ACME", name="Initech", currency="EUR", created_by="test")


def draft_of(lines: list[LineIn], currency: str = "EUR", rate: str | None = None) -> tuple[int, int, int]:
    built = build_draft(
        customer=INITECH,
        entity=ACME,
        currency=currency,
        issue_date=date(2026, 11, 2),
        due_date=None,
        po_number=None,
        lines=lines,
        body_hash="0" * 64,
        exchange_rate=rate,
    )
    return built.subtotal_minor, built.tax_total_minor, built.total_minor


def lines_of(count: int, unit_price: str, tax_rate: str) -> list[LineIn]:
    return [
        LineIn(description=f"Item {i}", quantity="1", unit_price=unit_price, tax_rate=tax_rate)
        for i in range(count)
    ]


def test_many_small_lines_are_taxed_once_per_rate_not_line_by_line() -> None:
    # Line by line: 201 x round(0.5 cent) = 2.01 EUR, which the e-invoice validators refuse (BR-CO-17).
    assert (
        sum(line_amounts(Decimal(1), Decimal("0.05"), Decimal(10), "EUR").tax_minor for _ in range(201))
        == 201
    )
    assert draft_of(lines_of(201, "0.05", "10")) == (1005, 101, 1106)


def test_yen_lines_are_taxed_once_per_rate() -> None:
    assert draft_of(lines_of(3, "5", "10"), currency="JPY", rate="0.0061") == (15, 2, 17)


def test_each_rate_is_rounded_on_its_own() -> None:
    lines = [
        LineIn(description="Consulting", quantity="10", unit_price="125.00", tax_rate="20"),
        LineIn(description="Travel", quantity="1", unit_price="310.55", tax_rate="20"),
        LineIn(description="Catering", quantity="3", unit_price="10.15", tax_rate="10"),
        LineIn(description="Handbook", quantity="7", unit_price="4.99", tax_rate="5.5"),
        LineIn(description="Export freight", quantity="1", unit_price="99.99", tax_rate="0"),
    ]
    # 20 %: 1560.55 -> 312.11; 10 %: 30.45 -> 3.045 -> 3.05; 5.5 %: 34.93 -> 1.92115 -> 1.92; 0 %: 0
    assert draft_of(lines) == (172592, 31708, 204300)


def test_the_totals_of_the_lifecycle_invoice_are_unchanged() -> None:
    # tests/api/test_lifecycle.py expects 1560.55 + 312.11 = 1872.66: per rate and per line agree there.
    lines = [
        LineIn(description="Consulting, October", quantity="10", unit_price="125.00", tax_rate="20"),
        LineIn(description="Travel expenses", quantity="1", unit_price="310.55", tax_rate="20"),
    ]
    assert draft_of(lines) == (156055, 31211, 187266)


def test_tax_by_rate_sums_nets_per_rate_then_rounds_once() -> None:
    assert tax_by_rate([(Decimal("20"), 101), (Decimal("20.0"), 101), (Decimal("10"), 25)]) == {
        Decimal(20): 40,  # 202 cents x 20 % = 40.4
        Decimal(10): 3,  # 25 cents x 10 % = 2.5, a half: away from zero
    }
    assert tax_by_rate([]) == {}


@pytest.mark.parametrize(
    ("value", "tax", "net"),
    [
        ("2.5", 3, 3),
        ("-2.5", -3, -2),  # the two rules part on negative halves only
        ("-2.4", -2, -2),
        ("-2.6", -3, -3),
        ("0.5", 1, 1),
        ("-0.5", -1, 0),
    ],
)
def test_tax_rounds_halves_away_from_zero_nets_toward_positive_infinity(
    value: str, tax: int, net: int
) -> None:
    assert (round_tax(Decimal(value)), round_minor(Decimal(value))) == (tax, net)


def test_a_negative_taxable_amount_is_taxed_as_the_validators_expect() -> None:
    # BR-CO-17 expects round(abs(-25 cents) x 10 %) = round(2.5) = 3 cents in magnitude.
    assert tax_minor(-25, Decimal(10)) == -3

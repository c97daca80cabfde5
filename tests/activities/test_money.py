"""Money: ISO 4217 minor units, the e-invoice rounding rule, per-line totals, and what a client may send."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from activities.money import (
    LineAmounts,
    MoneyError,
    amount_to_minor,
    exponent,
    format_minor,
    line_amounts,
    parse_decimal,
    round_minor,
)

# -- ISO 4217 exponents ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "places"),
    [("EUR", 2), ("USD", 2), ("GBP", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3), ("CLF", 4)],
)
def test_exponent_comes_from_the_iso_4217_table(currency: str, places: int) -> None:
    assert exponent(currency) == places


@pytest.mark.parametrize("currency", ["ABC", "EURO", "", "€", " EUR"])
def test_unknown_currency_code_is_refused(currency: str) -> None:
    with pytest.raises(MoneyError, match="unknown ISO 4217 currency code") as refused:
        exponent(currency)
    assert refused.value.field == "currency"


@pytest.mark.parametrize("currency", ["XAU", "XAG", "XDR", "XXX"])
def test_currency_without_minor_unit_cannot_be_invoiced(currency: str) -> None:
    with pytest.raises(MoneyError, match="has no minor unit") as refused:
        exponent(currency)
    assert refused.value.field == "currency"


def test_currency_code_that_is_not_text_is_refused() -> None:
    with pytest.raises(MoneyError, match="unknown ISO 4217 currency code"):
        exponent(978)  # type: ignore[arg-type]  # the numeric code is not accepted


# -- rounding: halves toward +infinity --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rounded"),
    [
        ("2.5", 3),
        ("-2.5", -2),
        ("0.5", 1),
        ("-0.5", 0),
        ("2.4999", 2),
        ("2.5001", 3),
        ("-2.4999", -2),
        ("-2.5001", -3),
        ("-2.6", -3),
        ("7", 7),
        ("-7", -7),
        ("0", 0),
        ("1000000000000.5", 1000000000001),
    ],
)
def test_round_minor_rounds_halves_toward_positive_infinity(value: str, rounded: int) -> None:
    assert round_minor(Decimal(value)) == rounded


def test_round_minor_differs_from_round_half_up_on_negative_halves() -> None:
    half = Decimal("-2.5")
    assert int(half.quantize(Decimal(1), rounding=ROUND_HALF_UP)) == -3  # Python: away from zero
    assert round_minor(half) == -2  # EN 16931: toward +infinity
    assert round_minor(Decimal("2.5")) == int(Decimal("2.5").quantize(Decimal(1), rounding=ROUND_HALF_UP))


# -- line amounts: net per line, then tax on the rounded net -----------------------------------------


@pytest.mark.parametrize(
    ("quantity", "unit_price", "tax_rate", "currency", "net", "tax"),
    [
        # the API lifecycle's invoice: 10 x 125.00 at 20 %, 1 x 310.55 at 20 %
        ("10", "125.00", "20", "EUR", 125000, 25000),
        ("1", "310.55", "20", "EUR", 31055, 6211),
        # net 1.005 EUR = 100.5 cents -> 101; tax 20 % of the rounded net 101 = 20.2 -> 20
        ("3", "0.335", "20", "EUR", 101, 20),
        # tax 10 % of 10.25 EUR = 102.5 cents -> 103 (a half, rounded up)
        ("1", "10.25", "10", "EUR", 1025, 103),
        ("2", "19.99", "0", "EUR", 3998, 0),
        ("0.5", "0.01", "20", "EUR", 1, 0),
        # JPY has no minor unit: 3 x 333.5 = 1000.5 yen -> 1001; tax 10 % = 100.1 -> 100
        ("3", "333.5", "10", "JPY", 1001, 100),
        ("1", "12000", "8", "JPY", 12000, 960),
        # BHD has three places (fils): 2 x 1.2345 = 2.469 BHD; tax 10 % of 2469 fils = 246.9 -> 247
        ("2", "1.2345", "10", "BHD", 2469, 247),
        ("1", "0.0005", "0", "BHD", 1, 0),
        # a credit line rounds toward +infinity too: -1 x 0.125 EUR = -12.5 cents -> -12
        ("-1", "0.125", "20", "EUR", -12, -2),
    ],
)
def test_line_amounts_round_the_net_then_the_tax_on_the_rounded_net(
    quantity: str, unit_price: str, tax_rate: str, currency: str, net: int, tax: int
) -> None:
    assert line_amounts(Decimal(quantity), Decimal(unit_price), Decimal(tax_rate), currency) == LineAmounts(
        net, tax
    )


def test_invoice_total_is_the_sum_of_rounded_lines_not_the_rounded_sum() -> None:
    # Three lines of 0.335 EUR: each net rounds to 34 cents (102 in all), where the unrounded sum,
    # 1.005 EUR, would round to 101. E-invoice validators check the per-line rule.
    lines = [line_amounts(Decimal(1), Decimal("0.335"), Decimal(0), "EUR") for _ in range(3)]
    assert sum(line.net_minor for line in lines) == 102


def test_line_amounts_refuse_a_currency_without_minor_unit() -> None:
    with pytest.raises(MoneyError, match="XAU has no minor unit"):
        line_amounts(Decimal(1), Decimal(1), Decimal(0), "XAU")


# -- parsing what a client sends --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("12.50", "12.50"), (" 12.50 ", "12.50"), ("0", "0"), ("1000000", "1000000"), ("0.000001", "0.000001")],
)
def test_parse_decimal_reads_a_decimal_string(text: str, value: str) -> None:
    parsed = parse_decimal(text, "quantity")
    assert parsed == Decimal(value)
    assert str(parsed) == value


@pytest.mark.parametrize("text", ["abc", "", "12,50", "1.2.3", "12 EUR", "0x10", "--1"])
def test_parse_decimal_refuses_text_that_is_not_a_number(text: str) -> None:
    with pytest.raises(MoneyError, match="is not a decimal number") as refused:
        parse_decimal(text, "lines.0.quantity")
    assert refused.value.field == "lines.0.quantity"


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf"])
def test_parse_decimal_refuses_nan_and_infinity(text: str) -> None:
    with pytest.raises(MoneyError, match="is not a finite number") as refused:
        parse_decimal(text, "unit_price")
    assert refused.value.field == "unit_price"


@pytest.mark.parametrize("number", [12.5, 12, Decimal("12.5"), None, True])
def test_parse_decimal_refuses_numbers_that_are_not_strings(number: Any) -> None:
    # A JSON float has already lost the exact amount: clients write decimals as strings.
    with pytest.raises(MoneyError, match="written as a string") as refused:
        parse_decimal(number, "amount")
    assert refused.value.field == "amount"


def test_parse_decimal_refuses_more_places_than_allowed() -> None:
    assert parse_decimal("0.1234", "tax_rate", max_places=4) == Decimal("0.1234")
    with pytest.raises(MoneyError, match="at most 4 decimal places"):
        parse_decimal("0.12345", "tax_rate", max_places=4)
    with pytest.raises(MoneyError, match="at most 6 decimal places"):
        parse_decimal("0.0000001", "quantity")


def test_parse_decimal_refuses_values_outside_the_bounds() -> None:
    with pytest.raises(MoneyError, match="must be at least 0"):
        parse_decimal("-0.01", "unit_price", minimum=Decimal(0))
    assert parse_decimal("0", "unit_price", minimum=Decimal(0)) == 0
    with pytest.raises(MoneyError, match="must be greater than 0"):
        parse_decimal("0", "quantity", minimum=Decimal(0), exclusive=True)
    with pytest.raises(MoneyError, match="must be at most 100"):
        parse_decimal("100.01", "tax_rate", maximum=Decimal(100))
    assert parse_decimal("100", "tax_rate", maximum=Decimal(100)) == 100


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", "EUR", 1250),
        ("12.5", "EUR", 1250),
        ("12", "EUR", 1200),
        ("0.01", "EUR", 1),
        ("1872.66", "EUR", 187266),
        ("1500", "JPY", 1500),
        ("1.234", "BHD", 1234),
        ("0.001", "BHD", 1),
        ("1000000000000000", "EUR", 100000000000000000),
    ],
)
def test_amount_to_minor_converts_exactly(text: str, currency: str, minor: int) -> None:
    assert amount_to_minor(text, currency, "amount") == minor


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("12.505", "EUR", "at most 2 decimal places"),
        ("12.5", "JPY", "at most 0 decimal places"),
        ("1.2345", "BHD", "at most 3 decimal places"),
        ("0", "EUR", "must be greater than 0"),
        ("0.00", "EUR", "must be greater than 0"),
        ("-5.00", "EUR", "must be greater than 0"),
        ("1000000000000000.01", "EUR", "must be at most"),
        ("abc", "EUR", "is not a decimal number"),
        ("NaN", "EUR", "is not a finite number"),
        ("Infinity", "EUR", "is not a finite number"),
    ],
)
def test_amount_to_minor_refuses_what_cannot_be_an_amount_in_the_currency(
    text: str, currency: str, message: str
) -> None:
    with pytest.raises(MoneyError, match=message) as refused:
        amount_to_minor(text, currency, "allocations.0.amount")
    assert refused.value.field == "allocations.0.amount"


@pytest.mark.parametrize("number", [12.5, 1250])
def test_amount_to_minor_refuses_numbers_that_are_not_strings(number: Any) -> None:
    with pytest.raises(MoneyError, match="written as a string"):
        amount_to_minor(number, "EUR", "amount")


def test_amount_to_minor_refuses_an_unknown_currency_naming_the_currency() -> None:
    with pytest.raises(MoneyError) as refused:
        amount_to_minor("12.50", "ABC", "amount")
    assert refused.value.field == "currency"


# -- formatting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (187266, "EUR", "1872.66"),
        (123450, "EUR", "1234.50"),
        (5, "EUR", "0.05"),
        (0, "EUR", "0.00"),
        (-5, "EUR", "-0.05"),
        (100000000000000000, "EUR", "1000000000000000.00"),
        (1234, "JPY", "1234"),
        (0, "JPY", "0"),
        (1234, "BHD", "1.234"),
        (1, "BHD", "0.001"),
    ],
)
def test_format_minor_writes_the_currency_places(minor: int, currency: str, text: str) -> None:
    assert format_minor(minor, currency) == text


@pytest.mark.parametrize(
    ("text", "currency"), [("1872.66", "EUR"), ("0.01", "EUR"), ("1500", "JPY"), ("0.001", "BHD")]
)
def test_a_formatted_amount_reads_back_to_the_same_minor_units(text: str, currency: str) -> None:
    minor = amount_to_minor(text, currency, "amount")
    assert format_minor(minor, currency) == text


@pytest.mark.parametrize("text", ["1_000", "1e3", "1E+3", "\u0661\u0662\u0663", ".5", "5.", "1 000"])
def test_parse_decimal_takes_plain_ascii_digits_only(text: str) -> None:
    # Decimal() itself accepts these; a client's "1e3" would be stored and printed back as "1E+3".
    with pytest.raises(MoneyError) as refused:
        parse_decimal(text, "lines.0.quantity")
    assert refused.value.field == "lines.0.quantity"

"""Money: integer minor units plus an ISO 4217 code, never floats.

Rounding rules, each written where it is applied:
- `round_minor` (line nets, conversions): halves round toward positive infinity, as XPath `round()` does.
  For negative amounts (credits) this differs from Python's ROUND_HALF_UP, which rounds away from zero.
- `round_tax` (the VAT of a category, `tax_minor`): halves round away from zero (ROUND_HALF_UP). The EN 16931
  validators test a category's VAT (BR-CO-17, BR-S-09) against round(abs(taxable) x rate / 100): XPath
  round() applied to the magnitude, so -0.025 is expected as -0.03, not -0.02. The official negative example
  (BIS3_Invoice_negativ: -625743.54 at 25 % -> -156435.89) states it that way too.

Invoice totals, the EN 16931 way (rule BR-CO-17: the VAT of a category is its taxable amount times its rate,
rounded once; `tax_by_rate`):
    line net   = round_minor(quantity x unit price)                       in minor units
    tax        = sum over rates of tax_minor(sum of line nets, rate)       in minor units
    subtotal   = sum(line net); total = subtotal + tax
Rounding each line's tax and summing lets the error grow with the number of lines (201 lines of 0.05 EUR at
10 % make 2.01 EUR instead of 1.01 EUR; 3 lines of 5 JPY at 10 % make 3 JPY instead of 2); the validators
tolerate less than 1.00 of the currency, so such an invoice is refused as an e-invoice. A line's own tax
(`line_amounts`) is still shown, for information only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation

import iso4217

_PLAIN_DECIMAL = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?")


class MoneyError(ValueError):
    """Bad currency or amount; carries the offending field for the 422 reply."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def exponent(currency: str) -> int:
    """ISO 4217 minor-unit exponent (EUR 2, JPY 0, BHD 3); MoneyError for unknown or fund codes."""
    code = currency.upper() if isinstance(currency, str) else ""
    try:
        cur = iso4217.Currency(code)
    except (ValueError, KeyError):
        raise MoneyError("currency", f"unknown ISO 4217 currency code: {currency!r}") from None
    exp = cur.exponent
    if exp is None:  # XAU, XDR...: no minor unit, not an invoicing currency
        raise MoneyError("currency", f"{code} has no minor unit and cannot be invoiced")
    return int(exp)


def round_minor(value: Decimal) -> int:
    """Round a Decimal number of minor units to an integer, halves toward +infinity."""
    mode = ROUND_HALF_UP if value >= 0 else ROUND_HALF_DOWN
    return int(value.quantize(Decimal(1), rounding=mode))


def to_minor(amount: Decimal, currency: str) -> int:
    return round_minor(amount.scaleb(exponent(currency)))


def parse_decimal(
    text: str,
    field: str,
    *,
    minimum: Decimal | None = None,
    exclusive: bool = False,
    maximum: Decimal | None = None,
    max_places: int = 6,
) -> Decimal:
    """A decimal string from a client, or MoneyError naming the field and what is wrong."""
    if not isinstance(text, str):
        raise MoneyError(field, 'must be a decimal number written as a string, e.g. "12.50"')
    # Plain ASCII decimals only: Decimal() alone would also take "1_000", "1e3", "NaN" and other
    # scripts' digits, which then print back differently from what the client sent.
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise MoneyError(field, f"{text!r} is not a decimal number") from None
    if not value.is_finite():
        raise MoneyError(field, f"{text!r} is not a finite number")
    if not _PLAIN_DECIMAL.fullmatch(text.strip()):
        raise MoneyError(field, f'{text!r} is not a decimal number in plain digits, such as "1250.50"')
    exp = value.as_tuple().exponent
    if isinstance(exp, int) and -exp > max_places:
        raise MoneyError(field, f"at most {max_places} decimal places")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise MoneyError(field, f"must be {'greater than' if exclusive else 'at least'} {minimum}")
    if maximum is not None and value > maximum:
        raise MoneyError(field, f"must be at most {maximum}")
    return value


def amount_to_minor(text: str, currency: str, field: str) -> int:
    """A positive amount string in `currency` to minor units; refuses more decimals than the currency has."""
    exp = exponent(currency)
    value = parse_decimal(
        text, field, minimum=Decimal(0), exclusive=True, maximum=Decimal("1e15"), max_places=exp
    )
    return int(value.scaleb(exp))


def format_minor(minor: int, currency: str) -> str:
    """Minor units back to a decimal string with the currency's places ("1234.50")."""
    exp = exponent(currency)
    return str(Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp)))


@dataclass(frozen=True)
class LineAmounts:
    net_minor: int
    tax_minor: int


def line_amounts(quantity: Decimal, unit_price: Decimal, tax_rate: Decimal, currency: str) -> LineAmounts:
    """A line's net and, for information, its own tax (the invoice's tax is `tax_by_rate`, not their sum)."""
    exp = exponent(currency)
    net = round_minor((quantity * unit_price).scaleb(exp))
    return LineAmounts(net, tax_minor(net, tax_rate))


def round_tax(value: Decimal) -> int:
    """Round a Decimal number of minor units of tax, halves away from zero: the magnitude is rounded as the
    validators round it (see the module docstring), then the sign restored."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tax_minor(taxable_minor: int, rate: Decimal) -> int:
    """The tax on a taxable amount (minor units) at `rate` percent, rounded once with `round_tax`."""
    return round_tax(Decimal(taxable_minor) * rate / 100)


def tax_by_rate(lines: Iterable[tuple[Decimal, int]]) -> dict[Decimal, int]:
    """Tax per rate from (rate, line net in minor units) pairs: each rate's nets are summed, then taxed once
    (EN 16931 BR-CO-17). The invoice's tax total is the sum of the values."""
    taxable: dict[Decimal, int] = {}
    for rate, net in lines:
        taxable[rate] = taxable.get(rate, 0) + net  # Decimal("20") and Decimal("20.0") are one key
    return {rate: tax_minor(amount, rate) for rate, amount in taxable.items()}

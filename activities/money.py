"""Money: integer minor units plus an ISO 4217 code, never floats.

Rounding rule (applied in `round_minor`): halves round toward positive infinity, as XPath `round()` does
in the EN 16931 validators. For positive amounts this equals ROUND_HALF_UP; for negative amounts (credits)
it differs from Python's ROUND_HALF_UP, which rounds away from zero.

Invoice totals are computed per line and then summed:
    line net   = round(quantity x unit price)             in minor units
    line tax   = round(line net x tax rate / 100)         in minor units
    subtotal   = sum(line net); tax total = sum(line tax); total = subtotal + tax total
"""

from __future__ import annotations

import re
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
    exp = exponent(currency)
    net = round_minor((quantity * unit_price).scaleb(exp))
    tax = round_minor(Decimal(net) * tax_rate / 100)
    return LineAmounts(net, tax)

"""What the buyer reads of an invoice, whatever protocol carried it, and the small XML and number helpers
the protocol modules share. No protocol knowledge here: each protocol module parses into `Parsed`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from lxml import etree  # type: ignore[import-untyped, unused-ignore]  # no stubs ship with lxml

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


class BadDocument(ValueError):
    """The message cannot be read as an invoice (400: the sender's bug, not a business rejection)."""


@dataclass
class Line:
    item: str
    description: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal | None


@dataclass
class Parsed:
    """An invoice as any of the three protocols carries it: what the buyer checks."""

    number: str
    kind: Literal["invoice", "credit_note"]
    currency: str
    po_number: str
    bill_to_name: str
    bill_to_vat: str
    lines: list[Line]
    preceding: str = ""
    buyer_name: str = ""


def decimal_of(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise BadDocument(f"{what}: {value!r} is not a decimal number") from None
    if not number.is_finite():
        raise BadDocument(f"{what}: {value!r} is not a finite number")
    return number


def parse_xml(body: bytes) -> etree._Element:
    """A document from a client: no DTD, no entities, no network."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise BadDocument(f"not well-formed XML: {exc}") from None
    if root is None:
        raise BadDocument("empty document")
    return root


def text_of(el: etree._Element | None) -> str:
    return " ".join("".join(el.itertext()).split()) if el is not None else ""


def sub(parent: etree._Element, tag: str, content: str | None = None, /, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, attrs)
    if content is not None:
        el.text = content
    return el


def norm(value: str) -> str:
    """For the buyer's loose comparisons (names, items): no whitespace, no case."""
    return "".join(value.split()).casefold()

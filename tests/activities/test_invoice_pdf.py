"""The invoice PDF: Western text in the reader's standard Helvetica (nothing embedded), any other script
in an embedded DejaVu; in both, every field can be read back out of the page."""

from __future__ import annotations

import io
from datetime import date
from types import SimpleNamespace
from typing import Any

import pytest
from pypdf import PdfReader

from activities.delivery import _DEJAVU, render_invoice_pdf

# Windows-1252 beyond ASCII and Latin-1: the euro sign, an en dash and typographic quotes.
WESTERN_NAME = "Müller & Söhne GmbH – “Zentrale”"  # noqa: RUF001
GREEK_NAME = "Ωμέγα Εμπορική ΑΕ"  # noqa: RUF001
RUSSIAN_LINE = "Услуги по договору"


def context(customer_name: str, description: str = "Consulting, October") -> dict[str, Any]:
    return {
        "entity": SimpleNamespace(
            name="Acme Billing SAS", address="1 rue du Port, 75001 Paris", vat_id="FR1"
        ),
        "customer": SimpleNamespace(
            name=customer_name, address="Hauptstraße 5, 10115 Berlin", vat_id="DE123", payment_terms_days=30
        ),
        "invoice": {
            "number": "INV-2026-000042",
            "external_id": "ERP-42",
            "issue_date": date(2026, 11, 2),
            "due_date": date(2026, 12, 2),
            "po_number": "PO-4711",
            "currency": "EUR",
        },
        "lines": [
            {
                "description": description,
                "quantity": "10",
                "unit_price": "125.00",
                "tax_rate": "20",
                "net": "1,250.00",
            }
        ],
        "totals": {"subtotal": "1,250.00", "tax": "250.00", "total": "1,500.00"},
    }


def fonts_of(pdf: bytes) -> tuple[set[str], bool]:
    """The base font names on page 1, and whether any font program is embedded."""
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    names: set[str] = set()
    embedded = False
    for ref in page["/Resources"]["/Font"].values():
        font = ref.get_object()
        names.add(str(font["/BaseFont"]))
        descendants = font.get("/DescendantFonts")
        descriptor = (descendants[0].get_object() if descendants else font).get("/FontDescriptor")
        if descriptor is not None:
            d = descriptor.get_object()
            embedded |= any(k in d for k in ("/FontFile", "/FontFile2", "/FontFile3"))
    return names, embedded


def text_of(pdf: bytes) -> str:
    return PdfReader(io.BytesIO(pdf)).pages[0].extract_text()


def test_western_text_uses_the_standard_helvetica_and_embeds_no_font() -> None:
    pdf = render_invoice_pdf(context(WESTERN_NAME, "Wartung 1.234 € netto"))
    names, embedded = fonts_of(pdf)
    assert names <= {"/Helvetica", "/Helvetica-Bold"} and "/Helvetica" in names
    assert not embedded
    text = text_of(pdf)
    for field in (
        "INV-2026-000042",
        WESTERN_NAME,
        "Wartung 1.234 € netto",
        "1,500.00 EUR",
    ):
        assert field in text


@pytest.mark.skipif(
    not all(p.exists() for p in _DEJAVU.values()),
    reason="DejaVu fonts not installed (Debian package fonts-dejavu-core)",
)
def test_text_outside_windows_1252_is_set_in_an_embedded_unicode_font() -> None:
    pdf = render_invoice_pdf(context(GREEK_NAME, RUSSIAN_LINE))
    names, embedded = fonts_of(pdf)
    assert embedded and all("DejaVu" in n for n in names)
    text = text_of(pdf)
    assert GREEK_NAME in text and RUSSIAN_LINE in text and "1,500.00 EUR" in text

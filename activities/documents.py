"""An issued invoice or credit note as the outside world sees it: the one shape every outgoing format
(UBL / Peppol BIS Billing 3.0, cXML InvoiceDetailRequest, the Coupa-style JSON, the PDF) is rendered from.

Money is integer minor units of `currency`; quantities, prices and rates are decimal strings (never floats).
Built from the store by `activities.einvoice.document_for` once the document has a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Party:
    """The seller (a legal entity) or the buyer (a customer)."""

    name: str
    country: str  # ISO 3166-1 alpha-2
    vat_id: str = ""  # with its country prefix, e.g. "DE123456789"
    street: str = ""
    city: str = ""
    postal_code: str = ""
    endpoint_id: str = ""  # Peppol participant identifier (BT-34 / BT-49)
    endpoint_scheme: str = ""  # its EAS code, e.g. "0088" (GLN), "9930" (DE VAT), "0208" (BE enterprise no.)
    company_id: str = ""  # legal registration identifier (BT-30 / BT-47)
    email: str = ""
    contact_name: str = ""
    telephone: str = ""  # BT-42; Peppol's German rules want the seller's contact with it


@dataclass(frozen=True)
class DocumentLine:
    line_no: int
    description: str
    quantity: str  # decimal string; positive on credit notes too (the document type carries the sign)
    unit_price: str  # decimal string, net of tax
    net_minor: int  # quantity x unit price, rounded to the currency's minor unit
    tax_rate: str  # percent, decimal string, e.g. "19" or "7.5"
    # UNCL 5305: S standard, Z zero, E exempt, AE reverse charge, K intra-EU, G export, O not subject to VAT
    tax_category: str = "S"
    unit_code: str = "C62"  # UN/ECE Recommendation 20 ("C62" one, "HUR" hour, "DAY" day)
    item_id: str = ""  # the seller's item identifier, if any


@dataclass(frozen=True)
class InvoiceDocument:
    kind: Literal["invoice", "credit_note"]
    id: str  # Cashcycle's invoice id
    number: str
    issue_date: str  # ISO date
    due_date: str  # ISO date
    currency: str  # ISO 4217
    supplier: Party
    customer: Party
    lines: tuple[DocumentLine, ...]
    subtotal_minor: int  # sum of line nets
    tax_total_minor: int
    total_minor: int  # subtotal + tax
    amount_paid_minor: int = 0
    po_number: str = ""  # the buyer's purchase order (BT-13)
    buyer_reference: str = ""  # BT-10; Peppol needs BT-10 or BT-13
    payment_terms: str = ""  # e.g. "Net 30 days"
    payee_iban: str = ""  # credit transfer account (BT-84), if any
    preceding_invoice: str = ""  # credit notes: the number of the invoice they correct (BT-25)
    preceding_invoice_date: str = ""  # and its issue date (BT-26, ISO), stated with it when known
    note: str = ""
    delivery_date: str = ""  # ISO date the goods or services were delivered (BT-72); needed for category K
    exemption_reason: str = ""  # why lines of category E are exempt (BT-120), e.g. the article of the law

    @property
    def amount_due_minor(self) -> int:
        return self.total_minor - self.amount_paid_minor

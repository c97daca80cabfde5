"""The credit note document that crosses the workflow boundary: what the credit memo workflow asks to be
issued and delivered, and what comes back. Stdlib only, so that workflows (which import nothing from
activities/) and activities (activities/credit_notes.py) share it.

Amounts are positive: a credit note states what it credits with positive quantities, prices and totals,
and its type (UBL CreditNote, type code 381) carries the sign. Dates are ISO strings, money integer minor
units, decimals text, as everywhere else at this boundary (workflows/types.py).
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CreditNoteLine:
    """One credited line, like an invoice line (workflows.types.Line): the net is computed from quantity x
    unit price with the currency's minor unit, the tax per rate on the summed nets (EN 16931 BR-CO-17)."""

    description: str
    quantity: str  # decimal text, > 0
    unit_price: str  # decimal text, >= 0, net of tax, in the credit note's currency
    tax_rate: str  # percent, decimal text, as on the credited invoice's line ("20", "7.5", "0")
    # UNCL 5305 category; "" = as for the invoice's lines: derived from the rate and the parties' countries
    # (S for a positive rate; at 0 %: Z at home, AE reverse charge within the EU, G export).
    tax_category: str = ""
    unit_code: str = "C62"  # UN/ECE Rec. 20


@dataclass(frozen=True)
class CreditNoteDocument:
    """A credit note to issue: numbered already (activities.numbering.next_credit_note_number, series
    CN-<year>), referencing the invoice it credits (EN 16931 BG-3, mandatory for Cashcycle's credit notes)."""

    legal_entity: str
    credit_memo_id: str  # the credit memo this document issues; delivery is idempotent on it
    number: str  # e.g. "CN-2026-000007"
    issue_date: str  # ISO date
    currency: str  # ISO 4217: the credited invoice's currency
    customer_id: str
    invoice_id: str  # the credited invoice (store id)
    invoice_number: str  # BT-25, the credited invoice's number
    invoice_issue_date: str  # BT-26, its issue date (ISO)
    lines: list[CreditNoteLine]
    reason: str  # why it is credited, printed on the PDF and stated in the UBL note (BT-22)
    # A full credit of the invoice: its total is the invoice's. A rebill is a full credit followed by a
    # corrected invoice (rebill implies full_credit).
    full_credit: bool = False
    rebill: bool = False
    dispute_case: str = ""  # the dispute case number, when the credit resolves one (printed on the PDF)


@dataclass(frozen=True)
class CreditNoteDeliveryRequest:
    """Issue-and-send: render the document (UBL and PDF) and deliver it through the customer's channel."""

    document: CreditNoteDocument


@dataclass(frozen=True)
class CreditNoteDelivered:
    """Where and how a credit note went. `replayed`: an earlier attempt had delivered it, nothing was sent
    again. `fallback`: why it went by mail although the customer has a portal ("" when it did not)."""

    credit_memo_id: str
    number: str
    portal: str  # the customer's channel name ("email", or the portal configured for them)
    channel: str  # how it actually went: "email", "peppol", "cxml", "coupa"
    recipient: str  # the e-mail address, or the portal's name
    message_id: str  # the mail's Message-ID, or the portal submission key
    portal_ref: str  # the portal's id for the document ("" by mail)
    subtotal_minor: int
    tax_total_minor: int
    total_minor: int  # what the credit note credits, tax included (what is applied to the invoice)
    ubl_sha256: str  # of the UBL CreditNote rendered (the evidence of what was issued)
    pdf_sha256: str
    sent_at: str  # ISO instant
    replayed: bool = False
    fallback: str = ""
    attachments: list[str] = field(default_factory=list)  # file names sent by mail

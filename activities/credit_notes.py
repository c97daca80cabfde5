"""Credit notes, the documents: numbered in their own gapless series, rendered as a UBL 2.1 CreditNote (type
381, Peppol BIS Billing 3.0) and a PDF, delivered through the customer's channel, once.

    next_credit_note_number(session, legal_entity, issue_date) -> "CN-<year>-<000001>"  (activities.numbering)
    credit_note_problems(session, doc) -> list[str]    why the document cannot be issued ([] when it can)
    credit_note_document(session, doc) -> InvoiceDocument   the one shape every format is rendered from
    credit_note_ubl(session, doc) -> bytes             the UBL CreditNote (BG-3 references the invoice)
    credit_note_pdf(session, doc) -> bytes             the PDF titled "Credit note"
    full_credit_lines(session, invoice_id) -> lines    the invoice's lines, for a full credit (rebill)
    CreditNoteActivities(store, adapters, smtp).deliver_credit_note(CreditNoteDeliveryRequest)
        -> CreditNoteDelivered                         activity "deliver_credit_note", once per memo

The document (workflows/credit_note_types.py) is what the credit memo workflow passes: numbered already,
amounts positive (the document type says credit), the credited invoice named (BG-3: number and issue date,
mandatory for Cashcycle's credit notes although EN 16931 makes it optional). Its parties are the legal
entity's and the customer's master data as they are now, as for invoices (activities.einvoice.document_for),
its totals EN 16931's (tax per category and rate on the summed nets, rounded once, halves away from zero).

Channels. The customer's `portal` decides, as for invoices (activities.submission):
- "email" (or a portal of channel email): one mail with the PDF and, when the parties' e-invoice data allow
  it, the UBL CreditNote attached (`credit_note_mail.txt`);
- Peppol: the UBL CreditNote (document type CreditNote-2) through the access point;
- cXML: an InvoiceDetailRequest of purpose lineLevelCreditMemo naming the invoice (InvoiceIDInfo);
- Coupa-style: the invoice JSON with document_type "Credit Note" and original_invoice_number.
A portal that is not configured for this worker falls back to mail, and the result says why (`fallback`).
Portal statuses that follow a credit note are not routed to any workflow: route_updates finds invoices only.

Once only. Every delivery of a credit memo has one key, `<credit-note.<entity>.<memo id>@cashcycle>`: the
mail's Message-ID, and the InvoiceDelivery row written (against the credited invoice) after the mail or
portal took it and checked before sending; a retried activity that finds the row sends nothing. Portals
also get the same idempotency key on every try (`credit-note.<memo id>.pass-1`), so a retry after a lost
answer is answered from the portal's idempotency store. As for invoices, a crash between the SMTP reply and
the row can repeat a mail, with the same Message-ID.
"""

from __future__ import annotations

import hashlib
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import queries
from activities.db import Store, reading, writing
from activities.delivery import SmtpConfig, render_mail, render_pdf, send_message
from activities.documents import DocumentLine, InvoiceDocument
from activities.einvoice import CATEGORIES, EInvoiceError, party_of, render_ubl, tax_total_minor, vat_category
from activities.models import Customer, Invoice, InvoiceDelivery, LegalEntity
from activities.money import MoneyError, exponent, format_minor, line_amounts, parse_decimal
from activities.numbering import next_credit_note_number
from activities.portals.activity import application_error
from activities.portals.base import Channel, PortalAdapter, PortalError, Submission
from activities.portals.email import document_context_of
from workflows.credit_note_types import (
    CreditNoteDelivered,
    CreditNoteDeliveryRequest,
    CreditNoteDocument,
    CreditNoteLine,
)

__all__ = [
    "CreditNoteActivities",
    "CreditNoteError",
    "credit_note_document",
    "credit_note_pdf",
    "credit_note_problems",
    "credit_note_ubl",
    "delivery_key",
    "full_credit_lines",
    "next_credit_note_number",
]

_CHANNEL_PREFIX = "credit_note:"  # InvoiceDelivery.channel of a credit note's delivery: "credit_note:email"


class CreditNoteError(EInvoiceError):
    """The credit note cannot be issued as it is; the message names every reason."""


def _is_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if len(text) == 10 else None
    except (TypeError, ValueError):
        return None


def _content_problems(doc: CreditNoteDocument) -> list[str]:
    """What is wrong with the document itself, before the store is asked."""
    problems: list[str] = []
    if not doc.credit_memo_id.strip():
        problems.append("the credit memo id is missing")
    if not doc.number.strip():
        problems.append("the credit note has no number (next_credit_note_number)")
    if not doc.invoice_number.strip():
        problems.append("the credited invoice's number is missing (BG-3 preceding invoice reference, BT-25)")
    issued, invoiced = _is_date(doc.issue_date), _is_date(doc.invoice_issue_date)
    if issued is None:
        problems.append(f"the issue date {doc.issue_date!r} is not an ISO date")
    if invoiced is None:
        problems.append(
            f"the credited invoice's issue date {doc.invoice_issue_date!r} is not an ISO date (BG-3, BT-26)"
        )
    if issued and invoiced and issued < invoiced:
        problems.append(f"the credit note ({issued}) cannot precede the invoice it credits ({invoiced})")
    if not doc.reason.strip():
        problems.append("the reason for the credit is missing")
    if doc.rebill and not doc.full_credit:
        problems.append("a rebill credits the invoice in full: full_credit must be set")
    if not doc.lines:
        problems.append("the credit note has no lines")
    try:
        exponent(doc.currency)
    except MoneyError as exc:
        problems.append(str(exc))
        return problems
    for n, ln in enumerate(doc.lines, start=1):
        where = f"line {n}"
        if not ln.description.strip():
            problems.append(f"{where}: the description is missing")
        for label, text, minimum, exclusive in (
            ("quantity", ln.quantity, Decimal(0), True),
            ("unit price", ln.unit_price, Decimal(0), False),
            ("tax rate", ln.tax_rate, Decimal(0), False),
        ):
            try:
                parse_decimal(text, label, minimum=minimum, exclusive=exclusive, maximum=Decimal("1e12"))
            except MoneyError as exc:
                hint = (
                    " (a credit note states positive amounts: its type says credit)"
                    if "must be" in str(exc)
                    else ""
                )
                problems.append(f"{where}: the {label} {text!r}: {exc}{hint}")
        if ln.tax_category and ln.tax_category not in CATEGORIES:
            problems.append(f"{where}: VAT category {ln.tax_category!r} is not one of {sorted(CATEGORIES)}")
    return problems


@dataclass(frozen=True)
class _Parts:
    entity: LegalEntity
    customer: Customer
    invoice: Invoice


def _store_problems(session: Session, doc: CreditNoteDocument) -> tuple[list[str], _Parts | None]:
    """The document against the store: its legal entity, customer and credited invoice, as they are."""
    entity = session.get(LegalEntity, doc.legal_entity)
    customer = session.get(Customer, doc.customer_id)
    invoice = session.get(Invoice, doc.invoice_id)
    problems = []
    if entity is None:
        problems.append(f"the legal entity {doc.legal_entity!r} is not in the store")
    if customer is None or customer.legal_entity != doc.legal_entity:
        problems.append(f"customer {doc.customer_id!r} is not a customer of {doc.legal_entity}")
    if invoice is None:
        problems.append(f"the credited invoice {doc.invoice_id!r} is not in the store")
    if problems or entity is None or customer is None or invoice is None:
        return problems, None
    if invoice.legal_entity != doc.legal_entity or invoice.customer_id != doc.customer_id:
        problems.append(f"invoice {doc.invoice_id} is not {customer.name}'s at {doc.legal_entity}")
    if not invoice.number:
        problems.append(f"invoice {doc.invoice_id} was never issued (it has no number): nothing to credit")
    elif invoice.number != doc.invoice_number.strip():
        problems.append(f"the credited invoice is {invoice.number}, not {doc.invoice_number!r} (BG-3)")
    if _is_date(doc.invoice_issue_date) not in (None, invoice.issue_date):
        problems.append(
            f"invoice {invoice.number} was issued on {invoice.issue_date}, "
            f"not {doc.invoice_issue_date} (BT-26)"
        )
    if invoice.currency != doc.currency:
        problems.append(
            f"invoice {invoice.number} is in {invoice.currency}: it is credited in it, not {doc.currency}"
        )
    return problems, _Parts(entity, customer, invoice)


def _lines(doc: CreditNoteDocument, parts: _Parts) -> tuple[DocumentLine, ...]:
    seller, buyer = party_of(parts.entity), party_of(parts.customer)
    lines = []
    for n, ln in enumerate(doc.lines, start=1):
        rate = Decimal(ln.tax_rate)
        amounts = line_amounts(Decimal(ln.quantity), Decimal(ln.unit_price), rate, doc.currency)
        lines.append(
            DocumentLine(
                line_no=n,
                description=ln.description.strip(),
                quantity=ln.quantity.strip(),
                unit_price=ln.unit_price.strip(),
                net_minor=amounts.net_minor,
                tax_rate=ln.tax_rate.strip(),
                tax_category=ln.tax_category or vat_category(rate, seller, buyer),
                unit_code=ln.unit_code,
            )
        )
    return tuple(lines)


def _note(doc: CreditNoteDocument) -> str:
    note = doc.reason.strip()
    if doc.rebill:
        note += f" Invoice {doc.invoice_number.strip()} is credited in full; a corrected invoice follows."
    elif doc.full_credit:
        note += f" Invoice {doc.invoice_number.strip()} is credited in full."
    return note


def _build(
    session: Session, doc: CreditNoteDocument
) -> tuple[list[str], InvoiceDocument | None, _Parts | None]:
    problems = _content_problems(doc)
    found, parts = _store_problems(session, doc)
    problems += found
    if problems or parts is None:
        return problems, None, parts
    lines = _lines(doc, parts)
    subtotal = sum(ln.net_minor for ln in lines)
    tax = tax_total_minor(lines)
    total = subtotal + tax
    cur, invoice = doc.currency, parts.invoice
    if total <= 0:
        problems.append("the credit note credits nothing: its total is 0")
    if doc.full_credit and total != invoice.total_minor:
        problems.append(
            f"a full credit is the invoice's total {format_minor(invoice.total_minor, cur)} {cur}, "
            f"not {format_minor(total, cur)} {cur}"
        )
    elif total > invoice.total_minor:
        problems.append(
            f"the credit {format_minor(total, cur)} {cur} exceeds invoice {invoice.number}'s total "
            f"{format_minor(invoice.total_minor, cur)} {cur}"
        )
    if problems:
        return problems, None, parts
    entity, customer = parts.entity, parts.customer
    document = InvoiceDocument(
        kind="credit_note",
        id=doc.credit_memo_id,
        number=doc.number.strip(),
        issue_date=doc.issue_date,
        due_date="",  # a UBL CreditNote states no due date
        currency=cur,
        supplier=party_of(entity),
        customer=party_of(customer),
        lines=lines,
        subtotal_minor=subtotal,
        tax_total_minor=tax,
        total_minor=total,
        po_number=invoice.po_number or "",
        buyer_reference=customer.buyer_reference,
        # BR-CO-25: a positive amount due needs payment terms (a CreditNote has no due date).
        payment_terms=(
            f"Credit on invoice {invoice.number}: deducted from the amount due, or refunded if it is paid"
        ),
        payee_iban=entity.iban,
        preceding_invoice=invoice.number or "",
        preceding_invoice_date=invoice.issue_date.isoformat(),
        note=_note(doc),
    )
    return [], document, parts


def credit_note_problems(session: Session, doc: CreditNoteDocument) -> list[str]:
    """Why `doc` cannot be issued, every reason at once, in words a billing clerk can act on; [] when it can.
    The credit-note rules only: whether its UBL is a valid e-invoice is `render_ubl`'s to say (a customer
    served by mail needs no Peppol endpoint)."""
    problems, _, _ = _build(session, doc)
    return problems


def credit_note_document(session: Session, doc: CreditNoteDocument) -> InvoiceDocument:
    """The credit note as the document every outgoing format is rendered from (UBL, cXML, Coupa JSON, PDF).
    CreditNoteError naming every problem."""
    problems, document, _ = _build(session, doc)
    if problems or document is None:
        raise CreditNoteError(
            f"credit note {doc.number or doc.credit_memo_id} cannot be issued: " + "; ".join(problems)
        )
    return document


def credit_note_ubl(session: Session, doc: CreditNoteDocument) -> bytes:
    """The UBL 2.1 CreditNote (type code 381) in the Peppol BIS Billing 3.0 profile, its BillingReference
    naming the credited invoice (BG-3). CreditNoteError (an EInvoiceError) when the credit note cannot be
    issued; EInvoiceError when it could not pass the EN 16931 and Peppol validators (party data...)."""
    return render_ubl(credit_note_document(session, doc))


def _pdf_context(
    doc: CreditNoteDocument, document: InvoiceDocument, *, has_ubl: bool = False
) -> dict[str, Any]:
    context = document_context_of(document)
    context["credit_note"] = {
        "number": document.number,
        "issue_date": document.issue_date,
        "currency": document.currency,
        "invoice_number": document.preceding_invoice,
        "invoice_issue_date": document.preceding_invoice_date,
        "po_number": document.po_number,
        "reason": doc.reason.strip(),
        "full_credit": doc.full_credit,
        "rebill": doc.rebill,
        "dispute_case": doc.dispute_case,
    }
    context["has_ubl"] = has_ubl
    return context


def _render_pdf(doc: CreditNoteDocument, document: InvoiceDocument) -> bytes:
    # Dated by its issue date: the same credit note renders to the same bytes (its hash is evidence).
    created = datetime.combine(date.fromisoformat(document.issue_date), time(0), UTC)
    return render_pdf(
        "credit_note.html", f"Credit note {document.number}", _pdf_context(doc, document), created=created
    )


def credit_note_pdf(session: Session, doc: CreditNoteDocument) -> bytes:
    """The credit note as a PDF page like the invoice's, titled "Credit note", naming the credited invoice
    and the reason. CreditNoteError when it cannot be issued."""
    return _render_pdf(doc, credit_note_document(session, doc))


def delivery_key(doc: CreditNoteDocument) -> str:
    """The one key of a credit memo's delivery: the mail's Message-ID and the delivery row's id."""
    return f"<credit-note.{doc.legal_entity}.{doc.credit_memo_id}@cashcycle>"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest() if data else ""


@dataclass(frozen=True)
class _Rendered:
    document: InvoiceDocument
    pdf: bytes
    ubl: bytes  # b"" when the parties' data do not make a valid e-invoice
    ubl_problem: str
    customer_email: str
    customer_name: str
    entity_name: str
    portal: str


class CreditNoteActivities:
    """Delivery of issued credit notes through the customer's channel (see the module's docstring)."""

    def __init__(self, store: Store, adapters: Mapping[str, PortalAdapter], smtp: SmtpConfig) -> None:
        self._store, self._adapters, self._smtp = store, dict(adapters), smtp

    def _render(self, doc: CreditNoteDocument) -> _Rendered:
        with reading(self._store) as session:
            problems, document, parts = _build(session, doc)
        if problems or document is None or parts is None:
            raise ApplicationError(
                f"credit note {doc.number or doc.credit_memo_id} cannot be issued: " + "; ".join(problems),
                {"problems": problems},
                type="credit_note_invalid",
                non_retryable=True,
            )
        try:
            ubl, ubl_problem = render_ubl(document), ""
        except EInvoiceError as exc:
            ubl, ubl_problem = b"", str(exc)
        return _Rendered(
            document=document,
            pdf=_render_pdf(doc, document),
            ubl=ubl,
            ubl_problem=ubl_problem,
            customer_email=parts.customer.email,
            customer_name=parts.customer.name,
            entity_name=parts.entity.name,
            portal=parts.customer.portal or "email",
        )

    @activity.defn(name="deliver_credit_note")
    def deliver_credit_note(self, req: CreditNoteDeliveryRequest) -> CreditNoteDelivered:
        """Render the credit note and send it through the customer's channel, once per credit memo: a retry
        after it went finds the delivery row and answers with it (`replayed`), sending nothing.

        Errors (ApplicationError types): credit_note_invalid (non-retryable; details[0]["problems"]),
        document_invalid (Peppol customer, the UBL is not a valid e-invoice: non-retryable), mail_refused
        (the mail server refused the recipient or the message: non-retryable), and the portal types of
        activities.portals.activity (portal_unavailable retried, portal_rejected / portal_refused not);
        a customer without a billing address and an unreachable mail server are retried."""
        doc = req.document
        rendered = self._render(doc)
        key = delivery_key(doc)
        with reading(self._store) as session:
            row = session.get(InvoiceDelivery, key)
            if row is not None:
                session.expunge(row)
        if row is not None:
            channel = row.channel.removeprefix(_CHANNEL_PREFIX)
            fell_back = channel == "email" and rendered.portal != "email"
            return self._result(
                doc,
                rendered,
                channel=channel,
                recipient=row.recipient if channel == "email" else rendered.portal,
                message_id=key if channel == "email" else f"credit-note.{doc.credit_memo_id}.pass-1",
                portal_ref=key if channel == "email" else row.recipient,
                sent_at=row.sent_at,
                replayed=True,
                fallback=f"the customer's portal {rendered.portal!r} was not used: sent by mail"
                if fell_back
                else "",
                attachments=self._attachments(doc, rendered) if channel == "email" else [],
            )
        adapter = self._adapters.get(rendered.portal)
        if rendered.portal != "email" and adapter is None:
            fallback = (
                f"the customer's portal {rendered.portal!r} is not configured on this worker "
                "(CASHCYCLE_PORTALS_FILE): sent by mail"
            )
            return self._mail(doc, rendered, key, fallback=fallback)
        if adapter is None or adapter.channel is Channel.EMAIL:
            return self._mail(doc, rendered, key)
        return self._portal(doc, rendered, key, adapter)

    def _attachments(self, doc: CreditNoteDocument, rendered: _Rendered) -> list[str]:
        number = rendered.document.number
        return [f"{number}.pdf", *([f"{number}.xml"] if rendered.ubl else [])]

    def _mail(
        self, doc: CreditNoteDocument, rendered: _Rendered, key: str, *, fallback: str = ""
    ) -> CreditNoteDelivered:
        document = rendered.document
        if not rendered.customer_email:
            # Retried with backoff, as for invoices: master data can be fixed while the memo waits.
            raise ApplicationError(f"customer {rendered.customer_name} has no billing e-mail address")
        msg = EmailMessage()
        msg["Subject"] = f"Credit note {document.number} from {rendered.entity_name}"
        msg["From"] = self._smtp.mail_from
        msg["To"] = rendered.customer_email
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = key
        msg.set_content(
            render_mail("credit_note_mail.txt", _pdf_context(doc, document, has_ubl=bool(rendered.ubl)))
        )
        msg.add_attachment(
            rendered.pdf, maintype="application", subtype="pdf", filename=f"{document.number}.pdf"
        )
        if rendered.ubl:
            msg.add_attachment(
                rendered.ubl, maintype="application", subtype="xml", filename=f"{document.number}.xml"
            )
        try:
            send_message(self._smtp, msg)
        except smtplib.SMTPRecipientsRefused:
            raise ApplicationError(
                f"the mail server refused {rendered.customer_email} for credit note {document.number}",
                type="mail_refused",
                non_retryable=True,
            ) from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500 and not isinstance(exc, smtplib.SMTPAuthenticationError):
                raise ApplicationError(
                    f"the mail server refused credit note {document.number} ({exc.smtp_code})",
                    type="mail_refused",
                    non_retryable=True,
                ) from None
            raise
        sent_at = self._record(doc, key, "email", rendered.customer_email)
        return self._result(
            doc,
            rendered,
            channel="email",
            recipient=rendered.customer_email,
            message_id=key,
            portal_ref=key,
            sent_at=sent_at,
            fallback=fallback,
            attachments=self._attachments(doc, rendered),
        )

    def _portal(
        self, doc: CreditNoteDocument, rendered: _Rendered, key: str, adapter: PortalAdapter
    ) -> CreditNoteDelivered:
        document = rendered.document
        if adapter.channel is Channel.PEPPOL and not rendered.ubl:
            raise ApplicationError(
                f"{adapter.name}: not a valid e-invoice: {rendered.ubl_problem}",
                {"portal": adapter.name},
                type="document_invalid",
                non_retryable=True,
            )
        submission = Submission(
            invoice_id=f"credit-note.{doc.credit_memo_id}",
            submission_pass=1,
            document=document,
            ubl=rendered.ubl if adapter.channel is Channel.PEPPOL else b"",
        )
        try:
            receipt = adapter.submit(submission)
        except PortalError as exc:
            activity.logger.warning("credit note %s to %s failed: %s", document.number, adapter.name, exc)
            raise application_error(exc) from None
        sent_at = self._record(doc, key, adapter.channel.value, receipt.portal_ref)
        return self._result(
            doc,
            rendered,
            channel=adapter.channel.value,
            recipient=adapter.name,
            message_id=receipt.submission_key,
            portal_ref=receipt.portal_ref,
            sent_at=sent_at,
            replayed=receipt.replayed,
        )

    def _record(self, doc: CreditNoteDocument, key: str, channel: str, recipient: str) -> datetime:
        """The delivery row: written once the mail server or portal took the credit note."""
        with writing(self._store) as session:
            row = session.get(InvoiceDelivery, key)
            if row is None:
                row = InvoiceDelivery(
                    message_id=key,
                    invoice_id=doc.invoice_id,
                    channel=f"{_CHANNEL_PREFIX}{channel}",
                    recipient=recipient[:254],
                )
                session.add(row)
                session.flush()
            sent_at: datetime = row.sent_at
        return sent_at

    def _result(
        self,
        doc: CreditNoteDocument,
        rendered: _Rendered,
        *,
        channel: str,
        recipient: str,
        message_id: str,
        portal_ref: str,
        sent_at: datetime,
        replayed: bool = False,
        fallback: str = "",
        attachments: list[str] | None = None,
    ) -> CreditNoteDelivered:
        document = rendered.document
        return CreditNoteDelivered(
            credit_memo_id=doc.credit_memo_id,
            number=document.number,
            portal=rendered.portal,
            channel=channel,
            recipient=recipient,
            message_id=message_id,
            portal_ref=portal_ref,
            subtotal_minor=document.subtotal_minor,
            tax_total_minor=document.tax_total_minor,
            total_minor=document.total_minor,
            ubl_sha256=_sha256(rendered.ubl),
            pdf_sha256=_sha256(rendered.pdf),
            sent_at=(sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=UTC)).isoformat(),
            replayed=replayed,
            fallback=fallback,
            attachments=attachments or [],
        )


def full_credit_lines(session: Session, invoice_id: str) -> list[CreditNoteLine]:
    """The invoice's own lines as credit note lines: the credit note of a full credit (a rebill) credits
    exactly what was invoiced, and its total is the invoice's. LookupError for an unknown invoice."""
    if session.get(Invoice, invoice_id) is None:
        raise LookupError(f"no invoice {invoice_id}")
    return [
        CreditNoteLine(
            description=ln.description,
            quantity=ln.quantity,
            unit_price=ln.unit_price,
            tax_rate=ln.tax_rate,
        )
        for ln in queries.invoice_lines(session, invoice_id)
    ]

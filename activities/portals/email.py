"""The channel of customers without a portal: the invoice PDF by e-mail to their billing address.

It reuses the foundation's rendering (activities.delivery: the Jinja2 template, the PDF) and SMTP
settings. Submission is the whole story: once the mail server has taken the message it is "sent", and no
status will follow (follow_up none). The Message-ID is derived from the submission key, so a retry after
a lost SMTP reply repeats the same Message-ID and the recipient's side can drop the copy.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from activities.delivery import SmtpConfig, render_invoice_mail, render_invoice_pdf
from activities.documents import InvoiceDocument, Party
from activities.money import format_minor
from activities.portals.base import (
    Channel,
    FollowUp,
    PermanentError,
    PortalError,
    PushReply,
    StatusUpdate,
    Submission,
    SubmitReceipt,
    TransientError,
    short_text,
)
from activities.portals.status import ReasonCode, StatusReason

log = logging.getLogger("cashcycle.portals.email")


def _address(party: Party) -> str:
    return ", ".join(
        p for p in (party.street, f"{party.postal_code} {party.city}".strip(), party.country) if p
    )


def document_context_of(doc: InvoiceDocument) -> dict[str, Any]:
    """The template context of activities.delivery.document_context, built from an InvoiceDocument."""
    try:
        days: int | str = (date.fromisoformat(doc.due_date) - date.fromisoformat(doc.issue_date)).days
    except ValueError:
        days = ""
    cur = doc.currency
    return {
        "entity": {
            "name": doc.supplier.name,
            "address": _address(doc.supplier),
            "vat_id": doc.supplier.vat_id,
        },
        "customer": {
            "name": doc.customer.name,
            "address": _address(doc.customer),
            "vat_id": doc.customer.vat_id,
            "payment_terms_days": days,
            "contact_name": doc.customer.contact_name,
        },
        "invoice": {
            "number": doc.number,
            "external_id": doc.buyer_reference or doc.number,
            "issue_date": doc.issue_date,
            "due_date": doc.due_date,
            "po_number": doc.po_number,
            "currency": cur,
        },
        "lines": [
            {
                "description": ln.description,
                "quantity": ln.quantity,
                "unit_price": ln.unit_price,
                "tax_rate": ln.tax_rate,
                "net": format_minor(ln.net_minor, cur),
            }
            for ln in doc.lines
        ],
        "totals": {
            "subtotal": format_minor(doc.subtotal_minor, cur),
            "tax": format_minor(doc.tax_total_minor, cur),
            "total": format_minor(doc.total_minor, cur),
        },
    }


def message_id_for(submission_key: str) -> str:
    return f"<{submission_key}@cashcycle>"


class EmailAdapter:
    """E-mail with the PDF attached; statuses: none."""

    channel = Channel.EMAIL
    follow_up = FollowUp.NONE

    def __init__(
        self, name: str, smtp: SmtpConfig, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._name = name
        self._smtp = smtp
        self._now = now

    @property
    def name(self) -> str:
        return self._name

    def submit(self, submission: Submission) -> SubmitReceipt:
        doc = submission.document
        what = f"mail of {doc.number}"
        if not doc.customer.email:
            # Retried, as activities.delivery does: master data can be fixed while the invoice waits.
            raise TransientError(self._name, f"{what}: customer {doc.customer.name} has no billing e-mail")
        message_id = message_id_for(submission.idempotency_key)
        context = document_context_of(doc)
        label = "Credit note" if doc.kind == "credit_note" else "Invoice"
        msg = EmailMessage()
        msg["Subject"] = f"{label} {doc.number} from {doc.supplier.name}"
        msg["From"] = self._smtp.mail_from
        msg["To"] = doc.customer.email
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = message_id
        msg.set_content(render_invoice_mail(context))
        msg.add_attachment(
            render_invoice_pdf(context), maintype="application", subtype="pdf", filename=f"{doc.number}.pdf"
        )
        self._send(msg, what)
        log.info("%s: %s sent to %s", self._name, what, doc.customer.email)
        return SubmitReceipt(
            portal=self._name,
            channel=Channel.EMAIL,
            submission_key=submission.idempotency_key,
            portal_ref=message_id,
            status=None,
            at=self._now(),
            follow_up=FollowUp.NONE,
            message=f"sent to {doc.customer.email}",
        )

    def _send(self, msg: EmailMessage, what: str) -> None:
        """SMTP failures sorted: a refused recipient is the customer's address (REC), a 5xx reply is
        permanent, everything else (4xx, a dropped connection, a timeout) is retried. Messages are built
        from the server's reply code and text, never from our login."""
        smtp = self._smtp
        try:
            with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_seconds) as client:
                if smtp.starttls:
                    client.starttls()
                if smtp.username:
                    client.login(smtp.username, smtp.password)
                client.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            said = "; ".join(
                f"{code} {short_text(text.decode(errors='replace'), 80)}"
                for code, text in exc.recipients.values()
            )
            reason = StatusReason(ReasonCode.RECEIVER_UNKNOWN, said, "smtp_recipient_refused")
            raise PermanentError(
                self._name, f"{what}: recipient refused ({said})", reasons=(reason,)
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(self._name, f"{what}: SMTP login refused ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error
            text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
            said = f"{exc.smtp_code} {short_text(text, 120)}"
            if exc.smtp_code >= 500:
                raise PermanentError(self._name, f"{what}: refused by the mail server ({said})") from None
            raise TransientError(self._name, f"{what}: mail server busy ({said})") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(
                self._name, f"{what}: mail server unreachable ({type(exc).__name__})"
            ) from None

    def poll(self, since: datetime | None) -> list[StatusUpdate]:
        return []

    def parse_push(self, body: bytes, headers: Mapping[str, str]) -> list[StatusUpdate]:
        raise PermanentError(self._name, "e-mail delivery has no statuses to push")

    def push_reply(self, error: PortalError | None) -> PushReply:
        return PushReply(404)

    def close(self) -> None:
        return None

"""Credit notes, the documents: numbered in their own gapless series, rendered as a UBL 2.1 CreditNote (type
381, Peppol BIS Billing 3.0) and a PDF, delivered through the customer's channel, once.

    next_credit_note_number(session, legal_entity, issue_date) -> "CN-<year>-<000001>"
    credit_note_ubl(session, doc) -> bytes          the UBL CreditNote (BG-3 references the invoice)
    credit_note_pdf(session, doc) -> bytes          the PDF titled "Credit note"
    CreditNoteActivities(store, adapters, smtp).deliver_credit_note(CreditNoteDeliveryRequest)
        -> CreditNoteDelivered                      activity "deliver_credit_note", idempotent per memo

The document itself (workflows/credit_note_types.py) is what the credit memo workflow passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from sqlmodel import Session
from temporalio import activity

from activities.db import Store
from activities.delivery import SmtpConfig
from activities.portals.base import PortalAdapter
from workflows.credit_note_types import CreditNoteDelivered, CreditNoteDeliveryRequest, CreditNoteDocument


class CreditNoteError(ValueError):
    """The credit note cannot be issued as it is; the message names every reason."""


def next_credit_note_number(session: Session, legal_entity: str, issue_date: date | str) -> str:
    raise NotImplementedError


def credit_note_ubl(session: Session, doc: CreditNoteDocument) -> bytes:
    raise NotImplementedError


def credit_note_pdf(session: Session, doc: CreditNoteDocument) -> bytes:
    raise NotImplementedError


class CreditNoteActivities:
    def __init__(self, store: Store, adapters: Mapping[str, PortalAdapter], smtp: SmtpConfig) -> None:
        self._store, self._adapters, self._smtp = store, dict(adapters), smtp

    @activity.defn(name="deliver_credit_note")
    def deliver_credit_note(self, req: CreditNoteDeliveryRequest) -> CreditNoteDelivered:
        raise NotImplementedError

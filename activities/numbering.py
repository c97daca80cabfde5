"""Document numbers: gapless per legal entity and series, allocated under a lock."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlmodel import Session
from temporalio.exceptions import ApplicationError

from activities.models import Invoice, NumberSequence


def allocate_number(session: Session, legal_entity: str, series: str) -> int:
    """Next gapless number in a series, under a row lock (PostgreSQL) or the write lock (SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            pg_insert(NumberSequence)
            .values(legal_entity=legal_entity, series=series, last_value=0)
            .on_conflict_do_nothing(index_elements=["legal_entity", "series"])
        )
        row = session.execute(
            sa_select(NumberSequence)
            .where(NumberSequence.legal_entity == legal_entity, NumberSequence.series == series)  # type: ignore[arg-type]
            .with_for_update()
        ).scalar_one()
    else:
        found = session.get(NumberSequence, (legal_entity, series))
        row = found if found is not None else NumberSequence(legal_entity=legal_entity, series=series)
    row.last_value += 1
    session.add(row)
    session.flush()
    value: int = row.last_value
    return value


def issue_number(session: Session, invoice_id: str) -> str:
    """The invoice's number, allocated the first time it is asked for (when the invoice is issued), so
    that issued invoices are numbered without gaps; voided drafts never take a number."""
    inv = session.get(Invoice, invoice_id)
    if inv is None:
        raise ApplicationError(f"invoice {invoice_id} is not in the store", non_retryable=True)
    if inv.number:
        return inv.number
    year = inv.issue_date.year
    inv.number = f"INV-{year}-{allocate_number(session, inv.legal_entity, f'INV-{year}'):06d}"
    session.add(inv)
    session.flush()
    return inv.number


CREDIT_NOTE_PREFIX = "CN"


def next_credit_note_number(session: Session, legal_entity: str, issue_date: date | str) -> str:
    """The next credit note number of the legal entity, "CN-<year>-<000001>", in its own gapless series
    (CN-<year>) by the credit note's issue date. Allocated in the caller's transaction: it is the caller's
    to store the number with the credit memo in that same transaction (and to ask again only when the memo
    has none), so that a rolled-back or retried issue uses no number."""
    year = (date.fromisoformat(issue_date) if isinstance(issue_date, str) else issue_date).year
    series = f"{CREDIT_NOTE_PREFIX}-{year}"
    return f"{series}-{allocate_number(session, legal_entity, series):06d}"

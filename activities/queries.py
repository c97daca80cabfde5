"""Read queries over the store, shared by the API and the CLI. All SQL for reads lives here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from activities.models import (
    Customer,
    Invoice,
    InvoiceLine,
    LedgerEntry,
    LedgerHead,
    LegalEntity,
    Payment,
    PaymentAllocation,
    PolicyRevision,
    PortalSubmission,
    RoleAssignment,
    User,
)


def invoice_by_id(session: Session, invoice_id: str) -> Invoice | None:
    return session.get(Invoice, invoice_id)


def invoice_by_external_id(session: Session, legal_entity: str, external_id: str) -> Invoice | None:
    return session.exec(
        select(Invoice).where(Invoice.legal_entity == legal_entity, Invoice.external_id == external_id)
    ).first()


def lines_of_invoices(session: Session, invoice_ids: list[str]) -> dict[str, list[InvoiceLine]]:
    """The lines of several invoices in one query (a page of the invoice list), in line order."""
    found: dict[str, list[InvoiceLine]] = {i: [] for i in invoice_ids}
    if invoice_ids:
        for line in session.exec(
            select(InvoiceLine)
            .where(col(InvoiceLine.invoice_id).in_(invoice_ids))
            .order_by(col(InvoiceLine.invoice_id), col(InvoiceLine.line_no))
        ):
            found[line.invoice_id].append(line)
    return found


def latest_portal_passes(session: Session, invoice_ids: list[str]) -> dict[str, PortalSubmission]:
    """Each invoice's latest portal pass, for several invoices in one query."""
    latest: dict[str, PortalSubmission] = {}
    if invoice_ids:
        for row in session.exec(
            select(PortalSubmission)
            .where(col(PortalSubmission.invoice_id).in_(invoice_ids))
            .order_by(col(PortalSubmission.submission_pass))
        ):
            latest[row.invoice_id] = row  # ascending passes: the last one stays
    return latest


def invoice_lines(session: Session, invoice_id: str) -> list[InvoiceLine]:
    return list(
        session.exec(
            select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(col(InvoiceLine.line_no))
        )
    )


@dataclass(frozen=True)
class Page:
    items: list[Invoice]
    next_cursor: tuple[datetime, str] | None


def list_invoices(
    session: Session,
    legal_entities: list[str],
    *,
    status: str | None = None,
    customer_id: str | None = None,
    limit: int = 50,
    after: tuple[datetime, str] | None = None,
) -> Page:
    """Newest first; keyset pagination on (created_at, id) so pages stay stable while invoices arrive."""
    query = select(Invoice).where(col(Invoice.legal_entity).in_(legal_entities))
    if status:
        query = query.where(Invoice.status == status)
    if customer_id:
        query = query.where(Invoice.customer_id == customer_id)
    if after is not None:
        created, ident = after
        query = query.where(
            or_(
                col(Invoice.created_at) < created,
                and_(col(Invoice.created_at) == created, col(Invoice.id) < ident),
            )
        )
    rows = list(
        session.exec(query.order_by(col(Invoice.created_at).desc(), col(Invoice.id).desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, (rows[-1].created_at, rows[-1].id) if more and rows else None)


def invoice_history(session: Session, invoice_id: str) -> list[LedgerEntry]:
    return list(
        session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.object_type == "invoice", LedgerEntry.object_id == invoice_id)
            .order_by(col(LedgerEntry.seq))
        )
    )


def ledger_entry_by_request(session: Session, object_id: str, request_id: str) -> LedgerEntry | None:
    """The transition of an object recorded for a request (update) id, if any: how a retried command
    finds that it was already applied."""
    return session.exec(
        select(LedgerEntry).where(LedgerEntry.object_id == object_id, LedgerEntry.request_id == request_id)
    ).first()


def customer_by_id(session: Session, customer_id: str) -> Customer | None:
    return session.get(Customer, customer_id)


def customer_by_external_ref(session: Session, legal_entity: str, ref: str) -> Customer | None:
    return session.exec(
        select(Customer).where(Customer.legal_entity == legal_entity, Customer.external_ref == ref)
    ).first()


def list_customers(
    session: Session, legal_entities: list[str], limit: int = 200, offset: int = 0
) -> list[Customer]:
    return list(
        session.exec(
            select(Customer)
            .where(col(Customer.legal_entity).in_(legal_entities))
            .order_by(col(Customer.name), col(Customer.id))
            .offset(offset)
            .limit(limit)
        )
    )


def payment_by_id(session: Session, payment_id: str) -> Payment | None:
    return session.get(Payment, payment_id)


def payment_allocations(session: Session, payment_id: str) -> list[PaymentAllocation]:
    return list(
        session.exec(
            select(PaymentAllocation)
            .where(PaymentAllocation.payment_id == payment_id)
            .order_by(col(PaymentAllocation.id))
        )
    )


def policy_revision(session: Session) -> int:
    row = session.get(PolicyRevision, 1)
    return row.revision if row else 0


# Built once: every authenticated request runs it, and building the statement cost more than running it.
_ACTIVE_USER_AND_REVISION = sa_select(
    col(User.active),
    select(PolicyRevision.revision).where(PolicyRevision.id == 1).scalar_subquery(),
).where(col(User.username) == bindparam("username"))


def active_user_and_policy_revision(session: Session, username: str) -> tuple[bool, int]:
    """Whether `username` is a known, active user, and the policy revision: what every authenticated
    request checks, in one query."""
    row = session.execute(_ACTIVE_USER_AND_REVISION, {"username": username}).first()
    if row is None:
        return False, policy_revision(session)
    return bool(row[0]), int(row[1] or 0)


def role_assignments(session: Session) -> list[RoleAssignment]:
    return list(
        session.exec(
            select(RoleAssignment).order_by(
                col(RoleAssignment.username), col(RoleAssignment.legal_entity), col(RoleAssignment.role)
            )
        )
    )


def users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.username))))


def entities_of(session: Session, username: str) -> list[str]:
    return sorted(
        set(session.exec(select(RoleAssignment.legal_entity).where(RoleAssignment.username == username)))
    )


def count_invoices(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(Invoice)).one())


def legal_entity_codes(session: Session) -> list[str]:
    return sorted(session.exec(select(LegalEntity.code)))


def ledger_has_entries(session: Session, legal_entity: str) -> bool:
    head = session.get(LedgerHead, legal_entity)
    return head is not None and head.seq > 0

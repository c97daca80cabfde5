"""Read queries over the store, shared by the API and the CLI. All SQL for reads lives here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import ColumnElement, and_, bindparam, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select

from activities.models import (
    Customer,
    Delegation,
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
    UiSession,
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


# One query per page request: the session, whether it is still open, and its user's standing.
_UI_SESSION = (
    sa_select(
        col(UiSession.username),
        col(UiSession.expires_at),
        col(UiSession.ended_at),
        col(User.active),
        select(PolicyRevision.revision).where(PolicyRevision.id == 1).scalar_subquery(),
    )
    .join(User, col(User.username) == col(UiSession.username))
    .where(col(UiSession.token_hash) == bindparam("token_hash"))
)


@dataclass(frozen=True)
class UiSessionStanding:
    username: str
    expires_at: datetime
    ended: bool
    user_active: bool
    policy_revision: int


def ui_session(session: Session, token_hash: str) -> UiSessionStanding | None:
    """The web UI session named by the SHA-256 of its cookie's secret, with its user's standing."""
    row = session.execute(_UI_SESSION, {"token_hash": token_hash}).first()
    if row is None:
        return None
    expires = row[1] if row[1].tzinfo else row[1].replace(tzinfo=UTC)
    return UiSessionStanding(str(row[0]), expires, row[2] is not None, bool(row[3]), int(row[4] or 0))


# -- the approver's inbox and the invoice page -------------------------------------------------------------
#
# The inbox lists what a user may approve now. The read model keeps an invoice's approval plan, its
# approvals and who prepared it as JSON text (written by the workflow's recording activity), so the
# filtering is done by the database's JSON functions, one spelling per dialect: the waiting tier is
# plan.tiers[number of approvals], and segregation of duties bars the creator, editors, submitters and
# earlier approvers. The API checks each listed invoice again with the workflow's own rules
# (api.approvals.approve_option) before showing it: the SQL is a filter, not the rule.

SLA_STATES = ("on_time", "reminded", "escalated")


@dataclass(frozen=True)
class InboxRow:
    invoice: Invoice
    customer_name: str
    tier: int
    role: str
    waiting_since: datetime | None
    escalated: bool
    reminded: bool

    @property
    def sla(self) -> str:
        return "escalated" if self.escalated else ("reminded" if self.reminded else "on_time")


@dataclass(frozen=True)
class InboxPage:
    rows: list[InboxRow]
    total: int


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def approval_inbox(
    session: Session,
    username: str,
    roles_by_entity: dict[str, set[str]],
    *,
    search: str | None = None,
    customer_id: str | None = None,
    po_number: str | None = None,
    tier: int | None = None,
    sla: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> InboxPage:
    """Invoices pending approval whose waiting tier needs a role `username` holds (or holds by delegation)
    in that legal entity (`roles_by_entity`), that segregation of duties does not bar them from; longest
    waiting first. `search` matches the invoice number, external id, PO number and customer name."""
    if not roles_by_entity:
        return InboxPage([], 0)
    # The waiting tier's columns (Invoice.waiting_*, written with the read model): one indexed range per
    # legal entity and role, no JSON parsed. Segregation of duties: "|name|" is not among the barred.
    conditions: list[ColumnElement[bool]] = [
        col(Invoice.status) == "pending_approval",
        or_(
            *(
                and_(col(Invoice.legal_entity) == entity, col(Invoice.waiting_role).in_(sorted(roles)))
                for entity, roles in sorted(roles_by_entity.items())
                if roles
            )
        ),
        ~col(Invoice.sod_barred).like(_like("|" + username + "|"), escape="\\"),
    ]
    if search and search.strip():
        pattern = _like(search.strip().lower())
        conditions.append(
            or_(
                func.lower(func.coalesce(col(Invoice.number), "")).like(pattern, escape="\\"),
                func.lower(col(Invoice.external_id)).like(pattern, escape="\\"),
                func.lower(func.coalesce(col(Invoice.po_number), "")).like(pattern, escape="\\"),
                func.lower(col(Customer.name)).like(pattern, escape="\\"),
            )
        )
    if customer_id:
        conditions.append(col(Invoice.customer_id) == customer_id)
    if po_number:
        conditions.append(
            func.lower(func.coalesce(col(Invoice.po_number), "")).like(_like(po_number.lower()), escape="\\")
        )
    if tier is not None:
        conditions.append(col(Invoice.waiting_tier) == tier)
    if sla is not None:
        conditions.append(col(Invoice.approval_sla) == sla)
    counted = select(func.count()).select_from(Invoice)
    if search and search.strip():  # the customer's name is searched too
        counted = counted.join(Customer, col(Customer.id) == col(Invoice.customer_id))
    total = int(session.exec(counted.where(*conditions)).one())
    query = (
        sa_select(Invoice, col(Customer.name))
        .join(Customer, col(Customer.id) == col(Invoice.customer_id))
        .where(*conditions)
        .order_by(col(Invoice.waiting_since), col(Invoice.id))
        .offset(offset)
        .limit(limit)
    )
    rows = [
        InboxRow(
            invoice=inv,
            customer_name=str(name),
            tier=inv.waiting_tier,
            role=inv.waiting_role,
            waiting_since=inv.waiting_since,
            escalated=inv.approval_sla == "escalated",
            reminded=inv.approval_sla == "reminded",
        )
        for inv, name in session.execute(query)
    ]
    return InboxPage(rows, total)


def users_in_entity(session: Session, legal_entity: str) -> list[tuple[str, str]]:
    """(username, role) of the active users holding a role in the legal entity (or in every one, "*")."""
    return [
        (str(u), str(r))
        for u, r in session.execute(
            sa_select(col(RoleAssignment.username), col(RoleAssignment.role))
            .join(User, col(User.username) == col(RoleAssignment.username))
            .where(col(RoleAssignment.legal_entity).in_([legal_entity, "*"]), col(User.active))
            .order_by(col(RoleAssignment.username), col(RoleAssignment.role))
        )
    ]


def delegations_in_force(session: Session, legal_entity: str, role: str, on: date) -> list[Delegation]:
    """Every delegation of `role` in the legal entity in force on `on` (not revoked), oldest first."""
    return list(
        session.exec(
            select(Delegation)
            .where(
                Delegation.legal_entity == legal_entity,
                Delegation.role == role,
                col(Delegation.revoked_at).is_(None),
                col(Delegation.starts_on) <= on,
                col(Delegation.ends_on) >= on,
            )
            .order_by(col(Delegation.created_at))
        )
    )


def customer_names(session: Session, customer_ids: list[str]) -> dict[str, str]:
    if not customer_ids:
        return {}
    return {
        str(i): str(n)
        for i, n in session.execute(
            sa_select(col(Customer.id), col(Customer.name)).where(
                col(Customer.id).in_(sorted(set(customer_ids)))
            )
        )
    }


@dataclass(frozen=True)
class InvoicePayment:
    payment: Payment
    amount_minor: int  # the part applied to this invoice
    applied_by: str
    applied_at: datetime


def payments_of_invoice(session: Session, invoice_id: str) -> list[InvoicePayment]:
    """The receipts applied to an invoice, oldest first."""
    return [
        InvoicePayment(p, int(a.amount_minor), a.applied_by, a.applied_at)
        for a, p in session.execute(
            sa_select(PaymentAllocation, Payment)
            .join(Payment, col(Payment.id) == col(PaymentAllocation.payment_id))
            .where(col(PaymentAllocation.invoice_id) == invoice_id)
            .order_by(col(PaymentAllocation.applied_at), col(PaymentAllocation.id))
        )
    ]


def portal_passes(session: Session, invoice_id: str) -> list[PortalSubmission]:
    """Every pass of an invoice through its customer's portal, first pass first."""
    return list(
        session.exec(
            select(PortalSubmission)
            .where(PortalSubmission.invoice_id == invoice_id)
            .order_by(col(PortalSubmission.submission_pass))
        )
    )

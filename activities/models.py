"""SQLModel tables of the store: master data, the invoice read model, payments, users and the ledger.

Money columns are integer minor units (`*_minor`) next to an ISO 4217 code. Timestamps are UTC.
The schema is created and changed only by the Alembic migrations in `activities/migrations/`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import BigInteger, Column, Index, Text, UniqueConstraint, false
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


# A column that a migration added to a table already holding rows has a server default: it filled those rows,
# and it fills an insert that leaves the column out (an API or worker replica still on the release before the
# migration). The models declare those defaults so that they say what the database holds (the migration test
# compares them, server defaults included).
_ADDED_EMPTY = {"server_default": ""}


class LegalEntity(SQLModel, table=True):
    """A company of the group that issues invoices: the seller on every document it issues."""

    __tablename__ = "legal_entity"
    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    currency: str = Field(max_length=3)
    timezone: str = Field(default="UTC", max_length=64)
    country: str = Field(default="", max_length=2)
    vat_id: str = Field(default="", max_length=32)
    address: str = Field(default="", max_length=500)  # free text, as printed on the PDF
    # The seller of an e-invoice (EN 16931 BG-4, BG-5): address parts, the Peppol participant (endpoint id
    # and its EAS scheme), the legal registration number, and the account customers pay into.
    street: str = Field(default="", max_length=200, sa_column_kwargs=_ADDED_EMPTY)
    city: str = Field(default="", max_length=100, sa_column_kwargs=_ADDED_EMPTY)
    postal_code: str = Field(default="", max_length=20, sa_column_kwargs=_ADDED_EMPTY)
    endpoint_id: str = Field(default="", max_length=100, sa_column_kwargs=_ADDED_EMPTY)
    endpoint_scheme: str = Field(default="", max_length=4, sa_column_kwargs=_ADDED_EMPTY)
    company_id: str = Field(default="", max_length=50, sa_column_kwargs=_ADDED_EMPTY)
    iban: str = Field(default="", max_length=34, sa_column_kwargs=_ADDED_EMPTY)
    # The seller's contact on e-invoices (BG-6); Peppol's German rules require it between German parties.
    contact_name: str = Field(default="", max_length=200, sa_column_kwargs=_ADDED_EMPTY)
    email: str = Field(default="", max_length=254, sa_column_kwargs=_ADDED_EMPTY)
    telephone: str = Field(default="", max_length=40, sa_column_kwargs=_ADDED_EMPTY)


class CustomerBase(SQLModel):
    name: str = Field(max_length=200)
    currency: str = Field(max_length=3)
    payment_terms_days: int = Field(default=30, ge=0, le=365)
    email: str = Field(default="", max_length=254)
    contact_name: str = Field(default="", max_length=200)
    address: str = Field(default="", max_length=500)
    country: str = Field(default="", max_length=2)
    vat_id: str = Field(default="", max_length=32)
    # The buyer of an e-invoice (EN 16931 BG-7, BG-8): address parts, the Peppol participant (endpoint id
    # and its EAS scheme) and the legal registration number.
    street: str = Field(default="", max_length=200, sa_column_kwargs=_ADDED_EMPTY)
    city: str = Field(default="", max_length=100, sa_column_kwargs=_ADDED_EMPTY)
    postal_code: str = Field(default="", max_length=20, sa_column_kwargs=_ADDED_EMPTY)
    endpoint_id: str = Field(default="", max_length=100, sa_column_kwargs=_ADDED_EMPTY)
    endpoint_scheme: str = Field(default="", max_length=4, sa_column_kwargs=_ADDED_EMPTY)
    company_id: str = Field(default="", max_length=50, sa_column_kwargs=_ADDED_EMPTY)
    # The customer's AP refuses invoices without their purchase order number (a pre-submission check).
    po_required: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # BT-10, the reference the buyer asks to quote (cost centre, AP mailbox id); Peppol needs it or a PO.
    buyer_reference: str = Field(default="", max_length=100, sa_column_kwargs=_ADDED_EMPTY)
    # The channel invoices reach this customer through: a portal named in the portal configuration
    # (CASHCYCLE_PORTALS_FILE), or "email" (PDF by mail) for customers without one.
    portal: str = Field(default="email", max_length=64, sa_column_kwargs={"server_default": "email"})


class Customer(CustomerBase, table=True):
    __tablename__ = "customer"
    __table_args__ = (UniqueConstraint("legal_entity", "external_ref"),)
    id: str = Field(primary_key=True, max_length=36)
    legal_entity: str = Field(foreign_key="legal_entity.code", index=True, max_length=32)
    external_ref: str | None = Field(default=None, max_length=100)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class Invoice(SQLModel, table=True):
    """The read model of an invoice, written only by the workflow's recording activity."""

    __tablename__ = "invoice"
    __table_args__ = (
        UniqueConstraint("legal_entity", "external_id"),
        UniqueConstraint("legal_entity", "number"),
        # The approvers' inbox: the tiers waiting for a role in a legal entity, longest waiting first.
        Index("ix_invoice_waiting", "legal_entity", "waiting_role", "waiting_since"),
    )
    id: str = Field(primary_key=True, max_length=36)
    legal_entity: str = Field(foreign_key="legal_entity.code", index=True, max_length=32)
    external_id: str = Field(max_length=100)
    number: str | None = Field(default=None, max_length=32)  # allocated when issued (delivered)
    status: str = Field(index=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=36)
    currency: str = Field(max_length=3)
    subtotal_minor: int = Field(sa_type=BigInteger)
    tax_total_minor: int = Field(sa_type=BigInteger)
    total_minor: int = Field(sa_type=BigInteger)
    amount_paid_minor: int = Field(default=0, sa_type=BigInteger)
    amount_due_minor: int = Field(sa_type=BigInteger)
    issue_date: date
    due_date: date = Field(index=True)
    po_number: str | None = Field(default=None, max_length=100)
    workflow_id: str = Field(max_length=200, unique=True)
    created_by: str = Field(max_length=64)
    payload_hash: str = Field(max_length=64)
    transition_seq: int = 0
    status_since: datetime
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None = None
    approvals_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    editors_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    submitters_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    exchange_rate: str = Field(default="1", max_length=40, sa_column_kwargs={"server_default": "1"})
    matrix_version: str | None = Field(default=None, max_length=64)
    # The submission's approval plan, reassignments, SLA clock and escalation (see InvoiceState).
    approval_json: str = Field(
        default="{}", sa_column=Column(Text, nullable=False, default="{}", server_default="{}")
    )
    # The tier waiting for approval, denormalised from the above for the approvers' inbox (one indexed read
    # instead of parsing every pending invoice's JSON): its role and level, since when it waits, its SLA
    # state (on_time, reminded, escalated) and everyone segregation of duties bars from it, as "|a|b|"
    # (the creator, editors, submitters and earlier approvers, and those they approved for). Empty, 0 and
    # None when no tier waits. Written with the rest of the read model by the recording activity.
    waiting_role: str = Field(default="", max_length=64, sa_column_kwargs=_ADDED_EMPTY)
    waiting_tier: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    waiting_since: datetime | None = None
    approval_sla: str = Field(default="", max_length=16, sa_column_kwargs=_ADDED_EMPTY)
    sod_barred: str = Field(default="", sa_column=Column(Text, nullable=False, default="", server_default=""))
    # Disputes and adjustments (0008): the open dispute case holding part of the invoice ("" when none) and
    # the amount it holds; what issued credit memos and write-offs took off. The amount due is the total
    # less payments, credits and write-offs.
    dispute_id: str = Field(default="", max_length=36, index=True, sa_column_kwargs=_ADDED_EMPTY)
    disputed_minor: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    credited_minor: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    written_off_minor: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_line"
    __table_args__ = (UniqueConstraint("invoice_id", "line_no"),)
    id: int | None = Field(default=None, primary_key=True)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, max_length=36)
    line_no: int
    description: str = Field(max_length=500)
    quantity: str = Field(max_length=40)
    unit_price: str = Field(max_length=40)
    tax_rate: str = Field(max_length=12)
    net_minor: int = Field(sa_type=BigInteger)
    tax_minor: int = Field(sa_type=BigInteger)


class Payment(SQLModel, table=True):
    __tablename__ = "payment"
    id: str = Field(primary_key=True, max_length=36)
    legal_entity: str = Field(foreign_key="legal_entity.code", index=True, max_length=32)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=36)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    received_on: date
    reference: str = Field(max_length=140)
    created_at: datetime = Field(default_factory=utcnow)


class PaymentAllocation(SQLModel, table=True):
    __tablename__ = "payment_allocation"
    __table_args__ = (UniqueConstraint("payment_id", "invoice_id"),)
    id: int | None = Field(default=None, primary_key=True)
    payment_id: str = Field(foreign_key="payment.id", index=True, max_length=36)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, max_length=36)
    amount_minor: int = Field(sa_type=BigInteger)
    applied_by: str = Field(max_length=64)
    applied_at: datetime


class NumberSequence(SQLModel, table=True):
    """Gapless document numbers per legal entity and series (e.g. INV-2026)."""

    __tablename__ = "number_sequence"
    legal_entity: str = Field(primary_key=True, max_length=32)
    series: str = Field(primary_key=True, max_length=32)
    last_value: int = 0


class User(SQLModel, table=True):
    __tablename__ = "app_user"
    username: str = Field(primary_key=True, max_length=64)
    password_hash: str = Field(max_length=200)
    full_name: str = Field(default="", max_length=200)
    email: str = Field(default="", max_length=254)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class RoleAssignment(SQLModel, table=True):
    """Casbin grouping rows: user has role in legal entity (domain)."""

    __tablename__ = "role_assignment"
    __table_args__ = (UniqueConstraint("username", "role", "legal_entity"),)
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(foreign_key="app_user.username", index=True, max_length=64)
    role: str = Field(max_length=64)
    legal_entity: str = Field(max_length=32)
    granted_by: str = Field(max_length=64)
    granted_at: datetime = Field(default_factory=utcnow)


class PolicyRevision(SQLModel, table=True):
    """Bumped on every grant or revoke so that API processes reload their role graph."""

    __tablename__ = "policy_revision"
    id: int = Field(default=1, primary_key=True)
    revision: int = 0


class IdempotentResponse(SQLModel, table=True):
    """Replies to POSTs that carried an Idempotency-Key and are not workflow updates."""

    __tablename__ = "idempotent_response"
    key: str = Field(primary_key=True, max_length=300)
    request_hash: str = Field(max_length=64)
    status_code: int
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class LedgerEntry(SQLModel, table=True):
    """One transition as evidence. Append-only: database triggers refuse UPDATE and DELETE."""

    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("legal_entity", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    legal_entity: str = Field(max_length=32)
    seq: int
    business_key: str = Field(max_length=300, unique=True)
    object_type: str = Field(max_length=32)
    object_id: str = Field(max_length=64, index=True)
    event: str = Field(max_length=48)
    from_status: str | None = Field(default=None, max_length=32)
    to_status: str | None = Field(default=None, max_length=32)
    actor: str = Field(max_length=64)
    actor_roles: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON list
    rule: str = Field(default="", max_length=200)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    workflow_id: str = Field(default="", max_length=200)
    run_id: str = Field(default="", max_length=64)
    request_id: str = Field(default="", max_length=300)
    at: str = Field(max_length=40)
    payload: str = Field(sa_column=Column(Text, nullable=False))  # canonical JSON
    payload_hash: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64)


class LedgerHead(SQLModel, table=True):
    """The chain head per legal entity; its row lock serialises appends on PostgreSQL."""

    __tablename__ = "ledger_head"
    legal_entity: str = Field(primary_key=True, max_length=32)
    seq: int = 0
    entry_hash: str = Field(max_length=64)


class InvoiceDelivery(SQLModel, table=True):
    """A delivery that left the building; checked before sending so a retried activity sends once."""

    __tablename__ = "invoice_delivery"
    message_id: str = Field(primary_key=True, max_length=300)
    invoice_id: str = Field(foreign_key="invoice.id", index=True, max_length=36)
    channel: str = Field(max_length=32)
    recipient: str = Field(max_length=254)
    sent_at: datetime = Field(default_factory=utcnow)


class Delegation(SQLModel, table=True):
    """An approver's authority lent to a colleague for a date range (legal entity's dates, inclusive)."""

    __tablename__ = "delegation"
    id: str = Field(primary_key=True, max_length=36)
    legal_entity: str = Field(foreign_key="legal_entity.code", index=True, max_length=32)
    delegator: str = Field(foreign_key="app_user.username", index=True, max_length=64)
    delegate: str = Field(foreign_key="app_user.username", index=True, max_length=64)
    role: str = Field(max_length=64)
    starts_on: date
    ends_on: date
    reason: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    revoked_by: str | None = Field(default=None, max_length=64)


class Notification(SQLModel, table=True):
    """A message the engine sent a person (approval reminders, escalations); also mailed."""

    __tablename__ = "notification"
    key: str = Field(primary_key=True, max_length=300)  # workflow id + notification seq: sent once
    legal_entity: str = Field(max_length=32, index=True)
    recipient: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=48)
    invoice_id: str | None = Field(default=None, max_length=36)
    subject: str = Field(max_length=300)
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class LedgerCheckpoint(SQLModel, table=True):
    """A signed head of one legal entity's chain (Ed25519): what a wholesale rewrite of the chain cannot
    reproduce without the signing key. Append-only, like the ledger."""

    __tablename__ = "ledger_checkpoint"
    id: int | None = Field(default=None, primary_key=True)
    legal_entity: str = Field(max_length=32, index=True)
    seq: int
    entry_hash: str = Field(max_length=64)
    signed_at: str = Field(max_length=40)  # UTC, ISO 8601
    key_id: str = Field(max_length=16)  # first 16 hex digits of SHA-256 of the raw public key
    public_key: str = Field(max_length=64)  # raw Ed25519 public key, hex
    signature: str = Field(max_length=128)  # over checkpoint_message(...), hex
    trigger: str = Field(max_length=16)  # "schedule" or "on_demand"
    requested_by: str = Field(max_length=64)


class PortalSubmission(SQLModel, table=True):
    """One pass of one invoice through a customer's portal, and what the portal said about it: the read
    model of the portal reports (first-pass acceptance, rejections by reason, time in portal)."""

    __tablename__ = "portal_submission"
    submission_key: str = Field(primary_key=True, max_length=100)  # "<invoice id>.pass-<n>"
    invoice_id: str = Field(foreign_key="invoice.id", index=True, max_length=36)
    legal_entity: str = Field(max_length=32, index=True)
    customer_id: str = Field(max_length=36, index=True)
    portal: str = Field(max_length=64, index=True)
    channel: str = Field(max_length=16)
    submission_pass: int
    portal_ref: str = Field(default="", max_length=200, index=True)
    submitted_at: datetime = Field(index=True)
    status: str = Field(max_length=32)  # a normalised PortalStatus
    status_at: datetime
    reason_code: str = Field(default="", max_length=8)
    reason_text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    accepted_at: datetime | None = None
    rejected_at: datetime | None = None


class PortalCursor(SQLModel, table=True):
    """Where the last poll of a pulled portal stopped (its clock): the next poll asks what changed since."""

    __tablename__ = "portal_cursor"
    portal: str = Field(primary_key=True, max_length=64)
    cursor: str = Field(default="", max_length=64)
    updated_at: datetime = Field(default_factory=utcnow)


class UiSession(SQLModel, table=True):
    """A signed-in browser: the web UI's session cookie names one row (by the SHA-256 of its secret, so a
    copy of the store opens no session). Logout ends it for every replica at once; a disabled user's
    sessions stop working at the next request, whatever their expiry."""

    __tablename__ = "ui_session"
    token_hash: str = Field(primary_key=True, max_length=64)
    username: str = Field(foreign_key="app_user.username", index=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    ended_at: datetime | None = None

"""Dispute cases in the store: the tables, the owner a new case gets (by the policy of
activities/dispute_policy.py), the recording activity, the queries of the board and the case page, and the one
command code that opens a case or joins the open one (the API, a deduction on a payment and the customer's
portal all go through `DisputeCommands.open_or_join`).

The read model (`dispute`, `dispute_invoice`, `dispute_note`) is written only by `record_dispute_transition`,
idempotent on (workflow id, transition seq) as the invoice's is. Two rows are written before a workflow
exists, neither business state: the reservation of a case number for an opening request (`dispute_request`:
a retried request finds its number, so the series stays gapless), and an attachment's bytes, stored under
their SHA-256 (`dispute_attachment`) before the case's `attach` update records them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Column, LargeBinary, Text, UniqueConstraint, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Field, Session, SQLModel, col, select
from temporalio import activity
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowUpdateStage
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.db import Store, reading, writing
from activities.directory import roles_of
from activities.dispute_policy import (  # the policy's names are this module's too (imported from here)
    DISPUTES_FILE as DISPUTES_FILE,
)
from activities.dispute_policy import POLICIES as POLICIES
from activities.dispute_policy import REASON_CODES_DIR as REASON_CODES_DIR
from activities.dispute_policy import AssignRule as AssignRule
from activities.dispute_policy import DisputePolicy as DisputePolicy
from activities.dispute_policy import DisputePolicyError as DisputePolicyError
from activities.dispute_policy import Duration as Duration
from activities.dispute_policy import MappedReason as MappedReason
from activities.dispute_policy import SlaRule as SlaRule
from activities.dispute_policy import config_for as config_for
from activities.dispute_policy import known_codes as known_codes
from activities.dispute_policy import load_dispute_policy as load_dispute_policy
from activities.dispute_policy import map_reason as map_reason
from activities.dispute_policy import parse_dispute_policy as parse_dispute_policy
from activities.ledger import LedgerFacts, append_to_ledger, find_by_business_key
from activities.models import Customer, Invoice, LedgerEntry, LegalEntity
from activities.money import exponent
from activities.numbering import allocate_number
from workflows.dispute import DisputeWorkflow
from workflows.dispute_states import HOLDS_INVOICES, Status
from workflows.dispute_types import (
    DisputedInvoiceIn,
    DisputeInput,
    DisputeRecord,
    DisputeRecorded,
    DisputeState,
    JoinCommand,
    dispute_workflow_id,
)
from workflows.types import Actor, PortalDisputeRequest

DISPUTE_NAMESPACE = uuid.UUID("5d1c2f0a-9b7e-4c3d-8a6f-2e4b1d9c7a51")
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024  # the store keeps the bytes; larger evidence belongs in a DMS
# Invoice statuses a case can take an amount of: the customer has it and owes it.
DISPUTABLE = frozenset({"submitted", "accepted", "partially_paid", "disputed"})
OPEN_STATUSES = tuple(s.value for s in HOLDS_INVOICES)
# Statuses in which another invoice, or more of one, can join the case (workflows/dispute_states.py).
JOINABLE = ("open", "waiting_on_customer")
SYSTEM = Actor(username="system", roles=["system"], rule="portal:dispute")


# -- tables -----------------------------------------------------------------------------------------------


class Dispute(SQLModel, table=True):
    """The read model of a dispute case, written only by the workflow's recording activity."""

    __tablename__ = "dispute"
    __table_args__ = (UniqueConstraint("legal_entity", "case_number"),)
    id: str = Field(primary_key=True, max_length=36)
    legal_entity: str = Field(foreign_key="legal_entity.code", index=True, max_length=32)
    case_number: str = Field(max_length=32)
    workflow_id: str = Field(max_length=200, unique=True)
    customer_id: str = Field(foreign_key="customer.id", index=True, max_length=36)
    currency: str = Field(max_length=3)
    source: str = Field(max_length=16)  # manual | portal | deduction
    status: str = Field(index=True, max_length=32)
    claimed_code: str = Field(max_length=64)  # the customer's code, as given
    reason: str = Field(index=True, max_length=8)  # ours, mapped
    reason_version: str = Field(max_length=200)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    owner: str = Field(default="", index=True, max_length=64)
    coordinator: str = Field(default="", max_length=64)
    original_minor: int = Field(default=0, sa_type=BigInteger)
    open_minor: int = Field(default=0, sa_type=BigInteger)
    credited_minor: int = Field(default=0, sa_type=BigInteger)
    written_off_minor: int = Field(default=0, sa_type=BigInteger)
    paid_minor: int = Field(default=0, sa_type=BigInteger)
    recovered_minor: int = Field(default=0, sa_type=BigInteger)
    escalation_level: int = 0
    waiting_reason: str = Field(default="", max_length=2000)
    sla_due_at: datetime | None = Field(default=None, index=True)
    window_deadline: datetime | None = None
    sla_rule: str = Field(default="", max_length=200)
    resolution: str = Field(default="", max_length=16)
    root_cause: str = Field(default="", max_length=8)
    validity: str = Field(default="", max_length=16)
    capa_id: str = Field(default="", max_length=64)
    opened_by: str = Field(max_length=64)
    opened_at: datetime
    status_since: datetime
    closed_at: datetime | None = None
    updated_at: datetime
    transition_seq: int = 0
    state_json: str = Field(default="{}", sa_column=Column(Text, nullable=False, default="{}"))


class DisputeInvoice(SQLModel, table=True):
    """An invoice of a case and the amounts the case took on it and still disputes."""

    __tablename__ = "dispute_invoice"
    dispute_id: str = Field(foreign_key="dispute.id", primary_key=True, max_length=36)
    invoice_id: str = Field(foreign_key="invoice.id", primary_key=True, index=True, max_length=36)
    original_minor: int = Field(sa_type=BigInteger)
    open_minor: int = Field(sa_type=BigInteger)
    linked: bool = True  # the invoice holds the case (it is `disputed` for it)


class DisputeNote(SQLModel, table=True):
    """The case's thread: notes, attachments and what a transition said (opening, waiting, resolving)."""

    __tablename__ = "dispute_note"
    __table_args__ = (UniqueConstraint("dispute_id", "transition_seq"),)
    id: int | None = Field(default=None, primary_key=True)
    dispute_id: str = Field(foreign_key="dispute.id", index=True, max_length=36)
    transition_seq: int
    event: str = Field(max_length=32)
    author: str = Field(max_length=64)
    at: datetime
    text: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    filename: str = Field(default="", max_length=255)
    content_type: str = Field(default="", max_length=100)
    size: int = 0
    sha256: str = Field(default="", max_length=64)


class DisputeAttachment(SQLModel, table=True):
    """An attachment's bytes, by SHA-256 (the same file twice is stored once)."""

    __tablename__ = "dispute_attachment"
    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    stored_by: str = Field(max_length=64)
    stored_at: datetime


class DisputeRequest(SQLModel, table=True):
    """The case number reserved for an opening request (its idempotency key): the same request again opens
    the same case, and a number is taken once, so the series stays gapless."""

    __tablename__ = "dispute_request"
    legal_entity: str = Field(primary_key=True, max_length=32)
    request_key: str = Field(primary_key=True, max_length=300)
    dispute_id: str = Field(max_length=36)
    case_number: str = Field(max_length=32)
    created_at: datetime


def _pick(session: Session, who: str, legal_entity: str) -> str:
    """A username, or for "role:<role>" the active holder with the fewest open cases (then by name)."""
    if not who.startswith("role:"):
        return who
    from activities.queries import users_in_entity

    role = who.removeprefix("role:")
    holders = sorted({u for u, r in users_in_entity(session, legal_entity) if r == role})
    if not holders:
        return ""
    load = dict(
        session.execute(
            sa_select(col(Dispute.owner), func.count())
            .where(col(Dispute.legal_entity) == legal_entity, col(Dispute.status).in_(OPEN_STATUSES))
            .group_by(col(Dispute.owner))
        ).all()
    )
    return min(holders, key=lambda u: (load.get(u, 0), u))


def assignment(
    session: Session, policy: DisputePolicy, legal_entity: str, reason: str, customer: Customer
) -> tuple[str, str]:
    """(owner, coordinator) by the first [[assign]] rule that matches the reason and the customer."""
    for rule in policy.assign:
        if rule.reason and rule.reason != reason:
            continue
        if rule.customer and rule.customer not in (customer.external_ref, customer.id):
            continue
        return _pick(session, rule.owner, legal_entity), _pick(session, rule.coordinator, legal_entity)
    return "", ""


# -- recording ----------------------------------------------------------------------------------------------


def _dt(text: str) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _read_model(state: DisputeState, at: datetime) -> dict[str, Any]:
    a = state.amounts
    return {
        "status": state.status,
        "owner": state.owner,
        "coordinator": state.coordinator,
        "original_minor": a.original_minor,
        "open_minor": a.open_minor,
        "credited_minor": a.credited_minor,
        "written_off_minor": a.written_off_minor,
        "paid_minor": a.paid_minor,
        "recovered_minor": a.recovered_minor,
        "escalation_level": state.escalation_level,
        "waiting_reason": state.waiting_reason,
        "sla_due_at": _dt(state.sla_due_at),
        "window_deadline": _dt(state.window_deadline),
        "sla_rule": state.sla_rule,
        "resolution": state.resolution,
        "root_cause": state.root_cause,
        "validity": state.validity,
        "capa_id": state.capa_id,
        "status_since": datetime.fromisoformat(state.status_since),
        "closed_at": _dt(state.closed_at),
        "updated_at": at,
        "transition_seq": state.transition_seq,
        "state_json": json.dumps(asdict(state)),
    }


def record_dispute(session: Session, rec: DisputeRecord) -> DisputeRecorded:
    """Append the transition to the ledger and apply it to the read model, in the caller's transaction."""
    business_key = f"{rec.workflow_id}#{rec.transition_seq}"
    done = find_by_business_key(session, business_key)
    if done is not None:
        if (done.event, done.request_id) != (rec.event, rec.request_id):
            raise ApplicationError(
                f"{business_key} is recorded as {done.event}, not {rec.event}",
                type="ledger_conflict",
                non_retryable=True,
            )
        return DisputeRecorded(ledger_seq=done.seq, entry_hash=done.entry_hash, at=done.at)
    state = rec.state
    at = datetime.fromisoformat(rec.at)
    row = session.get(Dispute, state.dispute_id)
    values = _read_model(state, at)
    if row is None:
        row = Dispute(
            id=state.dispute_id,
            legal_entity=state.legal_entity,
            case_number=state.case_number,
            workflow_id=rec.workflow_id,
            customer_id=state.customer_id,
            currency=state.currency,
            source=state.source,
            claimed_code=state.claimed_code,
            reason=state.reason,
            reason_version=state.reason_version,
            description=state.description,
            opened_by=state.opened_by,
            opened_at=datetime.fromisoformat(state.opened_at),
            **values,
        )
    else:
        for key, value in values.items():
            setattr(row, key, value)
    session.add(row)
    session.flush()
    links = {
        d.invoice_id: d
        for d in session.exec(select(DisputeInvoice).where(DisputeInvoice.dispute_id == state.dispute_id))
    }
    for inv in state.invoices:
        link = links.get(inv.invoice_id) or DisputeInvoice(
            dispute_id=state.dispute_id, invoice_id=inv.invoice_id, original_minor=0, open_minor=0
        )
        link.original_minor, link.open_minor, link.linked = inv.original_minor, inv.open_minor, inv.linked
        session.add(link)
    if rec.note or rec.attachment is not None:
        att = rec.attachment
        session.add(
            DisputeNote(
                dispute_id=state.dispute_id,
                transition_seq=rec.transition_seq,
                event=rec.event,
                author=rec.actor.username,
                at=at,
                text=rec.note,
                filename=att.filename if att else "",
                content_type=att.content_type if att else "",
                size=att.size if att else 0,
                sha256=att.sha256 if att else "",
            )
        )
    a = state.amounts
    payload: dict[str, Any] = {
        "case_number": state.case_number,
        "customer_id": state.customer_id,
        "currency": state.currency,
        "source": state.source,
        "claimed_code": state.claimed_code,
        "reason": state.reason,
        "reason_version": state.reason_version,
        "owner": state.owner,
        "escalation_level": state.escalation_level,
        "sla_rule": state.sla_rule,
        "amounts": {
            "original": a.original_minor,
            "open": a.open_minor,
            "credited": a.credited_minor,
            "written_off": a.written_off_minor,
            "paid": a.paid_minor,
            "recovered": a.recovered_minor,
        },
        "invoices": {i.invoice_id: i.open_minor for i in state.invoices},
        **rec.payload,
    }
    if rec.note:
        payload["note_sha256"] = hashlib.sha256(rec.note.encode()).hexdigest()
    if rec.attachment is not None:
        payload["attachment"] = asdict(rec.attachment)
    entry = append_to_ledger(
        session,
        LedgerFacts(
            legal_entity=rec.legal_entity,
            business_key=business_key,
            object_type="dispute",
            object_id=state.dispute_id,
            event=rec.event,
            from_status=rec.from_status,
            to_status=rec.to_status,
            actor=rec.actor.username,
            actor_roles=list(rec.actor.roles)
            if rec.actor.username == "system" or not rec.actor.roles
            else roles_of(session, rec.actor.username, rec.legal_entity) or list(rec.actor.roles),
            rule=rec.actor.rule,
            reason=rec.reason,
            workflow_id=rec.workflow_id,
            run_id=rec.run_id,
            request_id=rec.request_id,
            at=rec.at,
            payload=payload,
        ),
        looked_up=True,
    )
    return DisputeRecorded(ledger_seq=entry.seq, entry_hash=entry.entry_hash, at=entry.at)


# -- queries (the API and the pages read through these) --------------------------------------------------

SORTS: dict[str, Any] = {
    "opened": col(Dispute.opened_at).desc(),
    "oldest": col(Dispute.opened_at).asc(),
    "amount": col(Dispute.open_minor).desc(),
    "sla": col(Dispute.sla_due_at).asc(),
}


@dataclass(frozen=True)
class DisputeFilters:
    status: str | None = None
    owner: str | None = None
    customer_id: str | None = None
    reason: str | None = None
    past_sla: bool | None = None
    # Added for the board's links from the dispute figures (pages part):
    root_cause: str | None = None
    opened_from: datetime | None = None  # opened at or after
    opened_to: datetime | None = None  # opened before


@dataclass(frozen=True)
class DisputePage:
    items: list[Dispute]
    total: int
    offset: int
    limit: int


def _board_where(entities: list[str], filters: DisputeFilters, now: datetime | None) -> list[Any]:
    where: list[Any] = [col(Dispute.legal_entity).in_(entities)]
    if filters.status:
        where.append(col(Dispute.status) == filters.status)
    if filters.owner:
        where.append(col(Dispute.owner) == filters.owner)
    if filters.customer_id:
        where.append(col(Dispute.customer_id) == filters.customer_id)
    if filters.reason:
        where.append(col(Dispute.reason) == filters.reason)
    if filters.past_sla is not None:
        late = col(Dispute.sla_due_at) < (now or datetime.now(UTC))
        where.append(late if filters.past_sla else or_(col(Dispute.sla_due_at).is_(None), ~late))
    if filters.root_cause:
        where.append(col(Dispute.root_cause) == filters.root_cause)
    if filters.opened_from is not None:
        where.append(col(Dispute.opened_at) >= filters.opened_from)
    if filters.opened_to is not None:
        where.append(col(Dispute.opened_at) < filters.opened_to)
    return where


def list_disputes(
    session: Session,
    entities: list[str],
    filters: DisputeFilters = DisputeFilters(),
    *,
    sort: str = "opened",
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> DisputePage:
    """The board: cases in the legal entities, filtered, sorted (opened, oldest, amount, sla), a page."""
    where = _board_where(entities, filters, now)
    total = int(session.execute(sa_select(func.count()).select_from(Dispute).where(*where)).scalar_one())
    rows = session.exec(
        select(Dispute)
        .where(*where)
        .order_by(SORTS.get(sort, SORTS["opened"]), col(Dispute.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return DisputePage(list(rows), total, offset, limit)


def dispute_status_counts(
    session: Session,
    entities: list[str],
    filters: DisputeFilters = DisputeFilters(),
    now: datetime | None = None,
) -> dict[str, int]:
    """Cases per status under the board's filters other than the status (the counts atop the board)."""
    where = _board_where(entities, replace(filters, status=None), now)
    return {
        str(status): int(n)
        for status, n in session.execute(
            sa_select(col(Dispute.status), func.count()).where(*where).group_by(col(Dispute.status))
        ).all()
    }


def dispute_owners(session: Session, entities: list[str]) -> list[str]:
    """Everyone who owns a case in the legal entities (the board's owner filter)."""
    return [
        str(o)
        for o in session.execute(
            sa_select(col(Dispute.owner))
            .where(col(Dispute.legal_entity).in_(entities), col(Dispute.owner) != "")
            .distinct()
            .order_by(col(Dispute.owner))
        ).scalars()
    ]


def past_sla(session: Session, entities: list[str], now: datetime | None = None) -> list[Dispute]:
    """Cases whose SLA has passed while their clock runs (the control tower's dispute rows)."""
    return list(
        session.exec(
            select(Dispute)
            .where(
                col(Dispute.legal_entity).in_(entities), col(Dispute.sla_due_at) < (now or datetime.now(UTC))
            )
            .order_by(col(Dispute.sla_due_at))
        ).all()
    )


def dispute_by_id(session: Session, dispute_id: str) -> Dispute | None:
    return session.get(Dispute, dispute_id)


def dispute_invoices(session: Session, dispute_id: str) -> list[tuple[DisputeInvoice, Invoice]]:
    return [
        (link, inv)
        for link, inv in session.execute(
            sa_select(DisputeInvoice, Invoice)
            .join(Invoice, col(Invoice.id) == col(DisputeInvoice.invoice_id))
            .where(col(DisputeInvoice.dispute_id) == dispute_id)
            .order_by(col(Invoice.number))
        ).all()
    ]


def dispute_thread(session: Session, dispute_id: str) -> list[DisputeNote]:
    return list(
        session.exec(
            select(DisputeNote)
            .where(DisputeNote.dispute_id == dispute_id)
            .order_by(col(DisputeNote.transition_seq))
        ).all()
    )


def dispute_timeline(session: Session, dispute_id: str) -> list[LedgerEntry]:
    return list(
        session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.object_type == "dispute", LedgerEntry.object_id == dispute_id)
            .order_by(col(LedgerEntry.seq))
        ).all()
    )


def open_case_of_invoice(session: Session, invoice_id: str) -> Dispute | None:
    """The open case holding (part of) the invoice, if any."""
    return session.exec(
        select(Dispute)
        .join(DisputeInvoice, col(DisputeInvoice.dispute_id) == col(Dispute.id))
        .where(col(DisputeInvoice.invoice_id) == invoice_id, col(Dispute.status).in_(OPEN_STATUSES))
    ).first()


def case_counting_payments(session: Session, invoice_id: str) -> Dispute | None:
    """The case, not yet closed, that still disputes part of the invoice: a payment on it counts there
    (paid, or recovered once the case was found invalid)."""
    return session.exec(
        select(Dispute)
        .join(DisputeInvoice, col(DisputeInvoice.dispute_id) == col(Dispute.id))
        .where(
            col(DisputeInvoice.invoice_id) == invoice_id,
            col(DisputeInvoice.open_minor) > 0,
            col(Dispute.status) != Status.CLOSED.value,
        )
    ).first()


def attachment_of(
    session: Session, dispute_id: str, sha256: str
) -> tuple[DisputeNote, DisputeAttachment] | None:
    """An attachment of the case (never one of another case, even with the same bytes' hash known)."""
    note = session.exec(
        select(DisputeNote).where(DisputeNote.dispute_id == dispute_id, DisputeNote.sha256 == sha256)
    ).first()
    blob = session.get(DisputeAttachment, sha256) if note is not None else None
    return (note, blob) if note is not None and blob is not None else None


def store_attachment(session: Session, content: bytes, username: str) -> str:
    """Keep the bytes under their SHA-256 (once); the hex digest."""
    digest = hashlib.sha256(content).hexdigest()
    if session.get(DisputeAttachment, digest) is None:
        session.add(
            DisputeAttachment(
                sha256=digest,
                size=len(content),
                content=content,
                stored_by=username,
                stored_at=datetime.now(UTC),
            )
        )
        session.flush()
    return digest


# -- the one door into a case: open, or join the open one -------------------------------------------------


class DisputeRefused(Exception):
    """A request the store already says no to: `code` (api/errors.py), the HTTP status, the details."""

    def __init__(self, http_status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.http_status, self.code, self.message, self.details = http_status, code, message, details


@dataclass(frozen=True)
class Claim:
    """An amount of one invoice the customer disputes."""

    invoice: Invoice
    amount_minor: int
    field: str = "invoices.0"


@dataclass(frozen=True)
class OpenRequest:
    legal_entity: str
    customer: Customer
    claims: list[Claim]
    claimed_code: str
    description: str
    source: str  # manual | deduction | portal
    actor: Actor
    request_key: str  # idempotency: the same key, the same case (and no second number)
    wait: bool = True  # False: start or join without waiting for the invoices (the portal's path)


@dataclass(frozen=True)
class Opened:
    dispute_id: str
    workflow_id: str
    joined: bool
    state: DisputeState | None = None
    claims: list[Claim] = field(default_factory=list)


def check_claims(session: Session, req: OpenRequest) -> tuple[Dispute | None, MappedReason]:
    """What the store already refuses, before any number is taken: the reason code, each invoice's status
    and open amount, invoices of two different open cases. The open case the claims join, if any."""
    mapped = map_reason(req.customer, req.claimed_code)
    if mapped is None:
        raise DisputeRefused(
            422,
            "unknown_reason_code",
            f"reason_code {req.claimed_code!r} is not a code of {req.customer.name} "
            "(nor of the default mapping)",
            field="reason_code",
            known=known_codes(req.customer),
        )
    cases: dict[str, Dispute] = {}
    for claim in req.claims:
        inv = claim.invoice
        if inv.status not in DISPUTABLE:
            raise DisputeRefused(
                409,
                "transition_refused",
                f"invoice {inv.number or inv.id} is {inv.status}: only a delivered, unpaid invoice can be "
                "disputed",
                field=f"{claim.field}.invoice_id",
                status=inv.status,
            )
        if inv.customer_id != req.customer.id or inv.legal_entity != req.legal_entity:
            raise DisputeRefused(
                422,
                "unknown_reference",
                f"invoice {inv.id} is not the customer's",
                field=f"{claim.field}.invoice_id",
            )
        case = open_case_of_invoice(session, inv.id)
        held = 0
        if case is not None and case.status not in JOINABLE:
            raise DisputeRefused(
                409,
                "transition_refused",
                f"invoice {inv.number or inv.id} is in case {case.case_number}, which is {case.status}: "
                "nothing joins it until its resolution is decided",
                field=f"{claim.field}.invoice_id",
                status=case.status,
            )
        if case is not None:
            cases[case.id] = case
            link = session.get(DisputeInvoice, (case.id, inv.id))
            held = link.open_minor if link else 0
        free = inv.amount_due_minor - held
        if claim.amount_minor > free:
            raise DisputeRefused(
                422,
                "amount_exceeds_open",
                f"{claim.field}.amount: {claim.amount_minor} exceeds what is open on "
                f"{inv.number or inv.id} ({free}"
                + (f", {held} already disputed in {case.case_number}" if case else "")
                + ")",
                field=f"{claim.field}.amount",
                open_minor=free,
            )
    if len({c.invoice.currency for c in req.claims}) > 1:
        raise DisputeRefused(
            422,
            "inconsistent_fields",
            "one case is in one currency: the invoices are in "
            + ", ".join(sorted({c.invoice.currency for c in req.claims})),
            field="invoices",
        )
    if len(cases) > 1:
        raise DisputeRefused(
            409,
            "already_disputed",
            "the invoices are in different open cases: " + ", ".join(c.case_number for c in cases.values()),
            field="invoices",
        )
    return (next(iter(cases.values())) if cases else None), mapped


class DisputeCommands:
    """Opening a case or joining the open one: the same code for the API, a payment's deduction and the
    customer's portal (the portal's through `open_dispute_from_portal`)."""

    def __init__(
        self,
        store: Store,
        client: Client,
        task_queue: str,
        policy_file: Path | None = None,
    ) -> None:
        self._store, self._client, self._task_queue = store, client, task_queue
        self._policy_file = policy_file

    def _reserve(self, legal_entity: str, request_key: str, year: int) -> tuple[str, str]:
        """(dispute id, case number) of the request, reserved once."""
        with writing(self._store) as session:
            found = session.get(DisputeRequest, (legal_entity, request_key))
            if found is not None:
                return found.dispute_id, found.case_number
            series = f"DSP-{year}"
            number = f"{series}-{allocate_number(session, legal_entity, series):06d}"
            dispute_id = str(uuid.uuid5(DISPUTE_NAMESPACE, f"{legal_entity}:{request_key}"))
            session.add(
                DisputeRequest(
                    legal_entity=legal_entity,
                    request_key=request_key,
                    dispute_id=dispute_id,
                    case_number=number,
                    created_at=datetime.now(UTC),
                )
            )
            return dispute_id, number

    async def open_or_join(self, req: OpenRequest) -> Opened:
        """Join the claims' open case if one holds any of their invoices, else open a case. Raises
        DisputeRefused for what the store refuses; a workflow's refusal comes as WorkflowUpdateFailedError.
        The same request (key) again opens nothing twice: it answers with the case it opened."""
        now = datetime.now(UTC)
        with reading(self._store) as session:
            reserved = session.get(DisputeRequest, (req.legal_entity, req.request_key))
            if reserved is None:
                case, mapped = check_claims(session, req)
                if case is not None:
                    joining = case
                else:
                    joining = None
            else:
                opened = session.get(Dispute, reserved.dispute_id)
                if opened is not None and opened.status == "closed" and not opened.root_cause:
                    # The request's case was void as it opened (an invoice refused it): the same answer.
                    void = dispute_timeline(session, opened.id)[-1]
                    raise DisputeRefused(
                        409,
                        "transition_refused",
                        f"case {opened.case_number}, opened by this request, is void: {void.reason}",
                        status="closed",
                    )
                joining, mapped = (
                    None,
                    map_reason(req.customer, req.claimed_code)
                    or MappedReason(req.claimed_code, "CUS", "", "unmapped"),
                )
            if joining is None:
                entity = session.get(LegalEntity, req.legal_entity)
                assert entity is not None
                policy = load_dispute_policy(self._policy_file)
                owner, coordinator = assignment(
                    session, policy, req.legal_entity, mapped.reason, req.customer
                )
                config = config_for(policy, mapped.reason, req.customer, entity, now)
        if joining is not None:
            return await self._join(joining, req)
        dispute_id, number = self._reserve(req.legal_entity, req.request_key, now.year)
        workflow_id = dispute_workflow_id(req.legal_entity, number)
        inp = DisputeInput(
            legal_entity=req.legal_entity,
            dispute_id=dispute_id,
            case_number=number,
            customer_id=req.customer.id,
            currency=req.claims[0].invoice.currency,
            source=req.source,
            claimed_code=req.claimed_code,
            reason=mapped.reason,
            reason_version=mapped.version,
            description=req.description,
            owner=owner,
            coordinator=coordinator,
            invoices=[
                DisputedInvoiceIn(c.invoice.id, c.invoice.workflow_id, c.invoice.number or "", c.amount_minor)
                for c in req.claims
            ],
            opened_by=req.actor,
            request_id=req.request_key,
            config=config,
            currency_exponent=exponent(req.claims[0].invoice.currency),
        )
        if not req.wait:
            await self._client.start_workflow(
                DisputeWorkflow.run,
                inp,
                id=workflow_id,
                task_queue=self._task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
            return Opened(dispute_id, workflow_id, False, None, req.claims)
        # A first attempt must start the case: a running workflow under its id is not this store's case
        # (a number reused after a restore), and attaching to it would wait for a case that never opens. A
        # retry of the request finds the case its first attempt started.
        start = WithStartWorkflowOperation(
            DisputeWorkflow.run,
            inp,
            id=workflow_id,
            task_queue=self._task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING
            if reserved is not None
            else WorkflowIDConflictPolicy.FAIL,
            # A case's id names one run: a closed case is never opened again under it.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        try:
            state = await self._client.execute_update_with_start_workflow(
                DisputeWorkflow.await_opened, start_workflow_operation=start
            )
        except WorkflowAlreadyStartedError:
            raise DisputeRefused(
                503,
                "unavailable",
                f"a running workflow already has the id {workflow_id}: the case numbers and the workflow "
                "service disagree (a store restored without it?)",
            ) from None
        return Opened(dispute_id, workflow_id, False, state, req.claims)

    async def _join(self, case: Dispute, req: OpenRequest) -> Opened:
        handle = self._client.get_workflow_handle(case.workflow_id)
        state: DisputeState | None = None
        for claim in req.claims:
            inv = claim.invoice
            cmd = JoinCommand(
                req.actor,
                DisputedInvoiceIn(inv.id, inv.workflow_id, inv.number or "", claim.amount_minor),
                req.source,
                req.description,
            )
            update_id = f"join:{req.request_key}:{inv.id}"
            if req.wait:
                state = await handle.execute_update(DisputeWorkflow.add_invoice, cmd, id=update_id)
            else:
                await handle.start_update(
                    DisputeWorkflow.add_invoice,
                    cmd,
                    id=update_id,
                    wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                )
        return Opened(case.id, case.workflow_id, True, state, req.claims)


# -- activities -------------------------------------------------------------------------------------------


class DisputeActivities:
    """Recording a case's transitions, and the portal's door into a case."""

    def __init__(self, store: Store, commands: DisputeCommands | None = None) -> None:
        self._store = store
        self._commands = commands

    @activity.defn
    def record_dispute_transition(self, rec: DisputeRecord) -> DisputeRecorded:
        """Append the transition to the ledger and apply it to the dispute read model, atomically."""
        with writing(self._store) as session:
            return record_dispute(session, rec)

    @activity.defn
    async def open_dispute_from_portal(self, req: PortalDisputeRequest) -> str:
        """The customer's portal says the invoice is under query or disputed: open a case for what is due
        (or answer with the open case that already holds the invoice). Idempotent on `update_id`. The
        invoice workflow waits for this activity, so the case is started, not waited for: its first step
        is the invoice's own `open_dispute`."""
        assert self._commands is not None
        with reading(self._store) as session:
            inv = session.get(Invoice, req.invoice_id)
            if inv is None:
                raise ApplicationError(
                    f"no invoice {req.invoice_id}", type="unknown_reference", non_retryable=True
                )
            found = session.get(DisputeRequest, (req.legal_entity, f"portal:{req.update_id}"))
            if found is not None:
                return found.dispute_id
            case = open_case_of_invoice(session, inv.id)
            if case is not None:
                return case.id
            customer = session.get(Customer, inv.customer_id)
            assert customer is not None
            code = req.reason_code if map_reason(customer, req.reason_code) is not None else "OTH"
        if req.amount_minor <= 0:
            raise ApplicationError(
                "nothing is due on the invoice", type="invalid_command", non_retryable=True
            )
        try:
            opened = await self._commands.open_or_join(
                OpenRequest(
                    legal_entity=req.legal_entity,
                    customer=customer,
                    claims=[Claim(inv, req.amount_minor)],
                    claimed_code=code,
                    description=f"portal {req.portal}: {req.status}"
                    + (f": {req.reason_text}" if req.reason_text else ""),
                    source="portal",
                    actor=replace_actor(SYSTEM, f"portal:{req.portal}"),
                    request_key=f"portal:{req.update_id}",
                    wait=False,
                )
            )
        except DisputeRefused as exc:
            raise ApplicationError(exc.message, exc.details, type=exc.code, non_retryable=True) from None
        return opened.dispute_id


def replace_actor(actor: Actor, username: str) -> Actor:
    return Actor(username, list(actor.roles), actor.rule)

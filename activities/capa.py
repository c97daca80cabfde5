"""CAPA side effects: the read model (tables `capa`, `capa_action`), the ledger entries of CapaWorkflow's
transitions (object_type "capa"), the owners' reminders, and the recurrence count of the effectiveness check.

Recording is idempotent on (workflow id, transition seq): Temporal retries activities, and a retry after a
crash between commit and reply finds the ledger entry and answers with it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Index, Text, UniqueConstraint, func
from sqlalchemy import select as sa_select
from sqlmodel import Field, Session, SQLModel, col
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db import Store, reading, writing
from activities.directory import roles_of
from activities.ledger import LedgerFacts, append_to_ledger, find_by_business_key
from activities.models import Invoice, Notification
from workflows.capa_states import due_instant
from workflows.capa_types import ActionState, CapaState, CapaTransition, RecurrenceFigures, RecurrenceRequest
from workflows.root_causes import ROOT_CAUSES
from workflows.types import RecordResult

# The id the API and the pages use: derived from the workflow id, so it is known before the first record
# and the same on every retry.
_CAPA_NAMESPACE = uuid.UUID("6f3c1a52-8f0e-4d0b-9a57-c4a9a0c2e011")


def capa_id_of(workflow_id: str) -> str:
    return str(uuid.uuid5(_CAPA_NAMESPACE, workflow_id))


class Capa(SQLModel, table=True):
    """The read model of one CAPA, written only by `record_capa`."""

    __tablename__ = "capa"
    __table_args__ = (UniqueConstraint("legal_entity", "capa_id"),)
    id: str = Field(primary_key=True, max_length=36)
    legal_entity: str = Field(index=True, max_length=32)
    capa_id: str = Field(max_length=64)  # the starter's id (the case number)
    workflow_id: str = Field(max_length=200, unique=True)
    dispute_id: str = Field(default="", max_length=36, index=True)
    case_number: str = Field(default="", max_length=32)
    root_cause: str = Field(max_length=8, index=True)
    customer_id: str = Field(default="", max_length=36, index=True)
    function: str = Field(default="", max_length=64)
    status: str = Field(max_length=16, index=True)
    opened_by: str = Field(max_length=64)
    opened_at: datetime
    check_due_at: datetime | None = None
    # The latest effectiveness check's outcome ("" before the first), and every check with its figures.
    last_outcome: str = Field(default="", max_length=16)
    checks_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, default="[]"))
    reopened: int = 0
    closed_at: datetime | None = None
    transition_seq: int = 0
    updated_at: datetime


class CapaAction(SQLModel, table=True):
    """One of the two actions of a CAPA (kind "corrective" | "preventive")."""

    __tablename__ = "capa_action"
    __table_args__ = (Index("ix_capa_action_owner_due", "owner", "due_at"),)
    capa_id: str = Field(foreign_key="capa.id", primary_key=True, max_length=36)
    kind: str = Field(primary_key=True, max_length=16)
    owner: str = Field(max_length=64)
    description: str = Field(sa_column=Column(Text, nullable=False))
    due: str = Field(max_length=40)  # as given (an ISO date or instant)
    due_at: datetime  # the instant it falls due (a date: the end of that day, UTC)
    status: str = Field(max_length=8)
    completed_at: datetime | None = None
    completed_by: str = Field(default="", max_length=64)
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    extension_new_due: str = Field(default="", max_length=40)
    extension_reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    extension_requested_by: str = Field(default="", max_length=64)
    extensions_approved: int = 0
    reminders_sent: int = 0


def _dt(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _action_values(action: ActionState) -> dict[str, Any]:
    ext = action.extension
    return {
        "owner": action.owner,
        "description": action.description,
        "due": action.due,
        "due_at": due_instant(action.due),
        "status": action.status,
        "completed_at": _dt(action.completed_at),
        "completed_by": action.completed_by,
        "note": action.note,
        "extension_new_due": ext.new_due if ext else "",
        "extension_reason": ext.reason if ext else "",
        "extension_requested_by": ext.requested_by if ext else "",
        "extensions_approved": action.extensions_approved,
        "reminders_sent": action.reminders_sent,
    }


def _capa_values(state: CapaState, at: datetime) -> dict[str, Any]:
    return {
        "status": state.status,
        "check_due_at": _dt(state.check_due_at),
        "last_outcome": state.checks[-1].outcome if state.checks else "",
        "checks_json": json.dumps([asdict(c) for c in state.checks]),
        "reopened": state.reopened,
        "closed_at": _dt(state.closed_at),
        "transition_seq": state.seq,
        "updated_at": at,
    }


def _write_read_model(session: Session, rec: CapaTransition, at: datetime) -> str:
    state = rec.state
    capa_id = capa_id_of(rec.workflow_id)
    row = session.get(Capa, capa_id)
    if row is None:
        row = Capa(
            id=capa_id,
            legal_entity=state.legal_entity,
            capa_id=state.capa_id,
            workflow_id=rec.workflow_id,
            dispute_id=state.dispute_id,
            case_number=state.case_number,
            root_cause=state.root_cause,
            customer_id=state.customer_id,
            function=state.function,
            opened_by=state.opened_by,
            opened_at=datetime.fromisoformat(state.opened_at or rec.at),
            **_capa_values(state, at),
        )
        session.add(row)
        session.flush()
    else:
        for key, value in _capa_values(state, at).items():
            setattr(row, key, value)
    for action in (state.corrective, state.preventive):
        existing = session.get(CapaAction, (capa_id, action.kind))
        if existing is None:
            session.add(CapaAction(capa_id=capa_id, kind=action.kind, **_action_values(action)))
        else:
            for key, value in _action_values(action).items():
                setattr(existing, key, value)
    return capa_id


def _payload(rec: CapaTransition, capa_id: str) -> dict[str, Any]:
    state = rec.state
    payload: dict[str, Any] = {
        "capa_id": state.capa_id,
        "id": capa_id,
        "dispute_id": state.dispute_id,
        "case_number": state.case_number,
        "root_cause": state.root_cause,
        "customer_id": state.customer_id,
        "function": state.function,
        "actions": {
            a.kind: {"owner": a.owner, "due": a.due, "status": a.status}
            for a in (state.corrective, state.preventive)
        },
    }
    if rec.action:
        action = state.corrective if rec.action == "corrective" else state.preventive
        payload["action"] = rec.action
        if action.note and rec.event.startswith("complete_"):
            payload["note"] = action.note
        if action.extension is not None:
            payload["extension"] = asdict(action.extension)
    if rec.check is not None:
        payload["check"] = asdict(rec.check)
    return payload


def _remind(session: Session, rec: CapaTransition, at: datetime) -> None:
    """The owner's reminder, in the same transaction as its ledger entry (the key makes it once)."""
    state = rec.state
    action = state.corrective if rec.action == "corrective" else state.preventive
    key = f"{rec.workflow_id}#{rec.transition_seq}"
    if session.get(Notification, key) is not None:
        return
    session.add(
        Notification(
            key=key,
            legal_entity=state.legal_entity,
            recipient=action.owner,
            kind="capa_reminder",
            subject=f"CAPA {state.capa_id}: your {action.kind} action is due {action.due}",
            body=(
                f"{rec.reason}. Root cause {state.root_cause} (case {state.case_number}): "
                f"{action.description}. Complete it or ask for more time: /capa/{capa_id_of(rec.workflow_id)}"
            ),
            created_at=at,
        )
    )


def record_capa_transition(session: Session, rec: CapaTransition) -> RecordResult:
    business_key = f"{rec.workflow_id}#{rec.transition_seq}"
    done = find_by_business_key(session, business_key)
    if done is not None:
        if (done.event, done.request_id) != (rec.event, rec.request_id):
            raise ApplicationError(
                f"{business_key} is recorded as {done.event}, not {rec.event}",
                type="ledger_conflict",
                non_retryable=True,
            )
        return RecordResult(number="", ledger_seq=done.seq, entry_hash=done.entry_hash, at=done.at)
    state = rec.state
    at = datetime.fromisoformat(rec.at)
    roles = (
        list(rec.actor.roles)
        if rec.actor.username == "system"
        else roles_of(session, rec.actor.username, state.legal_entity)
    )
    if rec.required_roles and not set(roles) & set(rec.required_roles):
        # The decider's roles are the store's, not the command's claim.
        raise ApplicationError(
            f"{rec.actor.username} holds none of {', '.join(rec.required_roles)} in {state.legal_entity}",
            type="no_authority",
            non_retryable=True,
        )
    capa_id = _write_read_model(session, rec, at)
    if rec.event == "remind":
        _remind(session, rec, at)
    entry = append_to_ledger(
        session,
        LedgerFacts(
            legal_entity=state.legal_entity,
            business_key=business_key,
            object_type="capa",
            object_id=capa_id,
            event=rec.event,
            from_status=rec.from_status,
            to_status=rec.to_status,
            actor=rec.actor.username,
            actor_roles=roles,
            rule=rec.actor.rule,
            reason=rec.reason,
            workflow_id=rec.workflow_id,
            run_id=rec.run_id,
            request_id=rec.request_id,
            at=rec.at,
            payload=_payload(rec, capa_id),
        ),
        looked_up=True,
    )
    return RecordResult(number="", ledger_seq=entry.seq, entry_hash=entry.entry_hash, at=entry.at)


# -- the effectiveness check's figures ---------------------------------------------------------------


def same_function_causes(function: str) -> list[str]:
    return sorted(code for code, c in ROOT_CAUSES.items() if c.function == function and c.internal)


def invoices_issued(
    session: Session, legal_entity: str, customer_id: str, start: datetime, end: datetime
) -> int:
    """Invoices issued (delivered to the customer) in [start, end); one customer's, or all when ""."""
    q = sa_select(func.count()).where(
        col(Invoice.legal_entity) == legal_entity,
        col(Invoice.delivered_at).is_not(None),
        col(Invoice.delivered_at) >= start,
        col(Invoice.delivered_at) < end,
    )
    if customer_id:
        q = q.where(col(Invoice.customer_id) == customer_id)
    return int(session.execute(q).scalar_one())


def recurrence(session: Session, req: RecurrenceRequest) -> RecurrenceFigures:
    """Cases of the root cause (customer scope) or of the function's root causes (function scope) opened,
    and invoices issued, in the window before the split and in the window after."""
    from activities.dispute_reports import cases_opened  # the dispute table's one reader for figures

    before_from, split, after_to = (
        datetime.fromisoformat(x) for x in (req.before_from, req.split, req.after_to)
    )
    causes = [req.root_cause] if req.customer_id else same_function_causes(req.function) or [req.root_cause]
    figures = RecurrenceFigures(
        cases_before=cases_opened(session, req.legal_entity, req.customer_id, causes, before_from, split),
        invoices_before=invoices_issued(session, req.legal_entity, req.customer_id, before_from, split),
        cases_after=cases_opened(session, req.legal_entity, req.customer_id, causes, split, after_to),
        invoices_after=invoices_issued(session, req.legal_entity, req.customer_id, split, after_to),
        query=(
            f"cases: dispute.opened_at in window, root_cause in ({', '.join(causes)}), "
            f"legal_entity={req.legal_entity}"
            + (f", customer_id={req.customer_id}" if req.customer_id else " (every customer)")
            + "; invoices: invoice.delivered_at in window, same scope"
        ),
    )
    return figures


class CapaActivities:
    """Activities of CapaWorkflow: recording and the recurrence count."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn
    def record_capa(self, rec: CapaTransition) -> RecordResult:
        """Append the CAPA's transition to the ledger and apply it to the read model, atomically."""
        with writing(self._store) as session:
            return record_capa_transition(session, rec)

    @activity.defn
    def capa_recurrence(self, req: RecurrenceRequest) -> RecurrenceFigures:
        """The figures of an effectiveness check (read-only; the decision is the workflow's)."""
        with reading(self._store) as session:
            return recurrence(session, req)


# -- queries (the API and the pages read through these) ----------------------------------------------


@dataclass(frozen=True)
class CapaFilters:
    legal_entities: list[str]
    status: str = ""
    owner: str = ""  # owner of either action
    root_cause: str = ""
    customer_id: str = ""
    outcome: str = ""  # the latest check's outcome
    overdue_at: datetime | None = None  # only CAPAs with an open action due before this instant


def _filtered(f: CapaFilters) -> Any:
    q = sa_select(Capa).where(col(Capa.legal_entity).in_(f.legal_entities))
    if f.status:
        q = q.where(col(Capa.status) == f.status)
    if f.root_cause:
        q = q.where(col(Capa.root_cause) == f.root_cause)
    if f.customer_id:
        q = q.where(col(Capa.customer_id) == f.customer_id)
    if f.outcome:
        q = q.where(col(Capa.last_outcome) == f.outcome)
    if f.owner or f.overdue_at is not None:
        actions = sa_select(col(CapaAction.capa_id))
        if f.owner:
            actions = actions.where(col(CapaAction.owner) == f.owner)
        if f.overdue_at is not None:
            actions = actions.where(col(CapaAction.status) == "open", col(CapaAction.due_at) < f.overdue_at)
        q = q.where(col(Capa.id).in_(actions))
    return q


def list_capas(session: Session, f: CapaFilters, limit: int = 50, offset: int = 0) -> tuple[list[Capa], int]:
    """One page of CAPAs, soonest open due date first (then newest), and how many match."""
    total = int(session.execute(sa_select(func.count()).select_from(_filtered(f).subquery())).scalar_one())
    next_due = (
        sa_select(func.min(col(CapaAction.due_at)))
        .where(col(CapaAction.capa_id) == col(Capa.id), col(CapaAction.status) == "open")
        .scalar_subquery()
    )
    rows = session.execute(
        _filtered(f)
        .order_by(next_due.is_(None), next_due, col(Capa.opened_at).desc(), col(Capa.id))
        .limit(limit)
        .offset(offset)
    ).scalars()
    return list(rows), total


def capa_by_id(session: Session, capa_id: str) -> Capa | None:
    return session.get(Capa, capa_id)


def actions_of(session: Session, capa_ids: list[str]) -> dict[str, dict[str, CapaAction]]:
    """The actions of these CAPAs, by CAPA id and kind."""
    out: dict[str, dict[str, CapaAction]] = {i: {} for i in capa_ids}
    if not capa_ids:
        return out
    for a in session.execute(sa_select(CapaAction).where(col(CapaAction.capa_id).in_(capa_ids))).scalars():
        out[a.capa_id][a.kind] = a
    return out

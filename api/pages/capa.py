"""The CAPA pages: the board (/capa: by status, owner, due date with the overdue highlighted, root cause,
customer, the last effectiveness check's outcome; filters and pages) and the CAPA page (/capa/{id}: the
case it came from, both actions with their owner, due date and what was done, an extension waiting for a
decision with approve / refuse in place, complete and ask for more time in place for the owner, every
effectiveness check with the figures that decided it, and the ledger timeline).

Reading goes through the CAPA API's own functions (api/capa.py: list_capas, present, capa_or_404) and
every command through its `command` (Casbin, then the workflow's update, whose validator has the last
word): there is no second way to change a CAPA. A refused command shows the refusal's reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from activities import queries
from activities.capa import CapaFilters, actions_of, list_capas
from activities.db import reading
from activities.models import LedgerEntry
from api.capa import ActionOut, CapaOut, capa_or_404, command, present
from api.deps import entities_for
from api.errors import AppError, NotFound
from api.pages.common import CsrfForm, PageUser, PageUserInfo, flash, redirect, render
from workflows.capa import CapaWorkflow
from workflows.capa_states import OUTCOMES, Status
from workflows.capa_types import CompleteCommand, ExtensionDecision, ExtensionRequest
from workflows.root_causes import ROOT_CAUSES

router = APIRouter()

STATUS_LABELS = {
    "open": "Open",
    "checking": "Waiting for its check",
    "checked": "Checked",
    "closed": "Closed",
}
KINDS = ("corrective", "preventive")
MAX_TEXT = 2000
APPROVER_ROLES = "an AR supervisor, finance manager or controller"


def capa_timeline(session: Session, capa_id: str) -> list[LedgerEntry]:
    """The CAPA's ledger entries, in order (the evidence behind the page)."""
    return list(
        session.execute(
            sa_select(LedgerEntry)
            .where(col(LedgerEntry.object_type) == "capa", col(LedgerEntry.object_id) == capa_id)
            .order_by(col(LedgerEntry.seq))
        ).scalars()
    )


# -- the board ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardQuery:
    status: str = ""
    owner: str = ""
    root_cause: str = ""
    customer_id: str = ""
    outcome: str = ""
    overdue: bool = False
    mine: bool = False

    def params(self) -> dict[str, str]:
        out = {
            "status": self.status,
            "owner": "" if self.mine else self.owner,
            "root_cause": self.root_cause,
            "customer_id": self.customer_id,
            "outcome": self.outcome,
            "overdue": "1" if self.overdue else "",
            "mine": "1" if self.mine else "",
        }
        return {k: v for k, v in out.items() if v}


@router.get("/capa")
async def board(
    request: Request,
    user: PageUser,
    status: Annotated[str, Query(max_length=16)] = "",
    owner: Annotated[str, Query(max_length=64)] = "",
    root_cause: Annotated[str, Query(max_length=8)] = "",
    customer_id: Annotated[str, Query(max_length=36)] = "",
    outcome: Annotated[str, Query(max_length=16)] = "",
    overdue: Annotated[str, Query(max_length=1)] = "",
    mine: Annotated[str, Query(max_length=1)] = "",
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    """CAPAs the user may read, the soonest open due date first, with filters and pages."""
    q = BoardQuery(
        status=status if status in STATUS_LABELS else "",
        owner=owner.strip(),
        root_cause=root_cause if root_cause in ROOT_CAUSES else "",
        customer_id=customer_id.strip(),
        outcome=outcome if outcome in OUTCOMES else "",
        overdue=overdue == "1",
        mine=mine == "1",
    )
    now = datetime.now(UTC)
    with reading(user.ctx.store) as session:
        entities = entities_for(user.ctx, session, user.username, "capa:read", None)
        filters = CapaFilters(
            legal_entities=entities,
            status=q.status,
            owner=user.username if q.mine else q.owner,
            root_cause=q.root_cause,
            customer_id=q.customer_id,
            outcome=q.outcome,
            overdue_at=now if q.overdue else None,
        )
        rows, total = list_capas(session, filters, limit, offset)
        acts = actions_of(session, [r.id for r in rows])
        items = [present(r, acts[r.id]) for r in rows]
        names = queries.customer_names(session, sorted({c.customer_id for c in items if c.customer_id}))
        customers = queries.list_customers(session, entities, limit=500)
    params = q.params()
    return render(
        request,
        "capa/board.html",
        {
            "items": [
                {
                    "capa": c,
                    "customer": names.get(c.customer_id, c.customer_id),
                    "cause": _cause(c.root_cause),
                }
                for c in items
            ],
            "total": total,
            "offset": offset,
            "limit": limit,
            "q": q,
            "filtered": bool(params),
            "base_query": urlencode(params),
            "statuses": STATUS_LABELS,
            "outcomes": OUTCOMES,
            "reasons": ROOT_CAUSES,
            "customers": customers,
        },
        user=user,
    )


def _cause(code: str) -> str:
    rc = ROOT_CAUSES.get(code)
    return rc.cause if rc else code


# -- one CAPA ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """An action of the page: allowed (a form) or refused with why (a disabled button)."""

    label: str
    url: str
    allowed: bool
    reason: str = ""
    style: str = ""
    instead: tuple[str, ...] = ()


def action_choices(user: PageUserInfo, c: CapaOut, a: ActionOut) -> dict[str, Choice]:
    """What the user may do on one action of the CAPA, and why not (the workflow's rules, said first)."""
    base = f"/capa/{c.id}/actions/{a.kind}"
    is_owner = user.username == a.owner
    open_action = a.status == "open" and c.status != Status.CLOSED
    out: dict[str, Choice] = {}
    if not open_action:
        why = "This action is done." if a.status == "done" else f"The CAPA is {c.status}."
        out["complete"] = Choice("Mark as done", f"{base}/complete", False, why)
        out["extend"] = Choice("Ask for more time", f"{base}/request-extension", False, why)
    else:
        if not is_owner:
            why = f"Only the action's owner, {a.owner}, completes it or asks for more time."
            out["complete"] = Choice("Mark as done", f"{base}/complete", False, why, instead=(a.owner,))
            out["extend"] = Choice(
                "Ask for more time", f"{base}/request-extension", False, why, instead=(a.owner,)
            )
        else:
            may_complete = user.may("capa:complete", c.legal_entity)
            may_extend = user.may("capa:extend", c.legal_entity)
            out["complete"] = Choice(
                "Mark as done",
                f"{base}/complete",
                may_complete,
                ""
                if may_complete
                else "Completing an action needs capa:complete, which your roles do not give.",
                style="primary",
            )
            pending = a.extension is not None
            out["extend"] = Choice(
                "Ask for more time",
                f"{base}/request-extension",
                may_extend and not pending,
                "An extension is already waiting for a decision."
                if pending
                else ("" if may_extend else "Asking for more time needs capa:extend."),
            )
    if a.extension is not None:
        may_decide = user.may("capa:approve_extension", c.legal_entity)
        if is_owner:
            why = (
                f"You own this action: an extension of your own due date is decided by someone else "
                f"({APPROVER_ROLES}), never by its owner."
            )
        elif not may_decide:
            why = f"Deciding an extension needs capa:approve_extension ({APPROVER_ROLES})."
        else:
            why = ""
        out["approve"] = Choice("Approve the extension", f"{base}/approve-extension", not why, why, "primary")
        out["refuse"] = Choice("Refuse the extension", f"{base}/refuse-extension", not why, why, "warning")
    return out


def _entry(e: LedgerEntry) -> dict[str, Any]:
    at = datetime.fromisoformat(e.at)
    return {
        "seq": e.seq,
        "event": e.event,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "actor": e.actor,
        "actor_roles": json.loads(e.actor_roles or "[]"),
        "rule": e.rule,
        "reason": e.reason,
        "at": at if at.tzinfo else at.replace(tzinfo=UTC),
        "entry_hash": e.entry_hash,
    }


def capa_context(session: Session, user: PageUserInfo, capa_id: str, **more: Any) -> dict[str, Any]:
    row = capa_or_404(user.ctx, session, capa_id, user.username)
    c = present(row, actions_of(session, [row.id])[row.id])
    actions = [a for a in (c.corrective, c.preventive) if a is not None]
    names = queries.customer_names(session, [c.customer_id]) if c.customer_id else {}
    return {
        "c": c,
        "cause": _cause(c.root_cause),
        "customer": names.get(c.customer_id, c.customer_id),
        "actions": [{"a": a, "choices": action_choices(user, c, a)} for a in actions],
        "history": [_entry(e) for e in capa_timeline(session, c.id)],
        "statuses": STATUS_LABELS,
        "may_read_case": bool(c.dispute_id) and user.may("dispute:read", c.legal_entity),
        "errors": [],
        "values": {},
        **more,
    }


@router.get("/capa/{capa_id}")
async def capa_page(capa_id: str, request: Request, user: PageUser) -> Response:
    """One CAPA: its case, both actions, a pending extension, the checks with their figures, the timeline."""
    with reading(user.ctx.store) as session:
        context = capa_context(session, user, _id(capa_id))
    return render(request, "capa/capa.html", context, user=user)


def _id(capa_id: str) -> str:
    if len(capa_id) != 36:
        raise NotFound(f"no CAPA {capa_id}", code="not_found")
    return capa_id


def _text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip()[:MAX_TEXT] if isinstance(value, str) else ""


def _key(form: Any) -> str | None:
    value = form.get("idempotency_key")
    return value[:200] if isinstance(value, str) and value else None


async def _refused(
    request: Request,
    user: PageUserInfo,
    capa_id: str,
    field: str,
    message: str,
    status: int,
    values: dict[str, str],
) -> Response:
    with reading(user.ctx.store) as session:
        context = capa_context(
            session, user, capa_id, errors=[{"field": field, "reason": message}], values=values
        )
    return render(request, "capa/capa.html", context, user=user, status_code=status)


async def _run(
    request: Request,
    user: PageUserInfo,
    capa_id: str,
    action: str,
    update: Any,
    build: Any,
    key: str | None,
    field: str,
    done: str,
    values: dict[str, str],
) -> Response:
    try:
        await command(user.ctx, user.username, capa_id, action, update, build, key)
    except AppError as exc:
        if isinstance(exc, NotFound):
            raise
        return await _refused(request, user, capa_id, field, exc.message, exc.status, values)
    return flash(redirect(f"/capa/{capa_id}"), done)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise NotFound(f"no action {kind}", code="not_found")
    return kind


@router.post("/capa/{capa_id}/actions/{kind}/complete")
async def complete(capa_id: str, kind: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    capa_id, kind = _id(capa_id), _kind(kind)
    note = _text(form, "note")
    field = f"{kind}-note"
    if not note:
        return await _refused(request, user, capa_id, field, "Say what was done", 422, {})
    update = CapaWorkflow.complete_corrective if kind == "corrective" else CapaWorkflow.complete_preventive
    return await _run(
        request,
        user,
        capa_id,
        "capa:complete",
        update,
        lambda a: CompleteCommand(a, note),
        _key(form),
        field,
        f"The {kind} action is done.",
        {field: note},
    )


@router.post("/capa/{capa_id}/actions/{kind}/request-extension")
async def request_extension(
    capa_id: str, kind: str, request: Request, user: PageUser, form: CsrfForm
) -> Response:
    capa_id, kind = _id(capa_id), _kind(kind)
    new_due, reason = _text(form, "new_due"), _text(form, "reason")
    values = {f"{kind}-new-due": new_due, f"{kind}-ext-reason": reason}
    if not new_due:
        return await _refused(
            request, user, capa_id, f"{kind}-new-due", "Choose the new due date", 422, values
        )
    if not reason:
        return await _refused(
            request, user, capa_id, f"{kind}-ext-reason", "Say why more time is needed", 422, values
        )
    return await _run(
        request,
        user,
        capa_id,
        "capa:extend",
        CapaWorkflow.request_extension,
        lambda a: ExtensionRequest(a, kind, new_due, reason),
        _key(form),
        f"{kind}-new-due",
        f"More time asked for the {kind} action: it waits for a decision.",
        values,
    )


async def _decide(
    capa_id: str, kind: str, request: Request, user: PageUserInfo, form: Any, approve: bool
) -> Response:
    capa_id, kind = _id(capa_id), _kind(kind)
    reason = _text(form, "reason")
    field = f"{kind}-decision"
    values = {field: reason}
    if not approve and not reason:
        return await _refused(request, user, capa_id, field, "Say why the extension is refused", 422, values)
    return await _run(
        request,
        user,
        capa_id,
        "capa:approve_extension",
        CapaWorkflow.approve_extension if approve else CapaWorkflow.refuse_extension,
        lambda a: ExtensionDecision(a, kind, reason),
        _key(form),
        field,
        f"Extension of the {kind} action {'approved: the due date moved' if approve else 'refused'}.",
        values,
    )


@router.post("/capa/{capa_id}/actions/{kind}/approve-extension")
async def approve_extension(
    capa_id: str, kind: str, request: Request, user: PageUser, form: CsrfForm
) -> Response:
    return await _decide(capa_id, kind, request, user, form, True)


@router.post("/capa/{capa_id}/actions/{kind}/refuse-extension")
async def refuse_extension(
    capa_id: str, kind: str, request: Request, user: PageUser, form: CsrfForm
) -> Response:
    return await _decide(capa_id, kind, request, user, form, False)

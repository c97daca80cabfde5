"""The dispute pages: the board (cases by status, owner, age, amount, SLA state; filters, sorting, pages),
the case page (header, amounts that add up, invoices, the thread with attachments, the resolution
documents, the timeline from the ledger) with its actions in place, the new-case form reached from an
invoice, and the resolve and close steps (check your answers before a resolution; closing with a root
cause, and for an internal one the corrective and preventive actions).

Reading goes through activities/disputes.py's queries; every change through api/disputes.py's command
functions (the same authorisation, the same workflow updates, the same refusals as the JSON API).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session
from starlette.datastructures import UploadFile as StarletteUploadFile

from activities import disputes as store
from activities import queries
from activities.db import reading
from activities.money import format_minor
from api import disputes as dispute_api
from api.deps import CurrentUserInfo, entities_for
from api.errors import AppError, Conflict, Forbidden, Invalid, NotFound
from api.invoices import _invoice_or_404 as invoice_or_404
from api.pages.common import CsrfForm, PageUser, PageUserInfo, flash, is_htmx, redirect, render
from api.pages.invoices import age
from api.schemas import (
    DisputeAssignBody,
    DisputeCloseBody,
    DisputeCreate,
    DisputeNoteBody,
    DisputeResolveBody,
    DisputeWaitBody,
)
from workflows.dispute_states import Resolution, Status
from workflows.root_causes import ROOT_CAUSES, VALIDITY

router = APIRouter()

PAGE_SIZES = (25, 50, 100)
STATUS_LABELS = {
    "open": "open",
    "waiting_on_customer": "waiting on customer",
    "resolving": "resolving",
    "resolved": "resolved",
    "closed": "closed",
}
SLA_LABELS = {
    "on_time": "on time",
    "reminded": "reminded",
    "escalated": "escalated",
    "past_sla": "past SLA",
    "waiting": "waiting on customer",
    "stopped": "clock stopped",
}
SORT_LABELS = {
    "opened": "Newest first",
    "oldest": "Oldest first",
    "amount": "Open amount, largest first",
    "sla": "SLA due, soonest first",
}
RESOLUTION_LABELS = {
    Resolution.CREDIT_MEMO.value: "Credit memo",
    Resolution.REBILL.value: "Rebill (full credit and a corrected invoice)",
    Resolution.INVALID.value: "Invalid: the customer owes the amount",
    Resolution.WITHDRAWN.value: "Withdrawn by the customer",
    Resolution.WRITE_OFF.value: "Write-off",
}
VALIDITY_LABELS = {"valid": "valid", "partly_valid": "partly valid", "invalid": "invalid"}
SOURCE_LABELS = {
    "manual": "recorded by hand",
    "portal": "the customer's portal",
    "deduction": "a short payment",
}
MAX_TEXT = 2000


def sla_state(case: store.Dispute, now: datetime) -> str:
    """on_time | reminded | escalated | past_sla | waiting | stopped: what the board and the case say."""
    if case.status == Status.WAITING_ON_CUSTOMER:
        return "waiting"
    if case.status not in (Status.OPEN, Status.RESOLVING):
        return "stopped"
    due = case.sla_due_at
    if due is not None and _aware(due) < now:
        return "past_sla"
    if case.escalation_level > 0:
        return "escalated"
    if _reminded(case):
        return "reminded"
    return "on_time"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _reminded(case: store.Dispute) -> bool:

    try:
        return bool(json.loads(case.state_json or "{}").get("reminded"))
    except ValueError:
        return False


def _when(at: datetime | None) -> str:
    return _aware(at).strftime("%Y-%m-%d %H:%M UTC") if at else ""


def _date_param(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()) if text.strip() else None
    except ValueError:
        return None


def _case_or_404(session: Session, user: PageUserInfo, dispute_id: str) -> store.Dispute:
    case = store.dispute_by_id(session, dispute_id)
    if case is None or not user.may("dispute:read", case.legal_entity):
        # Unknown and not-yours look the same, as for invoices.
        raise NotFound(f"no dispute {dispute_id}")
    return case


# -- the board ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardQuery:
    status: str = ""
    owner: str = ""
    customer_id: str = ""
    reason: str = ""
    root_cause: str = ""
    past_sla: bool = False
    mine: bool = False
    opened_from: date | None = None
    opened_to: date | None = None
    sort: str = "opened"

    def params(self) -> dict[str, str]:
        """The query string that reproduces these filters (the pager and the sort links keep them)."""
        out = {
            "status": self.status,
            "owner": self.owner if not self.mine else "",
            "customer_id": self.customer_id,
            "reason": self.reason,
            "root_cause": self.root_cause,
            "past_sla": "1" if self.past_sla else "",
            "mine": "1" if self.mine else "",
            "opened_from": self.opened_from.isoformat() if self.opened_from else "",
            "opened_to": self.opened_to.isoformat() if self.opened_to else "",
            "sort": self.sort if self.sort != "opened" else "",
        }
        return {k: v for k, v in out.items() if v}


@router.get("/disputes")
async def board(
    request: Request,
    user: PageUser,
    status: Annotated[str, Query(max_length=32)] = "",
    owner: Annotated[str, Query(max_length=64)] = "",
    customer_id: Annotated[str, Query(max_length=36)] = "",
    reason: Annotated[str, Query(max_length=8)] = "",
    root_cause: Annotated[str, Query(max_length=8)] = "",
    past_sla: Annotated[str, Query(max_length=1)] = "",
    mine: Annotated[str, Query(max_length=1)] = "",
    opened_from: Annotated[str, Query(max_length=10)] = "",
    opened_to: Annotated[str, Query(max_length=10)] = "",
    sort: Annotated[str, Query(max_length=8)] = "opened",
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    """Dispute cases by status, owner, age, amount and SLA state, with filters, sorting and pages."""
    q = BoardQuery(
        status=status if status in STATUS_LABELS else "",
        owner=owner.strip(),
        customer_id=customer_id.strip(),
        reason=reason if reason in ROOT_CAUSES else "",
        root_cause=root_cause if root_cause in ROOT_CAUSES else "",
        past_sla=past_sla == "1",
        mine=mine == "1",
        opened_from=_date_param(opened_from),
        opened_to=_date_param(opened_to),
        sort=sort if sort in SORT_LABELS else "opened",
    )
    now = datetime.now(UTC)
    with reading(user.ctx.store) as session:
        entities = entities_for(user.ctx, session, user.username, "dispute:read", None)
        filters = store.DisputeFilters(
            status=q.status or None,
            owner=user.username if q.mine else (q.owner or None),
            customer_id=q.customer_id or None,
            reason=q.reason or None,
            past_sla=True if q.past_sla else None,
            root_cause=q.root_cause or None,
            opened_from=datetime.combine(q.opened_from, time.min, UTC) if q.opened_from else None,
            opened_to=datetime.combine(q.opened_to + timedelta(days=1), time.min, UTC)
            if q.opened_to
            else None,
        )
        page = store.list_disputes(
            session, entities, filters, sort=q.sort, limit=limit, offset=offset, now=now
        )
        # Counts per status under the same filters but the status itself (each count links to its list).
        counts = store.dispute_status_counts(session, entities, filters, now=now)
        names = queries.customer_names(session, [c.customer_id for c in page.items])
        customers = queries.list_customers(session, entities, limit=500)
        owners = store.dispute_owners(session, entities)
    rows = [
        {
            "case": c,
            "customer": names.get(c.customer_id, c.customer_id),
            "open": format_minor(c.open_minor, c.currency),
            "original": format_minor(c.original_minor, c.currency),
            "age": age(c.opened_at, now),
            "sla": sla_state(c, now),
            "reason": ROOT_CAUSES[c.reason].cause if c.reason in ROOT_CAUSES else c.reason,
        }
        for c in page.items
    ]
    params = q.params()
    without_status = {k: v for k, v in params.items() if k != "status"}
    sort_free = {k: v for k, v in params.items() if k != "sort"}
    return render(
        request,
        "disputes/board.html",
        {
            "rows": rows,
            "total": page.total,
            "offset": offset,
            "limit": limit,
            "q": q,
            "counts": [
                {
                    "status": s,
                    "label": label,
                    "count": counts.get(s, 0),
                    "href": "/disputes?" + urlencode({**without_status, "status": s}),
                    "current": q.status == s,
                }
                for s, label in STATUS_LABELS.items()
            ],
            "all_href": "/disputes" + ("?" + urlencode(without_status) if without_status else ""),
            "filtered": bool({k for k in params if k != "sort"}),
            "base_query": urlencode(params),
            "sort_base": urlencode(sort_free),
            "statuses": STATUS_LABELS,
            "sla_labels": SLA_LABELS,
            "sorts": SORT_LABELS,
            "reasons": ROOT_CAUSES,
            "customers": customers,
            "owners": owners,
            "may_open": user.may("dispute:open"),
        },
        user=user,
    )


# -- a new case, from the invoice page ---------------------------------------------------------------------


def _new_context(session: Session, user: PageUserInfo, invoice_id: str, **more: Any) -> dict[str, Any]:
    inv = invoice_or_404(session, invoice_id, user.username, user.ctx)
    user.ctx.authorizer.require(user.username, inv.legal_entity, "dispute:open")
    if inv.status not in store.DISPUTABLE:
        raise Conflict(
            f"invoice {inv.number or inv.external_id} is {inv.status.replace('_', ' ')}: only an invoice "
            "the customer has and still owes (submitted, accepted, partly paid) can be disputed",
            code="transition_refused",
            status=inv.status,
        )
    customer = queries.customer_by_id(session, inv.customer_id)
    assert customer is not None
    case = store.open_case_of_invoice(session, inv.id)
    held = 0
    if case is not None:
        link = next((lk for lk, i in store.dispute_invoices(session, case.id) if i.id == inv.id), None)
        held = link.open_minor if link else 0
    codes = []
    for code in store.known_codes(customer):
        mapped = store.map_reason(customer, code)
        if mapped is not None:
            codes.append({"code": code, "label": mapped.label, "reason": mapped.reason})
    return {
        "inv": inv,
        "customer": customer,
        "total": format_minor(inv.total_minor, inv.currency),
        "due": format_minor(inv.amount_due_minor, inv.currency),
        "held": format_minor(held, inv.currency) if held else "",
        "open_case": case,
        "free": format_minor(max(inv.amount_due_minor - held, 0), inv.currency),
        "codes": codes,
        "form_key": uuid.uuid4().hex,
        "errors": [],
        "values": {},
        **more,
    }


@router.get("/disputes/new")
async def new_case(
    request: Request, user: PageUser, invoice_id: Annotated[str, Query(max_length=36)] = ""
) -> Response:
    """The form recording a customer's complaint about one invoice."""
    with reading(user.ctx.store) as session:
        context = _new_context(session, user, invoice_id)
    return render(request, "disputes/new.html", context, user=user)


NEW_FIELDS = {"invoices.0.amount": "amount", "reason_code": "reason_code", "description": "description"}


@router.post("/disputes/new")
async def open_case(request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Open the case (POST /api/v1/disputes): or join the invoice's open case."""
    invoice_id = _text(form, "invoice_id", 36)
    values = {k: _text(form, k, 4000) for k in ("amount", "reason_code", "description")}
    problems = [] if values["amount"] else [_problem("amount", "Enter the disputed amount")]
    if not values["reason_code"]:
        problems.append(_problem("reason_code", "Choose the customer's reason"))
    if not values["description"]:
        problems.append(_problem("description", "Write what the customer says"))
    body: DisputeCreate | None = None
    if not problems:
        try:
            body = DisputeCreate.model_validate(
                {
                    "invoices": [{"invoice_id": invoice_id, "amount": values["amount"]}],
                    "reason_code": values["reason_code"],
                    "description": values["description"],
                }
            )
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err.get("loc", ()))
                field = NEW_FIELDS.get(where, "amount")
                text = "Enter an amount like 120.50" if field == "amount" else f"{field}: {err['msg']}"
                problems.append(_problem(field, text))
    if body is not None:
        try:
            done = await dispute_api.open_dispute(
                body, Response(), user.ctx, _who(user), _key(form) or uuid.uuid4().hex
            )
        except AppError as exc:
            problems.append(_problem(_error_field(exc, NEW_FIELDS, "amount"), exc.message))
        else:
            what = f"{done.amounts.original} {done.currency}"
            owner = f" {done.owner} owns it" if done.owner else " It has no owner yet"
            due = f", due {_when(done.sla_due_at)}" if done.sla_due_at else ""
            return flash(
                redirect(f"/disputes/{done.id}"),
                f"Dispute {done.case_number} is open for {what}: the invoice is disputed for that amount."
                f"{owner}{due}.",
            )
    with reading(user.ctx.store) as session:
        context = _new_context(session, user, invoice_id, errors=problems, values=values)
    return render(request, "disputes/new.html", context, user=user, status_code=422)


# -- the case page -----------------------------------------------------------------------------------------


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n} bytes"


def _state(case: store.Dispute) -> dict[str, Any]:

    try:
        value = json.loads(case.state_json or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def case_context(session: Session, user: PageUserInfo, case: store.Dispute, **more: Any) -> dict[str, Any]:
    """Everything the case page shows; `actions` from the API's own evaluation (case_actions)."""

    now = datetime.now(UTC)
    state = _state(case)
    cur = case.currency
    customer = queries.customer_by_id(session, case.customer_id)
    invoices = [
        {
            "id": inv.id,
            "number": inv.number or inv.external_id,
            "original": format_minor(link.original_minor, cur),
            "open": format_minor(link.open_minor, cur),
            "due": format_minor(inv.amount_due_minor, inv.currency),
            "currency": inv.currency,
            "status": inv.status,
        }
        for link, inv in store.dispute_invoices(session, case.id)
    ]
    numbers = {i["id"]: i["number"] for i in invoices}
    parts = [
        ("open", "Open (still disputed)", case.open_minor),
        ("credited", "Credited", case.credited_minor),
        ("written_off", "Written off", case.written_off_minor),
        ("paid", "Paid", case.paid_minor),
        ("recovered", "Recovered (after an invalid claim)", case.recovered_minor),
    ]
    documents = []
    for d in state.get("documents") or []:
        kind = str(d.get("kind", ""))
        documents.append(
            {
                "kind": kind,
                "document_id": d.get("document_id", ""),
                "label": "Credit memo" if kind == "credit_memo" else "Write-off",
                "href": f"/credit-memos/{d.get('document_id')}"
                if kind == "credit_memo"
                else f"/write-offs/{d.get('document_id')}",
                "number": d.get("number", ""),
                "invoice": numbers.get(str(d.get("invoice_id", "")), d.get("invoice_id", "")),
                "amount": format_minor(int(d.get("amount_minor", 0)), cur),
                "applied": format_minor(int(d.get("applied_minor", 0)), cur),
                "status": d.get("status", ""),
            }
        )
    thread = [
        {
            "event": n.event,
            "author": n.author,
            "at_iso": _aware(n.at).isoformat(),
            "when": _when(n.at),
            "text": n.text,
            "filename": n.filename,
            "content_type": n.content_type,
            "size": _size(n.size),
            "sha256": n.sha256,
        }
        for n in store.dispute_thread(session, case.id)
    ]
    history = [
        {"entry": e, "roles": json.loads(e.actor_roles), "at": datetime.fromisoformat(e.at)}
        for e in store.dispute_timeline(session, case.id)
    ]
    mapped = store.map_reason(customer, case.claimed_code) if customer else None
    sla = sla_state(case, now)
    due = _aware(case.sla_due_at) if case.sla_due_at else None
    rc = ROOT_CAUSES.get(case.root_cause)
    actions = case_actions(session, user, case)
    assignees = sorted({u for u, _ in queries.users_in_entity(session, case.legal_entity)})
    return {
        "case": case,
        "state": state,
        "customer": customer,
        "invoices": invoices,
        "claimed_label": mapped.label if mapped and mapped.claimed_code == case.claimed_code else "",
        "reason_label": ROOT_CAUSES[case.reason].cause if case.reason in ROOT_CAUSES else "",
        "source": SOURCE_LABELS.get(case.source, case.source),
        "opened_at": _when(case.opened_at),
        "sla": sla,
        "sla_label": SLA_LABELS[sla],
        "sla_due": _when(due),
        "overdue": age(due, now) if due else "",
        "paused_since": _when(datetime.fromisoformat(state["paused_since"]))
        if state.get("paused_since")
        else "",
        "resolved_at": _when(datetime.fromisoformat(state["resolved_at"]))
        if state.get("resolved_at")
        else "",
        "window": _when(case.window_deadline),
        "resolution_label": RESOLUTION_LABELS.get(case.resolution, case.resolution),
        "root_cause_label": rc.cause if rc else "",
        "validity_label": VALIDITY_LABELS.get(case.validity, case.validity),
        "amounts": [{"key": k, "label": label, "value": format_minor(v, cur)} for k, label, v in parts],
        "original": format_minor(case.original_minor, cur),
        "adds_up": sum(v for _, _, v in parts) == case.original_minor and all(v >= 0 for _, _, v in parts),
        "documents": documents,
        "thread": thread,
        "history": history,
        "actions": actions,
        "assignees": assignees,
        "max_attachment": _size(store.MAX_ATTACHMENT_BYTES),
        "form_key": uuid.uuid4().hex,
        "errors": [],
        "values": {},
        "done": "",
        **more,
    }


@router.get("/disputes/{dispute_id}")
async def case_page(dispute_id: str, request: Request, user: PageUser) -> Response:
    """One dispute case: who, what, how much, the thread, the documents, the timeline, the actions."""
    with reading(user.ctx.store) as session:
        case = _case_or_404(session, user, dispute_id)
        context = case_context(session, user, case)
    return render(request, "disputes/case.html", context, user=user)


# -- actions: the API's evaluation, shown by the action_button macro ---------------------------------------

ACTION_LABELS = {
    "note": "Add note",
    "attach": "Attach",
    "wait": "Wait on the customer",
    "resume": "Resume",
    "assign": "Reassign",
    "resolve": "Resolve…",
    "close": "Close the case…",
}


def case_actions(session: Session, user: PageUserInfo, case: store.Dispute) -> dict[str, dict[str, Any]]:
    """The actions of the case page: each allowed (a form) or refused with the API's reason and who can
    instead, from api/disputes.py's actions_of (the same evaluation as the JSON case's available_actions
    and unavailable_actions). Actions the case's status does not offer at all are left out."""
    available, unavailable = dispute_api.actions_of(user.ctx, session, case, user.username)
    options: list[tuple[str, bool, str, list[str]]] = [(name, True, "", []) for name in available]
    options += [(u.action, False, u.reason, list(u.who_can_instead)) for u in unavailable]
    out: dict[str, dict[str, Any]] = {}
    for name, allowed, reason, instead in options:
        key = {"wait_on_customer": "wait", "reassign": "assign"}.get(name, name)
        if key not in ACTION_LABELS:
            continue
        label = "Assign" if name == "assign" else ACTION_LABELS[key]
        out[key] = {
            "event": name,
            "label": label,
            "url": f"/disputes/{case.id}/{key}",
            "allowed": allowed,
            "reason": reason,
            "instead": instead,
            "hx_target": "#case" if key in ("note", "wait", "resume", "assign") else None,
            "enctype": "multipart/form-data" if key == "attach" else None,
            "style": "primary" if key in ("resolve", "close") else None,
        }
    return out


# -- commands on the case (each the JSON API's own route function) ----------------------------------------


def _text(form: Any, name: str, limit: int = MAX_TEXT) -> str:
    value = form.get(name)
    return value.strip()[: limit + 1] if isinstance(value, str) else ""


def _key(form: Any) -> str | None:
    key = form.get("idempotency_key")
    return f"page-{key}" if isinstance(key, str) and re.fullmatch(r"[0-9a-f]{32}", key) else None


def _problem(field: str, reason: str) -> dict[str, str]:
    return {"field": field, "reason": reason}


def _required(text: str, field: str, what: str) -> list[dict[str, str]]:
    if not text:
        return [_problem(field, what)]
    if len(text) > MAX_TEXT:
        return [_problem(field, f"Write {MAX_TEXT} characters or fewer")]
    return []


def _error_field(err: AppError, fields: dict[str, str], default: str) -> str:
    """The page field of an API refusal naming a body field (else the actions box)."""
    named = str(err.details.get("field", "")) if isinstance(getattr(err, "details", None), dict) else ""
    return fields.get(named, default)


async def _after_command(
    request: Request,
    user: PageUserInfo,
    dispute_id: str,
    message: str,
    *,
    error: AppError | None = None,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
    field: str = "actions",
) -> Response:
    """The case again after a command: for htmx the updated block, else a redirect with the confirmation
    (or, refused, the page with the problem at the top, linking to its field)."""
    problems = list(errors or [])
    if error is not None:
        problems.append(_problem(field, error.message))
    if not problems and not is_htmx(request):
        return flash(redirect(f"/disputes/{dispute_id}"), message)
    with reading(user.ctx.store) as session:
        case = _case_or_404(session, user, dispute_id)
        context = case_context(
            session, user, case, errors=problems, values=values or {}, done=message if not problems else ""
        )
    status = error.status if error is not None else (422 if problems else 200)
    return render(request, "disputes/case.html", context, user=user, block="case", status_code=status)


def _who(user: PageUserInfo) -> CurrentUserInfo:
    return CurrentUserInfo(user.username)


@router.post("/disputes/{dispute_id}/note")
async def note(dispute_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Add a note to the thread (POST /api/v1/disputes/{id}/notes)."""
    text = _text(form, "text")
    values = {"text": text}
    problems = _required(text, "note-text", "Write the note")
    if problems:
        return await _after_command(request, user, dispute_id, "", errors=problems, values=values)
    try:
        await dispute_api.add_note(dispute_id, DisputeNoteBody(text=text), user.ctx, _who(user), _key(form))
    except AppError as exc:
        return await _after_command(
            request, user, dispute_id, "", error=exc, values=values, field="note-text"
        )
    return await _after_command(request, user, dispute_id, "Your note is in the case's thread.")


@router.post("/disputes/{dispute_id}/attach")
async def attach(dispute_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Attach a file (POST /api/v1/disputes/{id}/attachments): kept under its SHA-256, ledgered."""
    upload = form.get("file")
    text = _text(form, "text", 4000)
    values = {"attach_text": text}
    if not isinstance(upload, StarletteUploadFile) or not upload.filename:
        return await _after_command(
            request,
            user,
            dispute_id,
            "",
            errors=[_problem("attach-file", "Choose a file to attach")],
            values=values,
        )
    try:
        done = await dispute_api.add_attachment(
            dispute_id, user.ctx, _who(user), _key(form), cast(UploadFile, upload), text
        )
    except AppError as exc:
        return await _after_command(
            request, user, dispute_id, "", error=exc, values=values, field="attach-file"
        )
    latest = next((n for n in reversed(done.thread) if n.attachment), None)
    digest = f" (SHA-256 {latest.attachment['sha256']})" if latest and latest.attachment else ""
    return await _after_command(request, user, dispute_id, f"{upload.filename} is attached{digest}.")


@router.post("/disputes/{dispute_id}/wait")
async def wait(dispute_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """The case waits on the customer: the SLA clock pauses (POST /api/v1/disputes/{id}/wait)."""
    reason = _text(form, "reason")
    values = {"wait_reason": reason}
    problems = _required(reason, "wait-reason", "Say what the customer must send or answer")
    if problems:
        return await _after_command(request, user, dispute_id, "", errors=problems, values=values)
    try:
        await dispute_api.wait_on_customer(
            dispute_id, DisputeWaitBody(reason=reason), user.ctx, _who(user), _key(form)
        )
    except AppError as exc:
        return await _after_command(
            request, user, dispute_id, "", error=exc, values=values, field="wait-reason"
        )
    return await _after_command(
        request,
        user,
        dispute_id,
        "The case waits on the customer; its SLA clock is paused until you resume it.",
    )


@router.post("/disputes/{dispute_id}/resume")
async def resume(dispute_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """The customer answered: the SLA clock runs again (POST /api/v1/disputes/{id}/resume)."""
    reason = _text(form, "reason")
    values = {"resume_reason": reason}
    problems = _required(reason, "resume-reason", "Say what came back from the customer")
    if problems:
        return await _after_command(request, user, dispute_id, "", errors=problems, values=values)
    try:
        done = await dispute_api.resume_case(
            dispute_id, DisputeWaitBody(reason=reason), user.ctx, _who(user), _key(form)
        )
    except AppError as exc:
        return await _after_command(
            request, user, dispute_id, "", error=exc, values=values, field="resume-reason"
        )
    due = f" It is now due {_when(done.sla_due_at)}." if done.sla_due_at else ""
    return await _after_command(request, user, dispute_id, f"The case runs again.{due}")


@router.post("/disputes/{dispute_id}/assign")
async def assign(dispute_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Name the owner (and coordinator); reassigning is a supervisor's (POST .../assign)."""
    owner, coordinator, reason = (
        _text(form, "owner", 64),
        _text(form, "coordinator", 64),
        _text(form, "reason"),
    )
    values = {"owner": owner, "coordinator": coordinator, "assign_reason": reason}
    problems = [] if owner else [_problem("assign-owner", "Choose the new owner")]
    problems += _required(reason, "assign-reason", "Say why the case changes hands")
    if problems:
        return await _after_command(request, user, dispute_id, "", errors=problems, values=values)
    try:
        body = DisputeAssignBody(owner=owner, coordinator=coordinator, reason=reason)
    except ValidationError:
        return await _after_command(
            request,
            user,
            dispute_id,
            "",
            errors=[_problem("assign-owner", "Choose a user from the list")],
            values=values,
        )
    try:
        await dispute_api.assign_case(dispute_id, body, user.ctx, _who(user), _key(form))
    except AppError as exc:
        field = _error_field(
            exc, {"owner": "assign-owner", "coordinator": "assign-coordinator"}, "assign-owner"
        )
        return await _after_command(request, user, dispute_id, "", error=exc, values=values, field=field)
    return await _after_command(request, user, dispute_id, f"{owner} now owns the case.")


@router.get("/disputes/{dispute_id}/attachments/{sha256}")
async def attachment(dispute_id: str, sha256: str, user: PageUser) -> Response:
    """An attachment as it was uploaded (the JSON API's download, for the signed-in page user)."""
    with reading(user.ctx.store) as session:
        return await dispute_api.download_attachment(dispute_id, sha256, user.ctx, session, _who(user))


# -- resolving: the form, check your answers, then the command ---------------------------------------------

KINDS = {
    "credit_memo": ("Credit memo", "The customer is right, for all or part: a credit note, once approved."),
    "rebill": ("Rebill", "Credit the whole invoice and issue a corrected one (it goes through approval)."),
    "invalid": (
        "Invalid",
        "The customer owes the amount: collections resume, and what they pay is recovered.",
    ),
    "withdrawn": ("Withdrawn", "The customer withdrew the claim."),
    "write_off": ("Write-off", "We give the amount up, after approval (automatic below the tolerance)."),
}


def _may_resolve(session: Session, user: PageUserInfo, case: store.Dispute) -> None:
    """The resolve pages refuse as the command would: not in this status, or not this user (403/409)."""
    actions = case_actions(session, user, case)
    option = actions.get("resolve")
    if option is None:
        raise Conflict(
            f"cannot resolve a dispute in status {case.status}", code="transition_refused", status=case.status
        )
    if not option["allowed"]:
        raise Forbidden(option["reason"], code="forbidden", who_can_instead=option["instead"])


def _resolve_context(
    session: Session, user: PageUserInfo, case: store.Dispute, **more: Any
) -> dict[str, Any]:
    customer = queries.customer_by_id(session, case.customer_id)
    return {
        "case": case,
        "customer_name": customer.name if customer else case.customer_id,
        "open": format_minor(case.open_minor, case.currency),
        "invoices": [
            {
                "id": inv.id,
                "number": inv.number or inv.external_id,
                "open": format_minor(link.open_minor, case.currency),
            }
            for link, inv in store.dispute_invoices(session, case.id)
            if link.open_minor > 0 or link.linked
        ],
        "kinds": {k: {"label": label, "hint": hint} for k, (label, hint) in KINDS.items()},
        "errors": [],
        "values": {},
        **more,
    }


@router.get("/disputes/{dispute_id}/resolve")
async def resolve_form(dispute_id: str, request: Request, user: PageUser) -> Response:
    """How the case is resolved, for how much, and why."""
    values: dict[str, Any] = {}
    for name in ("kind", "reason"):
        if request.query_params.get(name):
            values[name] = request.query_params[name][:MAX_TEXT]
    if request.query_params.getlist("amount"):
        values["amounts"] = [a[:24] for a in request.query_params.getlist("amount")]
    with reading(user.ctx.store) as session:
        case = _case_or_404(session, user, dispute_id)
        _may_resolve(session, user, case)
        context = _resolve_context(session, user, case, values=values)
    return render(request, "disputes/resolve.html", context, user=user)


@dataclass(frozen=True)
class ResolveAnswers:
    kind: str
    reason: str
    amounts: list[tuple[str, str]]  # (invoice id, amount text)
    lines: list[dict[str, str]]


def _answers(form: Any) -> tuple[ResolveAnswers, list[dict[str, str]]]:
    kind = _text(form, "kind", 16)
    reason = _text(form, "reason")
    ids = [str(v)[:36] for v in form.getlist("invoice_id")]
    amounts = [str(v).strip()[:24] for v in form.getlist("amount")]
    columns = [[str(v).strip()[:500] for v in form.getlist(f"line_{c}")] for c in LINE_FIELDS]
    lines = [dict(zip(LINE_FIELDS, row, strict=False)) for row in zip(*columns, strict=False)]
    lines = [ln for ln in lines if any(ln.values())]
    problems: list[dict[str, str]] = []
    if kind not in KINDS:
        problems.append(_problem("kind", "Choose how the case is resolved"))
    if kind in ("credit_memo", "write_off"):
        for i, text in enumerate(amounts):
            if not re.fullmatch(r"\d{1,15}(\.\d{1,4})?", text) or float(text) <= 0:
                problems.append(
                    _problem(f"amount-{i}", f"Enter an amount above 0 for invoice {i + 1}, like 120.50")
                )
    if kind == "rebill":
        if not lines:
            problems.append(_problem("rebill", "Enter the corrected invoice's lines"))
        for n, ln in enumerate(lines):
            if not all(ln.get(c) for c in LINE_FIELDS):
                problems.append(_problem(f"line-{n}-description", f"Complete line {n + 1}: every column"))
    problems += _required(reason, "reason", "Say why: it is recorded with the resolution")
    keep = amounts if kind in ("credit_memo", "write_off") else []
    return ResolveAnswers(
        kind, reason, list(zip(ids, keep, strict=False)), lines if kind == "rebill" else []
    ), problems


LINE_FIELDS = ("description", "quantity", "unit_price", "tax_rate")


def _next_text(kind: str, case: store.Dispute) -> str:
    return {
        "credit_memo": "A credit memo is proposed and waits for its approvers (not you, not the case's "
        "owner). Once approved it is issued, sent to the customer and applied to the invoice; the case is "
        "then resolved.",
        "rebill": "A credit memo for the whole invoice is proposed for approval; once applied, the corrected "
        "invoice is created and goes through its own approval.",
        "write_off": "A write-off is requested; below the legal entity's tolerance it applies at once, above "
        "it waits for its approvers (never the case's owner).",
        "invalid": "The case is resolved: the invoice is no longer disputed and collections resume for the "
        "amount. Payments received from now on count as recovered.",
        "withdrawn": "The case is resolved: the invoice is no longer disputed and is due as before.",
    }[kind] + " Then close the case with its root cause."


@router.post("/disputes/{dispute_id}/resolve/check")
async def resolve_check(dispute_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Check your answers: nothing changes until the next step."""
    answers, problems = _answers(form)
    with reading(user.ctx.store) as session:
        case = _case_or_404(session, user, dispute_id)
        _may_resolve(session, user, case)
        if problems:
            values = {
                "kind": answers.kind,
                "reason": answers.reason,
                "amounts": [str(v) for v in form.getlist("amount")],
                "lines": answers.lines,
            }
            context = _resolve_context(session, user, case, errors=problems, values=values)
            return render(request, "disputes/resolve.html", context, user=user, status_code=422)
        numbers = {
            inv.id: inv.number or inv.external_id for _, inv in store.dispute_invoices(session, case.id)
        }
    query = urlencode(
        [("kind", answers.kind), ("reason", answers.reason)] + [("amount", a) for _, a in answers.amounts]
    )
    return render(
        request,
        "disputes/check.html",
        {
            "case": case,
            "kind": answers.kind,
            "kind_label": KINDS[answers.kind][0],
            "reason": answers.reason,
            "amounts": [
                {"invoice_id": i, "number": numbers.get(i, i), "amount": a} for i, a in answers.amounts
            ],
            "lines": answers.lines,
            "next_text": _next_text(answers.kind, case),
            "change_href": f"/disputes/{case.id}/resolve?{query}",
            "form_key": uuid.uuid4().hex,  # one key for this confirmation: a double submit resolves once
        },
        user=user,
    )


@router.post("/disputes/{dispute_id}/resolve")
async def resolve(dispute_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Resolve the case as checked (POST /api/v1/disputes/{id}/resolve)."""
    answers, problems = _answers(form)
    if problems:
        with reading(user.ctx.store) as session:
            case = _case_or_404(session, user, dispute_id)
            context = _resolve_context(session, user, case, errors=problems, values={"kind": answers.kind})
        return render(request, "disputes/resolve.html", context, user=user, status_code=422)
    try:
        body = DisputeResolveBody.model_validate(
            {
                "kind": answers.kind,
                "reason": answers.reason,
                "amounts": [{"invoice_id": i, "amount": a} for i, a in answers.amounts],
                "rebill_lines": answers.lines,
            }
        )
    except ValidationError as exc:
        return await _after_command(
            request,
            user,
            dispute_id,
            "",
            error=Invalid(f"the resolution is not valid: {exc.errors()[0]['msg']}"),
        )
    try:
        done = await dispute_api.resolve_case(dispute_id, body, user.ctx, _who(user), _key(form))
    except AppError as exc:
        return await _after_command(request, user, dispute_id, "", error=exc)
    if done.status == "resolving":
        message = (
            f"{KINDS[answers.kind][0]} requested: the case waits for its approval "
            "(its document is listed below)."
        )
    else:
        message = (
            f"Dispute {done.case_number} is resolved ({KINDS[answers.kind][0].lower()}). "
            "Close it with its root cause."
        )
    return await _after_command(request, user, dispute_id, message)


# -- closing -----------------------------------------------------------------------------------------------

PLANS = ("corrective", "preventive")


def _close_context(session: Session, user: PageUserInfo, case: store.Dispute, **more: Any) -> dict[str, Any]:
    return {
        "case": case,
        "resolution_label": RESOLUTION_LABELS.get(case.resolution, case.resolution or "not resolved"),
        "reason_label": ROOT_CAUSES[case.reason].cause if case.reason in ROOT_CAUSES else "",
        "internal": [rc for rc in ROOT_CAUSES.values() if rc.internal],
        "external": [rc for rc in ROOT_CAUSES.values() if not rc.internal],
        "validities": VALIDITY_LABELS,
        "owners": sorted({u for u, _ in queries.users_in_entity(session, case.legal_entity)}),
        "form_key": uuid.uuid4().hex,
        "errors": [],
        "values": {},
        "show_capa": False,
        **more,
    }


def _may_close(session: Session, user: PageUserInfo, case: store.Dispute) -> None:
    option = case_actions(session, user, case).get("close")
    if option is None:
        raise Conflict(
            f"cannot close a dispute in status {case.status.replace('_', ' ')}: resolve it first",
            code="transition_refused",
            status=case.status,
        )
    if not option["allowed"]:
        raise Forbidden(option["reason"], code="forbidden", who_can_instead=option["instead"])


@router.get("/disputes/{dispute_id}/close")
async def close_form(dispute_id: str, request: Request, user: PageUser) -> Response:
    """The root cause, the validity and, for a root cause of ours, the corrective and preventive actions."""
    with reading(user.ctx.store) as session:
        case = _case_or_404(session, user, dispute_id)
        _may_close(session, user, case)
        context = _close_context(session, user, case)
    return render(request, "disputes/close.html", context, user=user)


@router.post("/disputes/{dispute_id}/close")
async def close(dispute_id: str, request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Close the case (POST /api/v1/disputes/{id}/close); an internal root cause starts its CAPA."""
    names = ["root_cause", "validity", "comment"] + [
        f"{p}_{f}" for p in PLANS for f in ("owner", "due", "description")
    ]
    values = {n: _text(form, n) for n in names}
    problems: list[dict[str, str]] = []
    rc = ROOT_CAUSES.get(values["root_cause"])
    if rc is None:
        problems.append(_problem("root_cause", "Choose the root cause: closing needs one from the taxonomy"))
    if values["validity"] not in VALIDITY:
        problems.append(
            _problem("validity", "Say whether the customer's claim was valid, partly valid or invalid")
        )
    plans: dict[str, dict[str, str] | None] = {p: None for p in PLANS}
    if rc is not None and rc.internal:
        for p in PLANS:
            what = "corrective" if p == "corrective" else "preventive"
            owner, due, text = values[f"{p}_owner"], values[f"{p}_due"], values[f"{p}_description"]
            if not owner:
                problems.append(_problem(f"{p}-owner", f"Choose who owns the {what} action"))
            if _date_param(due) is None:
                problems.append(_problem(f"{p}-due", f"Enter the {what} action's due date"))
            elif _date_param(due) < datetime.now(UTC).date():  # type: ignore[operator]
                problems.append(_problem(f"{p}-due", f"The {what} action's due date must be today or later"))
            if not text:
                problems.append(_problem(f"{p}-description", f"Describe the {what} action"))
            plans[p] = {"owner": owner, "due": due, "description": text}
    if not problems:
        try:
            body = DisputeCloseBody.model_validate(
                {
                    "root_cause": values["root_cause"],
                    "validity": values["validity"],
                    "comment": values["comment"],
                    **{p: v for p, v in plans.items() if v is not None},
                }
            )
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(x) for x in err.get("loc", ())]
                field = (
                    f"{loc[0]}-{loc[1]}"
                    if len(loc) > 1 and loc[0] in PLANS
                    else (loc[0] if loc else "root_cause")
                )
                problems.append(_problem(field, f"{field.replace('-', ' ')}: {err['msg']}"))
        else:
            try:
                done = await dispute_api.close_case(dispute_id, body, user.ctx, _who(user), _key(form))
            except AppError as exc:
                named = str(exc.details.get("field", ""))
                field = named.replace(".", "-") if named.startswith(PLANS) else (named or "root_cause")
                problems.append(_problem(field, exc.message))
            else:
                capa = (
                    f" CAPA {done.capa_reference} follows the corrective and preventive actions."
                    if done.capa_reference
                    else ""
                )
                return flash(
                    redirect(f"/disputes/{dispute_id}"),
                    f"Dispute {done.case_number} is closed: root cause {done.root_cause}, "
                    f"{VALIDITY_LABELS.get(done.validity, done.validity)}.{capa}",
                )
    with reading(user.ctx.store) as session:
        case = _case_or_404(session, user, dispute_id)
        context = _close_context(
            session,
            user,
            case,
            errors=problems,
            values=values,
            show_capa=any(e["field"].startswith(PLANS) for e in problems),
        )
    return render(request, "disputes/close.html", context, user=user, status_code=422)

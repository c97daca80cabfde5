"""The supervisor's control tower as pages: the pipeline, the stuck invoices (grouped by cause and by
owner, filtered, paged), and actions on several rows: tick them, choose the action and give a reason,
check your answers (how many it will touch, which are skipped and why), confirm, then a result per row.

Everything comes from api/tower.py: the same evaluation as GET /api/v1/workflows/stuck and the same
`run_actions` as POST /api/v1/workflows/stuck/actions (dry run for the check page)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from activities.db import reading
from activities.stuck import DISPUTE_CAUSES
from api.deps import entities_for
from api.pages.common import CsrfForm, PageUser, render
from api.schemas import AMOUNT
from api.tower import ACTIONS, MAX_OFFSET, STATUSES, Filters, pipeline_of, sla_of, stuck_page
from api.tower_actions import BulkAction, run_actions

router = APIRouter()

ACTION_LABELS = {
    "reassign": "Reassign the waiting tier",
    "remind": "Remind now",
    "escalate": "Escalate",
    "retry": "Retry the failing activity now",
}
OPEN = ("draft", "pending_approval", "approved", "submitted", "portal_rejected")


def _clean(value: str, allowed: tuple[str, ...] | list[str] | None = None, pattern: str = "") -> str | None:
    import re

    value = value.strip()
    if not value:
        return None
    if allowed is not None and value not in allowed:
        return None
    if pattern and not re.match(pattern, value):
        return None
    return value


async def _tower(
    request: Request,
    user: PageUser,
    filters: Filters,
    *,
    selected: set[str] | None = None,
    form: dict[str, str] | None = None,
    errors: list[dict[str, str]] | None = None,
    status_code: int = 200,
) -> Response:
    ctx = user.ctx
    with reading(ctx.store) as session:
        entities = entities_for(ctx, session, user.username, "tower:read", None)
        page = await stuck_page(ctx, session, user.username, filters)
        pipe = await pipeline_of(ctx, session, user.username, filters.legal_entity)
    sla = sla_of(ctx)
    query = {
        k: v
        for k, v in (
            ("legal_entity", filters.legal_entity),
            ("cause", filters.cause),
            ("owner", filters.owner),
            ("status", filters.status),
            ("min_amount", filters.min_amount),
        )
        if v
    }
    # The pipeline as a table: one row per entity and currency, a column per open status.
    lines: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in pipe.cells:
        line = lines.setdefault((cell.legal_entity, cell.currency), {"cells": {}, "stuck": 0, "count": 0})
        line["cells"][cell.status] = cell
        line["stuck"] += cell.stuck
        line["count"] += cell.count if cell.status in OPEN else 0
    return render(
        request,
        "tower/tower.html",
        {
            "page": page,
            "pipeline": [{"entity": e, "currency": c, **v} for (e, c), v in sorted(lines.items())],
            "open_statuses": OPEN,
            "filters": filters,
            "filtered": bool(query),
            "base_query": urlencode(query),
            "entities": entities,
            "statuses": STATUSES,
            "causes": [
                ("no_worker", "no worker polling"),
                ("workflow_task_failing", "workflow task failing"),
                ("activity_retrying", "activity retrying"),
            ]
            + [(r.id, r.label) for r in sla.rules]
            + list(DISPUTE_CAUSES.items()),
            "actions": [(a, ACTION_LABELS[a]) for a in ACTIONS],
            "selected": selected or set(),
            "form": form or {},
            "errors": errors or [],
        },
        user=user,
        status_code=status_code,
    )


@router.get("/tower")
async def tower(
    request: Request,
    user: PageUser,
    legal_entity: Annotated[str, Query(max_length=32)] = "",
    cause: Annotated[str, Query(max_length=48)] = "",
    owner: Annotated[str, Query(max_length=100)] = "",
    status: Annotated[str, Query(max_length=32)] = "",
    min_amount: Annotated[str, Query(max_length=24)] = "",
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """The pipeline, then every stuck invoice, most cash at stake x age first."""
    filters = Filters(
        legal_entity=_clean(legal_entity, pattern=r"^[A-Za-z0-9_-]+$"),
        cause=_clean(cause, pattern=r"^[a-z][a-z0-9_]*$"),
        owner=_clean(owner, pattern=r"^[A-Za-z0-9._:@-]+$"),
        status=_clean(status, STATUSES),
        min_amount=_clean(min_amount, pattern=AMOUNT),
        offset=offset,
        limit=limit,
    )
    return await _tower(request, user, filters)


def _bulk_from(
    form: CsrfForm, dry_run: bool
) -> tuple[BulkAction | None, list[dict[str, str]], dict[str, str]]:
    ids = [str(v) for v in form.getlist("invoice_ids")]
    fields = {k: str(form.get(k) or "").strip() for k in ("action", "reason", "assignee", "escalate_to")}
    errors: list[dict[str, str]] = []
    if not ids:
        errors.append({"field": "rows", "reason": "Select at least one invoice"})
    if fields["action"] not in ACTIONS:
        errors.append({"field": "action", "reason": "Choose what to do"})
    if not fields["reason"]:
        errors.append({"field": "reason", "reason": "Give a reason: it is recorded in the ledger"})
    if fields["action"] == "reassign" and not fields["assignee"]:
        errors.append({"field": "assignee", "reason": "Name the approver to hand the tier to"})
    if errors:
        return None, errors, fields
    try:
        body = BulkAction(
            action=fields["action"],
            invoice_ids=ids,
            reason=fields["reason"],
            assignee=fields["assignee"] or None,
            escalate_to=fields["escalate_to"] or None,
            dry_run=dry_run,
        )
    except ValidationError as exc:
        for err in exc.errors():
            where = str(err["loc"][0]) if err.get("loc") else "action"
            field = {"invoice_ids": "rows"}.get(where, where)
            errors.append({"field": field, "reason": f"{field}: {err['msg']}"})
        return None, errors, fields
    return body, [], fields


@router.post("/tower/actions/check")
async def check_answers(request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Check your answers: what the action will touch and what it will skip, and why; nothing changes."""
    body, errors, fields = _bulk_from(form, dry_run=True)
    if body is None:
        selected = {str(v) for v in form.getlist("invoice_ids")}
        return await _tower(
            request, user, Filters(), selected=selected, form=fields, errors=errors, status_code=422
        )
    preview = await run_actions(user.ctx, user.username, body, None)
    return render(
        request,
        "tower/check.html",
        {
            "body": body,
            "label": ACTION_LABELS[body.action],
            "preview": preview,
            "key": uuid.uuid4().hex,  # one key for this confirmation: a double submit applies once
        },
        user=user,
    )


@router.post("/tower/actions")
async def apply_actions(request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Apply the checked action: a result per row, and what happens next."""
    body, errors, fields = _bulk_from(form, dry_run=False)
    if body is None:
        selected = {str(v) for v in form.getlist("invoice_ids")}
        return await _tower(
            request, user, Filters(), selected=selected, form=fields, errors=errors, status_code=422
        )
    key = str(form.get("idempotency_key") or "")[:200] or None
    result = await run_actions(user.ctx, user.username, body, f"page:{key}" if key else None)
    return render(
        request,
        "tower/result.html",
        {"body": body, "label": ACTION_LABELS[body.action], "result": result},
        user=user,
    )

"""Delegations: lend my approval role to a colleague for a date range, see those I gave and received,
and end mine. The same code as the JSON API (api/approvals.py delegate_authority, list_delegations and
revoke): the same checks, the same ledger entries."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from activities import queries
from activities.approvals import entity_today
from activities.db import reading
from api.approvals import DelegationCreate, delegate_authority, list_delegations, revoke
from api.deps import CurrentUserInfo
from api.errors import AppError
from api.pages.common import CsrfForm, PageUser, flash, redirect, render

router = APIRouter()

FIELDS = ("delegate", "role", "starts_on", "ends_on", "reason", "legal_entity")


def _lendable(user: PageUser) -> list[tuple[str, str]]:
    """(legal entity, role) pairs the user may lend: their approval roles where they may delegate."""
    with reading(user.ctx.store) as session:
        entities = queries.entities_of(session, user.username)
        if "*" in entities:
            entities = queries.legal_entity_codes(session)
    return [
        (e, role)
        for e in entities
        if user.may("approval:delegate", e)
        for role in user.ctx.authorizer.roles(user.username, e)
        if user.ctx.authorizer.check(user.username, e, "invoice:approve") is not None
        and role in ("ar_approver", "finance_manager", "controller")
    ]


async def _page(
    request: Request,
    user: PageUser,
    errors: list[dict[str, str]] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    with reading(user.ctx.store) as session:
        rows = await list_delegations(session, CurrentUserInfo(user.username))
        lendable = _lendable(user)
        today = entity_today(session, lendable[0][0]) if lendable else date.today()
        colleagues = sorted(
            {u for e, _ in lendable for u, _ in queries.users_in_entity(session, e)} - {user.username}
        )
    given = [d for d in rows if d.delegator == user.username]
    received = [d for d in rows if d.delegate == user.username]
    defaults = {"starts_on": today.isoformat(), "ends_on": (today + timedelta(days=7)).isoformat()}
    return render(
        request,
        "delegations/delegations.html",
        {
            "given": given,
            "received": received,
            "lendable": lendable,
            "entities": sorted({e for e, _ in lendable}),
            "colleagues": colleagues,
            "errors": errors or [],
            "values": {**defaults, **(values or {})},
            "form_key": uuid.uuid4().hex,
        },
        user=user,
        status_code=status,
    )


@router.get("/delegations")
async def delegations(request: Request, user: PageUser) -> Response:
    return await _page(request, user)


@router.post("/delegations")
async def lend(request: Request, user: PageUser, form: CsrfForm) -> Response:
    """Lend an approval role for a date range (POST /api/v1/delegations)."""
    values = {k: str(form.get(k) or "").strip() for k in FIELDS}
    errors: list[dict[str, str]] = []
    if not values["delegate"]:
        errors.append({"field": "delegate", "reason": "Choose who you lend your role to"})
    if not values["role"]:
        errors.append({"field": "role", "reason": "Choose the role you lend"})
    for name, what in (("starts_on", "first"), ("ends_on", "last")):
        try:
            date.fromisoformat(values[name])
        except ValueError:
            errors.append({"field": name, "reason": f"Enter the {what} day as a date, like 2026-12-24"})
    if errors:
        return await _page(request, user, errors, values, 422)
    entity, _, role = values["role"].partition("|")
    try:
        body = DelegationCreate(
            legal_entity=entity or None,
            delegate=values["delegate"],
            role=role or entity,
            starts_on=date.fromisoformat(values["starts_on"]),
            ends_on=date.fromisoformat(values["ends_on"]),
            reason=values["reason"],
        )
    except ValidationError as exc:
        errors = [
            {"field": str(e["loc"][-1]) if e["loc"] else "delegate", "reason": str(e["msg"])}
            for e in exc.errors()
        ]
        return await _page(request, user, errors, values, 422)
    key = str(form.get("idempotency_key") or "")[:64] or None
    try:
        with reading(user.ctx.store) as session:
            made = await delegate_authority(body, user.ctx, session, CurrentUserInfo(user.username), key)
    except AppError as exc:
        field = str(exc.details.get("field") or "delegate")
        reason = exc.message.split(": ", 1)[1] if exc.message.startswith(f"{field}: ") else exc.message
        return await _page(request, user, [{"field": field, "reason": reason}], values, exc.status)
    return flash(
        redirect("/delegations"),
        f"{made.delegate} may approve as {made.role} in {made.legal_entity} from {made.starts_on} to "
        f"{made.ends_on}, on your behalf. You can end it here at any time.",
    )


@router.post("/delegations/{delegation_id}/revoke")
async def end(delegation_id: str, user: PageUser, form: CsrfForm) -> Response:
    """End a delegation now (POST /api/v1/delegations/{id}/revoke)."""
    try:
        with reading(user.ctx.store) as session:
            done = await revoke(delegation_id, user.ctx, session, CurrentUserInfo(user.username))
    except AppError as exc:
        return flash(redirect("/delegations"), exc.message, "error")
    return flash(redirect("/delegations"), f"The delegation to {done.delegate} has ended.")

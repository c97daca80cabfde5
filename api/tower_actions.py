"""The control tower's actions on several invoices at once: reassign the waiting tier (the invoice command
of POST /invoices/{id}/reassign), remind and escalate (the invoice workflow's `remind` / `escalate`
updates), and retry now an activity stuck in retries (Temporal's ResetActivity, where the server allows
it). Each needs a reason, is ledgered and idempotent under an Idempotency-Key; `dry_run` previews what would
be touched and what skipped, and why. The tower page (api/pages/tower.py) runs the same `run_actions`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, StrictBool
from sqlmodel import Session

from activities import queries
from activities.db import reading, writing
from activities.directory import ledger_event
from activities.ledger import find_by_business_key
from activities.models import Invoice
from activities.stuck import (
    Candidate,
    EngineState,
    candidates_by_workflow,
    entities,
    retry_business_key,
)
from api.approvals import forbidden_reason, rules_state, who_may
from api.deps import AppContext, ContextDep, CurrentUser, IdempotencyKey, entities_for
from api.errors import AppError, Invalid, errors
from api.schemas import Strict
from api.tower import (
    EVENT,
    MAX_BULK,
    TOWER_COMMANDS,
    delivering,
    probe_for,
    sla_of,
)
from workflows import states
from workflows.approval import approval_refusal, current_tier
from workflows.invoice import InvoiceWorkflow
from workflows.types import Actor, SupervisorCommand

router = APIRouter(prefix="/api/v1", tags=["control tower"])


# -- actions on several rows ------------------------------------------------------------------------------

_INVOICE_ID = r"^[A-Za-z0-9-]{1,36}$"


class BulkAction(Strict):
    action: Literal["reassign", "remind", "escalate", "retry"]
    invoice_ids: list[Annotated[str, Field(pattern=_INVOICE_ID, max_length=36)]] = Field(
        min_length=1, max_length=MAX_BULK, description="the rows to act on (duplicates count once)"
    )
    reason: str = Field(min_length=1, max_length=2000, description="required, recorded in the ledger")
    assignee: str | None = Field(
        default=None, max_length=64, pattern=r"^[A-Za-z0-9._]{1,64}$", description="reassign: the approver"
    )
    escalate_to: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z_]{1,64}$",
        description="escalate: the role to notify (default: the SLA rule's escalate_to)",
    )
    dry_run: StrictBool = Field(
        default=False, description="preview: what would be touched, what skipped and why"
    )


class RowOutcome(BaseModel):
    invoice_id: str
    external_id: str = ""
    legal_entity: str = ""
    status: str = ""
    outcome: Literal["will_apply", "applied", "skipped", "failed"]
    code: str = ""
    message: str = ""
    who_can_instead: list[str] = Field(default_factory=list)


class BulkResult(BaseModel):
    action: str
    dry_run: bool
    reason: str
    will_apply: int
    applied: int
    skipped: int
    failed: int
    rows: list[RowOutcome]


@dataclass
class Planned:
    inv: Invoice
    cand: Candidate
    sla_rule: str
    escalate_to: str
    engine: EngineState | None
    tier: int | None
    activity_id: str


def _skip(inv_id: str, code: str, message: str, inv: Invoice | None = None, **kw: list[str]) -> RowOutcome:
    return RowOutcome(
        invoice_id=inv_id,
        external_id=inv.external_id if inv else "",
        legal_entity=inv.legal_entity if inv else "",
        status=inv.status if inv else "",
        outcome="skipped",
        code=code,
        message=message,
        **kw,
    )


async def plan_actions(
    ctx: AppContext, session: Session, username: str, body: BulkAction
) -> tuple[list[RowOutcome | Planned], tuple[bool, str]]:
    """Each row's fate under the action, in the order given: skipped (with the code and reason the
    command would be refused with) or planned."""
    if body.action == "reassign" and not body.assignee:
        raise Invalid(
            "assignee: reassigning needs the approver to hand the tier to",
            code="inconsistent_fields",
            field="assignee",
        )
    if (
        body.action == "reassign"
        and body.assignee
        and queries.active_user_and_policy_revision(session, body.assignee)[0] is False
    ):
        raise Invalid(f"assignee: no active user {body.assignee}", code="unknown_reference", field="assignee")
    entities_for(ctx, session, username, "tower:read", None)  # 403 for a caller without the tower
    sla = sla_of(ctx)
    probe = probe_for(ctx)
    ids = list(dict.fromkeys(body.invoice_ids))
    invoices = {i: queries.invoice_by_id(session, i) for i in ids}
    visible = {
        i: inv
        for i, inv in invoices.items()
        if inv is not None and ctx.authorizer.check(username, inv.legal_entity, "tower:read")
    }
    ents = entities(session, sorted({inv.legal_entity for inv in visible.values()}))
    cands = {
        c.facts.invoice_id: c
        for c in candidates_by_workflow(
            session, [inv.workflow_id for inv in visible.values()], sorted(ents), ents, sla, datetime.now(UTC)
        )
    }
    retry = await probe.retry_supported()
    engine: dict[str, EngineState] = {}
    if body.action in ("retry", "escalate", "remind"):
        engine = await probe.describe([inv.workflow_id for inv in visible.values()])
    out: list[RowOutcome | Planned] = []
    for inv_id in ids:
        inv = visible.get(inv_id)
        cand = cands.get(inv_id)
        if inv is None or cand is None:
            out.append(_skip(inv_id, "not_found", f"no invoice {inv_id}"))
            continue
        permission = TOWER_COMMANDS[body.action]
        if ctx.authorizer.check(username, inv.legal_entity, permission) is None:
            out.append(
                _skip(
                    inv_id,
                    "forbidden",
                    forbidden_reason(username, permission, inv.legal_entity),
                    inv,
                    who_can_instead=who_may(ctx, session, inv.legal_entity, permission, but=username),
                )
            )
            continue
        status = states.Status(inv.status)
        state = engine.get(inv.workflow_id)
        rule = (
            cand.breach.rule if cand.breach else sla.rule_for(inv.status, cand.facts.tier, cand.facts.portal)
        )
        planned = Planned(inv, cand, rule.id if rule else "", "", state, cand.facts.tier, "")
        if body.action == "retry":
            pending = [a for a in (state.activities if state else ()) if a.attempt > 1 or a.last_failure]
            if not retry[0]:
                out.append(_skip(inv_id, "retry_unsupported", retry[1], inv))
            elif state is not None and state.error:
                out.append(_skip(inv_id, "unavailable", state.error, inv))
            elif not pending:
                out.append(
                    _skip(inv_id, "nothing_to_retry", "no activity of this workflow is failing now", inv)
                )
            else:
                planned.activity_id = max(pending, key=lambda a: a.attempt).activity_id
                out.append(planned)
            continue
        event = EVENT[body.action]
        if not states.can(status, event) or (body.action == "reassign" and cand.facts.tier is None):
            out.append(
                _skip(
                    inv_id,
                    "transition_refused",
                    f"cannot {body.action} an invoice in status {inv.status}",
                    inv,
                )
            )
            continue
        if body.action in ("remind", "escalate") and delivering(state):
            out.append(
                _skip(
                    inv_id,
                    "delivery_in_progress",
                    "the invoice is being delivered (its activity is running or retrying): retry it instead",
                    inv,
                )
            )
            continue
        if body.action == "escalate":
            planned.escalate_to = body.escalate_to or (rule.escalate_to if rule else "")
            if not planned.escalate_to:
                out.append(_skip(inv_id, "invalid_command", "no SLA rule names a role to escalate to", inv))
                continue
        if body.action == "reassign":
            assert body.assignee is not None
            why = _reassign_refusal(ctx, inv, body.assignee)
            if why is not None:
                out.append(_skip(inv_id, why[0], why[1], inv))
                continue
        out.append(planned)
    return out, retry


def _reassign_refusal(ctx: AppContext, inv: Invoice, assignee: str) -> tuple[str, str] | None:
    """Why `assignee` cannot take the waiting tier (the checks of POST /invoices/{id}/reassign and of the
    workflow's validator), or None."""
    state = rules_state(inv)
    tier = current_tier(state)
    if tier is None:
        return ("transition_refused", f"no tier of invoice {inv.external_id} is waiting")
    if tier.role not in ctx.authorizer.roles(assignee, inv.legal_entity):
        return ("assignee_ineligible", f"{assignee} does not hold {tier.role} in {inv.legal_entity}")
    probe = approval_refusal(state, Actor(assignee, [tier.role]), tier.level)
    if probe is not None and probe.code == "segregation_of_duties" and probe.rule != "reassigned":
        return ("segregation_of_duties", f"{assignee} cannot approve this invoice: {probe.message}")
    return None


async def run_actions(
    ctx: AppContext, username: str, body: BulkAction, idempotency_key: str | None
) -> BulkResult:
    """Preview (dry_run) or apply the action to each row, through the same command code as the invoice
    routes; a row that fails does not stop the others."""
    with reading(ctx.store) as session:
        plan, _ = await plan_actions(ctx, session, username, body)
    rows: list[RowOutcome] = []
    if body.dry_run:
        rows = [
            p
            if isinstance(p, RowOutcome)
            else RowOutcome(
                invoice_id=p.inv.id,
                external_id=p.inv.external_id,
                legal_entity=p.inv.legal_entity,
                status=p.inv.status,
                outcome="will_apply",
                message=_preview_text(body, p),
            )
            for p in plan
        ]
    else:
        gate = asyncio.Semaphore(4)
        # One key for the whole request, per row: the same request again applies nothing twice.
        key = idempotency_key or uuid.uuid4().hex

        async def one(p: RowOutcome | Planned) -> RowOutcome:
            if isinstance(p, RowOutcome):
                return p
            async with gate:
                return await _apply(ctx, username, body, p, key)

        rows = list(await asyncio.gather(*(one(p) for p in plan)))
    count = {
        k: sum(1 for r in rows if r.outcome == k) for k in ("will_apply", "applied", "skipped", "failed")
    }
    return BulkResult(
        action=body.action,
        dry_run=body.dry_run,
        reason=body.reason,
        will_apply=count["will_apply"],
        applied=count["applied"],
        skipped=count["skipped"],
        failed=count["failed"],
        rows=rows,
    )


def _preview_text(body: BulkAction, p: Planned) -> str:
    if body.action == "reassign":
        return f"tier {p.tier} to {body.assignee}"
    if body.action == "escalate":
        return f"escalate to {p.escalate_to}"
    if body.action == "retry":
        activity = next(
            (a for a in (p.engine.activities if p.engine else ()) if a.activity_id == p.activity_id), None
        )
        return f"retry {activity.activity_type} now (attempt {activity.attempt})" if activity else "retry now"
    who = f"tier {p.tier} ({p.cand.facts.tier_role})" if p.tier else "the preparers"
    return f"remind {who}"


async def _apply(ctx: AppContext, username: str, body: BulkAction, p: Planned, key: str) -> RowOutcome:
    from api.deps import CurrentUserInfo
    from api.invoices import _command, reassign_approval
    from api.schemas import ReassignBody

    base = RowOutcome(
        invoice_id=p.inv.id,
        external_id=p.inv.external_id,
        legal_entity=p.inv.legal_entity,
        status=p.inv.status,
        outcome="applied",
    )
    reason = body.reason + (f" [SLA {p.sla_rule}]" if p.sla_rule else "")
    try:
        if body.action == "reassign":
            assert body.assignee is not None and p.tier is not None
            done = await reassign_approval(
                p.inv.id,
                ReassignBody(tier=p.tier, assignee=body.assignee, reason=reason),
                ctx,
                CurrentUserInfo(username),
                f"tower:{key}",
            )
            return base.model_copy(
                update={"status": done.status, "message": f"tier {p.tier} to {body.assignee}"}
            )
        if body.action in ("remind", "escalate"):
            permission = TOWER_COMMANDS[body.action]

            def authorize(session: Session, inv: Invoice) -> Actor:
                grant = ctx.authorizer.require(username, inv.legal_entity, permission)
                return Actor(username, grant.roles, grant.rule)

            cmd = lambda _s, _i, actor: SupervisorCommand(  # noqa: E731
                actor, reason, sla_rule=p.sla_rule, escalate_to=p.escalate_to
            )
            update = InvoiceWorkflow.remind if body.action == "remind" else InvoiceWorkflow.escalate
            done = await _command(
                ctx, username, p.inv.id, body.action, update, cmd, f"tower:{key}", authorize=authorize
            )
            probe_for(ctx).forget(p.inv.workflow_id)
            return base.model_copy(update={"status": done.status, "message": _preview_text(body, p)})
        return await _retry(ctx, username, body, p, key, base)
    except AppError as exc:
        return base.model_copy(update={"outcome": "failed", "code": exc.code, "message": exc.message})


async def _retry(
    ctx: AppContext, username: str, body: BulkAction, p: Planned, key: str, base: RowOutcome
) -> RowOutcome:
    """Reset the failing activity (attempts from 1, dispatched now), then ledger it: who, their roles, the
    policy rule, the reason, the activity and the attempt it was on."""
    from temporalio.service import RPCError

    business_key = retry_business_key(p.inv.id, f"{username}:{key}")
    with reading(ctx.store) as session:
        if find_by_business_key(session, business_key) is not None:
            return base.model_copy(update={"message": "already retried under this Idempotency-Key"})
    grant = ctx.authorizer.require(username, p.inv.legal_entity, TOWER_COMMANDS["retry"])
    activity = next(
        (a for a in (p.engine.activities if p.engine else ()) if a.activity_id == p.activity_id), None
    )
    try:
        await probe_for(ctx).reset_activity(p.inv.workflow_id, p.activity_id, f"cashcycle-tower:{username}")
    except RPCError as exc:
        return base.model_copy(
            update={"outcome": "failed", "code": "unavailable", "message": f"Temporal: {exc.message}"}
        )
    with writing(ctx.store) as session:
        if find_by_business_key(session, business_key) is None:
            ledger_event(
                session,
                p.inv.legal_entity,
                business_key,
                "invoice",
                p.inv.id,
                "retry_activity",
                username,
                {
                    "workflow_id": p.inv.workflow_id,
                    "activity_id": p.activity_id,
                    "activity_type": activity.activity_type if activity else "",
                    "attempt": activity.attempt if activity else 0,
                    "last_failure": activity.last_failure if activity else "",
                    "sla_rule": p.sla_rule,
                    "status": p.inv.status,
                },
                body.reason,
                rule=grant.rule,
            )
    what = f"{activity.activity_type} (was on attempt {activity.attempt})" if activity else "the activity"
    return base.model_copy(update={"message": f"retried {what} now"})


@router.post(
    "/workflows/stuck/actions",
    response_model=BulkResult,
    responses=errors("forbidden", "inconsistent_fields", "unknown_reference"),
)
async def act_on_stuck(
    body: BulkAction, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> BulkResult:
    """Reassign, remind, escalate or retry several invoices at once, with a required reason (ledgered).
    `dry_run: true` previews: how many it will touch, which are skipped and why (the code and message the
    command would be refused with). Otherwise each row is applied through the invoice's command (the
    workflow's update, or for retry Temporal's ResetActivity) and answers for itself: applied, skipped or
    failed. The same Idempotency-Key again applies nothing twice."""
    return await run_actions(ctx, user.username, body, idempotency_key)

"""Approvals as people see them: who can approve what right now (the inbox), each invoice's approval
chain, and delegations of approval authority.

The rules are the workflow's own (workflows/approval.py), applied to the read model, so the API shows
exactly what the workflow will accept; the workflow checks them again when the command arrives.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from activities import queries
from activities.approvals import (
    DelegationError,
    create_delegation,
    delegations_of,
    delegations_to,
    entity_today,
    revoke_delegation,
)
from activities.db import writing
from activities.models import Delegation, Invoice
from activities.money import format_minor
from api.deps import AppContext, ContextDep, CurrentUser, IdempotencyKey, SessionDep
from api.errors import Forbidden, Invalid, NotFound, errors
from api.schemas import Day, Strict
from workflows.approval import approval_refusal, assignee_of, current_tier
from workflows.types import (
    Actor,
    Approval,
    ApprovalPlan,
    Assignment,
    InvoiceDraft,
    InvoiceState,
    TierRequirement,
)

router = APIRouter(prefix="/api/v1", tags=["approvals"])
DELEGATION_NAMESPACE = uuid.UUID("a4b0f1de-6c1e-4d8b-9d53-2f0c8e5b7a11")


def rules_state(inv: Invoice) -> InvoiceState:
    """The parts of an invoice the approval rules look at, rebuilt from the read model."""
    extra: dict[str, Any] = json.loads(inv.approval_json or "{}")
    plan_data = extra.get("plan")
    plan = None
    if plan_data:
        plan = ApprovalPlan(**{**plan_data, "tiers": [TierRequirement(**t) for t in plan_data["tiers"]]})
    draft = InvoiceDraft(
        customer_id=inv.customer_id,
        currency=inv.currency,
        issue_date=inv.issue_date.isoformat(),
        due_date=inv.due_date.isoformat(),
        po_number=inv.po_number,
        lines=[],
        subtotal_minor=inv.subtotal_minor,
        tax_total_minor=inv.tax_total_minor,
        total_minor=inv.total_minor,
        release_at="",
        payload_hash=inv.payload_hash,
        exchange_rate=inv.exchange_rate,
    )
    return InvoiceState(
        invoice_id=inv.id,
        workflow_id=inv.workflow_id,
        legal_entity=inv.legal_entity,
        external_id=inv.external_id,
        number=inv.number or "",
        status=inv.status,
        draft=draft,
        created_by=inv.created_by,
        editors=json.loads(inv.editors_json),
        approvals=[Approval(**a) for a in json.loads(inv.approvals_json)],
        amount_paid_minor=inv.amount_paid_minor,
        payments=[],
        status_since=inv.status_since.isoformat(),
        transition_seq=inv.transition_seq,
        submitters=json.loads(inv.submitters_json),
        plan=plan,
        assignments=[Assignment(**a) for a in extra.get("assignments", [])],
        tier_since=extra.get("tier_since", ""),
        escalated=bool(extra.get("escalated", False)),
        submission=int(extra.get("submission", 0)),
    )


class ApproveOption(BaseModel):
    allowed: bool
    reason: str = ""
    code: str = ""  # the refusal's error code when not allowed (see workflows/errors.py)
    rule: str = ""
    tier: int | None = None
    on_behalf_of: str | None = None


def approve_option(
    ctx: AppContext, session: Session, inv: Invoice, username: str, tier_seen: int = 0
) -> ApproveOption:
    """Whether `username` can approve the invoice's waiting tier now, under their own roles or a
    delegation in force today, and if not, why not."""
    state = rules_state(inv)
    tier = current_tier(state)
    if tier_seen:
        # Stale or out-of-order tiers are refused before roles: the caller named the wrong tier.
        stale = approval_refusal(state, Actor(username, []), tier_seen)
        if stale is not None and stale.code in ("tier_already_approved", "tier_out_of_order"):
            return ApproveOption(
                allowed=False,
                reason=stale.message,
                code=stale.code,
                rule=stale.rule,
                tier=tier.level if tier else None,
            )
    if tier is None:
        return ApproveOption(
            allowed=False,
            reason=f"cannot approve an invoice in status {inv.status}",
            code="transition_refused",
            rule="status",
        )
    roles = ctx.authorizer.roles(username, inv.legal_entity)
    own = approval_refusal(state, Actor(username, roles), tier.level)
    may_approve_here = ctx.authorizer.check(username, inv.legal_entity, "invoice:approve") is not None
    if own is None and may_approve_here:
        return ApproveOption(allowed=True, tier=tier.level)
    today = entity_today(session, inv.legal_entity)
    delegated = None
    for lent in delegations_to(session, username, inv.legal_entity, tier.role, today):
        refusal = approval_refusal(state, Actor(username, roles), tier.level, lent.delegator)
        if refusal is None:
            return ApproveOption(allowed=True, tier=tier.level, on_behalf_of=lent.delegator)
        delegated = delegated or refusal
    if delegated is not None and (not may_approve_here or own is None or own.code == "no_authority"):
        # Holding a delegation for this tier, the delegate is refused for what the delegation cannot lift.
        return ApproveOption(
            allowed=False, reason=delegated.message, tier=tier.level, code=delegated.code, rule=delegated.rule
        )
    if own is None or not may_approve_here:
        return ApproveOption(
            allowed=False,
            tier=tier.level,
            code="forbidden",
            rule="invoice:approve",
            reason=f"{username} may not invoice:approve in {inv.legal_entity}",
        )
    return ApproveOption(allowed=False, reason=own.message, tier=tier.level, code=own.code, rule=own.rule)


class ChainStep(BaseModel):
    tier: int
    role: str
    status: str = Field(description="approved | waiting | later")
    approved_by: str | None = None
    on_behalf_of: str | None = None
    approved_at: datetime | None = None
    comment: str = ""
    assigned_to: str | None = None


class ApprovalChain(BaseModel):
    matrix_version: str | None
    amount_in_entity_currency: str | None
    entity_currency: str | None
    submission: int
    waiting_since: datetime | None
    escalated: bool
    steps: list[ChainStep]


def approval_chain(inv: Invoice) -> ApprovalChain:
    state = rules_state(inv)
    plan = state.plan
    steps: list[ChainStep] = []
    waiting = current_tier(state)
    if plan is not None:
        for tier in plan.tiers:
            done = state.approvals[tier.level - 1] if tier.level <= len(state.approvals) else None
            steps.append(
                ChainStep(
                    tier=tier.level,
                    role=tier.role,
                    status="approved"
                    if done
                    else ("waiting" if waiting and waiting.level == tier.level else "later"),
                    approved_by=done.approver if done else None,
                    on_behalf_of=done.on_behalf_of if done else None,
                    approved_at=datetime.fromisoformat(done.at) if done else None,
                    comment=done.comment if done else "",
                    assigned_to=assignee_of(state, tier.level),
                )
            )
    return ApprovalChain(
        matrix_version=plan.matrix_version if plan else None,
        amount_in_entity_currency=format_minor(plan.amount_minor, plan.currency) if plan else None,
        entity_currency=plan.currency if plan else None,
        submission=state.submission,
        waiting_since=datetime.fromisoformat(state.tier_since) if waiting and state.tier_since else None,
        escalated=state.escalated,
        steps=steps,
    )


class InboxItem(BaseModel):
    invoice_id: str
    external_id: str
    customer_id: str
    currency: str
    total: str
    tier: int
    role: str
    on_behalf_of: str | None
    waiting_since: datetime | None
    escalated: bool
    matrix_version: str | None


@router.get("/approvals/inbox", response_model=list[InboxItem])
async def approval_inbox(ctx: ContextDep, session: SessionDep, user: CurrentUser) -> list[InboxItem]:
    """Invoices waiting at a tier the caller may approve now (own role or a delegation in force), and
    that segregation of duties does not bar them from; longest waiting first."""
    entities = queries.entities_of(session, user.username)
    entities += [
        d.legal_entity for d in delegations_of(session, user.username) if d.delegate == user.username
    ]
    pending = session.exec(
        select(Invoice)
        .where(
            col(Invoice.legal_entity).in_(sorted(set(entities))),
            Invoice.status == "pending_approval",
        )
        .order_by(col(Invoice.status_since), col(Invoice.id))
    )
    items: list[InboxItem] = []
    for inv in pending:
        option = approve_option(ctx, session, inv, user.username)
        if not option.allowed or option.tier is None:
            continue
        chain = approval_chain(inv)
        step = chain.steps[option.tier - 1]
        items.append(
            InboxItem(
                invoice_id=inv.id,
                external_id=inv.external_id,
                customer_id=inv.customer_id,
                currency=inv.currency,
                total=format_minor(inv.total_minor, inv.currency),
                tier=step.tier,
                role=step.role,
                on_behalf_of=option.on_behalf_of,
                waiting_since=chain.waiting_since,
                escalated=chain.escalated,
                matrix_version=chain.matrix_version,
            )
        )
    items.sort(key=lambda i: i.waiting_since or datetime.max.replace(tzinfo=None))
    return items


class DelegationCreate(Strict):
    legal_entity: str | None = Field(
        default=None, max_length=32, description="default: the caller's only legal entity"
    )
    delegate: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=64, description="the approval role lent, e.g. ar_approver")
    starts_on: Day
    ends_on: Day
    reason: str = Field(default="", max_length=500)


class DelegationPublic(BaseModel):
    id: str
    legal_entity: str
    delegator: str
    delegate: str
    role: str
    starts_on: date
    ends_on: date
    reason: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None
    in_force: bool


def _public(session: Session, d: Delegation) -> DelegationPublic:
    today = entity_today(session, d.legal_entity)
    in_force = d.revoked_at is None and d.starts_on <= today <= d.ends_on
    return DelegationPublic(**d.model_dump(exclude={"in_force"}), in_force=in_force)


@router.post(
    "/delegations",
    status_code=201,
    response_model=DelegationPublic,
    responses=errors("forbidden", "legal_entity_required", "delegation_refused"),
)
async def delegate_authority(
    body: DelegationCreate,
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> DelegationPublic:
    """Lend your approval role to a named colleague for a date range (an approver on leave). Their
    approvals record both names; they still cannot approve what they prepared. Ledgered."""
    entities = [
        e
        for e in queries.entities_of(session, user.username)
        if ctx.authorizer.check(user.username, e, "approval:delegate")
    ]
    if body.legal_entity is None and not entities:
        raise Forbidden(
            f"{user.username} may not approval:delegate in any legal entity",
            code="forbidden",
            action="approval:delegate",
        )
    entity = body.legal_entity or (entities[0] if len(entities) == 1 else None)
    if entity is None:
        raise Invalid(
            "legal_entity is required: you approve in several legal entities",
            code="legal_entity_required",
            field="legal_entity",
        )
    ctx.authorizer.require(user.username, entity, "approval:delegate")
    key = f"{user.username}:{idempotency_key}" if idempotency_key else str(uuid.uuid4())
    delegation_id = str(uuid.uuid5(DELEGATION_NAMESPACE, key))
    try:
        with writing(ctx.store) as wsession:
            row = create_delegation(
                wsession,
                legal_entity=entity,
                delegator=user.username,
                delegate=body.delegate,
                role=body.role,
                starts_on=body.starts_on,
                ends_on=body.ends_on,
                reason=body.reason,
                delegation_id=delegation_id,
            )
            wsession.expunge(row)
    except DelegationError as exc:
        raise Invalid(f"{exc.field}: {exc}", code="delegation_refused", field=exc.field) from None
    return _public(session, row)


@router.get("/delegations", response_model=list[DelegationPublic])
async def list_delegations(
    session: SessionDep, user: CurrentUser, role: Annotated[str | None, Query(max_length=64)] = None
) -> list[DelegationPublic]:
    """Delegations you gave and received, in force or not."""
    return [_public(session, d) for d in delegations_of(session, user.username) if role in (None, d.role)]


@router.post(
    "/delegations/{delegation_id}/revoke",
    response_model=DelegationPublic,
    responses=errors("not_found", "forbidden"),
)
async def revoke(
    delegation_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> DelegationPublic:
    """End a delegation now (the delegator, or an administrator of the legal entity). Ledgered."""
    found = session.get(Delegation, delegation_id)
    if found is None or (
        user.username not in (found.delegator, found.delegate)
        and not ctx.authorizer.check(user.username, found.legal_entity, "access:grant")
    ):
        raise NotFound(f"no delegation {delegation_id}")
    if user.username != found.delegator and not ctx.authorizer.check(
        user.username, found.legal_entity, "access:grant"
    ):
        raise Forbidden("only the delegator or an administrator ends a delegation", code="forbidden")
    with writing(ctx.store) as wsession:
        row = wsession.get(Delegation, delegation_id)
        assert row is not None
        revoke_delegation(wsession, row, user.username)
        wsession.expunge(row)
    return _public(session, row)

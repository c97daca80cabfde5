"""Approvals as people see them: who can approve what right now (the inbox), each invoice's approval
chain, and delegations of approval authority.

The rules are the workflow's own (workflows/approval.py), applied to the read model, so the API shows
exactly what the workflow will accept; the workflow checks them again when the command arrives.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

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


class ActionOption(BaseModel):
    """Whether a user may take an action on an invoice now; if not, why not, and who may instead. The
    one evaluation behind the actions of the invoice JSON, its `unavailable_actions`, a refused
    command's error body and the pages."""

    allowed: bool
    reason: str = ""
    code: str = ""  # the refusal's error code when not allowed (see workflows/errors.py)
    rule: str = ""
    tier: int | None = None
    on_behalf_of: str | None = None
    who_can_instead: list[str] = Field(default_factory=list)


ApproveOption = ActionOption


def forbidden_reason(username: str, action: str, legal_entity: str) -> str:
    """What a refusal for want of a role says (the same words as Authorizer.require)."""
    return f"{username} may not {action} in legal entity {legal_entity}: no role held there grants {action}"


def _memo(session: Session, key: tuple[Any, ...], compute: Any) -> Any:
    """Per-request memo on the read session: a list page evaluates many invoices of one legal entity."""
    memo: dict[tuple[Any, ...], Any] = session.info.setdefault("cashcycle.memo", {})
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _entity_today(session: Session, legal_entity: str) -> date:
    today: date = _memo(session, ("today", legal_entity), lambda: entity_today(session, legal_entity))
    return today


def who_may(ctx: AppContext, session: Session, legal_entity: str, action: str, but: str) -> list[str]:
    """Active users whose roles in the legal entity grant `action`, except `but`."""
    users = _memo(session, ("users", legal_entity), lambda: queries.users_in_entity(session, legal_entity))
    names = sorted({u for u, _ in users if u != but and ctx.authorizer.check(u, legal_entity, action)})
    return names


def who_can_approve(ctx: AppContext, session: Session, inv: Invoice, but: str) -> list[str]:
    """Who may approve the waiting tier now: holders of the tier's role in the legal entity (with
    invoice:approve there) and delegates of it in force today, less those the approval rules bar
    (preparers, earlier approvers, anyone but the assignee of a reassigned tier), except `but`."""
    state = rules_state(inv)
    tier = current_tier(state)
    if tier is None:
        return []
    entity = inv.legal_entity
    users = _memo(session, ("users", entity), lambda: queries.users_in_entity(session, entity))
    found: set[str] = set()
    for username in sorted({u for u, role in users if role == tier.role and u != but}):
        roles = ctx.authorizer.roles(username, entity)
        if ctx.authorizer.check(username, entity, "invoice:approve") and (
            approval_refusal(state, Actor(username, roles), tier.level) is None
        ):
            found.add(username)
    holders = {u for u, role in users if role == tier.role}
    active = {u for u, _ in users}
    lent = _memo(
        session,
        ("lent", entity, tier.role),
        lambda: queries.delegations_in_force(session, entity, tier.role, _entity_today(session, entity)),
    )
    for d in lent:
        if d.delegate == but or d.delegate in found or d.delegator not in holders:
            continue
        if d.delegate not in active and not _is_active(session, d.delegate):
            continue
        refusal = approval_refusal(state, Actor(d.delegate, []), tier.level, d.delegator)
        if refusal is None:
            found.add(d.delegate)
    return sorted(found)


def _is_active(session: Session, username: str) -> bool:
    active, _ = queries.active_user_and_policy_revision(session, username)
    return active


def approve_option(
    ctx: AppContext, session: Session, inv: Invoice, username: str, tier_seen: int = 0
) -> ActionOption:
    """Whether `username` can approve the invoice's waiting tier now, under their own roles or a
    delegation in force today; if not, why not and who can instead."""
    option = _approve_option(ctx, session, inv, username, tier_seen)
    if not option.allowed and option.code != "transition_refused" and option.tier is not None:
        option.who_can_instead = who_can_approve(ctx, session, inv, but=username)
    return option


def _approve_option(
    ctx: AppContext, session: Session, inv: Invoice, username: str, tier_seen: int = 0
) -> ActionOption:
    state = rules_state(inv)
    tier = current_tier(state)
    if tier_seen:
        # Stale or out-of-order tiers are refused before roles: the caller named the wrong tier.
        stale = approval_refusal(state, Actor(username, []), tier_seen)
        if stale is not None and stale.code in ("tier_already_approved", "tier_out_of_order"):
            return ActionOption(
                allowed=False,
                reason=stale.message,
                code=stale.code,
                rule=stale.rule,
                tier=tier.level if tier else None,
            )
    if tier is None:
        return ActionOption(
            allowed=False,
            reason=f"cannot approve an invoice in status {inv.status}",
            code="transition_refused",
            rule="status",
        )
    roles = ctx.authorizer.roles(username, inv.legal_entity)
    own = approval_refusal(state, Actor(username, roles), tier.level)
    may_approve_here = ctx.authorizer.check(username, inv.legal_entity, "invoice:approve") is not None
    if own is None and may_approve_here:
        return ActionOption(allowed=True, tier=tier.level)
    today = _entity_today(session, inv.legal_entity)
    delegated = None
    for lent in delegations_to(session, username, inv.legal_entity, tier.role, today):
        refusal = approval_refusal(state, Actor(username, roles), tier.level, lent.delegator)
        if refusal is None:
            return ActionOption(allowed=True, tier=tier.level, on_behalf_of=lent.delegator)
        delegated = delegated or refusal
    if delegated is not None and (not may_approve_here or own is None or own.code == "no_authority"):
        # Holding a delegation for this tier, the delegate is refused for what the delegation cannot lift.
        return ActionOption(
            allowed=False, reason=delegated.message, tier=tier.level, code=delegated.code, rule=delegated.rule
        )
    if own is None or not may_approve_here:
        return ActionOption(
            allowed=False,
            tier=tier.level,
            code="forbidden",
            rule="invoice:approve",
            reason=forbidden_reason(username, "invoice:approve", inv.legal_entity),
        )
    return ActionOption(allowed=False, reason=own.message, tier=tier.level, code=own.code, rule=own.rule)


def instead_sentence(action: str, names: list[str], tier: int | None = None) -> str:
    """ "approver2 or controller can approve tier 2": how pages say who may act instead."""
    what = f"{action} tier {tier}" if tier else action
    if not names:
        return f"nobody else can {what} now"
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"{listed} can {what}"


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
    """An invoice, credit memo or write-off waiting for the caller (`kind`); for a credit memo or write-off
    the invoice fields name the invoice it lowers and `total` is its own amount."""

    kind: Literal["invoice", "credit_memo", "write_off"] = "invoice"
    document_id: str = Field(default="", description="the credit memo's or write-off's id (invoice: its id)")
    url: str = Field(default="", description="its page in the web UI")
    reason: str = Field(default="", description="a credit memo's or write-off's reason")
    invoice_id: str
    external_id: str
    number: str | None = None
    customer_id: str
    customer_name: str = ""
    po_number: str | None = None
    currency: str
    total: str
    tier: int
    role: str
    on_behalf_of: str | None
    waiting_since: datetime | None
    escalated: bool
    sla: str = Field(default="on_time", description="on_time | reminded | escalated (the tier's SLA so far)")
    matrix_version: str | None


SlaState = Literal["on_time", "reminded", "escalated"]
InboxKind = Literal["invoice", "credit_memo", "write_off"]
INBOX_MAX_LIMIT = 500
INBOX_MAX_OFFSET = 1_000_000


@dataclass(frozen=True)
class Inbox:
    items: list[InboxItem]
    total: int


def approval_roles(ctx: AppContext, session: Session, username: str) -> dict[str, set[str]]:
    """The approval roles `username` can act with now, per legal entity: their own (where their roles
    grant invoice:approve) and those lent to them by a delegation in force today."""
    entities = queries.entities_of(session, username)
    if "*" in entities:
        entities = queries.legal_entity_codes(session)
    roles: dict[str, set[str]] = {}
    for entity in entities:
        if ctx.authorizer.check(username, entity, "invoice:approve"):
            roles[entity] = set(ctx.authorizer.roles(username, entity))
    for d in delegations_of(session, username):
        if d.delegate != username or d.revoked_at is not None:
            continue
        today = _entity_today(session, d.legal_entity)
        if d.starts_on <= today <= d.ends_on:
            roles.setdefault(d.legal_entity, set()).add(d.role)
    return roles


def approval_inbox_page(
    ctx: AppContext,
    session: Session,
    username: str,
    *,
    search: str | None = None,
    customer_id: str | None = None,
    po_number: str | None = None,
    tier: int | None = None,
    sla: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Inbox:
    """What `username` may approve now: credit memos and write-offs first (api.credit_memos
    resolution_inbox: few, each checked with the store's facts), then invoices; each kind longest waiting
    first. For invoices the store filters (status, legal entity, the waiting tier's role, segregation of
    duties, the search), and each invoice of the page is checked again with the approval rules (a
    reassigned tier, a delegator barred), as the command will be. `kind` keeps one kind; a PO number or an
    SLA state past on time keeps invoices only (documents have neither)."""
    from api.credit_memos import resolution_inbox

    documents: list[InboxItem] = []
    if kind != "invoice" and not po_number and sla in (None, "on_time"):
        documents = [
            InboxItem(**d)
            for d in resolution_inbox(
                ctx, session, username, search=search, customer_id=customer_id, tier=tier
            )
            if kind in (None, d["kind"])
        ]
    shown = documents[offset : offset + limit]
    if kind not in (None, "invoice"):
        return Inbox(shown, len(documents))
    page = queries.approval_inbox(
        session,
        username,
        approval_roles(ctx, session, username),
        search=search,
        customer_id=customer_id,
        po_number=po_number,
        tier=tier,
        sla=sla,
        limit=limit - len(shown),
        offset=max(0, offset - len(documents)),
    )
    items: list[InboxItem] = list(shown)
    for row in page.rows:
        inv = row.invoice
        option = _approve_option(ctx, session, inv, username)
        if not option.allowed or option.tier is None:
            continue
        items.append(
            InboxItem(
                document_id=inv.id,
                url=f"/invoices/{inv.id}",
                invoice_id=inv.id,
                external_id=inv.external_id,
                number=inv.number,
                customer_id=inv.customer_id,
                customer_name=row.customer_name,
                po_number=inv.po_number,
                currency=inv.currency,
                total=format_minor(inv.total_minor, inv.currency),
                tier=option.tier,
                role=row.role,
                on_behalf_of=option.on_behalf_of,
                waiting_since=row.waiting_since,
                escalated=row.escalated,
                sla=row.sla,
                matrix_version=inv.matrix_version,
            )
        )
    return Inbox(items, len(documents) + page.total - (len(page.rows) - (len(items) - len(shown))))


@router.get(
    "/approvals/inbox",
    response_model=list[InboxItem],
    responses={
        200: {
            "description": "the page of the inbox",
            "headers": {
                "X-Total-Count": {
                    "description": "how many invoices wait for the caller in all (with these filters)",
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        }
    },
)
async def approval_inbox(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    response: Response,
    q: Annotated[
        str | None,
        Query(
            max_length=100, description="part of the invoice number, external id, PO number or customer name"
        ),
    ] = None,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    po_number: Annotated[str | None, Query(max_length=100, description="part of the PO number")] = None,
    tier: Annotated[int | None, Query(ge=1, le=20)] = None,
    sla: Annotated[SlaState | None, Query()] = None,
    kind: Annotated[InboxKind | None, Query(description="one kind only")] = None,
    limit: Annotated[int, Query(ge=1, le=INBOX_MAX_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0, le=INBOX_MAX_OFFSET)] = 0,
) -> list[InboxItem]:
    """Invoices, credit memos and write-offs waiting at a tier the caller may approve now (own role or,
    for invoices, a delegation in force), and that segregation of duties does not bar them from: credit
    memos and write-offs first (`kind` says which, `url` links its page), then invoices, each longest
    waiting first. Filters: `q` (invoice number, external id, PO or customer name), `customer_id`,
    `po_number`, `tier`, `sla`, `kind`; at most `limit` items (default 100) from `offset`, and
    `X-Total-Count` says how many there are in all."""
    inbox = approval_inbox_page(
        ctx,
        session,
        user.username,
        search=q,
        customer_id=customer_id,
        po_number=po_number,
        tier=tier,
        sla=sla,
        kind=kind,
        limit=limit,
        offset=offset,
    )
    response.headers["X-Total-Count"] = str(inbox.total)
    return inbox.items


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

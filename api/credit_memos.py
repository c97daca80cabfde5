"""Credit memos and write-offs: proposing (requesting) one starts its workflow; approvers approve or reject
it; the proposer, the dispute's owner or a supervisor cancels it; everyone involved reads it, and once a
credit memo is issued its credit note (PDF, UBL) downloads.

The approval rules are the workflows' own (workflows/credit_memo_approval.py) with the store's facts
(activities/credit_memos.py `sod_facts`: who applied cash for the customer in the period, the approver's
decided total for the customer): a refused approval is a 403 naming the rule before any update is sent,
with the same words as the document's `unavailable_actions`; the workflow checks again when the command
arrives, and its recording activity once more against the store.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from activities import queries
from activities.credit_memos import (
    CreditMemo,
    WriteOff,
    count_resolutions,
    list_resolutions,
    pending_on_invoice,
    resolution_by_id,
    resolution_history,
    sod_facts,
    state_of,
    waiting_for_roles,
)
from activities.db import reading
from activities.invoice_start import DraftRefused, build_draft, build_lines, payload_hash
from activities.models import Customer, Invoice, LegalEntity
from activities.money import MoneyError, amount_to_minor, format_minor, tax_by_rate
from api.approvals import ActionOption, ApprovalChain, ChainStep, forbidden_reason
from api.deps import AppContext, ContextDep, CurrentUser, IdempotencyKey, SessionDep, entities_for
from api.errors import AppError, Conflict, Invalid, NotFound, Unavailable, errors, from_workflow
from api.invoices import await_workflow, refusal_error
from api.schemas import (
    AMOUNT,
    EXTERNAL_ID,
    ApproveBody,
    Day,
    Exact,
    HistoryEntry,
    LineIn,
    ReasonBody,
    Strict,
    UnavailableAction,
)
from workflows.credit_memo import CreditMemoWorkflow
from workflows.credit_memo_approval import NOUN, current_tier, resolution_refusal
from workflows.credit_memo_types import (
    CREDIT_MEMO,
    WRITE_OFF,
    CreditMemoInput,
    Rebill,
    RebillLine,
    ResolutionApproveCommand,
    ResolutionConfig,
    ResolutionRejectCommand,
    ResolutionState,
    WriteOffInput,
    credit_memo_workflow_id,
    write_off_workflow_id,
)
from workflows.states import OPEN_RECEIVABLE
from workflows.types import Actor, Line
from workflows.write_off import WriteOffWorkflow

router = APIRouter(prefix="/api/v1", tags=["credit memos and write-offs"])
DOCUMENT_NAMESPACE = uuid.UUID("0b6c4f6e-2f7e-4b8e-9a51-3c1d2e9f7a42")
Kind = Literal["credit_memo", "write_off"]

# The permission behind each (kind, verb): propose/request, approve (and reject), read.
COMMANDS = {
    "credit_memo:propose": "credit_memo:propose",
    "credit_memo:approve": "credit_memo:approve",
    "credit_memo:read": "credit_memo:read",
    "write_off:propose": "write_off:request",
    "write_off:approve": "write_off:approve",
    "write_off:read": "write_off:read",
}
# What every command on a document can answer.
COMMAND_ERRORS = ("not_found", "forbidden", "transition_refused", "unavailable")
APPROVE_ERRORS = (
    *COMMAND_ERRORS,
    "segregation_of_duties",
    "no_authority",
    "cumulative_limit",
    "tier_already_approved",
    "tier_out_of_order",
    "invalid_command",
)
CREATE_ERRORS = (
    "forbidden",
    "unknown_reference",
    "transition_refused",
    "amount_exceeds_open",
    "invalid_amount",
    "idempotency_key_conflict",
    "external_id_conflict",
    "unavailable",
)
CANCELLABLE = {
    CREDIT_MEMO: ("proposed", "pending_approval"),
    WRITE_OFF: ("requested", "pending_approval"),
}
WORKFLOWS: dict[str, Any] = {CREDIT_MEMO: CreditMemoWorkflow, WRITE_OFF: WriteOffWorkflow}


def permission(kind: str, verb: str) -> str:
    return COMMANDS[f"{kind}:{verb}"]


# -- bodies and answers -----------------------------------------------------------------------------------


class RebillIn(Strict):
    """The corrected invoice of a rebill: its lines (as POST /api/v1/invoices takes them)."""

    lines: list[LineIn] = Field(min_length=1, max_length=200)
    external_id: Exact | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=EXTERNAL_ID,
        description="default: the credited invoice's external id with -R1 (-R2 for a rebill of a rebill)",
    )
    issue_date: Day | None = Field(default=None, description="default: today in the legal entity")
    due_date: Day | None = Field(default=None, description="default: from the customer's payment terms")
    po_number: str | None = Field(default=None, max_length=100, description="default: the credited invoice's")


class CreditMemoCreate(Strict):
    invoice_id: str = Field(min_length=1, max_length=36, description="the invoice credited")
    amount: Exact | None = Field(
        default=None,
        pattern=AMOUNT,
        description="the credit, tax included, in the invoice's currency; default: the lines' total (or, "
        "for a rebill, what is due on the invoice)",
    )
    lines: list[LineIn] | None = Field(
        default=None,
        max_length=200,
        description="what the credit note says; default: one line at the invoice's tax rate",
    )
    reason: str = Field(min_length=1, max_length=2000)
    dispute_id: str | None = Field(default=None, max_length=36, description="the dispute case it resolves")
    rebill: RebillIn | None = Field(
        default=None, description="a rebill: the whole invoice credited, then this corrected invoice"
    )


class WriteOffCreate(Strict):
    invoice_id: str = Field(min_length=1, max_length=36)
    amount: Exact = Field(pattern=AMOUNT, description="in the invoice's currency, at most what is open")
    reason: str = Field(min_length=1, max_length=2000)
    dispute_id: str | None = Field(default=None, max_length=36)


class ResolutionLineOut(BaseModel):
    description: str
    quantity: str
    unit_price: str
    tax_rate: str
    net: str
    tax: str


class ResolutionDocuments(BaseModel):
    """Where the issued credit note downloads (null until issued; no UBL for a customer without e-invoice
    data)."""

    pdf: str | None = None
    ubl: str | None = None


class ResolutionPublic(BaseModel):
    kind: Kind
    id: str
    legal_entity: str
    workflow_id: str
    status: str
    invoice_id: str
    invoice_number: str | None
    invoice_external_id: str
    invoice_status: str
    customer_id: str
    customer_name: str
    dispute_id: str | None
    currency: str
    amount: str
    applied: str
    reason: str
    proposed_by: str
    created_at: datetime
    status_since: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str
    number: str | None = Field(default=None, description="the credit note's number, once issued")
    issue_date: date | None = None
    channel: str | None = Field(default=None, description="where the credit note went")
    delivered_at: datetime | None = None
    rebill: bool = False
    rebill_invoice_id: str | None = Field(default=None, description="a rebill's corrected invoice")
    auto_rule: str | None = Field(default=None, description="an automatic write-off: the rule allowing it")
    lines: list[ResolutionLineOut] = Field(default_factory=list)
    approval: ApprovalChain
    actions: list[str]
    unavailable_actions: list[UnavailableAction]
    documents: ResolutionDocuments


class ResolutionPage(BaseModel):
    items: list[ResolutionPublic]
    total: int
    next_offset: int | None


# -- reading ------------------------------------------------------------------------------------------------


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def doc_or_404(
    session: Session, kind: str, document_id: str, username: str, ctx: AppContext
) -> CreditMemo | WriteOff:
    row = resolution_by_id(session, kind, document_id)
    if row is None or not ctx.authorizer.check(username, row.legal_entity, permission(kind, "read")):
        # Unknown and not-yours look the same.
        raise NotFound(f"no {NOUN[kind]} {document_id}")
    return row


def _state(row: CreditMemo | WriteOff) -> ResolutionState:
    return state_of(row)


def who_can_approve(
    ctx: AppContext, session: Session, row: CreditMemo | WriteOff, but: str = ""
) -> list[str]:
    """Who may approve the waiting tier now: holders of its role (with the approve permission) whom the
    approval rules, with the store's facts, do not bar."""
    state = _state(row)
    tier = current_tier(state)
    if tier is None:
        return []
    now = datetime.now(UTC)
    found = []
    for username in sorted(
        {u for u, role in queries.users_in_entity(session, row.legal_entity) if role == tier.role}
    ):
        if username == but or not ctx.authorizer.check(
            username, row.legal_entity, permission(state.kind, "approve")
        ):
            continue
        actor = Actor(username, ctx.authorizer.roles(username, row.legal_entity))
        if resolution_refusal(state, actor, 0, sod_facts(session, state, username, now)) is None:
            found.append(username)
    return found


def action_option(
    ctx: AppContext,
    session: Session,
    row: CreditMemo | WriteOff,
    username: str,
    verb: str,
    tier_seen: int = 0,
) -> ActionOption:
    """Whether `username` may approve / reject / cancel the document now; if not, why not (the code a
    command would be refused with) and who may instead. Behind `actions`, `unavailable_actions`, a refused
    command's error and the pages."""
    state = _state(row)
    kind, noun, entity = state.kind, NOUN[state.kind], row.legal_entity
    roles = ctx.authorizer.roles(username, entity)
    tier = current_tier(state)
    if verb == "cancel":
        if row.status not in CANCELLABLE[kind]:
            return ActionOption(
                allowed=False,
                code="transition_refused",
                rule="status",
                reason=f"cannot cancel a {noun} in status {row.status}",
            )
        may = {row.proposed_by, row.dispute_owner} - {""}
        if username in may or "ar_supervisor" in roles:
            return ActionOption(allowed=True)
        supervisors = sorted({u for u, r in queries.users_in_entity(session, entity) if r == "ar_supervisor"})
        return ActionOption(
            allowed=False,
            code="no_authority",
            rule="cancel",
            reason=f"only who proposed it, the dispute's owner or a supervisor cancels a {noun}",
            who_can_instead=sorted(may | set(supervisors)),
        )
    if tier is None or row.status != "pending_approval":
        return ActionOption(
            allowed=False,
            code="transition_refused",
            rule="status",
            reason=f"cannot {verb} a {noun} in status {row.status}",
        )
    action = permission(kind, "approve")
    if ctx.authorizer.check(username, entity, action) is None:
        return ActionOption(
            allowed=False,
            code="forbidden",
            rule=action,
            tier=tier.level,
            reason=forbidden_reason(username, action, entity),
            who_can_instead=who_can_approve(ctx, session, row, but=username),
        )
    if verb == "reject":
        if username == row.proposed_by:
            return ActionOption(
                allowed=False,
                code="segregation_of_duties",
                rule="proposer_cannot_approve",
                tier=tier.level,
                reason=f"{username} proposed this {noun}: cancel it instead of rejecting it",
                who_can_instead=who_can_approve(ctx, session, row, but=username),
            )
        if tier.role not in roles:
            return ActionOption(
                allowed=False,
                code="no_authority",
                rule="tier_role",
                tier=tier.level,
                reason=f"tier {tier.level} needs the role {tier.role} to reject, which {username} "
                "does not hold here",
                who_can_instead=who_can_approve(ctx, session, row, but=username),
            )
        return ActionOption(allowed=True, tier=tier.level)
    facts = sod_facts(session, state, username, datetime.now(UTC))
    refusal = resolution_refusal(state, Actor(username, roles), tier_seen, facts)
    if refusal is None:
        return ActionOption(allowed=True, tier=tier.level)
    instead = who_can_approve(ctx, session, row, but=username) if refusal.code != "transition_refused" else []
    return ActionOption(
        allowed=False,
        code=refusal.code,
        rule=refusal.rule,
        tier=tier.level,
        reason=refusal.message,
        who_can_instead=instead,
    )


def option_error(
    option: ActionOption, row: CreditMemo | WriteOff, username: str, ctx: AppContext
) -> AppError:
    """A refused command's error, from the same evaluation as `unavailable_actions`."""
    return refusal_error(option, row.legal_entity, row.status, username, ctx)


def resolution_chain(row: CreditMemo | WriteOff) -> ApprovalChain:
    state = _state(row)
    plan = state.plan
    waiting = current_tier(state)
    steps = []
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
                )
            )
    return ApprovalChain(
        matrix_version=plan.matrix_version if plan else None,
        amount_in_entity_currency=format_minor(plan.amount_minor, plan.currency) if plan else None,
        entity_currency=plan.currency if plan else None,
        submission=1 if plan else 0,
        waiting_since=_aware(row.waiting_since) if waiting else None,
        escalated=False,
        steps=steps,
    )


VERBS = ("approve", "reject", "cancel")


def _possible(row: CreditMemo | WriteOff, verb: str) -> bool:
    if verb == "cancel":
        return row.status in CANCELLABLE[_kind_of(row)]
    return row.status == "pending_approval"


def _kind_of(row: CreditMemo | WriteOff) -> str:
    return CREDIT_MEMO if isinstance(row, CreditMemo) else WRITE_OFF


def present(ctx: AppContext, session: Session, row: CreditMemo | WriteOff, username: str) -> ResolutionPublic:
    kind = _kind_of(row)
    cur = row.currency
    actions: list[str] = []
    unavailable: list[UnavailableAction] = []
    for verb in VERBS:
        if not _possible(row, verb):
            continue
        option = action_option(ctx, session, row, username, verb)
        if option.allowed:
            actions.append(verb)
        else:
            unavailable.append(
                UnavailableAction(
                    action=verb,
                    reason=option.reason,
                    code=option.code or "forbidden",
                    rule=option.rule,
                    tier=option.tier,
                    who_can_instead=option.who_can_instead,
                )
            )
    inv = session.get(Invoice, row.invoice_id)
    customer = session.get(Customer, row.customer_id)
    lines: list[ResolutionLineOut] = []
    documents = ResolutionDocuments()
    extra: dict[str, Any] = {}
    if isinstance(row, CreditMemo):
        for ln in json.loads(row.lines_json or "[]"):
            lines.append(
                ResolutionLineOut(
                    description=ln["description"],
                    quantity=ln["quantity"],
                    unit_price=ln["unit_price"],
                    tax_rate=ln["tax_rate"],
                    net=format_minor(int(ln["net_minor"]), cur),
                    tax=format_minor(int(ln["tax_minor"]), cur),
                )
            )
        base = f"/api/v1/credit-memos/{row.id}"
        documents = ResolutionDocuments(
            pdf=f"{base}/pdf" if row.pdf is not None else None,
            ubl=f"{base}/ubl" if row.ubl is not None else None,
        )
        extra = {
            "number": row.number,
            "issue_date": row.issue_date,
            "channel": row.channel or None,
            "delivered_at": _aware(row.delivered_at),
            "rebill": row.kind == "rebill",
            "rebill_invoice_id": row.rebill_invoice_id,
        }
    else:
        extra = {"auto_rule": row.auto_rule or None}
    return ResolutionPublic(
        kind=kind,
        id=row.id,
        legal_entity=row.legal_entity,
        workflow_id=row.workflow_id,
        status=row.status,
        invoice_id=row.invoice_id,
        invoice_number=inv.number if inv else None,
        invoice_external_id=inv.external_id if inv else "",
        invoice_status=inv.status if inv else "",
        customer_id=row.customer_id,
        customer_name=customer.name if customer else "",
        dispute_id=row.dispute_id or None,
        currency=cur,
        amount=format_minor(row.amount_minor, cur),
        applied=format_minor(row.applied_minor, cur),
        reason=row.reason,
        proposed_by=row.proposed_by,
        created_at=_aware(row.created_at) or row.created_at,
        status_since=_aware(row.status_since) or row.status_since,
        decided_by=row.decided_by or None,
        decided_at=_aware(row.decided_at),
        decision_reason=row.decision_reason,
        lines=lines,
        approval=resolution_chain(row),
        actions=actions,
        unavailable_actions=unavailable,
        documents=documents,
        **extra,
    )


def history(session: Session, kind: str, row: CreditMemo | WriteOff) -> list[HistoryEntry]:
    return [HistoryEntry.of(e) for e in resolution_history(session, kind, row.id)]


# -- proposing ----------------------------------------------------------------------------------------------


def _minor(text: str, currency: str, field: str) -> int:
    try:
        return amount_to_minor(text, currency, field)
    except MoneyError as exc:
        raise Invalid(f"{exc.field}: {exc}", code="invalid_amount", field=exc.field) from None


def _gross(net: int, rate: str) -> int:
    return net + sum(tax_by_rate([(Decimal(rate), net)]).values())


def credit_lines(session: Session, inv: Invoice, amount: int, reason: str) -> list[Line]:
    """What the credit note says when only an amount is given: the invoice's own lines for a full credit of
    an untouched invoice; else one line at the invoice's (largest line's) tax rate whose net and tax add up
    to the amount exactly, as the validators will add them (422 when no net can, naming the nearest)."""
    inv_lines = queries.invoice_lines(session, inv.id)
    if amount == inv.total_minor == inv.amount_due_minor:
        return [
            Line(ln.description, ln.quantity, ln.unit_price, ln.tax_rate, ln.net_minor, ln.tax_minor)
            for ln in inv_lines
        ]
    rate = max(inv_lines, key=lambda ln: ln.net_minor).tax_rate if inv_lines else "0"
    first = int((Decimal(amount) / (1 + Decimal(rate) / 100)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    candidates = [n for n in range(max(first - 3, 0), first + 4)]
    exact = [n for n in candidates if _gross(n, rate) == amount]
    if not exact:
        near = sorted(
            {_gross(n, rate) for n in candidates if _gross(n, rate) > 0}, key=lambda g: abs(g - amount)
        )[:2]
        shown = " or ".join(format_minor(g, inv.currency) for g in sorted(near))
        raise Invalid(
            f"amount: at {rate} % tax no net amount makes exactly {format_minor(amount, inv.currency)} "
            f"{inv.currency} (nearest: {shown}); give that, or the credit note's lines",
            code="invalid_amount",
            field="amount",
        )
    net = exact[0]
    price = format_minor(net, inv.currency)
    description = f"Credit on invoice {inv.number or inv.external_id}: {reason}"[:500]
    return [Line(description, "1", price, rate, net, amount - net)]


def _invoice_for(session: Session, ctx: AppContext, username: str, invoice_id: str, kind: str) -> Invoice:
    inv = queries.invoice_by_id(session, invoice_id)
    if inv is None or not ctx.authorizer.check(username, inv.legal_entity, "invoice:read"):
        raise Invalid(
            f"invoice_id: unknown invoice {invoice_id}", code="unknown_reference", field="invoice_id"
        )
    return inv


def _check_open(session: Session, inv: Invoice, amount: int, kind: str, field: str = "amount") -> None:
    noun = NOUN[kind]
    if inv.status not in OPEN_RECEIVABLE:
        raise Conflict(
            f"cannot {'credit' if kind == CREDIT_MEMO else 'write off'} an invoice in status {inv.status}",
            code="transition_refused",
            status=inv.status,
            event=kind,
        )
    held = pending_on_invoice(session, inv.id)
    open_minor = inv.amount_due_minor - held
    if amount > open_minor:
        cur = inv.currency
        also = (
            f", {format_minor(held, cur)} of it held by credit memos or write-offs in progress"
            if held
            else ""
        )
        raise Invalid(
            f"{field}: a {noun} of {format_minor(amount, cur)} {cur} is above what is open on invoice "
            f"{inv.number or inv.external_id}: {format_minor(inv.amount_due_minor, cur)} {cur} due{also}",
            code="amount_exceeds_open",
            field=field,
            open=format_minor(max(open_minor, 0), cur),
        )


def _dispute(session: Session, dispute_id: str | None, inv: Invoice) -> tuple[str, str]:
    """(dispute id, its owner) of the case named, which must hold the invoice."""
    if not dispute_id:
        return "", ""
    from activities.disputes import Dispute, dispute_invoices

    d = session.get(Dispute, dispute_id)
    if d is None or d.legal_entity != inv.legal_entity:
        raise Invalid(
            f"dispute_id: unknown dispute case {dispute_id}", code="unknown_reference", field="dispute_id"
        )
    if inv.id not in {i.id for _, i in dispute_invoices(session, d.id)}:
        raise Invalid(
            f"dispute_id: invoice {inv.number or inv.external_id} is not in case {d.case_number}",
            code="unknown_reference",
            field="dispute_id",
        )
    return d.id, d.owner


def _document_id(username: str, kind: str, key: str | None) -> str:
    return str(uuid.uuid5(DOCUMENT_NAMESPACE, f"{kind}:{username}:{key}")) if key else str(uuid.uuid4())


def _same_or_conflict(
    ctx: AppContext,
    session: Session,
    row: CreditMemo | WriteOff,
    invoice_id: str,
    amount: int | None,
    reason: str,
    username: str,
    response: Response,
) -> ResolutionPublic:
    if (
        row.invoice_id != invoice_id
        or row.reason != reason
        or (amount is not None and amount != row.amount_minor)
    ):
        raise Conflict(
            f"the Idempotency-Key names {NOUN[_kind_of(row)]} {row.id}, proposed with another body",
            code="idempotency_key_conflict",
            id=row.id,
        )
    response.status_code = 200
    return present(ctx, session, row, username)


def config(ctx: AppContext) -> ResolutionConfig:
    s = ctx.settings
    return ResolutionConfig(
        record_timeout_seconds=s.record_timeout_seconds,
        delivery_timeout_seconds=s.delivery_timeout_seconds,
        delivery_retry_max_interval_seconds=s.delivery_retry_max_interval_seconds,
    )


async def _start(
    ctx: AppContext, kind: str, inp: CreditMemoInput | WriteOffInput, username: str
) -> ResolutionPublic:
    """Start the document's workflow (the same id again finds it) and answer once it is recorded past its
    first status (pending approval, or written off when automatic)."""
    workflow_id = (credit_memo_workflow_id if kind == CREDIT_MEMO else write_off_workflow_id)(
        inp.legal_entity, inp.id
    )
    await await_workflow(
        ctx,
        ctx.temporal.start_workflow(
            WORKFLOWS[kind].run,
            inp,
            id=workflow_id,
            task_queue=ctx.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        ),
    )
    deadline = asyncio.get_running_loop().time() + ctx.settings.update_timeout_seconds
    first = ("proposed", "requested")
    while True:
        with reading(ctx.store) as session:
            row = resolution_by_id(session, kind, inp.id)
            done = row is not None and row.status not in first
            if done or (row is not None and asyncio.get_running_loop().time() > deadline):
                assert row is not None
                return present(ctx, session, row, username)
        if asyncio.get_running_loop().time() > deadline:
            raise Unavailable(
                f"the {NOUN[kind]} workflow did not answer in time (is a worker running?); retry with the "
                "same Idempotency-Key"
            )
        await asyncio.sleep(0.05)


@router.post(
    "/credit-memos",
    status_code=201,
    response_model=ResolutionPublic,
    responses={
        200: {"description": "the same Idempotency-Key and body again: the credit memo"},
        **errors(*CREATE_ERRORS),
    },
)
async def propose_credit_memo(
    body: CreditMemoCreate,
    response: Response,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> ResolutionPublic:
    """Propose a credit memo on an open invoice (amount tax included, and/or the credit note's lines), with a
    reason and optionally the dispute case it resolves: it waits for the approval matrix's credit_memo tiers,
    then is issued (CN-<year> number, UBL credit note and PDF), applied to the invoice and delivered. With
    `rebill`, the whole amount due is credited and the corrected invoice started once it is applied. The
    Idempotency-Key makes it once: the same key and body again answer 200 with it."""
    with reading(ctx.store) as session:
        inv = _invoice_for(session, ctx, user.username, body.invoice_id, CREDIT_MEMO)
        grant = ctx.authorizer.require(user.username, inv.legal_entity, "credit_memo:propose")
        doc_id = _document_id(user.username, CREDIT_MEMO, idempotency_key)
        existing = session.get(CreditMemo, doc_id)
        given = _minor(body.amount, inv.currency, "amount") if body.amount is not None else None
        if existing is not None:
            return _same_or_conflict(
                ctx, session, existing, inv.id, given, body.reason, user.username, response
            )
        rebill: Rebill | None = None
        if body.rebill is not None:
            amount = inv.amount_due_minor
            if given is not None and given != amount:
                raise Invalid(
                    "amount: a rebill credits what is due on the invoice, "
                    f"{format_minor(amount, inv.currency)}",
                    code="invalid_amount",
                    field="amount",
                )
            rebill = _rebill(session, inv, body.rebill)
            _check_open(session, inv, amount, CREDIT_MEMO)
            lines = credit_lines(session, inv, amount, body.reason)
        elif body.lines:
            try:
                lines = build_lines(body.lines, inv.currency)
            except DraftRefused as exc:
                raise Invalid(exc.message, code="invalid_amount", field=exc.field) from None
            amount = sum(ln.net_minor for ln in lines) + sum(
                tax_by_rate((Decimal(ln.tax_rate), ln.net_minor) for ln in lines).values()
            )
            if amount <= 0:
                raise Invalid("lines: the credit must be positive", code="invalid_amount", field="lines")
            if given is not None and given != amount:
                raise Invalid(
                    f"amount: {body.amount} is not the lines' total {format_minor(amount, inv.currency)}",
                    code="invalid_amount",
                    field="amount",
                )
            _check_open(session, inv, amount, CREDIT_MEMO)
        else:
            if given is None:
                raise Invalid("amount: give the amount or the lines", code="invalid_amount", field="amount")
            amount = given
            _check_open(session, inv, amount, CREDIT_MEMO)
            lines = credit_lines(session, inv, amount, body.reason)
        dispute_id, owner = _dispute(session, body.dispute_id, inv)
        inp = CreditMemoInput(
            legal_entity=inv.legal_entity,
            id=doc_id,
            invoice_id=inv.id,
            invoice_workflow_id=inv.workflow_id,
            customer_id=inv.customer_id,
            currency=inv.currency,
            amount_minor=amount,
            reason=body.reason,
            proposed_by=Actor(user.username, grant.roles, grant.rule),
            lines=lines,
            dispute_id=dispute_id,
            dispute_owner=owner,
            exchange_rate=inv.exchange_rate,
            rebill=rebill,
            request_id=idempotency_key or doc_id,
            config=config(ctx),
        )
    return await _start(ctx, CREDIT_MEMO, inp, user.username)


def _rebill(session: Session, inv: Invoice, body: RebillIn) -> Rebill:
    """The corrected invoice, checked now as it will be built when it starts (422 naming the field)."""
    customer = session.get(Customer, inv.customer_id)
    entity = session.get(LegalEntity, inv.legal_entity)
    assert customer is not None and entity is not None
    try:
        build_draft(
            customer=customer,
            entity=entity,
            currency=inv.currency,
            issue_date=body.issue_date or date.today(),
            due_date=body.due_date,
            po_number=body.po_number,
            lines=body.lines,
            body_hash=payload_hash({}),
            exchange_rate=inv.exchange_rate if inv.currency != entity.currency else None,
        )
    except DraftRefused as exc:
        code = exc.code if exc.code in ("invalid_amount", "invalid_range") else "invalid_amount"
        raise Invalid(f"rebill.{exc.message}", code=code, field=f"rebill.{exc.field}") from None
    if body.external_id and queries.invoice_by_external_id(session, inv.legal_entity, body.external_id):
        raise Conflict(
            f"rebill.external_id {body.external_id} already names an invoice",
            code="external_id_conflict",
            field="rebill.external_id",
        )
    return Rebill(
        lines=[RebillLine(ln.description, ln.quantity, ln.unit_price, ln.tax_rate) for ln in body.lines],
        external_id=body.external_id or "",
        issue_date=body.issue_date.isoformat() if body.issue_date else "",
        due_date=body.due_date.isoformat() if body.due_date else "",
        po_number=body.po_number,
    )


@router.post(
    "/write-offs",
    status_code=201,
    response_model=ResolutionPublic,
    responses={
        200: {"description": "the same Idempotency-Key and body again: the write-off"},
        **errors(*CREATE_ERRORS),
    },
)
async def request_write_off(
    body: WriteOffCreate,
    response: Response,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> ResolutionPublic:
    """Request a write-off of (part of) an invoice's open amount, with a reason and optionally the dispute
    case it resolves. At or below the legal entity's tolerance (policies/disputes.toml
    [write_off.tolerance]) it is written off at once by the system, the rule named; otherwise it waits
    for the matrix's write_off tiers, under the same segregation of duties as credit memos."""
    with reading(ctx.store) as session:
        inv = _invoice_for(session, ctx, user.username, body.invoice_id, WRITE_OFF)
        grant = ctx.authorizer.require(user.username, inv.legal_entity, "write_off:request")
        doc_id = _document_id(user.username, WRITE_OFF, idempotency_key)
        amount = _minor(body.amount, inv.currency, "amount")
        existing = session.get(WriteOff, doc_id)
        if existing is not None:
            return _same_or_conflict(
                ctx, session, existing, inv.id, amount, body.reason, user.username, response
            )
        _check_open(session, inv, amount, WRITE_OFF)
        dispute_id, owner = _dispute(session, body.dispute_id, inv)
        inp = WriteOffInput(
            legal_entity=inv.legal_entity,
            id=doc_id,
            invoice_id=inv.id,
            invoice_workflow_id=inv.workflow_id,
            customer_id=inv.customer_id,
            currency=inv.currency,
            amount_minor=amount,
            reason=body.reason,
            proposed_by=Actor(user.username, grant.roles, grant.rule),
            dispute_id=dispute_id,
            dispute_owner=owner,
            exchange_rate=inv.exchange_rate,
            request_id=idempotency_key or doc_id,
            config=config(ctx),
        )
    return await _start(ctx, WRITE_OFF, inp, user.username)


# -- listing and reading --------------------------------------------------------------------------------


def _list(
    ctx: AppContext,
    session: Session,
    username: str,
    kind: str,
    status: str | None,
    invoice_id: str | None,
    dispute_id: str | None,
    customer_id: str | None,
    limit: int,
    offset: int,
    response: Response,
) -> ResolutionPage:
    entities = entities_for(ctx, session, username, permission(kind, "read"), None)
    filters: dict[str, Any] = {
        "status": status,
        "invoice_id": invoice_id,
        "dispute_id": dispute_id,
        "customer_id": customer_id,
    }
    rows = list_resolutions(session, kind, entities, limit=limit, offset=offset, **filters)
    total = count_resolutions(session, kind, entities, **filters)
    response.headers["X-Total-Count"] = str(total)
    nxt = offset + len(rows)
    return ResolutionPage(
        items=[present(ctx, session, r, username) for r in rows],
        total=total,
        next_offset=nxt if nxt < total else None,
    )


CreditMemoStatus = Literal[
    "proposed", "pending_approval", "approved", "issued", "applied", "on_account", "rejected", "cancelled"
]
WriteOffStatus = Literal["requested", "pending_approval", "approved", "written_off", "rejected", "cancelled"]
MAX_OFFSET = 1_000_000


@router.get("/credit-memos", response_model=ResolutionPage, responses=errors("forbidden"))
async def list_credit_memos(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    response: Response,
    status: Annotated[CreditMemoStatus | None, Query()] = None,
    invoice_id: Annotated[str | None, Query(max_length=36)] = None,
    dispute_id: Annotated[str | None, Query(max_length=36)] = None,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ResolutionPage:
    """Credit memos in the legal entities where the caller may read them, newest first; `total` (and
    X-Total-Count) counts them all, `next_offset` is where the next page starts."""
    return _list(
        ctx,
        session,
        user.username,
        CREDIT_MEMO,
        status,
        invoice_id,
        dispute_id,
        customer_id,
        limit,
        offset,
        response,
    )


@router.get("/write-offs", response_model=ResolutionPage, responses=errors("forbidden"))
async def list_write_offs(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    response: Response,
    status: Annotated[WriteOffStatus | None, Query()] = None,
    invoice_id: Annotated[str | None, Query(max_length=36)] = None,
    dispute_id: Annotated[str | None, Query(max_length=36)] = None,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> ResolutionPage:
    """Write-offs in the legal entities where the caller may read them, newest first."""
    return _list(
        ctx,
        session,
        user.username,
        WRITE_OFF,
        status,
        invoice_id,
        dispute_id,
        customer_id,
        limit,
        offset,
        response,
    )


@router.get("/credit-memos/{credit_memo_id}", response_model=ResolutionPublic, responses=errors("not_found"))
async def get_credit_memo(
    credit_memo_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> ResolutionPublic:
    """One credit memo: its approval chain, status, number, lines, and the actions the caller can take now
    (with why not, and who can instead)."""
    return present(
        ctx, session, doc_or_404(session, CREDIT_MEMO, credit_memo_id, user.username, ctx), user.username
    )


@router.get("/write-offs/{write_off_id}", response_model=ResolutionPublic, responses=errors("not_found"))
async def get_write_off(
    write_off_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> ResolutionPublic:
    """One write-off: its approval chain, status, the rule of an automatic one, and the caller's actions."""
    return present(
        ctx, session, doc_or_404(session, WRITE_OFF, write_off_id, user.username, ctx), user.username
    )


@router.get(
    "/credit-memos/{credit_memo_id}/history", response_model=list[HistoryEntry], responses=errors("not_found")
)
async def credit_memo_history(
    credit_memo_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> list[HistoryEntry]:
    """Every transition of the credit memo from the evidence ledger, oldest first."""
    row = doc_or_404(session, CREDIT_MEMO, credit_memo_id, user.username, ctx)
    return history(session, CREDIT_MEMO, row)


@router.get(
    "/write-offs/{write_off_id}/history", response_model=list[HistoryEntry], responses=errors("not_found")
)
async def write_off_history(
    write_off_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> list[HistoryEntry]:
    """Every transition of the write-off from the evidence ledger, oldest first."""
    row = doc_or_404(session, WRITE_OFF, write_off_id, user.username, ctx)
    return history(session, WRITE_OFF, row)


def credit_note_file(
    session: Session, ctx: AppContext, username: str, credit_memo_id: str, what: str
) -> Response:
    row = doc_or_404(session, CREDIT_MEMO, credit_memo_id, username, ctx)
    assert isinstance(row, CreditMemo)
    if row.number is None:
        raise Conflict(
            f"credit memo {row.id} is {row.status}: its credit note exists once it is approved and issued",
            code="credit_note_not_issued",
            status=row.status,
        )
    name = row.number
    if what == "pdf":
        if row.pdf is None:
            raise Conflict(f"credit note {name} has no PDF", code="credit_note_not_issued", status=row.status)
        return Response(
            row.pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    if row.ubl is None:
        raise Conflict(
            f"credit note {name} has no UBL: the customer's master data cannot make an EN 16931 e-invoice "
            "(it went by mail as a PDF)",
            code="einvoice_incomplete",
            status=row.status,
        )
    return Response(
        row.ubl.encode(),
        media_type="application/xml",
        headers={"Content-Disposition": f'attachment; filename="{name}.xml"'},
    )


FILE_ERRORS = errors("not_found", "credit_note_not_issued", "einvoice_incomplete")


@router.get(
    "/credit-memos/{credit_memo_id}/pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the credit note's PDF"},
        **FILE_ERRORS,
    },
)
async def credit_note_pdf(
    credit_memo_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> Response:
    """The issued credit note as a PDF (409 before it is issued)."""
    return credit_note_file(session, ctx, user.username, credit_memo_id, "pdf")


@router.get(
    "/credit-memos/{credit_memo_id}/ubl",
    response_class=Response,
    responses={
        200: {"content": {"application/xml": {}}, "description": "the UBL CreditNote (type 381)"},
        **FILE_ERRORS,
    },
)
async def credit_note_ubl(
    credit_memo_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> Response:
    """The issued credit note as UBL 2.1 CreditNote (EN 16931, Peppol BIS 3), as it was issued."""
    return credit_note_file(session, ctx, user.username, credit_memo_id, "ubl")


# -- commands -----------------------------------------------------------------------------------------------


async def command(
    ctx: AppContext,
    username: str,
    kind: str,
    document_id: str,
    verb: str,
    arg_of: Any,
    idempotency_key: str | None,
    tier_seen: int = 0,
) -> ResolutionPublic:
    """Check the command with the workflow's rules and the store's facts (a refusal is answered before any
    update is sent), then send it as the workflow's update (the Idempotency-Key is its id)."""
    with reading(ctx.store) as session:
        row = doc_or_404(session, kind, document_id, username, ctx)
        update_id = f"{verb}:{username}:{idempotency_key}" if idempotency_key else f"{verb}:{uuid.uuid4()}"
        applied = bool(idempotency_key and queries.ledger_entry_by_request(session, row.id, update_id))
        arg = None
        if not applied:
            option = action_option(ctx, session, row, username, verb, tier_seen)
            if not option.allowed:
                raise option_error(option, row, username, ctx)
            grant = ctx.authorizer.check(
                username, row.legal_entity, permission(kind, "approve")
            ) or ctx.authorizer.check(username, row.legal_entity, permission(kind, "read"))
            rule = grant.rule if grant else permission(kind, "read")
            arg = arg_of(Actor(username, ctx.authorizer.roles(username, row.legal_entity), rule), option)
    handle = ctx.temporal.get_workflow_handle(row.workflow_id)
    try:
        if applied:
            await await_workflow(ctx, handle.get_update_handle(update_id).result())
        else:
            await await_workflow(
                ctx, handle.execute_update(verb, arg, id=update_id, result_type=ResolutionState)
            )
    except WorkflowUpdateFailedError as exc:
        raise from_workflow(exc) from None
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND and "already completed" not in exc.message:
            raise
        with reading(ctx.store) as session:
            current = resolution_by_id(session, kind, document_id)
            if current is not None and (
                applied
                or (idempotency_key and queries.ledger_entry_by_request(session, document_id, update_id))
            ):
                return present(ctx, session, current, username)
        status = current.status if current else row.status
        raise Conflict(
            f"cannot {verb} a {NOUN[kind]} in status {status}",
            code="transition_refused",
            status=status,
            event=verb,
        ) from None
    with reading(ctx.store) as session:
        fresh = resolution_by_id(session, kind, document_id)
        assert fresh is not None
        return present(ctx, session, fresh, username)


def _approve(body: ApproveBody | None) -> Any:
    def arg(actor: Actor, option: ActionOption) -> ResolutionApproveCommand:
        tier = (body.tier if body and body.tier else None) or option.tier or 0
        return ResolutionApproveCommand(actor, body.comment if body else "", tier=tier)

    return arg


def _reason(body: ReasonBody) -> Any:
    return lambda actor, _option: ResolutionRejectCommand(actor, body.reason)


@router.post(
    "/credit-memos/{credit_memo_id}/approve",
    response_model=ResolutionPublic,
    responses=errors(*APPROVE_ERRORS),
)
async def approve_credit_memo(
    credit_memo_id: str,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
    body: ApproveBody | None = None,
) -> ResolutionPublic:
    """Approve the waiting tier (with a comment). Refused (403) for whoever proposed it, the owner of its
    dispute case, an approver of an earlier tier, anyone who applied cash for the customer this month, a
    non-holder of the tier's role, and past the cumulative limit of the tier's role for the customer this
    month; 409 once it is no longer pending. The last tier decides: it is then issued and applied."""
    tier = body.tier or 0 if body else 0
    return await command(
        ctx, user.username, CREDIT_MEMO, credit_memo_id, "approve", _approve(body), idempotency_key, tier
    )


@router.post(
    "/credit-memos/{credit_memo_id}/reject",
    response_model=ResolutionPublic,
    responses=errors(*COMMAND_ERRORS, "segregation_of_duties", "no_authority", "invalid_command"),
)
async def reject_credit_memo(
    credit_memo_id: str, body: ReasonBody, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> ResolutionPublic:
    """Reject a pending credit memo (an approver of the waiting tier); the reason is required and recorded."""
    return await command(
        ctx, user.username, CREDIT_MEMO, credit_memo_id, "reject", _reason(body), idempotency_key
    )


@router.post(
    "/credit-memos/{credit_memo_id}/cancel",
    response_model=ResolutionPublic,
    responses=errors(*COMMAND_ERRORS, "no_authority", "invalid_command"),
)
async def cancel_credit_memo(
    credit_memo_id: str, body: ReasonBody, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> ResolutionPublic:
    """Cancel a credit memo before it is decided (whoever proposed it, its dispute's owner or a
    supervisor); the reason is required and recorded."""
    return await command(
        ctx, user.username, CREDIT_MEMO, credit_memo_id, "cancel", _reason(body), idempotency_key
    )


@router.post(
    "/write-offs/{write_off_id}/approve", response_model=ResolutionPublic, responses=errors(*APPROVE_ERRORS)
)
async def approve_write_off(
    write_off_id: str,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
    body: ApproveBody | None = None,
) -> ResolutionPublic:
    """Approve the waiting tier of a write-off; the same segregation of duties as credit memos (never the
    requester, never the case owner, never a cash applier of the customer this month). The last tier
    decides: the amount is then written off the invoice."""
    tier = body.tier or 0 if body else 0
    return await command(
        ctx, user.username, WRITE_OFF, write_off_id, "approve", _approve(body), idempotency_key, tier
    )


@router.post(
    "/write-offs/{write_off_id}/reject",
    response_model=ResolutionPublic,
    responses=errors(*COMMAND_ERRORS, "segregation_of_duties", "no_authority", "invalid_command"),
)
async def reject_write_off(
    write_off_id: str, body: ReasonBody, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> ResolutionPublic:
    """Reject a pending write-off; the reason is required and recorded."""
    return await command(
        ctx, user.username, WRITE_OFF, write_off_id, "reject", _reason(body), idempotency_key
    )


@router.post(
    "/write-offs/{write_off_id}/cancel",
    response_model=ResolutionPublic,
    responses=errors(*COMMAND_ERRORS, "no_authority", "invalid_command"),
)
async def cancel_write_off(
    write_off_id: str, body: ReasonBody, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> ResolutionPublic:
    """Cancel a write-off before it is decided (the requester, the case owner or a supervisor)."""
    return await command(
        ctx, user.username, WRITE_OFF, write_off_id, "cancel", _reason(body), idempotency_key
    )


# -- the approvers' inbox -----------------------------------------------------------------------------------


def resolution_inbox(
    ctx: AppContext,
    session: Session,
    username: str,
    *,
    search: str | None = None,
    customer_id: str | None = None,
    tier: int | None = None,
) -> list[dict[str, Any]]:
    """Credit memos and write-offs waiting at a tier `username` may approve now, longest waiting first, as
    the inbox lists them: the store's pre-filter (status, the waiting role held in the entity, the people
    the state bars), then each checked with the approval rules and the store's facts, as the command will
    be (a cash applier of the customer, the cumulative limit)."""
    found: list[dict[str, Any]] = []
    for kind in (CREDIT_MEMO, WRITE_OFF):
        roles: dict[str, set[str]] = {}
        entities = queries.entities_of(session, username)
        if "*" in entities:
            entities = queries.legal_entity_codes(session)
        for entity in entities:
            if ctx.authorizer.check(username, entity, permission(kind, "approve")):
                roles[entity] = set(ctx.authorizer.roles(username, entity))
        if not roles:
            continue
        for row in waiting_for_roles(session, kind, roles, username):
            if customer_id and row.customer_id != customer_id:
                continue
            if tier is not None and row.waiting_tier != tier:
                continue
            option = action_option(ctx, session, row, username, "approve")
            if not option.allowed:
                continue
            inv = session.get(Invoice, row.invoice_id)
            customer = session.get(Customer, row.customer_id)
            number = (inv.number if inv else None) or ""
            external = inv.external_id if inv else ""
            name = customer.name if customer else ""
            if search and search.strip():
                needle = search.strip().lower()
                haystack = " ".join([number, external, name, row.id, row.reason]).lower()
                if needle not in haystack:
                    continue
            state = _state(row)
            found.append(
                {
                    "kind": kind,
                    "document_id": row.id,
                    "url": f"/{'credit-memos' if kind == CREDIT_MEMO else 'write-offs'}/{row.id}",
                    "reason": row.reason,
                    "invoice_id": row.invoice_id,
                    "external_id": external,
                    "number": number or None,
                    "customer_id": row.customer_id,
                    "customer_name": name,
                    "po_number": inv.po_number if inv else None,
                    "currency": row.currency,
                    "total": format_minor(row.amount_minor, row.currency),
                    "tier": option.tier or row.waiting_tier,
                    "role": row.waiting_role,
                    "on_behalf_of": None,
                    "waiting_since": _aware(row.waiting_since),
                    "escalated": False,
                    "sla": "on_time",
                    "matrix_version": state.plan.matrix_version if state.plan else None,
                }
            )
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(found, key=lambda d: (d["waiting_since"] or epoch, d["document_id"]))

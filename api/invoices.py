"""Invoice routes: the ERP starts workflows here, people move them through updates, everyone reads.

The API never writes an invoice itself: commands become workflow updates (the `Idempotency-Key`
header becomes the update id) and the response is read back from the store, which the workflow's
recording activity has updated before the update returned.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from collections.abc import Awaitable
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Response
from sqlmodel import Session, col, select
from temporalio.client import (
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from activities import invoice_start, queries
from activities.db import reading
from activities.invoice_start import (
    DraftRefused,
    invoice_config,
    invoice_input,
    payload_hash,
    start_invoice,
)
from activities.models import Customer, Invoice, InvoiceLine, LegalEntity, PortalSubmission
from activities.money import format_minor
from api.approvals import (
    ActionOption,
    approval_chain,
    approve_option,
    forbidden_reason,
    rules_state,
    who_may,
)
from api.deps import AppContext, ContextDep, CurrentUser, IdempotencyKey, SessionDep
from api.errors import AppError, Conflict, Forbidden, Invalid, NotFound, Unavailable, errors, from_workflow
from api.schemas import (
    ApprovalOut,
    ApproveBody,
    FixBody,
    HistoryEntry,
    InvoiceCreate,
    InvoiceEdit,
    InvoicePage,
    InvoicePublic,
    LineIn,
    LineOut,
    PortalOut,
    ReasonBody,
    ReassignBody,
    SubmitBody,
    UnavailableAction,
)
from workflows import states
from workflows.approval import current_tier
from workflows.errors import HTTP_STATUS
from workflows.invoice import InvoiceWorkflow, search_attributes
from workflows.types import (
    Actor,
    ApproveCommand,
    Command,
    EditCommand,
    InvoiceConfig,
    InvoiceDraft,
    Line,
    ReassignCommand,
)

router = APIRouter(prefix="/api/v1", tags=["invoices"])
T = TypeVar("T")

# What every command on an invoice can answer (it goes through _command to the invoice's workflow).
COMMAND_ERRORS = ("not_found", "forbidden", "transition_refused", "unavailable")

# Commands a person can give, by state-machine event, with the permission each needs.
COMMANDS = {
    "edit": "invoice:edit",
    "submit": "invoice:submit",
    "approve": "invoice:approve",
    "reject": "invoice:reject",
    "void": "invoice:void",
    "fix": "invoice:edit",
}


def _refused(exc: DraftRefused) -> Invalid:
    return Invalid(exc.message, code=exc.code, field=exc.field)


def build_lines(lines: list[LineIn], currency: str) -> list[Line]:
    try:
        return invoice_start.build_lines(lines, currency)
    except DraftRefused as exc:
        raise _refused(exc) from None


def exchange_rate_for(currency: str, entity: LegalEntity, given: str | None) -> str:
    """The rate to the entity's currency: "1" for its own currency, required (and positive) otherwise."""
    try:
        return invoice_start.exchange_rate_for(currency, entity, given)
    except DraftRefused as exc:
        raise _refused(exc) from None


def build_draft(
    *,
    customer: Customer,
    entity: LegalEntity,
    currency: str,
    issue_date: date,
    due_date: date | None,
    po_number: str | None,
    lines: list[LineIn],
    body_hash: str,
    exchange_rate: str | None = None,
) -> InvoiceDraft:
    """The draft as activities/invoice_start.py builds it (the rebill's corrected invoice too); its
    refusals as 422s naming the field."""
    try:
        return invoice_start.build_draft(
            customer=customer,
            entity=entity,
            currency=currency,
            issue_date=issue_date,
            due_date=due_date,
            po_number=po_number,
            lines=lines,
            body_hash=body_hash,
            exchange_rate=exchange_rate,
        )
    except DraftRefused as exc:
        raise _refused(exc) from None


def workflow_config(ctx: AppContext) -> InvoiceConfig:
    return invoice_config(ctx.settings)


_UNREAD: Any = object()  # present(): "not read yet" (None is a portal pass that is not there)


def present(
    ctx: AppContext,
    session: Session,
    inv: Invoice,
    username: str,
    lines: list[InvoiceLine] | None = None,
    portal: PortalSubmission | None = _UNREAD,
) -> InvoicePublic:
    """The invoice as the API shows it to `username`. `lines` and `portal`: already read (a page of the
    list reads them for all its invoices in one query each), else read here."""
    cur = inv.currency
    status = states.Status(inv.status)
    actions: list[str] = []
    unavailable: list[UnavailableAction] = []
    for event in states.events_from(status):
        if event.value not in COMMANDS:
            continue
        option = command_option(ctx, session, inv, username, event.value)
        if option.allowed:
            actions.append(event.value)
        else:
            unavailable.append(unavailable_action(event.value, option))
    if status == states.Status.PENDING_APPROVAL and ctx.authorizer.check(
        username, inv.legal_entity, "approval:reassign"
    ):
        actions.append("reassign")
    if status in states.OPEN_RECEIVABLE and ctx.authorizer.check(
        username, inv.legal_entity, "payment:record"
    ):
        actions.append("record_payment")
    return InvoicePublic(
        id=inv.id,
        external_id=inv.external_id,
        number=inv.number,
        status=inv.status,
        legal_entity=inv.legal_entity,
        customer_id=inv.customer_id,
        currency=cur,
        subtotal=format_minor(inv.subtotal_minor, cur),
        tax_total=format_minor(inv.tax_total_minor, cur),
        total=format_minor(inv.total_minor, cur),
        amount_paid=format_minor(inv.amount_paid_minor, cur),
        amount_due=format_minor(inv.amount_due_minor, cur),
        issue_date=inv.issue_date,
        due_date=inv.due_date,
        po_number=inv.po_number,
        workflow_id=inv.workflow_id,
        created_by=inv.created_by,
        created_at=inv.created_at,
        updated_at=inv.updated_at,
        status_since=inv.status_since,
        delivered_at=inv.delivered_at,
        lines=[
            LineOut(
                line_no=ln.line_no,
                description=ln.description,
                quantity=ln.quantity,
                unit_price=ln.unit_price,
                tax_rate=ln.tax_rate,
                net=format_minor(ln.net_minor, cur),
                tax=format_minor(ln.tax_minor, cur),
            )
            for ln in (queries.invoice_lines(session, inv.id) if lines is None else lines)
        ],
        approvals=[ApprovalOut(**a) for a in json.loads(inv.approvals_json)],
        actions=actions,
        unavailable_actions=unavailable,
        exchange_rate=inv.exchange_rate,
        portal=_portal_out(_latest_pass(session, inv) if portal is _UNREAD else portal),
        approval=approval_chain(inv).model_dump(mode="json"),
    )


def command_option(
    ctx: AppContext, session: Session, inv: Invoice, username: str, event: str
) -> ActionOption:
    """Whether `username` may give the command `event` (a key of COMMANDS) on the invoice, as far as
    permissions and the approval rules go (the workflow still checks the status): the evaluation behind
    `actions`, `unavailable_actions`, a refused command's 403 and the pages."""
    if event == "approve":
        return approve_option(ctx, session, inv, username)
    action = COMMANDS[event]
    if ctx.authorizer.check(username, inv.legal_entity, action) is not None:
        return ActionOption(allowed=True)
    return ActionOption(
        allowed=False,
        code="forbidden",
        rule=action,
        reason=forbidden_reason(username, action, inv.legal_entity),
        who_can_instead=who_may(ctx, session, inv.legal_entity, action, but=username),
    )


def unavailable_action(event: str, option: ActionOption) -> UnavailableAction:
    return UnavailableAction(
        action=event,
        reason=option.reason,
        code=option.code or "forbidden",
        rule=option.rule,
        tier=option.tier,
        who_can_instead=option.who_can_instead,
    )


def _latest_pass(session: Session, inv: Invoice) -> PortalSubmission | None:
    if inv.delivered_at is None:
        return None  # a portal pass is recorded with the delivery that sends it: none to look up
    return session.exec(
        select(PortalSubmission)
        .where(PortalSubmission.invoice_id == inv.id)
        .order_by(col(PortalSubmission.submission_pass).desc())
    ).first()


def _portal_out(row: PortalSubmission | None) -> PortalOut | None:
    if row is None:
        return None
    return PortalOut(
        portal=row.portal,
        channel=row.channel,
        submission_pass=row.submission_pass,
        submission_key=row.submission_key,
        portal_ref=row.portal_ref,
        status=row.status,
        status_at=row.status_at,
        submitted_at=row.submitted_at,
        reason_code=row.reason_code,
        reason_text=row.reason_text,
        accepted_at=row.accepted_at,
        rejected_at=row.rejected_at,
    )


async def await_workflow(ctx: AppContext, call: Awaitable[T]) -> T:
    """A workflow round trip with a bound: without a worker the caller gets a 503, not a hung request."""
    try:
        return await asyncio.wait_for(call, timeout=ctx.settings.update_timeout_seconds)
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # wait_for cancels the update call, and the Temporal client turns that cancellation into
        # WorkflowUpdateRPCTimeoutOrCancelledError, which wait_for re-raises instead of TimeoutError.
        raise Unavailable(
            "the invoice workflow did not answer in time (is a worker running?); "
            "retry with the same Idempotency-Key"
        ) from None


def _invoice_or_404(session: Session, invoice_id: str, username: str, ctx: AppContext) -> Invoice:
    inv = queries.invoice_by_id(session, invoice_id)
    if inv is None or not ctx.authorizer.check(username, inv.legal_entity, "invoice:read"):
        # Unknown and not-yours look the same: no probing of other legal entities' documents.
        raise NotFound(f"no invoice {invoice_id}")
    return inv


@router.post(
    "/invoices",
    status_code=201,
    response_model=InvoicePublic,
    responses={
        200: {"description": "the same external_id and body again: the existing invoice"},
        **errors(
            "forbidden",
            "external_id_conflict",
            "unknown_reference",
            "exchange_rate",
            "invalid_range",
            "invalid_amount",
            "unavailable",
        ),
    },
)
async def create_invoice(
    body: InvoiceCreate,
    response: Response,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> InvoicePublic:
    """Start an invoice workflow from the ERP. The external_id is the idempotency key: the same body
    again returns the same invoice (200); a different body under the same external_id is a 409."""
    body_hash = payload_hash(body.model_dump(mode="json"))
    with reading(ctx.store) as session:
        customer = queries.customer_by_id(session, body.customer_id)
        if customer is None or not ctx.authorizer.check(
            user.username, customer.legal_entity, "customer:read"
        ):
            raise Invalid(
                f"unknown customer {body.customer_id}", code="unknown_reference", field="customer_id"
            )
        grant = ctx.authorizer.require(user.username, customer.legal_entity, "invoice:create")
        entity = session.get(LegalEntity, customer.legal_entity)
        assert entity is not None
        existing = queries.invoice_by_external_id(session, customer.legal_entity, body.external_id)
        if existing is not None:
            return _same_or_conflict(ctx, session, existing, body_hash, user.username, response)
        draft = build_draft(
            customer=customer,
            entity=entity,
            currency=body.currency,
            issue_date=body.issue_date,
            due_date=body.due_date,
            po_number=body.po_number,
            lines=body.lines,
            body_hash=body_hash,
            exchange_rate=body.exchange_rate,
        )
    inp = invoice_input(
        customer.legal_entity,
        body.external_id,
        draft,
        Actor(user.username, grant.roles, grant.rule),
        idempotency_key or str(uuid.uuid4()),
        workflow_config(ctx),
    )
    try:
        state = await await_workflow(
            ctx, start_invoice(ctx.temporal, ctx.settings.task_queue, inp, search_attributes)
        )
    except WorkflowUpdateFailedError as exc:
        raise from_workflow(exc) from None
    with reading(ctx.store) as session:
        inv = queries.invoice_by_id(session, state.invoice_id)
        if inv is None:
            raise Unavailable("the invoice was created but is not readable yet; retry")
        if state.draft.payload_hash != body_hash and inv.payload_hash != body_hash:
            return _same_or_conflict(ctx, session, inv, body_hash, user.username, response)
        return present(ctx, session, inv, user.username)


def _same_or_conflict(
    ctx: AppContext, session: Session, inv: Invoice, body_hash: str, username: str, response: Response
) -> InvoicePublic:
    if inv.payload_hash != body_hash:
        raise Conflict(
            f"external_id {inv.external_id} already names invoice {inv.number} with a different body",
            code="external_id_conflict",
            invoice_id=inv.id,
            status=inv.status,
        )
    response.status_code = 200
    return present(ctx, session, inv, username)


@router.get("/invoices/{invoice_id}", response_model=InvoicePublic, responses=errors("not_found"))
async def get_invoice(
    invoice_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> InvoicePublic:
    """One invoice, with its lines, approvals and the actions the caller can take now."""
    return present(ctx, session, _invoice_or_404(session, invoice_id, user.username, ctx), user.username)


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        return datetime.fromisoformat(created), str(ident)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Invalid("cursor is not one this API issued", code="invalid_cursor", field="cursor") from None


@router.get("/invoices", response_model=InvoicePage, responses=errors("invalid_cursor"))
async def list_invoices(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[states.Status | None, Query()] = None,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> InvoicePage:
    """Invoices in the legal entities where the caller may read them, newest first, paginated."""
    entities = [
        e
        for e in queries.entities_of(session, user.username)
        if ctx.authorizer.check(user.username, e, "invoice:read")
    ]
    page = queries.list_invoices(
        session,
        entities,
        status=status.value if status else None,
        customer_id=customer_id,
        limit=limit,
        after=_decode_cursor(cursor) if cursor else None,
    )
    next_cursor = None
    if page.next_cursor:
        created, ident = page.next_cursor
        next_cursor = base64.urlsafe_b64encode(json.dumps([created.isoformat(), ident]).encode()).decode()
    # One query each for the page's lines and portal passes, not one per invoice.
    ids = [inv.id for inv in page.items]
    lines = queries.lines_of_invoices(session, ids)
    passes = queries.latest_portal_passes(session, [inv.id for inv in page.items if inv.delivered_at])
    return InvoicePage(
        items=[
            present(ctx, session, inv, user.username, lines[inv.id], passes.get(inv.id)) for inv in page.items
        ],
        next_cursor=next_cursor,
    )


@router.get(
    "/invoices/{invoice_id}/history", response_model=list[HistoryEntry], responses=errors("not_found")
)
async def invoice_history(
    invoice_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> list[HistoryEntry]:
    """Every transition of the invoice from the evidence ledger, oldest first."""
    inv = _invoice_or_404(session, invoice_id, user.username, ctx)
    return [HistoryEntry.of(e) for e in queries.invoice_history(session, inv.id)]


async def _command(
    ctx: AppContext,
    username: str,
    invoice_id: str,
    event: str,
    update: Any,
    build: Any,
    idempotency_key: str | None,
    authorize: Any = None,
) -> InvoicePublic:
    with reading(ctx.store) as session:
        inv = _invoice_or_404(session, invoice_id, username, ctx)
        update_id = f"{event}:{username}:{idempotency_key}" if idempotency_key else f"{event}:{uuid.uuid4()}"
        if idempotency_key and queries.ledger_entry_by_request(session, inv.id, update_id) is not None:
            # The same command again (a client retrying after a timeout or a lost reply), and it was
            # recorded. Its checks were passed against the state it left, so they are not run again: the
            # caller gets the command's own outcome, once the workflow has finished applying it.
            applied = True
        else:
            applied = False
            if authorize is None:
                grant = ctx.authorizer.check(username, inv.legal_entity, COMMANDS[event])
                if grant is None:
                    raise command_error(
                        command_option(ctx, session, inv, username, event), inv, username, ctx
                    )
                actor = Actor(username, grant.roles, grant.rule)
            else:
                actor = authorize(session, inv)
            arg = build(session, inv, actor)
    handle = ctx.temporal.get_workflow_handle(inv.workflow_id)
    try:
        if applied:
            # A recorded command's update is in the workflow's history (its record is a regular activity,
            # scheduled once the update is accepted): wait for its outcome.
            await await_workflow(ctx, handle.get_update_handle(update_id).result())
        else:
            # A retry of a command not yet recorded is the same update: Temporal answers it with the
            # first one's outcome, waiting for it if it is still running.
            await await_workflow(ctx, handle.execute_update(update, arg, id=update_id))
    except WorkflowUpdateFailedError as exc:
        raise from_workflow(exc) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in exc.message:
            with reading(ctx.store) as session:
                current = queries.invoice_by_id(session, invoice_id)
                if current is not None and (
                    applied
                    or (idempotency_key and queries.ledger_entry_by_request(session, invoice_id, update_id))
                ):
                    # The workflow has ended since it applied this command (the payment that closed it,
                    # say): the ledger remembers the command, so answer as for the first time.
                    return present(ctx, session, current, username)
            status = current.status if current else inv.status
            raise Conflict(
                f"cannot {event} an invoice in status {status}",
                code="transition_refused",
                status=status,
                event=event,
            ) from None
        raise
    with reading(ctx.store) as session:
        fresh = queries.invoice_by_id(session, invoice_id)
        assert fresh is not None
        return present(ctx, session, fresh, username)


@router.patch(
    "/invoices/{invoice_id}",
    response_model=InvoicePublic,
    responses=errors(*COMMAND_ERRORS, "exchange_rate", "invalid_range", "invalid_amount", "invalid_command"),
)
async def edit_invoice(
    invoice_id: str, body: InvoiceEdit, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> InvoicePublic:
    """Edit a draft (or pull a pending invoice back to draft). Editing voids every approval, and the
    editor can no longer approve this invoice."""

    def build(session: Session, inv: Invoice, actor: Actor) -> EditCommand:
        customer = session.get(Customer, inv.customer_id)
        entity = session.get(LegalEntity, inv.legal_entity)
        assert customer is not None and entity is not None
        lines = body.lines
        if lines is None:
            lines = [
                LineIn(
                    description=ln.description,
                    quantity=ln.quantity,
                    unit_price=ln.unit_price,
                    tax_rate=ln.tax_rate,
                )
                for ln in queries.invoice_lines(session, inv.id)
            ]
        fields = body.model_dump(exclude_unset=True)
        draft = build_draft(
            customer=customer,
            entity=entity,
            currency=body.currency or inv.currency,
            issue_date=body.issue_date or inv.issue_date,
            due_date=body.due_date or (inv.due_date if "issue_date" not in fields else None),
            po_number=body.po_number if "po_number" in fields else inv.po_number,
            lines=lines,
            body_hash=payload_hash(body.model_dump(mode="json", exclude_unset=True)),
            exchange_rate=body.exchange_rate
            if "exchange_rate" in fields
            else (inv.exchange_rate if (body.currency or inv.currency) != entity.currency else None),
        )
        return EditCommand(actor=actor, draft=draft)

    return await _command(
        ctx, user.username, invoice_id, "edit", InvoiceWorkflow.edit, build, idempotency_key
    )


@router.post("/invoices/{invoice_id}/submit", response_model=InvoicePublic, responses=errors(*COMMAND_ERRORS))
async def submit_invoice(
    invoice_id: str,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
    body: SubmitBody | None = None,
) -> InvoicePublic:
    """Send a draft for approval (draft -> pending_approval)."""
    comment = body.comment if body else ""
    return await _command(
        ctx,
        user.username,
        invoice_id,
        "submit",
        InvoiceWorkflow.submit,
        lambda _s, _i, actor: Command(actor, comment),
        idempotency_key,
    )


@router.post(
    "/invoices/{invoice_id}/approve",
    response_model=InvoicePublic,
    responses=errors(
        *COMMAND_ERRORS,
        "segregation_of_duties",
        "no_authority",
        "tier_already_approved",
        "tier_out_of_order",
        "invalid_command",
    ),
)
async def approve_invoice(
    invoice_id: str,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
    body: ApproveBody | None = None,
) -> InvoicePublic:
    """Approve a pending invoice. Refused (403 segregation_of_duties) for whoever created or edited it,
    and for a second approval by the same person; 409 if it is no longer pending."""
    comment = body.comment if body else ""
    chosen: dict[str, ActionOption] = {}

    def authorize(session: Session, inv: Invoice) -> Actor:
        option = approve_option(ctx, session, inv, user.username, tier_seen=body.tier or 0 if body else 0)
        if not option.allowed:
            raise command_error(option, inv, user.username, ctx)
        chosen["option"] = option
        grant = ctx.authorizer.check(user.username, inv.legal_entity, "invoice:approve")
        rule = grant.rule if grant else f"delegation from {option.on_behalf_of}"
        return Actor(user.username, ctx.authorizer.roles(user.username, inv.legal_entity), rule)

    def build(_s: Session, _i: Invoice, actor: Actor) -> ApproveCommand:
        option = chosen["option"]
        tier = (body.tier if body and body.tier else None) or option.tier or 0
        return ApproveCommand(actor, comment, tier=tier, on_behalf_of=option.on_behalf_of)

    return await _command(
        ctx,
        user.username,
        invoice_id,
        "approve",
        InvoiceWorkflow.approve,
        build,
        idempotency_key,
        authorize=authorize,
    )


def command_error(option: ActionOption, inv: Invoice, username: str, ctx: AppContext) -> AppError:
    """A refused command's error, from the same evaluation as `unavailable_actions`: the same reason, and
    who may take the action instead (`details.who_can_instead`)."""
    return refusal_error(option, inv.legal_entity, inv.status, username, ctx)


def refusal_error(
    option: ActionOption, legal_entity: str, status: str, username: str, ctx: AppContext
) -> AppError:
    """The error of a refused action on any document (invoice, credit memo, write-off) from its evaluated
    option: the reason, the rule, who may take it instead, and the document's status."""
    instead = {"who_can_instead": option.who_can_instead} if option.code != "transition_refused" else {}
    if option.code == "forbidden":
        return Forbidden(
            option.reason,
            code="forbidden",
            action=option.rule,
            legal_entity=legal_entity,
            roles_held=ctx.authorizer.roles(username, legal_entity),
            **instead,
        )
    # The current status is named in every refusal, as the workflow's own refusals name it (rule 8).
    err = AppError(option.reason, code=option.code, rule=option.rule, status=status, **instead)
    if option.tier is not None:
        err.details["tier"] = option.tier
    err.status = HTTP_STATUS.get(option.code, 409)
    return err


@router.post(
    "/invoices/{invoice_id}/reassign",
    response_model=InvoicePublic,
    responses=errors(*COMMAND_ERRORS, "assignee_ineligible", "invalid_command"),
)
async def reassign_approval(
    invoice_id: str, body: ReassignBody, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> InvoicePublic:
    """A supervisor hands the waiting tier to a named approver (who must hold the tier's role and not be
    barred by segregation of duties); only that person may then approve it, and the SLA clock restarts."""

    def authorize(session: Session, inv: Invoice) -> Actor:
        grant = ctx.authorizer.require(user.username, inv.legal_entity, "approval:reassign")
        tier = current_tier(rules_state(inv))
        if tier is not None and tier.role not in ctx.authorizer.roles(body.assignee, inv.legal_entity):
            raise Invalid(
                f"assignee: {body.assignee} does not hold {tier.role} in {inv.legal_entity}",
                code="assignee_ineligible",
                field="assignee",
            )
        return Actor(user.username, grant.roles, grant.rule)

    return await _command(
        ctx,
        user.username,
        invoice_id,
        "reassign",
        InvoiceWorkflow.reassign,
        lambda _s, _i, actor: ReassignCommand(actor, body.tier, body.assignee, body.reason),
        idempotency_key,
        authorize=authorize,
    )


@router.post(
    "/invoices/{invoice_id}/reject",
    response_model=InvoicePublic,
    responses=errors(*COMMAND_ERRORS, "invalid_command"),
)
async def reject_invoice(
    invoice_id: str, body: ReasonBody, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> InvoicePublic:
    """Send a pending invoice back to draft; the reason is required and recorded."""
    return await _command(
        ctx,
        user.username,
        invoice_id,
        "reject",
        InvoiceWorkflow.reject,
        lambda _s, _i, actor: Command(actor, body.reason),
        idempotency_key,
    )


@router.post(
    "/invoices/{invoice_id}/fix",
    response_model=InvoicePublic,
    responses=errors(*COMMAND_ERRORS, "invalid_command"),
)
async def fix_invoice(
    invoice_id: str, body: FixBody, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> InvoicePublic:
    """Take an invoice the customer's portal rejected (or a pre-submission check stopped) back to draft to
    correct it (portal_rejected -> draft). Edit it, then submit: if amounts, tax, PO and customer are as
    approved, it goes straight back to the portal as the next pass; otherwise it is approved again."""
    return await _command(
        ctx,
        user.username,
        invoice_id,
        "fix",
        InvoiceWorkflow.fix,
        lambda _s, _i, actor: Command(actor, body.comment),
        idempotency_key,
    )


@router.post(
    "/invoices/{invoice_id}/void",
    response_model=InvoicePublic,
    responses=errors(*COMMAND_ERRORS, "invalid_command"),
)
async def void_invoice(
    invoice_id: str, body: ReasonBody, ctx: ContextDep, user: CurrentUser, idempotency_key: IdempotencyKey
) -> InvoicePublic:
    """Void an invoice before it is delivered; the reason is required and recorded."""
    return await _command(
        ctx,
        user.username,
        invoice_id,
        "void",
        InvoiceWorkflow.void,
        lambda _s, _i, actor: Command(actor, body.reason),
        idempotency_key,
    )

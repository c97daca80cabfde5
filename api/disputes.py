"""Dispute routes: open a case (or join the invoice's open one), read the board and a case, and work it
(notes, attachments, owner, waiting on the customer, resolution, closing).

The API never writes a case itself: opening goes through `DisputeCommands.open_or_join` (the same code a
payment's deduction and the customer's portal use), every other command is an update of the case's
workflow (the `Idempotency-Key` header becomes the update id), and the answer is read back from the store,
which the workflow's recording activity has written before the update returned.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import queries
from activities.db import reading, writing
from activities.disputes import (
    MAX_ATTACHMENT_BYTES,
    Claim,
    Dispute,
    DisputeCommands,
    DisputeFilters,
    DisputeRefused,
    OpenRequest,
    attachment_of,
    dispute_by_id,
    dispute_invoices,
    dispute_thread,
    dispute_timeline,
    list_disputes,
    store_attachment,
)
from activities.models import Customer, Invoice
from activities.money import MoneyError, amount_to_minor, exponent, format_minor
from api.approvals import forbidden_reason, who_may
from api.credit_memos import credit_lines
from api.deps import AppContext, ContextDep, CurrentUser, IdempotencyKey, SessionDep
from api.errors import CODES, AppError, Forbidden, Invalid, NotFound, Unavailable, errors
from api.invoices import await_workflow
from api.schemas import (
    TEXT,
    DisputeAction,
    DisputeAmounts,
    DisputeAssignBody,
    DisputeCloseBody,
    DisputeCreate,
    DisputeInvoiceOut,
    DisputeNoteBody,
    DisputeNoteOut,
    DisputePage,
    DisputePublic,
    DisputeResolveBody,
    DisputeSummary,
    DisputeWaitBody,
    HistoryEntry,
)
from workflows import dispute_states as ds
from workflows.credit_memo_types import RebillLine
from workflows.dispute import DisputeWorkflow
from workflows.dispute_types import (
    ActionPlan,
    AssignCommand,
    AttachCommand,
    CloseCommand,
    InvoiceAmount,
    NoteCommand,
    ResolveCommand,
    WaitCommand,
)
from workflows.types import Actor, Line

router = APIRouter(prefix="/api/v1", tags=["disputes"])

# Commands on a case, by name, with the permission each needs (tests/test_policy.py reads this) and the
# event of the state machine each is.
COMMANDS = {
    "note": "dispute:note",
    "attach": "dispute:note",
    "assign": "dispute:assign",
    "reassign": "dispute:assign",
    "wait_on_customer": "dispute:note",
    "resume": "dispute:note",
    "resolve": "dispute:resolve",
    "close": "dispute:close",
}
EVENTS = {
    "note": ds.Event.NOTE,
    "attach": ds.Event.ATTACH,
    "assign": ds.Event.ASSIGN,
    "reassign": ds.Event.REASSIGN,
    "wait_on_customer": ds.Event.WAIT_ON_CUSTOMER,
    "resume": ds.Event.RESUME,
    "resolve": ds.Event.RESOLVE,
    "close": ds.Event.CLOSE,
}
COMMAND_ERRORS = ("not_found", "forbidden", "transition_refused", "invalid_command", "unavailable")
OPEN_ERRORS = (
    "forbidden",
    "unknown_reference",
    "inconsistent_fields",
    "invalid_amount",
    "amount_exceeds_open",
    "unknown_reason_code",
    "transition_refused",
    "already_disputed",
    "unavailable",
)


def commands(ctx: AppContext) -> DisputeCommands:
    return DisputeCommands(ctx.store, ctx.temporal, ctx.settings.task_queue)


def refused(exc: DisputeRefused) -> AppError:
    err = AppError(exc.message, code=exc.code, **exc.details)
    err.status = exc.http_status
    return err


def workflow_error(exc: WorkflowUpdateFailedError | ApplicationError) -> AppError:
    """A case's (or its invoice's) typed refusal as the HTTP error api/errors.py names for its code."""
    cause = exc.cause if isinstance(exc, WorkflowUpdateFailedError) else exc
    if isinstance(cause, ApplicationError) and cause.type in CODES:
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        err = AppError(cause.message, code=cause.type, **details)
        err.status = CODES[cause.type][0]
        return err
    return Unavailable(
        "the dispute workflow could not complete the command; retry with the same Idempotency-Key"
    )


def _minor(text: str, currency: str, field: str) -> int:
    try:
        return amount_to_minor(text, currency, field)
    except MoneyError as exc:
        raise Invalid(f"{exc.field}: {exc}", code="invalid_amount", field=exc.field) from None


# -- presenting --------------------------------------------------------------------------------------------


def _amounts(d: Dispute) -> DisputeAmounts:
    c = d.currency
    return DisputeAmounts(
        original=format_minor(d.original_minor, c),
        open=format_minor(d.open_minor, c),
        credited=format_minor(d.credited_minor, c),
        written_off=format_minor(d.written_off_minor, c),
        paid=format_minor(d.paid_minor, c),
        recovered=format_minor(d.recovered_minor, c),
    )


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


def summary(session: Session, d: Dispute) -> DisputeSummary:
    customer = session.get(Customer, d.customer_id)
    due = _aware(d.sla_due_at)
    return DisputeSummary(
        id=d.id,
        case_number=d.case_number,
        legal_entity=d.legal_entity,
        customer_id=d.customer_id,
        customer_name=customer.name if customer else "",
        currency=d.currency,
        source=d.source,
        status=d.status,
        claimed_code=d.claimed_code,
        reason=d.reason,
        reason_version=d.reason_version,
        owner=d.owner,
        coordinator=d.coordinator,
        amounts=_amounts(d),
        escalation_level=d.escalation_level,
        waiting_reason=d.waiting_reason,
        sla_due_at=due,
        past_sla=due is not None and due < datetime.now(UTC),
        window_deadline=_aware(d.window_deadline),
        resolution=d.resolution,
        root_cause=d.root_cause,
        validity=d.validity,
        capa_reference=d.capa_id,
        opened_by=d.opened_by,
        opened_at=d.opened_at,
        status_since=d.status_since,
        closed_at=d.closed_at,
        workflow_id=d.workflow_id,
    )


def actions_of(
    ctx: AppContext, session: Session, d: Dispute, username: str
) -> tuple[list[str], list[DisputeAction]]:
    """What the caller can do on the case now, and what the state allows but they may not, and why (the
    same evaluation as a refused command's 403)."""
    status = ds.Status(d.status)
    possible = set(ds.events_from(status))
    available: list[str] = []
    unavailable: list[DisputeAction] = []
    for name, permission in COMMANDS.items():
        event = EVENTS[name]
        if event not in possible:
            continue
        if (name == "assign" and d.owner) or (name == "reassign" and not d.owner):
            continue
        if ctx.authorizer.check(username, d.legal_entity, permission) is None:
            unavailable.append(
                DisputeAction(
                    action=name,
                    reason=forbidden_reason(username, permission, d.legal_entity),
                    code="forbidden",
                    rule=permission,
                    who_can_instead=who_may(ctx, session, d.legal_entity, permission, but=username),
                )
            )
        elif name == "reassign" and "ar_supervisor" not in ctx.authorizer.roles(username, d.legal_entity):
            unavailable.append(
                DisputeAction(
                    action=name,
                    reason="only a supervisor reassigns a case",
                    code="no_authority",
                    rule="supervisor_reassigns",
                )
            )
        else:
            available.append(name)
    return available, unavailable


def present(ctx: AppContext, session: Session, d: Dispute, username: str) -> DisputePublic:
    state = json.loads(d.state_json or "{}")
    available, unavailable = actions_of(ctx, session, d, username)
    c = d.currency
    return DisputePublic(
        **summary(session, d).model_dump(),
        description=d.description,
        sla_rule=d.sla_rule,
        invoices=[
            DisputeInvoiceOut(
                invoice_id=inv.id,
                number=inv.number,
                status=inv.status,
                disputed=format_minor(link.original_minor, c),
                open=format_minor(link.open_minor, c),
                amount_due=format_minor(inv.amount_due_minor, inv.currency),
                linked=link.linked,
            )
            for link, inv in dispute_invoices(session, d.id)
        ],
        documents=list(state.get("documents", [])),
        thread=[
            DisputeNoteOut(
                seq=n.transition_seq,
                event=n.event,
                author=n.author,
                at=n.at,
                text=n.text,
                attachment={
                    "filename": n.filename,
                    "content_type": n.content_type,
                    "size": n.size,
                    "sha256": n.sha256,
                    "download": f"/api/v1/disputes/{d.id}/attachments/{n.sha256}",
                }
                if n.sha256
                else None,
            )
            for n in dispute_thread(session, d.id)
        ],
        timeline=[HistoryEntry.of(e) for e in dispute_timeline(session, d.id)],
        available_actions=available,
        unavailable_actions=unavailable,
    )


def _dispute_or_404(session: Session, dispute_id: str, username: str, ctx: AppContext) -> Dispute:
    d = dispute_by_id(session, dispute_id)
    if d is None or not ctx.authorizer.check(username, d.legal_entity, "dispute:read"):
        raise NotFound(f"no dispute {dispute_id}")
    return d


# -- opening -----------------------------------------------------------------------------------------------


def claims_of(
    ctx: AppContext, session: Session, username: str, body: DisputeCreate
) -> tuple[Customer, list[Claim]]:
    """The invoices the body names (the caller may read them, one customer, each once) and the amounts."""
    claims: list[Claim] = []
    customer: Customer | None = None
    seen: set[str] = set()
    for i, item in enumerate(body.invoices):
        field = f"invoices.{i}"
        inv = queries.invoice_by_id(session, item.invoice_id)
        if inv is None or not ctx.authorizer.check(username, inv.legal_entity, "invoice:read"):
            raise Invalid(
                f"{field}.invoice_id: no invoice {item.invoice_id}",
                code="unknown_reference",
                field=f"{field}.invoice_id",
            )
        if inv.id in seen:
            raise Invalid(
                f"{field}.invoice_id: invoice named twice",
                code="inconsistent_fields",
                field=f"{field}.invoice_id",
            )
        seen.add(inv.id)
        if customer is not None and (inv.customer_id != customer.id):
            raise Invalid(
                f"{field}.invoice_id: one case is one customer's; this invoice is another's",
                code="inconsistent_fields",
                field=f"{field}.invoice_id",
            )
        customer = customer or session.get(Customer, inv.customer_id)
        amount = _minor(item.amount, inv.currency, f"{field}.amount")
        claims.append(Claim(inv, amount, field))
    assert customer is not None
    return customer, claims


@router.post(
    "/disputes",
    status_code=201,
    response_model=DisputePublic,
    responses={
        200: {"description": "the invoices' open case, which the claims joined"},
        **errors(*OPEN_ERRORS),
    },
)
async def open_dispute(
    body: DisputeCreate,
    response: Response,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> DisputePublic:
    """Record a customer's complaint: a case for the disputed amounts of one customer's invoices (each
    moves to `disputed` for its amount). The customer's reason code is mapped to ours through their mapping
    (the version is recorded). An invoice already in an open case: the claims join that case (200).
    The same Idempotency-Key again answers with the same case, opened once."""
    with reading(ctx.store) as session:
        customer, claims = claims_of(ctx, session, user.username, body)
        grant = ctx.authorizer.require(user.username, customer.legal_entity, "dispute:open")
    key = f"api:{user.username}:{idempotency_key}" if idempotency_key else f"api:{uuid.uuid4()}"
    try:
        opened = await await_workflow(
            ctx,
            commands(ctx).open_or_join(
                OpenRequest(
                    legal_entity=customer.legal_entity,
                    customer=customer,
                    claims=claims,
                    claimed_code=body.reason_code,
                    description=body.description,
                    source="manual",
                    actor=Actor(user.username, grant.roles, grant.rule),
                    request_key=key,
                )
            ),
        )
    except DisputeRefused as exc:
        raise refused(exc) from None
    except WorkflowUpdateFailedError as exc:
        raise workflow_error(exc) from None
    if opened.joined:
        response.status_code = 200
    with reading(ctx.store) as session:
        d = dispute_by_id(session, opened.dispute_id)
        if d is None:
            raise Unavailable(
                "the case was opened but is not readable yet; retry with the same Idempotency-Key"
            )
        return present(ctx, session, d, user.username)


# -- reading -----------------------------------------------------------------------------------------------


@router.get("/disputes", response_model=DisputePage, responses=errors())
async def list_cases(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[ds.Status | None, Query()] = None,
    owner: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    reason: Annotated[str | None, Query(max_length=8)] = None,
    past_sla: Annotated[bool | None, Query()] = None,
    sort: Annotated[str, Query(pattern="^(opened|oldest|amount|sla)$")] = "opened",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DisputePage:
    """The dispute board: cases in the legal entities where the caller may read them, filtered (status,
    owner, customer, reason, past SLA), sorted (newest opened, oldest, open amount, SLA due), a page."""
    entities = [
        e
        for e in queries.entities_of(session, user.username)
        if ctx.authorizer.check(user.username, e, "dispute:read")
    ]
    if "*" in entities:
        entities = [
            e
            for e in queries.legal_entity_codes(session)
            if ctx.authorizer.check(user.username, e, "dispute:read")
        ]
    page = list_disputes(
        session,
        entities,
        DisputeFilters(status.value if status else None, owner, customer_id, reason, past_sla),
        sort=sort,
        limit=limit,
        offset=offset,
    )
    return DisputePage(
        items=[summary(session, d) for d in page.items], total=page.total, limit=limit, offset=offset
    )


@router.get("/disputes/{dispute_id}", response_model=DisputePublic, responses=errors("not_found"))
async def get_case(dispute_id: str, ctx: ContextDep, session: SessionDep, user: CurrentUser) -> DisputePublic:
    """A case: amounts, invoices, the thread, the timeline from the ledger, and the actions the caller can
    take now (and those they cannot, with why)."""
    return present(ctx, session, _dispute_or_404(session, dispute_id, user.username, ctx), user.username)


@router.get(
    "/disputes/{dispute_id}/attachments/{sha256}",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file"},
        **errors("not_found"),
    },
)
async def download_attachment(
    dispute_id: str, sha256: str, ctx: ContextDep, session: SessionDep, user: CurrentUser
) -> Response:
    """An attachment of the case, as it was uploaded (its SHA-256 is in the ledger)."""
    d = _dispute_or_404(session, dispute_id, user.username, ctx)
    found = attachment_of(session, d.id, sha256)
    if found is None:
        raise NotFound(f"no attachment {sha256} on dispute {d.case_number}")
    note, blob = found
    safe = "".join(ch for ch in note.filename if ch.isalnum() or ch in "._- ") or "attachment"
    return Response(
        content=blob.content,
        media_type=note.content_type or "application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{safe}"', "X-Content-SHA256": blob.sha256},
    )


# -- commands ----------------------------------------------------------------------------------------------


async def _command(
    ctx: AppContext,
    username: str,
    dispute_id: str,
    name: str,
    update: Any,
    build: Any,
    idempotency_key: str | None,
) -> DisputePublic:
    with reading(ctx.store) as session:
        d = _dispute_or_404(session, dispute_id, username, ctx)
        permission = COMMANDS[name]
        grant = ctx.authorizer.check(username, d.legal_entity, permission)
        if grant is None:
            raise Forbidden(
                forbidden_reason(username, permission, d.legal_entity),
                code="forbidden",
                action=permission,
                legal_entity=d.legal_entity,
                who_can_instead=who_may(ctx, session, d.legal_entity, permission, but=username),
            )
        actor = Actor(username, ctx.authorizer.roles(username, d.legal_entity), grant.rule)
        arg = build(session, d, actor)
        update_id = f"{name}:{username}:{idempotency_key}" if idempotency_key else f"{name}:{uuid.uuid4()}"
        recorded = (
            bool(idempotency_key) and queries.ledger_entry_by_request(session, d.id, update_id) is not None
        )
    handle = ctx.temporal.get_workflow_handle(d.workflow_id)
    try:
        if recorded:
            await await_workflow(ctx, handle.get_update_handle(update_id).result())
        else:
            await await_workflow(ctx, handle.execute_update(update, arg, id=update_id))
    except WorkflowUpdateFailedError as exc:
        raise workflow_error(exc) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND or "already completed" in exc.message:
            with reading(ctx.store) as session:
                current = dispute_by_id(session, dispute_id)
                if current is not None and queries.ledger_entry_by_request(session, dispute_id, update_id):
                    return present(ctx, session, current, username)  # the closing command, sent again
            status = current.status if current else d.status
            raise _status(
                AppError(
                    f"cannot {name} a dispute in status {status}",
                    code="transition_refused",
                    status=status,
                    event=name,
                ),
                409,
            ) from None
        raise
    with reading(ctx.store) as session:
        fresh = dispute_by_id(session, dispute_id)
        assert fresh is not None
        return present(ctx, session, fresh, username)


def _status(err: AppError, status: int) -> AppError:
    err.status = status
    return err


@router.post("/disputes/{dispute_id}/notes", response_model=DisputePublic, responses=errors(*COMMAND_ERRORS))
async def add_note(
    dispute_id: str,
    body: DisputeNoteBody,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> DisputePublic:
    """Add a note to the case's thread."""
    return await _command(
        ctx,
        user.username,
        dispute_id,
        "note",
        DisputeWorkflow.note,
        lambda _s, _d, a: NoteCommand(a, body.text),
        idempotency_key,
    )


@router.post(
    "/disputes/{dispute_id}/attachments",
    response_model=DisputePublic,
    responses=errors(*COMMAND_ERRORS, "attachment_too_large"),
)
async def add_attachment(
    dispute_id: str,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
    file: Annotated[UploadFile, File(description=f"the file, at most {MAX_ATTACHMENT_BYTES} bytes")],
    text: Annotated[str, Form(max_length=4000, pattern=TEXT)] = "",
) -> DisputePublic:
    """Attach a file to the case (multipart upload). The store keeps it under its SHA-256, which the
    ledger records with the file name and size; download it from the thread's link."""
    with reading(ctx.store) as session:
        d = _dispute_or_404(session, dispute_id, user.username, ctx)
        if ctx.authorizer.check(user.username, d.legal_entity, "dispute:note") is None:
            raise Forbidden(
                forbidden_reason(user.username, "dispute:note", d.legal_entity), action="dispute:note"
            )
    content = await file.read(MAX_ATTACHMENT_BYTES + 1)
    if len(content) > MAX_ATTACHMENT_BYTES:
        raise _status(
            AppError(
                f"the attachment is over {MAX_ATTACHMENT_BYTES} bytes",
                code="attachment_too_large",
                limit=MAX_ATTACHMENT_BYTES,
            ),
            413,
        )
    if not content:
        # As the case's own validator would answer it (an attachment needs content).
        raise Invalid("file: the attachment is empty", code="invalid_command", field="file")
    # The bytes first, under their hash (idempotent, harmless if the command is then refused): the case's
    # `attach` records only their hash and metadata.
    with writing(ctx.store) as session:
        digest = store_attachment(session, content, user.username)
    # PostgreSQL cannot store a NUL, and a name is shown on pages: only printable characters are kept.
    filename = "".join(ch for ch in (file.filename or "") if ch.isprintable())[:255] or "attachment"
    content_type = "".join(ch for ch in (file.content_type or "") if ch.isprintable())[:100]
    content_type = content_type or "application/octet-stream"
    return await _command(
        ctx,
        user.username,
        dispute_id,
        "attach",
        DisputeWorkflow.attach,
        lambda _s, _d, a: AttachCommand(a, filename, content_type, len(content), digest, text),
        idempotency_key,
    )


@router.post(
    "/disputes/{dispute_id}/assign",
    response_model=DisputePublic,
    responses=errors(*COMMAND_ERRORS, "no_authority", "unknown_reference"),
)
async def assign_case(
    dispute_id: str,
    body: DisputeAssignBody,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> DisputePublic:
    """Name the case's owner (and coordinator). Changing an owner is a supervisor's, with a reason."""

    def build(session: Session, d: Dispute, actor: Actor) -> AssignCommand:
        for field, who in (("owner", body.owner), ("coordinator", body.coordinator)):
            if who and not ctx.authorizer.check(who, d.legal_entity, "dispute:read"):
                raise Invalid(
                    f"{field}: {who} cannot work cases in {d.legal_entity}",
                    code="unknown_reference",
                    field=field,
                )
        return AssignCommand(actor, body.owner, body.reason, body.coordinator)

    name = "reassign"
    with reading(ctx.store) as session:
        d = _dispute_or_404(session, dispute_id, user.username, ctx)
        if not d.owner:
            name = "assign"
    return await _command(
        ctx, user.username, dispute_id, name, DisputeWorkflow.assign, build, idempotency_key
    )


@router.post("/disputes/{dispute_id}/wait", response_model=DisputePublic, responses=errors(*COMMAND_ERRORS))
async def wait_on_customer(
    dispute_id: str,
    body: DisputeWaitBody,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> DisputePublic:
    """The case waits on the customer (what was asked of them is the reason): its SLA clock pauses."""
    return await _command(
        ctx,
        user.username,
        dispute_id,
        "wait_on_customer",
        DisputeWorkflow.wait_on_customer,
        lambda _s, _d, a: WaitCommand(a, body.reason),
        idempotency_key,
    )


@router.post("/disputes/{dispute_id}/resume", response_model=DisputePublic, responses=errors(*COMMAND_ERRORS))
async def resume_case(
    dispute_id: str,
    body: DisputeWaitBody,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> DisputePublic:
    """The customer answered: the SLA clock runs again (the pause is recorded with its length)."""
    return await _command(
        ctx,
        user.username,
        dispute_id,
        "resume",
        DisputeWorkflow.resume,
        lambda _s, _d, a: WaitCommand(a, body.reason),
        idempotency_key,
    )


def _credit_lines(session: Session, inv: Invoice, amount: int, reason: str) -> tuple[list[Line], str]:
    """The credit note's lines for `amount` as a credit memo proposed alone gets them (api/credit_memos.py:
    the invoice's own lines for a full credit, else one line at its tax rate whose net and tax make the
    amount exactly, a 422 naming the nearest amounts when none can); and the invoice's exchange rate."""
    return credit_lines(session, inv, amount, reason), inv.exchange_rate


@router.post(
    "/disputes/{dispute_id}/resolve",
    response_model=DisputePublic,
    responses=errors(*COMMAND_ERRORS, "amount_exceeds_open", "invalid_amount", "unknown_reference"),
)
async def resolve_case(
    dispute_id: str,
    body: DisputeResolveBody,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> DisputePublic:
    """Resolve the case, with a reason: `credit_memo` or `rebill` (a credit memo through its approval; a
    rebill credits the whole invoice and issues a corrected one), `write_off` (through its approval,
    automatic below the entity's tolerance), `invalid` (the customer owes it: collections resume, later
    payments count as recovered), `withdrawn`. A resolution sent twice takes effect once: the same
    Idempotency-Key answers with the first outcome; another is refused (409, naming the status)."""

    def build(session: Session, d: Dispute, actor: Actor) -> ResolveCommand:
        held = dispute_invoices(session, d.id)
        links = {inv.id: inv for _, inv in held}
        amounts: list[InvoiceAmount] = []
        items = [(a.invoice_id, a.amount) for a in body.amounts]
        if not items and body.kind in ("credit_memo", "rebill", "write_off"):
            # By default each invoice's document takes what the case still disputes on it.
            items = [
                (inv.id, str(Decimal(link.open_minor).scaleb(-exponent(inv.currency))))
                for link, inv in held
                if link.open_minor > 0
            ]
        for i, (invoice_id, text) in enumerate(items):
            inv = links.get(invoice_id)
            if inv is None:
                raise Invalid(
                    f"amounts.{i}.invoice_id: invoice {invoice_id} is not in this case",
                    code="unknown_reference",
                    field=f"amounts.{i}.invoice_id",
                )
            # A rebill credits the whole invoice (what is due on it).
            amount = (
                inv.amount_due_minor
                if body.kind == "rebill"
                else _minor(text, inv.currency, f"amounts.{i}.amount")
            )
            if body.kind == "write_off":  # no document lines: a write-off is an amount
                amounts.append(InvoiceAmount(inv.id, amount, [], inv.exchange_rate))
            else:
                lines, rate = _credit_lines(session, inv, amount, body.reason)
                amounts.append(InvoiceAmount(inv.id, amount, lines, rate))
        rebill = [
            RebillLine(ln.description, ln.quantity, ln.unit_price, ln.tax_rate) for ln in body.rebill_lines
        ]
        return ResolveCommand(actor, body.kind, body.reason, amounts, rebill)

    return await _command(
        ctx, user.username, dispute_id, "resolve", DisputeWorkflow.resolve, build, idempotency_key
    )


@router.post(
    "/disputes/{dispute_id}/close",
    response_model=DisputePublic,
    responses=errors(*COMMAND_ERRORS, "root_cause_required", "capa_required"),
)
async def close_case(
    dispute_id: str,
    body: DisputeCloseBody,
    ctx: ContextDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey,
) -> DisputePublic:
    """Close a resolved case with the validated root cause (the taxonomy) and the validity, separate
    fields. An internal root cause (all but CUS) needs the corrective and preventive actions (owner, due
    date, description): closing starts their CAPA."""

    def plan(p: Any) -> ActionPlan | None:
        return ActionPlan(p.owner, p.due.isoformat(), p.description) if p is not None else None

    return await _command(
        ctx,
        user.username,
        dispute_id,
        "close",
        DisputeWorkflow.close,
        lambda _s, _d, a: CloseCommand(
            a, body.root_cause, body.validity, body.comment, plan(body.corrective), plan(body.preventive)
        ),
        idempotency_key,
    )

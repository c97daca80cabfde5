"""CAPA: the corrective and preventive actions of disputes closed with an internal root cause.

Reading is `capa:read` in the CAPA's legal entity. Commands go to CapaWorkflow as updates (the workflow's
validators apply the rules of workflows/capa_states.py: only the owner completes or asks for more time; an
extension is decided by someone who is not the owner and holds an approving role, re-checked against the
store when it is recorded). Casbin first: `capa:complete`, `capa:extend`, `capa:approve_extension`.
An `Idempotency-Key` header becomes the Temporal update id: a retried command is applied once.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlmodel import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from activities.capa import Capa, CapaAction, CapaFilters, actions_of, capa_by_id, list_capas
from activities.db import reading
from api.deps import AppContext, ContextDep, CurrentUser, IdempotencyKey, SessionDep, entities_for
from api.errors import Conflict, NotFound, errors, from_workflow
from api.invoices import await_workflow
from workflows.capa import CapaWorkflow
from workflows.capa_types import CompleteCommand, ExtensionDecision, ExtensionRequest
from workflows.types import Actor

router = APIRouter(prefix="/api/v1/capa", tags=["capa"])

CapaId = Annotated[str, Path(min_length=36, max_length=36, pattern=r"^[0-9a-f-]{36}$")]
ActionKind = Literal["corrective", "preventive"]


class ExtensionOut(BaseModel):
    new_due: str
    reason: str
    requested_by: str


class ActionOut(BaseModel):
    kind: str
    owner: str
    description: str
    due: str = Field(description="as given: an ISO date (due at the end of that day, UTC) or an instant")
    due_at: datetime
    status: str = Field(description="open | done")
    overdue: bool
    completed_at: datetime | None
    completed_by: str
    note: str
    extension: ExtensionOut | None = Field(description="an extension waiting for a decision")
    extensions_approved: int
    reminders_sent: int


class CheckOut(BaseModel):
    number: int
    outcome: str = Field(description="effective | ineffective | inconclusive")
    scope: str = Field(description="customer | function")
    before_from: str
    split: str = Field(description="when the preventive action was done")
    after_to: str
    cases_before: int
    invoices_before: int
    cases_after: int
    invoices_after: int
    rate_before: str = Field(description='cases per 100 invoices issued; "" when none was issued')
    rate_after: str
    why: str


class CapaOut(BaseModel):
    id: str
    legal_entity: str
    reference: str = Field(
        description="the CAPA's reference: the case number it follows (`id` names it in paths)"
    )
    dispute_id: str
    case_number: str
    root_cause: str
    customer_id: str
    function: str
    status: str = Field(description="open | checking | checked | closed (workflows/capa_states.py)")
    opened_by: str
    opened_at: datetime
    check_due_at: datetime | None
    last_outcome: str
    reopened: int
    closed_at: datetime | None
    corrective: ActionOut | None
    preventive: ActionOut | None
    checks: list[CheckOut]


class CapaPage(BaseModel):
    items: list[CapaOut]
    total: int
    limit: int
    offset: int


class CompleteIn(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="what was done")


class ExtensionIn(BaseModel):
    new_due: str = Field(
        min_length=10,
        max_length=40,
        description="ISO date, or an instant with its UTC offset; later than now's",
    )
    reason: str = Field(min_length=1, max_length=2000)


class DecisionIn(BaseModel):
    reason: str = Field(default="", max_length=2000, description="required to refuse")


def _action_out(a: CapaAction | None, now: datetime) -> ActionOut | None:
    if a is None:
        return None
    due_at = a.due_at if a.due_at.tzinfo else a.due_at.replace(tzinfo=UTC)
    return ActionOut(
        kind=a.kind,
        owner=a.owner,
        description=a.description,
        due=a.due,
        due_at=due_at,
        status=a.status,
        overdue=a.status == "open" and due_at < now,
        completed_at=a.completed_at,
        completed_by=a.completed_by,
        note=a.note,
        extension=ExtensionOut(
            new_due=a.extension_new_due, reason=a.extension_reason, requested_by=a.extension_requested_by
        )
        if a.extension_new_due
        else None,
        extensions_approved=a.extensions_approved,
        reminders_sent=a.reminders_sent,
    )


def present(c: Capa, actions: dict[str, CapaAction]) -> CapaOut:
    now = datetime.now(UTC)
    return CapaOut(
        id=c.id,
        legal_entity=c.legal_entity,
        reference=c.capa_id,
        dispute_id=c.dispute_id,
        case_number=c.case_number,
        root_cause=c.root_cause,
        customer_id=c.customer_id,
        function=c.function,
        status=c.status,
        opened_by=c.opened_by,
        opened_at=c.opened_at,
        check_due_at=c.check_due_at,
        last_outcome=c.last_outcome,
        reopened=c.reopened,
        closed_at=c.closed_at,
        corrective=_action_out(actions.get("corrective"), now),
        preventive=_action_out(actions.get("preventive"), now),
        checks=[CheckOut(**x) for x in json.loads(c.checks_json or "[]")],
    )


def capa_or_404(ctx: AppContext, session: Session, capa_id: str, username: str) -> Capa:
    """The CAPA, if it exists and the caller may read it (404 otherwise: its existence is not told)."""
    c = capa_by_id(session, capa_id)
    if c is None or ctx.authorizer.check(username, c.legal_entity, "capa:read") is None:
        raise NotFound(f"no CAPA {capa_id}", code="not_found")
    return c


@router.get("", response_model=CapaPage, responses=errors("forbidden"))
async def list_capa(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    legal_entity: Annotated[str | None, Query(max_length=32)] = None,
    status: Annotated[Literal["open", "checking", "checked", "closed"] | None, Query()] = None,
    owner: Annotated[str | None, Query(max_length=64, description="owner of either action")] = None,
    root_cause: Annotated[str | None, Query(max_length=8)] = None,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
    outcome: Annotated[Literal["effective", "ineffective", "inconclusive"] | None, Query()] = None,
    overdue: Annotated[bool, Query(description="only CAPAs with an open action past its due date")] = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CapaPage:
    """CAPAs the caller may read, the soonest open due date first: filter by status, owner, root cause,
    customer, the latest check's outcome, or overdue."""
    entities = entities_for(ctx, session, user.username, "capa:read", legal_entity)
    filters = CapaFilters(
        legal_entities=entities,
        status=status or "",
        owner=owner or "",
        root_cause=root_cause or "",
        customer_id=customer_id or "",
        outcome=outcome or "",
        overdue_at=datetime.now(UTC) if overdue else None,
    )
    rows, total = list_capas(session, filters, limit, offset)
    acts = actions_of(session, [r.id for r in rows])
    return CapaPage(items=[present(r, acts[r.id]) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{capa_id}", response_model=CapaOut, responses=errors("not_found"))
async def get_capa(ctx: ContextDep, session: SessionDep, user: CurrentUser, capa_id: CapaId) -> CapaOut:
    """One CAPA: both actions (owner, due date, completion, a pending extension) and every effectiveness
    check with the figures that decided it."""
    c = capa_or_404(ctx, session, capa_id, user.username)
    return present(c, actions_of(session, [c.id])[c.id])


COMMAND_ERRORS = errors(
    "not_found", "forbidden", "segregation_of_duties", "no_authority", "transition_refused", "invalid_command"
)


async def command(
    ctx: AppContext, username: str, capa_id: str, action: str, update: Any, build: Any, key: str | None
) -> CapaOut:
    """Casbin in the CAPA's entity, then the workflow's update (its validator is the last word)."""
    with reading(ctx.store) as session:
        c = capa_or_404(ctx, session, capa_id, username)
        grant = ctx.authorizer.require(username, c.legal_entity, action)
        arg = build(Actor(username, grant.roles, grant.rule))
    update_id = f"{action}:{username}:{key}" if key else f"{action}:{uuid.uuid4()}"
    handle = ctx.temporal.get_workflow_handle(c.workflow_id)
    try:
        await await_workflow(ctx, handle.execute_update(update, arg, id=update_id))
    except WorkflowUpdateFailedError as exc:
        raise from_workflow(exc) from None
    except RPCError as exc:
        raise Conflict(
            f"the CAPA's workflow is not running ({exc.message}); status {c.status}",
            code="transition_refused",
            status=c.status,
        ) from None
    with reading(ctx.store) as session:
        fresh = capa_by_id(session, capa_id)
        assert fresh is not None
        return present(fresh, actions_of(session, [capa_id])[capa_id])


@router.post("/{capa_id}/actions/{kind}/complete", response_model=CapaOut, responses=COMMAND_ERRORS)
async def complete_action(
    ctx: ContextDep,
    user: CurrentUser,
    capa_id: CapaId,
    kind: ActionKind,
    body: CompleteIn,
    key: IdempotencyKey,
) -> CapaOut:
    """The owner says the action is done, and what was done. Completing the preventive action schedules the
    effectiveness check after the window."""
    update = CapaWorkflow.complete_corrective if kind == "corrective" else CapaWorkflow.complete_preventive
    return await command(
        ctx, user.username, capa_id, "capa:complete", update, lambda a: CompleteCommand(a, body.note), key
    )


@router.post("/{capa_id}/actions/{kind}/request-extension", response_model=CapaOut, responses=COMMAND_ERRORS)
async def request_extension(
    ctx: ContextDep,
    user: CurrentUser,
    capa_id: CapaId,
    kind: ActionKind,
    body: ExtensionIn,
    key: IdempotencyKey,
) -> CapaOut:
    """The owner asks to move the due date later, with a reason; it moves only once approved."""
    return await command(
        ctx,
        user.username,
        capa_id,
        "capa:extend",
        CapaWorkflow.request_extension,
        lambda a: ExtensionRequest(a, kind, body.new_due, body.reason),
        key,
    )


@router.post("/{capa_id}/actions/{kind}/approve-extension", response_model=CapaOut, responses=COMMAND_ERRORS)
async def approve_extension(
    ctx: ContextDep,
    user: CurrentUser,
    capa_id: CapaId,
    kind: ActionKind,
    body: DecisionIn,
    key: IdempotencyKey,
) -> CapaOut:
    """Someone who is not the action's owner, holding an approving role, moves the due date as asked."""
    return await command(
        ctx,
        user.username,
        capa_id,
        "capa:approve_extension",
        CapaWorkflow.approve_extension,
        lambda a: ExtensionDecision(a, kind, body.reason),
        key,
    )


@router.post("/{capa_id}/actions/{kind}/refuse-extension", response_model=CapaOut, responses=COMMAND_ERRORS)
async def refuse_extension(
    ctx: ContextDep,
    user: CurrentUser,
    capa_id: CapaId,
    kind: ActionKind,
    body: DecisionIn,
    key: IdempotencyKey,
) -> CapaOut:
    """The same people refuse it, with a reason: the due date stands."""
    return await command(
        ctx,
        user.username,
        capa_id,
        "capa:approve_extension",
        CapaWorkflow.refuse_extension,
        lambda a: ExtensionDecision(a, kind, body.reason),
        key,
    )

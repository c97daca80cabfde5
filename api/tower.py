"""The supervisor's control tower: the pipeline, the stuck workflows, and actions on several at once.

Stuck = past its SLA (policies/sla.toml, in the legal entity's business days where it says so) or flagged
by the engine (an activity retrying, a workflow task failing, no worker polling): one row per invoice with
one ranked cause, its owner, age and amount at stake, sorted by amount at stake x age. The detection lives
in activities/stuck.py; the pages (api/pages/tower.py) call the same functions as these routes.

Actions (each needs a reason, is ledgered and idempotent under an Idempotency-Key): reassign the waiting
tier (the invoice command of POST /invoices/{id}/reassign), remind and escalate (the invoice workflow's
`remind` / `escalate` updates), and retry now an activity stuck in retries (Temporal's ResetActivity, where
the server allows it). `dry_run` previews what would be touched and what skipped, and why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from time import monotonic
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlmodel import Session

from activities.db import reading
from activities.money import exponent, format_minor
from activities.stuck import (
    Candidate,
    EngineProbe,
    EngineState,
    Entity,
    PipelineCell,
    SlaFile,
    StuckRow,
    WorkerState,
    age_text,
    assemble,
    candidates_by_workflow,
    customer_names,
    entities,
    find_breaches,
    load_sla,
    pipeline,
    role_holders,
    store_version,
    stuck_disputes,
)
from api.approvals import forbidden_reason, who_may
from api.deps import AppContext, ContextDep, CurrentUser, SessionDep, entities_for
from api.errors import errors
from api.schemas import AMOUNT
from workflows import states
from workflows.states import Event

router = APIRouter(prefix="/api/v1", tags=["control tower"])

ACTIONS = ("reassign", "remind", "escalate", "retry")
# The permission each action needs (policies/policy.csv); reading the tower needs tower:read.
TOWER_COMMANDS = {
    "reassign": "approval:reassign",
    "remind": "workflow:remind",
    "escalate": "workflow:escalate",
    "retry": "workflow:retry",
}
EVENT = {"reassign": Event.REASSIGN_APPROVAL, "remind": Event.REMIND, "escalate": Event.ESCALATE}
CAUSES = ("no_worker", "workflow_task_failing", "activity_retrying")
MAX_PAGE = 200
MAX_OFFSET = 100_000
MAX_BULK = 100


# -- the engine, once per API process ---------------------------------------------------------------------

_PROBES: dict[tuple[int, str], EngineProbe] = {}


def probe_for(ctx: AppContext) -> EngineProbe:
    key = (id(ctx.temporal), ctx.settings.task_queue)
    if key not in _PROBES:
        _PROBES[key] = EngineProbe(ctx.temporal, ctx.settings.task_queue)
    return _PROBES[key]


def sla_of(ctx: AppContext) -> SlaFile:
    return load_sla(ctx.settings.sla_file)


def temporal_url(ctx: AppContext, workflow_id: str, run_id: str = "") -> str | None:
    """The workflow in the Temporal Web UI (CASHCYCLE_TEMPORAL_UI_URL; `cashcycle up` sets it)."""
    base = ctx.settings.temporal_ui_url.rstrip("/")
    if not base:
        return None
    ns = quote(ctx.temporal.namespace, safe="")
    if run_id:
        return f"{base}/namespaces/{ns}/workflows/{quote(workflow_id, safe='')}/{run_id}/history"
    query = quote(f'WorkflowId="{workflow_id}"', safe="")
    return f"{base}/namespaces/{ns}/workflows?query={query}"


# -- what the routes answer -------------------------------------------------------------------------------


class CauseOut(BaseModel):
    code: str = Field(description="no_worker | workflow_task_failing | activity_retrying | the SLA rule's id")
    kind: str = Field(description="engine (Temporal's signal) or sla (policies/sla.toml)")
    label: str
    detail: str


class OwnerOut(BaseModel):
    kind: str = Field(description="preparer | approvers | assignee | portal | supervisor | operations")
    name: str = Field(description="a username, a role, a portal: what the tower groups by")
    people: list[str]


class SlaOut(BaseModel):
    rule: str
    label: str
    after: str
    clock_started: datetime
    due_at: datetime
    overdue: str = Field(description="how far past the rule, in its unit")


class ActivityOut(BaseModel):
    activity_id: str
    activity_type: str
    attempt: int
    state: str
    last_failure: str
    next_attempt_at: datetime | None


class EngineOut(BaseModel):
    checked: bool = Field(description="false: not described in Temporal this time (beyond describe_limit)")
    run_id: str = ""
    status: str = ""
    workflow_task_attempt: int = 0
    activity: ActivityOut | None = None
    problems: list[str] = Field(default_factory=list)
    error: str = ""


class Unavailable(BaseModel):
    action: str
    reason: str
    who_can_instead: list[str] = Field(default_factory=list)


class StuckItem(BaseModel):
    invoice_id: str
    external_id: str
    number: str | None
    legal_entity: str
    customer_id: str
    customer_name: str
    status: str
    tier: int | None
    tier_role: str
    currency: str
    amount_due: str
    entity_currency: str
    amount_due_in_entity_currency: str
    cause: CauseOut
    owner: OwnerOut
    since: datetime = Field(description="when the clock the age counts started")
    age_seconds: int
    age: str
    score: int = Field(description="amount due in the entity's currency (major units) x age in days")
    sla: SlaOut | None
    engine: EngineOut
    escalated: bool
    workflow_id: str
    temporal_url: str | None
    actions: list[str]
    unavailable_actions: list[Unavailable]


class Group(BaseModel):
    key: str
    label: str
    count: int
    amounts: dict[str, str] = Field(description="amount due by currency")


class WorkerOut(BaseModel):
    task_queue: str
    polling: bool
    last_poll: datetime | None
    error: str = ""


class EngineSummary(BaseModel):
    worker: WorkerOut
    retry_supported: bool
    retry_note: str = ""
    described: int = Field(description="workflows described in Temporal for this answer")
    describe_limit: int


class SlaFileOut(BaseModel):
    version: str
    sha256: str
    rules: int


class StuckDisputeItem(BaseModel):
    """A dispute case past its SLA or past the customer's own dispute window (issue 11)."""

    dispute_id: str
    case_number: str
    legal_entity: str
    customer_id: str
    customer_name: str
    status: str
    cause: CauseOut = Field(description="dispute_past_sla | dispute_window_passed: the first of `why`")
    why: list[str] = Field(description="every way the case is late, most pressing first")
    owner: str = Field(description="the case's owner (a username); empty when unassigned")
    coordinator: str
    escalation_level: int
    since: datetime = Field(description="when the case opened (what the age counts)")
    age_seconds: int
    age: str
    currency: str
    amount_at_stake: str = Field(description="what the case still disputes (its open amount)")
    sla_due_at: datetime | None
    window_deadline: datetime | None
    url: str = Field(description="the case page")
    workflow_id: str


class StuckPage(BaseModel):
    items: list[StuckItem]
    total: int
    offset: int
    limit: int
    next_offset: int | None
    by_cause: list[Group]
    by_owner: list[Group]
    engine: EngineSummary
    sla: SlaFileOut
    as_of: datetime
    disputes: list[StuckDisputeItem] = Field(
        default_factory=list,
        description="dispute cases past their SLA or the customer's window (the same filters, no paging: "
        "the status filter, an invoice status, leaves them out)",
    )


class PipelineCellOut(BaseModel):
    legal_entity: str
    currency: str
    status: str
    count: int
    total: str
    amount_due: str
    stuck: int = Field(description="of them, past their SLA now")


class Pipeline(BaseModel):
    cells: list[PipelineCellOut]
    as_of: datetime


class SlaRuleOut(BaseModel):
    id: str
    label: str
    status: str
    tier: int | None
    portal_status: list[str] | None
    clock: str
    after: str
    owner: str
    escalate_to: str


class SlaRules(BaseModel):
    version: str
    sha256: str
    retrying_from_attempt: int
    describe_limit: int
    rules: list[SlaRuleOut]


# -- filters and the one evaluation behind the routes and the pages ----------------------------------------


@dataclass(frozen=True)
class Filters:
    legal_entity: str | None = None
    cause: str | None = None
    owner: str | None = None
    status: str | None = None
    min_amount: str | None = None
    offset: int = 0
    limit: int = 50


def _amount_minor(text: str, currency: str) -> int:
    return int(Decimal(text).scaleb(exponent(currency)).to_integral_value())


@dataclass
class Base:
    """The store's side of the tower for some legal entities: the breaches ranked without the engine, the
    pipeline and the groups. Rebuilt at once when anything was recorded in those entities since
    (store_version: an action's effect shows at the next read); when only time has passed, served as it is
    while a rebuild runs in the background (new breaches appear within BASE_SECONDS). The engine's signals
    are joined on top at every request."""

    version: tuple[int, int]
    built: float
    now: datetime
    cands: list[Candidate]
    ents: dict[str, Entity]
    holders: dict[tuple[str, str], list[str]]
    rows: list[StuckRow]
    cells: list[PipelineCell]
    by_cause: list[Group]
    by_owner: list[Group]
    refreshing: bool = False


BASE_SECONDS = 10.0
_BASES: dict[tuple[int, str, tuple[str, ...]], Base] = {}


def _build_base(
    session: Session, sla: SlaFile, codes: list[str], version: tuple[int, int], now: datetime
) -> Base:
    cands, ents = find_breaches(session, sla, codes, now)
    holders = role_holders(session, codes)
    rows = assemble(cands, sla, {}, None, holders, now)
    return Base(
        version,
        monotonic(),
        now,
        cands,
        ents,
        holders,
        rows,
        pipeline(session, codes),
        _groups(rows, "cause"),
        _groups(rows, "owner"),
    )


async def base_of(ctx: AppContext, session: Session, sla: SlaFile, codes: list[str], now: datetime) -> Base:
    key = (id(ctx), sla.sha256, tuple(codes))
    version = store_version(session, codes)
    found = _BASES.get(key)
    if found is not None and found.version == version:
        if monotonic() - found.built >= BASE_SECONDS and not found.refreshing:
            found.refreshing = True

            def rebuild() -> None:
                try:
                    with reading(ctx.store) as own:
                        _BASES[key] = _build_base(own, sla, codes, version, datetime.now(UTC))
                finally:
                    found.refreshing = False

            asyncio.get_running_loop().run_in_executor(None, rebuild)
        return found
    base = _build_base(session, sla, codes, version, now)
    if len(_BASES) > 64:
        _BASES.clear()
    _BASES[key] = base
    return base


@dataclass
class Evaluation:
    rows: list[StuckRow]  # all, filtered, ranked
    worker: WorkerState
    retry: tuple[bool, str]
    described: int
    sla: SlaFile
    now: datetime
    groups: tuple[list[Group], list[Group]]  # by cause, by owner, over every row


async def evaluate_tower(
    ctx: AppContext, session: Session, username: str, filters: Filters, now: datetime | None = None
) -> Evaluation:
    """Breaches from the store (base_of), joined with the engine, filtered, ranked."""
    now = now or datetime.now(UTC)
    sla = sla_of(ctx)
    codes = entities_for(ctx, session, username, "tower:read", filters.legal_entity)
    base = await base_of(ctx, session, sla, codes, now)
    probe = probe_for(ctx)
    worker, problems, retry = await asyncio.gather(
        probe.worker(), probe.reported_problems(codes), probe.retry_supported()
    )
    known = {c.workflow_id for c in base.cands}
    flagged = [w for w in problems if w not in known]
    extra = candidates_by_workflow(session, flagged, codes, base.ents, sla, base.now) if flagged else []

    def kept(c: Candidate) -> bool:
        if filters.status and c.facts.status != filters.status:
            return False
        return not filters.min_amount or c.amount_due_entity_minor >= _amount_minor(
            filters.min_amount, c.entity_currency
        )

    groups: tuple[list[Group], list[Group]] | None = None
    engine: dict[str, EngineState] = {}
    for wid, found in problems.items():
        engine[wid] = EngineState(wid, "", "running", problems=found)
    if not worker.polling:
        # Nothing moves: every row's cause is the missing worker (no describe: it would tell nothing new).
        cands = [c for c in [*base.cands, *extra] if kept(c)]
        rows = assemble(cands, sla, engine, worker, base.holders, base.now)
    else:
        filtered = bool(filters.status or filters.min_amount)
        rows = [r for r in base.rows if kept(r.candidate)] if filtered else list(base.rows)
        wanted = [r.candidate.workflow_id for r in rows[: sla.describe_limit]]
        described = await probe.describe(wanted) if wanted else {}
        for wid, state in described.items():
            if wid in engine:
                state = EngineState(**{**state.__dict__, "problems": engine[wid].problems})
            engine[wid] = state
        touched = [r.candidate for r in rows if r.candidate.workflow_id in engine]
        touched += [c for c in extra if kept(c)]
        again = {
            r.candidate.facts.invoice_id: r
            for r in assemble(touched, sla, engine, worker, base.holders, base.now)
        }
        same = all(
            (again[r.candidate.facts.invoice_id].cause.code, again[r.candidate.facts.invoice_id].owner.key)
            == (r.cause.code, r.owner.key)
            for r in rows[: len(wanted)]
            if r.candidate.facts.invoice_id in again
        )
        if same and not filtered and not extra:
            groups = (base.by_cause, base.by_owner)
        rows = [again.pop(r.candidate.facts.invoice_id, r) if again else r for r in rows]
        if again:  # flagged by the engine alone: placed by their score (the engine changes no score)
            rows += list(again.values())
            rows.sort(key=lambda r: (-r.weight, r.cause.rank, r.candidate.facts.invoice_id))
    if filters.cause:
        rows = [r for r in rows if r.cause.code == filters.cause]
        groups = None
    if filters.owner:
        rows = [r for r in rows if filters.owner in (r.owner.name, r.owner.key)]
        groups = None
    if groups is None:
        groups = (_groups(rows, "cause"), _groups(rows, "owner"))
    return Evaluation(rows, worker, retry, len(engine), sla, base.now, groups)


def row_actions(
    ctx: AppContext, session: Session, username: str, row: StuckRow, retry: tuple[bool, str]
) -> tuple[list[str], list[Unavailable]]:
    """What the caller may do on the row now, and what not and why (the same words as a refusal)."""
    c = row.candidate
    status = states.Status(c.facts.status)
    possible: list[str] = []
    if status == states.Status.PENDING_APPROVAL and c.facts.tier is not None:
        possible.append("reassign")
    if states.can(status, Event.REMIND):
        possible.append("remind")
    if states.can(status, Event.ESCALATE):
        possible.append("escalate")
    if row.activity is not None:
        possible.append("retry")
    allowed: list[str] = []
    refused: list[Unavailable] = []
    for action in possible:
        permission = TOWER_COMMANDS[action]
        entity = c.facts.legal_entity
        if ctx.authorizer.check(username, entity, permission) is None:
            refused.append(
                Unavailable(
                    action=action,
                    reason=forbidden_reason(username, permission, entity),
                    who_can_instead=who_may(ctx, session, entity, permission, but=username),
                )
            )
        elif action == "retry" and not retry[0]:
            refused.append(Unavailable(action=action, reason=retry[1]))
        elif action in ("remind", "escalate") and delivering(row.engine):
            refused.append(
                Unavailable(
                    action=action,
                    reason="the invoice is being delivered (its activity is running or retrying): "
                    "retry the delivery now, or act once it has returned",
                )
            )
        else:
            allowed.append(action)
    return allowed, refused


def delivering(engine: EngineState | None) -> bool:
    return engine is not None and any(
        a.activity_type in ("deliver_invoice", "submit_to_portal", "plan_delivery") for a in engine.activities
    )


def item_of(
    ctx: AppContext,
    session: Session,
    username: str,
    row: StuckRow,
    names: dict[str, str],
    retry: tuple[bool, str],
) -> StuckItem:
    c, f, b = row.candidate, row.candidate.facts, row.candidate.breach
    actions, unavailable = row_actions(ctx, session, username, row, retry)
    e = row.engine
    activity = row.activity
    return StuckItem(
        invoice_id=f.invoice_id,
        external_id=c.external_id,
        number=c.number,
        legal_entity=f.legal_entity,
        customer_id=c.customer_id,
        customer_name=names.get(c.customer_id, ""),
        status=f.status,
        tier=f.tier,
        tier_role=f.tier_role,
        currency=c.currency,
        amount_due=format_minor(c.amount_due_minor, c.currency),
        entity_currency=c.entity_currency,
        amount_due_in_entity_currency=format_minor(c.amount_due_entity_minor, c.entity_currency),
        cause=CauseOut(
            code=row.cause.code, kind=row.cause.kind, label=row.cause.label, detail=row.cause.detail
        ),
        owner=OwnerOut(kind=row.owner.kind, name=row.owner.name, people=list(row.owner.people)),
        since=row.since,
        age_seconds=int(row.age_seconds),
        age=age_text(row.age_seconds),
        score=row.score,
        sla=SlaOut(
            rule=b.rule.id,
            label=b.rule.label,
            after=b.rule.after,
            clock_started=b.since,
            due_at=b.due,
            overdue=f"{b.overdue:.1f} {b.rule.unit}",
        )
        if b
        else None,
        engine=EngineOut(
            checked=row.engine_checked,
            run_id=e.run_id if e else "",
            status=e.status if e else "",
            workflow_task_attempt=e.workflow_task_attempt if e else 0,
            activity=ActivityOut(
                activity_id=activity.activity_id,
                activity_type=activity.activity_type,
                attempt=activity.attempt,
                state=activity.state,
                last_failure=activity.last_failure,
                next_attempt_at=activity.next_attempt_at,
            )
            if activity
            else None,
            problems=list(e.problems) if e else [],
            error=e.error if e else "",
        ),
        escalated=c.escalated,
        workflow_id=c.workflow_id,
        temporal_url=temporal_url(ctx, c.workflow_id, e.run_id if e else ""),
        actions=actions,
        unavailable_actions=unavailable,
    )


ENGINE_GROUP_LABELS = {
    "no_worker": "no worker polling",
    "workflow_task_failing": "workflow task failing",
    "activity_retrying": "activity retrying",
}


def _groups(rows: list[StuckRow], key: str) -> list[Group]:
    counts: dict[str, int] = {}
    labels: dict[str, str] = {}
    amounts: dict[str, dict[str, int]] = {}
    by_cause = key == "cause"
    for r in rows:
        if by_cause:
            k = r.cause.code
            if k not in labels:
                labels[k] = ENGINE_GROUP_LABELS.get(k, r.cause.label)
        else:
            k = r.owner.key
            if k not in labels:
                labels[k] = r.owner.name
        counts[k] = counts.get(k, 0) + 1
        per = amounts.setdefault(k, {})
        c = r.candidate
        per[c.currency] = per.get(c.currency, 0) + c.amount_due_minor
    groups = [
        Group(
            key=k,
            label=labels[k],
            count=n,
            amounts={cur: format_minor(v, cur) for cur, v in sorted(amounts[k].items())},
        )
        for k, n in counts.items()
    ]
    return sorted(groups, key=lambda g: (-g.count, g.key))


DISPUTE_LIMIT = 200


def disputes_of(
    ctx: AppContext, session: Session, username: str, filters: Filters, now: datetime
) -> list[StuckDisputeItem]:
    """The tower's dispute rows: activities/stuck.py's stuck_disputes under the tower's filters (legal
    entity, cause, owner; an amount floor in the entity's currency leaves out cases in another)."""
    if filters.status:
        return []
    codes = entities_for(ctx, session, username, "tower:read", filters.legal_entity)
    rows = stuck_disputes(session, codes, now)
    if filters.cause:
        rows = [r for r in rows if r.cause.code == filters.cause]
    if filters.owner:
        rows = [r for r in rows if r.case.owner == filters.owner]
    if filters.min_amount:
        currencies = {e.code: e.currency for e in entities(session, codes).values()}
        rows = [
            r
            for r in rows
            if r.case.currency == currencies.get(r.case.legal_entity)
            and r.case.open_minor >= _amount_minor(filters.min_amount, r.case.currency)
        ]
    rows = rows[:DISPUTE_LIMIT]
    names = customer_names(session, sorted({r.case.customer_id for r in rows}))
    return [
        StuckDisputeItem(
            dispute_id=r.case.id,
            case_number=r.case.case_number,
            legal_entity=r.case.legal_entity,
            customer_id=r.case.customer_id,
            customer_name=names.get(r.case.customer_id, ""),
            status=r.case.status,
            cause=CauseOut(code=r.cause.code, kind=r.cause.kind, label=r.cause.label, detail=r.cause.detail),
            why=list(r.why),
            owner=r.case.owner,
            coordinator=r.case.coordinator,
            escalation_level=r.case.escalation_level,
            since=r.since,
            age_seconds=int(r.age_seconds),
            age=age_text(r.age_seconds),
            currency=r.case.currency,
            amount_at_stake=format_minor(r.case.open_minor, r.case.currency),
            sla_due_at=r.case.sla_due_at,
            window_deadline=r.case.window_deadline,
            url=f"/disputes/{r.case.id}",
            workflow_id=r.case.workflow_id,
        )
        for r in rows
    ]


async def stuck_page(ctx: AppContext, session: Session, username: str, filters: Filters) -> StuckPage:
    ev = await evaluate_tower(ctx, session, username, filters)
    window = ev.rows[filters.offset : filters.offset + filters.limit]
    names = customer_names(session, sorted({r.candidate.customer_id for r in window}))
    items = [item_of(ctx, session, username, r, names, ev.retry) for r in window]
    end = filters.offset + len(window)
    return StuckPage(
        items=items,
        total=len(ev.rows),
        offset=filters.offset,
        limit=filters.limit,
        next_offset=end if end < len(ev.rows) else None,
        by_cause=ev.groups[0],
        by_owner=ev.groups[1],
        engine=EngineSummary(
            worker=WorkerOut(
                task_queue=ev.worker.task_queue,
                polling=ev.worker.polling,
                last_poll=ev.worker.last_poll,
                error=ev.worker.error,
            ),
            retry_supported=ev.retry[0],
            retry_note=ev.retry[1],
            described=ev.described,
            describe_limit=ev.sla.describe_limit,
        ),
        sla=SlaFileOut(version=ev.sla.version, sha256=ev.sla.sha256, rules=len(ev.sla.rules)),
        as_of=ev.now,
        disputes=disputes_of(ctx, session, username, filters, ev.now),
    )


async def pipeline_of(ctx: AppContext, session: Session, username: str, legal_entity: str | None) -> Pipeline:
    now = datetime.now(UTC)
    codes = entities_for(ctx, session, username, "tower:read", legal_entity)
    base = await base_of(ctx, session, sla_of(ctx), codes, now)
    stuck: dict[tuple[str, str, str], int] = {}
    for c in base.cands:
        k = (c.facts.legal_entity, c.currency, c.facts.status)
        stuck[k] = stuck.get(k, 0) + 1
    return Pipeline(
        cells=[
            PipelineCellOut(
                legal_entity=cell.legal_entity,
                currency=cell.currency,
                status=cell.status,
                count=cell.count,
                total=format_minor(cell.total_minor, cell.currency),
                amount_due=format_minor(cell.amount_due_minor, cell.currency),
                stuck=stuck.get((cell.legal_entity, cell.currency, cell.status), 0),
            )
            for cell in base.cells
        ],
        as_of=now,
    )


# -- routes: reading ---------------------------------------------------------------------------------------

EntityParam = Annotated[
    str | None, Query(max_length=32, pattern=r"^[A-Za-z0-9_-]+$", description="one legal entity")
]
STATUSES = [s.value for s in states.Status]


@router.get("/workflows/stuck", response_model=StuckPage, responses=errors("forbidden"))
async def stuck_workflows(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    legal_entity: EntityParam = None,
    cause: Annotated[
        str | None,
        Query(
            max_length=48,
            pattern=r"^[a-z][a-z0-9_]*$",
            description="no_worker, workflow_task_failing, activity_retrying, an SLA rule's id, "
            "dispute_past_sla or dispute_window_passed",
        ),
    ] = None,
    owner: Annotated[
        str | None,
        Query(max_length=100, pattern=r"^[A-Za-z0-9._:@-]+$", description="a username, role or portal"),
    ] = None,
    status: Annotated[Literal[tuple(STATUSES)] | None, Query()] = None,  # type: ignore[valid-type]
    min_amount: Annotated[
        str | None,
        Query(pattern=AMOUNT, description="amount due at least this, in the legal entity's currency"),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> StuckPage:
    """Every open invoice past its SLA (policies/sla.toml) or flagged by Temporal, one row each with its
    one ranked cause (no worker polling, then a failing workflow task, then an activity retrying, then the
    SLA rule), owner, age and amount at stake; sorted by amount at stake x age, the most first. Groups by
    cause and by owner count the whole filtered set. Dispute cases past their SLA or past the customer's
    dispute window are in `disputes`, with why (causes dispute_past_sla, dispute_window_passed), owner,
    age, amount at stake and the case page. Needs `tower:read`."""
    return await stuck_page(
        ctx,
        session,
        user.username,
        Filters(legal_entity, cause, owner, status, min_amount, offset, limit),
    )


@router.get("/workflows/pipeline", response_model=Pipeline, responses=errors("forbidden"))
async def workflow_pipeline(
    ctx: ContextDep, session: SessionDep, user: CurrentUser, legal_entity: EntityParam = None
) -> Pipeline:
    """Invoices by legal entity, currency and status: how many, their total and what is still due, and
    how many are past their SLA now. Needs `tower:read`."""
    return await pipeline_of(ctx, session, user.username, legal_entity)


@router.get("/workflows/sla", response_model=SlaRules, responses=errors("forbidden"))
async def sla_rules(ctx: ContextDep, session: SessionDep, user: CurrentUser) -> SlaRules:
    """The service levels in force (the reviewed file's rules, its version and SHA-256)."""
    entities_for(ctx, session, user.username, "tower:read", None)
    sla = sla_of(ctx)
    return SlaRules(
        version=sla.version,
        sha256=sla.sha256,
        retrying_from_attempt=sla.retrying_from_attempt,
        describe_limit=sla.describe_limit,
        rules=[
            SlaRuleOut(
                id=r.id,
                label=r.label,
                status=r.status,
                tier=r.tier,
                portal_status=list(r.portal_status) if r.portal_status is not None else None,
                clock=r.clock,
                after=r.after,
                owner=r.owner,
                escalate_to=r.escalate_to,
            )
            for r in sla.rules
        ],
    )

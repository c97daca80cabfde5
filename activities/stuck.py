"""Stuck workflows: the control tower's business SLA joined with the engine's own signals.

Three parts, in the order a request uses them:

1. **The SLA file** (`policies/sla.toml`, reviewed text; `load_sla`): per status (and approval tier, or
   portal answer) how long an invoice may sit before it counts as stuck, in the legal entity's business
   days (activities/calendar.py), calendar days, hours or minutes.
2. **Breaches from the store** (`find_breaches`): one indexed query on (status, status_since) per status
   the file names, bounded below by the shortest rule of that status, then each candidate's own rule
   evaluated in Python (`evaluate`: pure, clock injected, tested without a server).
3. **The engine** (`EngineProbe`): what Temporal knows and the store cannot: whether a worker polls the task
   queue (one call), which workflows report failing workflow tasks (one visibility query on
   `TemporalReportedProblems`, populated when the server runs with
   `system.numConsecutiveWorkflowTaskProblemsToTriggerSearchAttribute`), and for the candidates most at
   stake, a bounded, concurrent DescribeWorkflowExecution: the pending activity, its attempt and last
   failure. Answers are cached a few seconds, so a tower reloaded by several supervisors asks once.

`assemble` joins them into one row per invoice with ONE ranked cause (engine problems first: nothing moves
until they are fixed), its owner, age, amount at stake and score (amount at stake x age), and the pipeline
query counts every invoice by entity, currency and status.
"""

from __future__ import annotations

import asyncio
import json
import re
import time as monotonic
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, func, select
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeTaskQueueRequest,
    DescribeWorkflowExecutionRequest,
    ResetActivityRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.calendar import calendar_for
from activities.models import Customer, Invoice, LegalEntity, PortalSubmission, RoleAssignment
from activities.money import exponent
from workflows.states import Status

DEFAULT_SLA_FILE = Path(__file__).resolve().parent.parent / "policies" / "sla.toml"

# -- the SLA file ---------------------------------------------------------------------------------------

UNITS = ("business days", "days", "hours", "minutes", "seconds")
OWNERS = ("preparer", "approvers", "portal", "supervisor")
CLOCKS = ("status", "tier", "release")
_AFTER = re.compile(r"^\s*(\d{1,4})\s+(business days?|days?|hours?|minutes?|seconds?)\s*$")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class SlaError(ValueError):
    """The SLA file is not valid; the message names the rule and the field."""


@dataclass(frozen=True)
class Rule:
    id: str
    label: str
    status: str
    after: str  # as written, e.g. "2 business days"
    amount: int
    unit: str  # one of UNITS
    tier: int | None = None
    portal_status: tuple[str, ...] | None = None
    clock: str = "status"
    owner: str = "preparer"
    escalate_to: str = ""

    def matches(self, status: str, tier: int | None, portal: tuple[str, str] | None) -> bool:
        """`portal`: (portal name, its last status) when the invoice went to a customer portal."""
        if status != self.status:
            return False
        if self.tier is not None and tier != self.tier:
            return False
        if self.portal_status is not None:
            return portal is not None and portal[1] in self.portal_status
        return True

    def lower_bound(self) -> timedelta:
        """The least wall-clock time in which the rule can be breached (for the indexed pre-filter): a
        business day is at least a calendar day, less an hour where the clocks go forward."""
        if self.unit == "seconds":
            return timedelta(seconds=self.amount)
        if self.unit == "minutes":
            return timedelta(minutes=self.amount)
        if self.unit == "hours":
            return timedelta(hours=self.amount)
        return timedelta(days=self.amount) - timedelta(hours=self.amount + 1)


@dataclass(frozen=True)
class SlaFile:
    version: str
    rules: tuple[Rule, ...]
    retrying_from_attempt: int = 3
    describe_limit: int = 50
    sha256: str = ""

    def rule_for(self, status: str, tier: int | None, portal: tuple[str, str] | None) -> Rule | None:
        for rule in self.rules:
            if rule.status == status and rule.matches(status, tier, portal):
                return rule
        return None

    def by_id(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)


def parse_after(text: str, where: str) -> tuple[int, str]:
    found = _AFTER.match(text) if isinstance(text, str) else None
    if not found or int(found.group(1)) <= 0:
        raise SlaError(
            f"{where}: after = {text!r}: write '<n> business days', '<n> days', '<n> hours', '<n> minutes' "
            "or '<n> seconds' with n >= 1"
        )
    unit = found.group(2)
    unit = unit if unit.endswith("s") else unit + "s"
    return int(found.group(1)), unit


def parse_sla(text: str, sha256: str = "") -> SlaFile:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SlaError(f"not TOML: {exc}") from None
    statuses = {s.value for s in Status}
    rules: list[Rule] = []
    for i, raw in enumerate(data.get("rule", [])):
        where = f"rule {i + 1}" + (f" ({raw['id']})" if isinstance(raw.get("id"), str) else "")
        unknown = set(raw) - {
            "id",
            "label",
            "status",
            "after",
            "tier",
            "portal_status",
            "from",
            "owner",
            "escalate_to",
        }
        if unknown:
            raise SlaError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        rid = raw.get("id")
        if not isinstance(rid, str) or not _ID.match(rid):
            raise SlaError(f"{where}: id must be lower_snake_case, at most 48 characters")
        if any(r.id == rid for r in rules):
            raise SlaError(f"{where}: id {rid} is used twice")
        status = raw.get("status")
        if status not in statuses:
            raise SlaError(
                f"{where}: status {status!r} is not an invoice status ({', '.join(sorted(statuses))})"
            )
        amount, unit = parse_after(raw.get("after", ""), where)
        tier = raw.get("tier")
        if tier is not None and (status != "pending_approval" or not isinstance(tier, int) or tier < 1):
            raise SlaError(f"{where}: tier applies to pending_approval only, as 1, 2, 3...")
        portal = raw.get("portal_status")
        if portal is not None and (
            status != "submitted"
            or not isinstance(portal, list)
            or not all(isinstance(p, str) for p in portal)
        ):
            raise SlaError(f"{where}: portal_status applies to submitted only, as a list of portal statuses")
        clock = raw.get("from", "status")
        if (
            clock not in CLOCKS
            or (clock == "tier" and status != "pending_approval")
            or (clock == "release" and status != "approved")
        ):
            raise SlaError(
                f"{where}: from = {clock!r}: 'status', 'tier' (pending_approval) or 'release' (approved)"
            )
        owner = raw.get("owner", "preparer")
        if owner not in OWNERS:
            raise SlaError(f"{where}: owner {owner!r} is not one of {', '.join(OWNERS)}")
        escalate_to = raw.get("escalate_to", "")
        if not isinstance(escalate_to, str) or not escalate_to:
            raise SlaError(f"{where}: escalate_to names the role an escalation notifies")
        rules.append(
            Rule(
                id=rid,
                label=str(raw.get("label") or rid.replace("_", " ")),
                status=status,
                after=f"{amount} {unit if amount != 1 else unit[:-1]}",
                amount=amount,
                unit=unit,
                tier=tier,
                portal_status=tuple(portal) if portal is not None else None,
                clock=clock,
                owner=owner,
                escalate_to=escalate_to,
            )
        )
    engine = data.get("engine", {})
    attempts = engine.get("retrying_from_attempt", 3)
    limit = engine.get("describe_limit", 50)
    if not isinstance(attempts, int) or attempts < 2:
        raise SlaError("engine.retrying_from_attempt: an integer, 2 or more")
    if not isinstance(limit, int) or not 0 <= limit <= 500:
        raise SlaError("engine.describe_limit: an integer from 0 to 500")
    version = data.get("version")
    if not isinstance(version, str) or not version:
        raise SlaError("version: say which reviewed version of the file this is")
    return SlaFile(version, tuple(rules), attempts, limit, sha256)


_LOADED: dict[str, tuple[float, SlaFile]] = {}


def load_sla(path: str | Path = "") -> SlaFile:
    """The SLA file (default policies/sla.toml), parsed once and again when it changes on disk."""
    import hashlib

    where = Path(path) if path else DEFAULT_SLA_FILE
    key = str(where.resolve())
    mtime = where.stat().st_mtime
    cached = _LOADED.get(key)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    raw = where.read_bytes()
    try:
        parsed = parse_sla(raw.decode("utf-8"), hashlib.sha256(raw).hexdigest())
    except SlaError as exc:
        raise SlaError(f"{where}: {exc}") from None
    _LOADED[key] = (mtime, parsed)
    return parsed


# -- evaluating one invoice against its rule (pure) ------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the rules look at, read from the store."""

    invoice_id: str
    legal_entity: str
    status: str
    status_since: datetime
    issue_date: date
    tier: int | None = None  # the tier waiting (pending_approval)
    tier_role: str = ""
    tier_since: datetime | None = None
    portal: tuple[str, str] | None = None  # (portal, its last status) for an invoice sent to a portal


@dataclass(frozen=True)
class Breach:
    rule: Rule
    since: datetime  # when the rule's clock started
    due: datetime  # when the rule was breached
    elapsed: float  # in the rule's unit
    overdue: float  # elapsed - allowed, in the rule's unit


def clock_start(rule: Rule, facts: Facts, zone: str) -> datetime:
    if rule.clock == "tier" and facts.tier_since is not None:
        return facts.tier_since
    if rule.clock == "release":
        release = datetime.combine(facts.issue_date, time(0), ZoneInfo(zone or "UTC")).astimezone(UTC)
        return max(release, facts.status_since)
    return facts.status_since


def evaluate(sla: SlaFile, facts: Facts, country: str, zone: str, now: datetime) -> Breach | None:
    """The invoice's SLA breach at `now`, if its rule is breached."""
    rule = sla.rule_for(facts.status, facts.tier, facts.portal)
    if rule is None:
        return None
    since = clock_start(rule, facts, zone)
    if rule.unit == "business days":
        cal = calendar_for(country, zone or "UTC")
        elapsed = cal.business_days_between(since, now)
        if elapsed < rule.amount:
            return None
        return Breach(rule, since, cal.add_business_days(since, rule.amount), elapsed, elapsed - rule.amount)
    seconds = {"days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}[rule.unit]
    elapsed = max((now - since).total_seconds(), 0.0) / seconds
    if elapsed < rule.amount:
        return None
    return Breach(
        rule, since, since + timedelta(seconds=rule.amount * seconds), elapsed, elapsed - rule.amount
    )


# -- breaches from the store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """An open invoice as the tower lists it: its facts, what it owes, who touched it."""

    facts: Facts
    external_id: str
    number: str | None
    customer_id: str
    currency: str
    amount_due_minor: int
    entity_currency: str
    amount_due_entity_minor: int  # at the invoice's exchange rate
    workflow_id: str
    created_by: str
    preparers: tuple[str, ...]  # created_by, editors, submitters (who may not approve it)
    last_preparer: str
    barred: tuple[str, ...]  # preparers and approvers of earlier tiers: not eligible for the tier
    assignee: str | None
    escalated: bool
    breach: Breach | None


_COLUMNS = (
    col(Invoice.id),
    col(Invoice.legal_entity),
    col(Invoice.external_id),
    col(Invoice.number),
    col(Invoice.status),
    col(Invoice.customer_id),
    col(Invoice.currency),
    col(Invoice.amount_due_minor),
    col(Invoice.exchange_rate),
    col(Invoice.issue_date),
    col(Invoice.status_since),
    col(Invoice.workflow_id),
    col(Invoice.created_by),
    col(Invoice.editors_json),
    col(Invoice.submitters_json),
    col(Invoice.approvals_json),
    col(Invoice.approval_json),
)


@dataclass(frozen=True)
class Entity:
    code: str
    currency: str
    country: str
    timezone: str


def entities(session: Session, codes: list[str]) -> dict[str, Entity]:
    rows = session.exec(select(LegalEntity).where(col(LegalEntity.code).in_(codes)))
    return {e.code: Entity(e.code, e.currency, e.country, e.timezone) for e in rows}


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@lru_cache(maxsize=256)
def _exponent(currency: str) -> int:
    return exponent(currency)


def _in_entity_currency(minor: int, currency: str, rate: str, entity_currency: str) -> int:
    if currency == entity_currency:
        return minor
    value = Decimal(minor) * Decimal(rate or "1")
    return int(value.scaleb(_exponent(entity_currency) - _exponent(currency)).to_integral_value())


def _candidate(
    row: Any, ent: Entity, portal: tuple[str, str] | None, sla: SlaFile, now: datetime, only_breached: bool
) -> Candidate | None:
    """The row as a candidate with its breach at `now`; None when `only_breached` and it is within its SLA
    (decided before the JSON columns are read: most rows of a large store stop here)."""
    (
        iid,
        entity,
        external_id,
        number,
        status,
        customer_id,
        currency,
        due,
        rate,
        issue_date,
        status_since,
        workflow_id,
        created_by,
        editors_json,
        submitters_json,
        approvals_json,
        approval_json,
    ) = row
    tier = role = None
    tier_since = None
    assignee = None
    escalated = False
    approvers: list[str] = []
    if status == "pending_approval":
        extra = json.loads(approval_json or "{}")
        approvals = json.loads(approvals_json or "[]")
        approvers = [a["approver"] for a in approvals]
        tiers = (extra.get("plan") or {}).get("tiers") or []
        if len(approvals) < len(tiers):
            tier, role = tiers[len(approvals)]["level"], tiers[len(approvals)]["role"]
            chosen = [a["assignee"] for a in extra.get("assignments", []) if a.get("tier") == tier]
            assignee = chosen[-1] if chosen else None
        if extra.get("tier_since"):
            tier_since = _aware(datetime.fromisoformat(extra["tier_since"]))
        escalated = bool(extra.get("escalated"))
    facts = Facts(
        invoice_id=iid,
        legal_entity=entity,
        status=status,
        status_since=_aware(status_since),
        issue_date=issue_date,
        tier=tier,
        tier_role=role or "",
        tier_since=tier_since,
        portal=portal,
    )
    breach = evaluate(sla, facts, ent.country, ent.timezone, now)
    if breach is None and only_breached:
        return None
    editors = json.loads(editors_json or "[]")
    submitters = json.loads(submitters_json or "[]")
    preparers = tuple(dict.fromkeys([created_by, *editors, *submitters]))
    return Candidate(
        facts=facts,
        external_id=external_id,
        number=number,
        customer_id=customer_id,
        currency=currency,
        amount_due_minor=int(due),
        entity_currency=ent.currency,
        amount_due_entity_minor=_in_entity_currency(int(due), currency, rate, ent.currency),
        workflow_id=workflow_id,
        created_by=created_by,
        preparers=preparers,
        last_preparer=(submitters or editors or [created_by])[-1],
        barred=tuple(dict.fromkeys([*preparers, *approvers])),
        assignee=assignee,
        escalated=escalated,
        breach=breach,
    )


def _portal_passes(session: Session, invoice_ids: list[str]) -> dict[str, tuple[str, str]]:
    """(portal, last status) of each invoice's latest pass through a customer portal."""
    found: dict[str, tuple[int, str, str]] = {}
    for start in range(0, len(invoice_ids), 500):
        chunk = invoice_ids[start : start + 500]
        rows = session.execute(
            sa_select(
                col(PortalSubmission.invoice_id),
                col(PortalSubmission.submission_pass),
                col(PortalSubmission.portal),
                col(PortalSubmission.status),
                col(PortalSubmission.channel),
            ).where(col(PortalSubmission.invoice_id).in_(chunk))
        )
        for iid, n, portal, status, channel in rows:
            if channel != "email" and (iid not in found or found[iid][0] < n):
                found[iid] = (n, portal, status)
    return {iid: (portal, status) for iid, (_, portal, status) in found.items()}


def find_breaches(
    session: Session, sla: SlaFile, entity_codes: list[str], now: datetime
) -> tuple[list[Candidate], dict[str, Entity]]:
    """Every open invoice of these legal entities past its SLA at `now`, with its breach.

    One query per request: the statuses the file names, each bounded below by its shortest rule on the
    indexed (status, status_since); each candidate is then held to its own rule (tier, portal answer,
    business days of its entity)."""
    ents = entities(session, entity_codes)
    bounds: dict[str, timedelta] = {}
    for rule in sla.rules:
        bound = rule.lower_bound()
        bounds[rule.status] = min(bounds.get(rule.status, bound), bound)
    if not bounds or not ents:
        return [], ents
    conditions = [
        and_(col(Invoice.status) == status, col(Invoice.status_since) <= now - bound)
        for status, bound in sorted(bounds.items())
    ]
    rows = list(
        session.execute(
            sa_select(*_COLUMNS).where(col(Invoice.legal_entity).in_(sorted(ents)), or_(*conditions))
        )
    )
    portals = _portal_passes(session, [r[0] for r in rows if r[4] == "submitted"])
    found: list[Candidate] = []
    for row in rows:
        cand = _candidate(row, ents[row[1]], portals.get(row[0]), sla, now, only_breached=True)
        if cand is not None:
            found.append(cand)
    return found, ents


def candidates_by_workflow(
    session: Session,
    workflow_ids: list[str],
    entity_codes: list[str],
    ents: dict[str, Entity],
    sla: SlaFile,
    now: datetime,
) -> list[Candidate]:
    """Invoices the engine reports (a failing workflow task) that are not past their SLA, as rows too."""
    if not workflow_ids:
        return []
    rows = list(
        session.execute(
            sa_select(*_COLUMNS).where(
                col(Invoice.workflow_id).in_(workflow_ids[:500]), col(Invoice.legal_entity).in_(entity_codes)
            )
        )
    )
    portals = _portal_passes(session, [r[0] for r in rows if r[4] == "submitted"])
    out = []
    for row in rows:
        ent = ents.get(row[1])
        if ent is None:
            continue
        cand = _candidate(row, ent, portals.get(row[0]), sla, now, only_breached=False)
        if cand is not None:
            out.append(cand)
    return out


def store_version(session: Session, entity_codes: list[str]) -> tuple[int, int]:
    """What moves whenever anything is recorded in these legal entities (every transition appends to the
    entity's ledger: the chain heads' sequence numbers) or a role is granted or revoked (the policy
    revision): a tower computed at an older version is stale. Two primary-key reads, whatever the size of
    the store."""
    from activities.models import LedgerHead, PolicyRevision

    seqs = session.execute(
        sa_select(func.coalesce(func.sum(col(LedgerHead.seq)), 0)).where(
            col(LedgerHead.legal_entity).in_(entity_codes)
        )
    ).scalar()
    revision = session.execute(
        sa_select(col(PolicyRevision.revision)).where(col(PolicyRevision.id) == 1)
    ).scalar()
    return int(seqs or 0), int(revision or 0)


def role_holders(session: Session, entity_codes: list[str]) -> dict[tuple[str, str], list[str]]:
    """(legal entity, role) -> usernames holding it there."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    rows = session.exec(
        select(RoleAssignment).where(col(RoleAssignment.legal_entity).in_([*entity_codes, "*"]))
    )
    for ra in rows:
        out[(ra.legal_entity, ra.role)].append(ra.username)
    return {k: sorted(set(v)) for k, v in out.items()}


def customer_names(session: Session, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = session.execute(sa_select(col(Customer.id), col(Customer.name)).where(col(Customer.id).in_(ids)))
    return {cid: name for cid, name in rows}


# -- the pipeline ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineCell:
    legal_entity: str
    currency: str
    status: str
    count: int
    total_minor: int
    amount_due_minor: int


def pipeline(session: Session, entity_codes: list[str]) -> list[PipelineCell]:
    """Invoices by legal entity, currency and status: how many, their totals and what is still due."""
    rows = session.execute(
        sa_select(
            col(Invoice.legal_entity),
            col(Invoice.currency),
            col(Invoice.status),
            func.count(),
            func.coalesce(func.sum(col(Invoice.total_minor)), 0),
            func.coalesce(func.sum(col(Invoice.amount_due_minor)), 0),
        )
        .where(col(Invoice.legal_entity).in_(entity_codes))
        .group_by(col(Invoice.legal_entity), col(Invoice.currency), col(Invoice.status))
    )
    order = {s.value: i for i, s in enumerate(Status)}
    cells = [PipelineCell(e, c, s, int(n), int(t), int(d)) for e, c, s, n, t, d in rows]
    return sorted(cells, key=lambda x: (x.legal_entity, x.currency, order.get(x.status, 99)))


# -- the engine -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingActivity:
    activity_id: str
    activity_type: str
    attempt: int
    state: str  # scheduled | started | cancel_requested | paused...
    last_failure: str
    next_attempt_at: datetime | None
    maximum_attempts: int  # 0: unlimited


@dataclass(frozen=True)
class EngineState:
    """One workflow as Temporal describes it."""

    workflow_id: str
    run_id: str
    status: str  # running, completed, ...
    activities: tuple[PendingActivity, ...] = ()
    workflow_task_attempt: int = 0  # > 1: the workflow task keeps failing
    problems: tuple[str, ...] = ()  # TemporalReportedProblems
    error: str = ""  # the describe failed: why


@dataclass(frozen=True)
class WorkerState:
    task_queue: str
    polling: bool
    last_poll: datetime | None
    error: str = ""


@dataclass
class EngineProbe:
    """Temporal's view, asked sparingly: cached `ttl` seconds, at most `concurrency` describes at a
    time, each bounded by `timeout` seconds (a row whose describe did not answer says so)."""

    client: Client
    task_queue: str
    ttl: float = 5.0
    concurrency: int = 16
    timeout: float = 2.0
    _described: dict[str, tuple[float, EngineState]] = field(default_factory=dict)
    _worker: tuple[float, WorkerState] | None = None
    _problems: tuple[float, dict[str, tuple[str, ...]]] | None = None
    _retry_supported: tuple[bool, str] | None = None

    async def worker(self) -> WorkerState:
        now = monotonic.monotonic()
        if self._worker is not None and now - self._worker[0] < self.ttl:
            return self._worker[1]
        try:
            last: datetime | None = None
            for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
                resp = await asyncio.wait_for(
                    self.client.workflow_service.describe_task_queue(
                        DescribeTaskQueueRequest(
                            namespace=self.client.namespace,
                            task_queue=TaskQueue(name=self.task_queue),
                            task_queue_type=kind,
                        )
                    ),
                    self.timeout,
                )
                seen = [p.last_access_time.ToDatetime(tzinfo=UTC) for p in resp.pollers]
                if seen:
                    newest = max(seen)
                    last = newest if last is None or newest > last else last
            polling = last is not None and last >= datetime.now(UTC) - timedelta(minutes=1)
            state = WorkerState(self.task_queue, polling, last)
        except (RPCError, TimeoutError) as exc:
            state = WorkerState(self.task_queue, False, None, f"Temporal did not answer: {exc}")
        self._worker = (now, state)
        return state

    async def reported_problems(self, entity_codes: list[str]) -> dict[str, tuple[str, ...]]:
        """Running invoice workflows the server flags with TemporalReportedProblems (workflow tasks failing
        or timing out), by workflow id. Empty on a server that does not populate it."""
        now = monotonic.monotonic()
        if self._problems is not None and now - self._problems[0] < self.ttl:
            return self._problems[1]
        found: dict[str, tuple[str, ...]] = {}
        query = (
            "WorkflowType = 'InvoiceWorkflow' AND ExecutionStatus = 'Running' "
            "AND TemporalReportedProblems IS NOT NULL"
        )

        async def collect() -> None:
            async for wf in self.client.list_workflows(query, limit=500):
                raw = (wf.search_attributes or {}).get("TemporalReportedProblems") or []
                found[wf.id] = tuple(str(p) for p in raw)

        try:
            await asyncio.wait_for(collect(), self.timeout)
        except (RPCError, TimeoutError):
            pass  # a server without the attribute, or not answering: no bulk signal this time
        self._problems = (now, found)
        return found

    async def describe(self, workflow_ids: list[str]) -> dict[str, EngineState]:
        now = monotonic.monotonic()
        out: dict[str, EngineState] = {}
        todo: list[str] = []
        for wid in workflow_ids:
            hit = self._described.get(wid)
            if hit is not None and now - hit[0] < self.ttl:
                out[wid] = hit[1]
            else:
                todo.append(wid)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(wid: str) -> None:
            async with gate:
                state = await self._describe_one(wid)
            out[wid] = state
            # Failures are kept as long as answers: a tower reloaded while Temporal struggles (or knows
            # none of these workflows) must not ask again for each of them on every request.
            self._described[wid] = (monotonic.monotonic(), state)

        await asyncio.gather(*(one(w) for w in todo))
        if len(self._described) > 5000:  # a long-lived API process: forget the oldest answers
            for wid, _ in sorted(self._described.items(), key=lambda kv: kv[1][0])[:2500]:
                self._described.pop(wid, None)
        return out

    def forget(self, workflow_id: str) -> None:
        """After an action on the workflow: the next read asks Temporal again."""
        self._described.pop(workflow_id, None)

    async def _describe_one(self, wid: str) -> EngineState:
        try:
            resp = await asyncio.wait_for(
                self.client.workflow_service.describe_workflow_execution(
                    DescribeWorkflowExecutionRequest(
                        namespace=self.client.namespace, execution=WorkflowExecution(workflow_id=wid)
                    )
                ),
                self.timeout,
            )
        except TimeoutError:
            return EngineState(wid, "", "unknown", error="Temporal did not answer in time")
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return EngineState(wid, "", "not_found", error="Temporal has no such workflow")
            return EngineState(wid, "", "unknown", error=f"Temporal: {exc.message}")
        info = resp.workflow_execution_info
        status = _enum_name(info.status, "WORKFLOW_EXECUTION_STATUS_")
        activities = tuple(
            PendingActivity(
                activity_id=pa.activity_id,
                activity_type=pa.activity_type.name,
                attempt=pa.attempt,
                state=_enum_name(pa.state, "PENDING_ACTIVITY_STATE_"),
                last_failure=_failure_text(pa.last_failure) if pa.HasField("last_failure") else "",
                next_attempt_at=pa.next_attempt_schedule_time.ToDatetime(tzinfo=UTC)
                if pa.HasField("next_attempt_schedule_time")
                else None,
                maximum_attempts=pa.maximum_attempts,
            )
            for pa in resp.pending_activities
        )
        wft = resp.pending_workflow_task.attempt if resp.HasField("pending_workflow_task") else 0
        problems: tuple[str, ...] = ()
        raw = info.search_attributes.indexed_fields.get("TemporalReportedProblems")
        if raw is not None and raw.data:
            try:
                value = json.loads(raw.data)
                problems = tuple(str(p) for p in (value if isinstance(value, list) else [value]))
            except ValueError:
                problems = ()
        return EngineState(wid, info.execution.run_id, status, activities, wft, problems)

    async def retry_supported(self) -> tuple[bool, str]:
        """Whether this Temporal server resets activities (ResetActivity): asked once per process by
        resetting an activity of a workflow that does not exist (NOT_FOUND: the API is there)."""
        if self._retry_supported is not None:
            return self._retry_supported
        try:
            await asyncio.wait_for(
                self.client.workflow_service.reset_activity(
                    ResetActivityRequest(
                        namespace=self.client.namespace,
                        execution=WorkflowExecution(workflow_id="cashcycle-probe/none"),
                        id="1",
                        identity="cashcycle-tower-probe",
                    )
                ),
                self.timeout,
            )
            answer = (True, "")
        except TimeoutError:
            return (False, "Temporal did not answer whether it can reset activities")
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                answer = (True, "")
            else:
                answer = (
                    False,
                    "this Temporal server does not allow resetting an activity "
                    f"(ResetActivity: {exc.message})",
                )
        self._retry_supported = answer
        return answer

    async def reset_activity(self, workflow_id: str, activity_id: str, identity: str) -> None:
        """Retry now: the activity's attempts start again at 1 and the next one is dispatched at once."""
        await self.client.workflow_service.reset_activity(
            ResetActivityRequest(
                namespace=self.client.namespace,
                execution=WorkflowExecution(workflow_id=workflow_id),
                id=activity_id,
                identity=identity,
            )
        )
        self.forget(workflow_id)


def _enum_name(value: int, prefix: str) -> str:
    from temporalio.api.enums.v1 import PendingActivityState, WorkflowExecutionStatus

    for enum in (WorkflowExecutionStatus, PendingActivityState):
        try:
            name = enum.Name(value)  # type: ignore[arg-type]
        except ValueError:
            continue
        if name.startswith(prefix):
            return name[len(prefix) :].lower()
    return str(value)


def _failure_text(failure: Any) -> str:
    """The failure's message, with its cause's (an activity's ApplicationError wraps what went wrong)."""
    parts: list[str] = []
    while failure is not None and failure.message and len(parts) < 3:
        parts.append(failure.message)
        failure = failure.cause if failure.HasField("cause") else None
    return ": ".join(dict.fromkeys(parts))[:500]


# -- one row per stuck invoice ----------------------------------------------------------------------------

# The causes, most urgent first: the engine's (nothing moves until they are fixed), then the business SLA.
CAUSE_RANK = {"no_worker": 0, "workflow_task_failing": 1, "activity_retrying": 2, "sla": 3}
CAUSE_LABELS = {
    "no_worker": "no worker polls the task queue",
    "workflow_task_failing": "the workflow's code keeps failing (workflow task)",
    "activity_retrying": "an activity keeps failing and retrying",
}


@dataclass(frozen=True)
class Cause:
    code: str  # no_worker | workflow_task_failing | activity_retrying | the SLA rule's id
    kind: str  # engine | sla
    label: str
    detail: str
    rank: int


@dataclass(frozen=True)
class Owner:
    kind: str  # preparer | approvers | assignee | portal | supervisor | operations
    name: str  # what the tower groups by: a username, a role, a portal
    people: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class StuckRow:
    candidate: Candidate
    cause: Cause
    owner: Owner
    since: datetime  # the clock the age counts from
    age_seconds: float
    score: int  # amount due in the entity's currency (major units) x age in days
    weight: float  # the same product unrounded: the ranking (young rows have a score of 0 alike)
    engine: EngineState | None
    engine_checked: bool
    activity: PendingActivity | None  # the activity retrying, if any


def _owner(cand: Candidate, rule_owner: str, holders: dict[tuple[str, str], list[str]]) -> Owner:
    f = cand.facts
    if rule_owner == "approvers" and f.tier is not None:
        if cand.assignee:
            return Owner("assignee", cand.assignee, (cand.assignee,))
        people = [
            u
            for u in holders.get((f.legal_entity, f.tier_role), []) + holders.get(("*", f.tier_role), [])
            if u not in cand.barred
        ]
        return Owner("approvers", f.tier_role, tuple(sorted(set(people))))
    if rule_owner == "portal" and f.portal is not None:
        return Owner("portal", f.portal[0])
    if rule_owner == "supervisor":
        people = holders.get((f.legal_entity, "ar_supervisor"), [])
        return Owner("supervisor", "ar_supervisor", tuple(people))
    return Owner("preparer", cand.last_preparer, cand.preparers)


def assemble(
    cands: list[Candidate],
    sla: SlaFile,
    engine: dict[str, EngineState],
    worker: WorkerState | None,
    holders: dict[tuple[str, str], list[str]],
    now: datetime,
) -> list[StuckRow]:
    """One row per invoice with its one ranked cause, owner, age and score, most at stake first."""
    rows: list[StuckRow] = []
    for cand in cands:
        f, breach = cand.facts, cand.breach
        state = engine.get(cand.workflow_id)
        retrying = None
        if state is not None:
            started = [a for a in state.activities if a.attempt >= sla.retrying_from_attempt]
            retrying = max(started, key=lambda a: a.attempt) if started else None
        rule = breach.rule if breach else sla.rule_for(f.status, f.tier, f.portal)
        rule_owner = rule.owner if rule else "preparer"
        owner = _owner(cand, rule_owner, holders)
        if worker is not None and not worker.polling:
            last = worker.last_poll.isoformat() if worker.last_poll else "never"
            cause = Cause(
                "no_worker",
                "engine",
                CAUSE_LABELS["no_worker"],
                f"no worker has polled task queue {worker.task_queue} for over a minute (last: {last})"
                + (f"; {worker.error}" if worker.error else ""),
                CAUSE_RANK["no_worker"],
            )
            owner = Owner("operations", "workers")
        elif state is not None and (state.workflow_task_attempt > 1 or state.problems):
            detail = ", ".join(state.problems) or f"workflow task attempt {state.workflow_task_attempt}"
            cause = Cause(
                "workflow_task_failing",
                "engine",
                CAUSE_LABELS["workflow_task_failing"],
                detail,
                CAUSE_RANK["workflow_task_failing"],
            )
            owner = Owner("operations", "workflow code")
        elif retrying is not None:
            cause = Cause(
                "activity_retrying",
                "engine",
                f"{retrying.activity_type} keeps failing",
                f"attempt {retrying.attempt}: {retrying.last_failure or 'no failure recorded yet'}",
                CAUSE_RANK["activity_retrying"],
            )
        elif breach is not None:
            cause = Cause(
                breach.rule.id,
                "sla",
                breach.rule.label,
                f"{_amount(breach.elapsed)} {breach.rule.unit} in {f.status}"
                + (f" (tier {f.tier}, {f.tier_role})" if f.tier else "")
                + f", allowed {breach.rule.after}",
                CAUSE_RANK["sla"],
            )
        else:
            continue
        since = breach.since if breach else (f.tier_since or f.status_since)
        age = max((now - since).total_seconds(), 0.0)
        major = cand.amount_due_entity_minor / (10 ** _exponent(cand.entity_currency))
        rows.append(
            StuckRow(
                candidate=cand,
                cause=cause,
                owner=owner,
                since=since,
                age_seconds=age,
                score=int(major * age / 86400),
                weight=major * age,
                engine=state,
                engine_checked=state is not None and not state.error,
                activity=retrying,
            )
        )
    rows.sort(key=lambda r: (-r.weight, r.cause.rank, r.candidate.facts.invoice_id))
    return rows


def _amount(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def age_text(seconds: float) -> str:
    """An age as people say it: 40 min, 5 h, 3 d."""
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


# -- retry now, ledgered -----------------------------------------------------------------------------------


def retry_business_key(invoice_id: str, request: str) -> str:
    return f"invoice/{invoice_id}#retry#{request}"


# -- dispute cases past their SLA (issue 11) ---------------------------------------------------------------

DISPUTE_CAUSES = {
    "dispute_past_sla": "dispute past its SLA",
    "dispute_window_passed": "customer's dispute window passed",
}


@dataclass(frozen=True)
class StuckDispute:
    """A dispute case the tower lists: past its SLA while its clock runs, or still open after the
    customer's own dispute window (which waiting on the customer does not pause). `why`: every reason, the
    first one the row's cause."""

    case: Any  # activities.disputes.Dispute (imported late: that module imports the workflows)
    cause: Cause
    why: tuple[str, ...]
    since: datetime  # opened
    age_seconds: float
    weight: float  # open amount (major units) x age: the ranking, as the invoices' rows


def _dispute_why(case: Any, now: datetime) -> list[tuple[str, str]]:
    """(cause code, what a supervisor reads) for each way the case is late, most pressing first."""
    found: list[tuple[str, str]] = []
    due = _aware(case.sla_due_at) if case.sla_due_at is not None else None
    if due is not None and due < now and case.status in ("open", "resolving"):
        text = f"due {due.strftime('%Y-%m-%d %H:%M')} UTC, {age_text((now - due).total_seconds())} ago"
        if case.escalation_level:
            text += f"; escalation level {case.escalation_level}"
        if case.status == "resolving":
            text += "; its resolution document waits for approval"
        found.append(("dispute_past_sla", text))
    window = _aware(case.window_deadline) if case.window_deadline is not None else None
    if window is not None and window < now:
        text = f"the customer's window ended {window.strftime('%Y-%m-%d %H:%M')} UTC"
        if case.status == "waiting_on_customer":
            text = (
                f"waiting on the customer ({case.waiting_reason or 'no reason given'}) past the window: "
                + text
            )
        found.append(("dispute_window_passed", text))
    return found


def stuck_disputes(session: Session, entity_codes: list[str], now: datetime) -> list[StuckDispute]:
    """Open dispute cases past their SLA or past the customer's window, most at stake x age first. Two
    indexed conditions on the dispute read model (sla_due_at is empty while a case waits on the customer
    or is resolved: its clock does not run)."""
    from activities.disputes import OPEN_STATUSES, Dispute

    if not entity_codes:
        return []
    cases = session.exec(
        select(Dispute).where(
            col(Dispute.legal_entity).in_(entity_codes),
            col(Dispute.status).in_(OPEN_STATUSES),
            or_(col(Dispute.sla_due_at) < now, col(Dispute.window_deadline) < now),
        )
    ).all()
    rows: list[StuckDispute] = []
    for case in cases:
        why = _dispute_why(case, now)
        if not why:
            continue
        code, detail = why[0]
        since = _aware(case.opened_at)
        age = max((now - since).total_seconds(), 0.0)
        major = case.open_minor / (10 ** _exponent(case.currency))
        rows.append(
            StuckDispute(
                case=case,
                cause=Cause(code, "sla", DISPUTE_CAUSES[code], detail, CAUSE_RANK["sla"]),
                why=tuple(text for _, text in why),
                since=since,
                age_seconds=age,
                weight=major * age,
            )
        )
    rows.sort(key=lambda r: (-r.weight, r.case.id))
    return rows

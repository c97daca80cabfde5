"""Approval turnaround: how long each approval tier of an invoice waited, from the tier's start to its
approval, per tier and per approver (p50, p90), read from the evidence ledger.

A tier starts when the one before it is approved, and tier 1 when the invoice is submitted for approval;
it ends approved (`approve_tier`, or `approve` for the last tier), or without an approval when the invoice
goes back to draft (rejected or edited) or is voided. A reminder, an escalation or a reassignment does not
restart it: the SLA clock may restart on a reassignment, the customer's wait does not. The ledger is the
source, not the read model, because the read model keeps only the latest submission's approvals and
starts, and the ledger keeps every one, with the time the workflow recorded it.

The population is every tier approval recorded in the period (UTC days, start and end inclusive, as the
portal report: the report spans legal entities in different zones). Each approval's start may be before
the period. Beside it, two counts about the tiers of the period that were not approved: those that ended
without an approval in the period (rejected, edited, voided), and those that started in the period and are
still waiting now (with the oldest's age, as of `generated_at`).

Percentiles are nearest rank (the ceil(p n)-th smallest), so every p50 and p90 is the turnaround of one
real approval, which the figures pages link to. Hours are exact (microseconds, no float), then rounded
half up to 1 decimal.

Like every report an auditor may rely on, it says how it was produced: the query, filters, bounds, run
time, record counts and a hash of the ledger entries read (their seq and entry hash).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from activities.ledger import canonical_json, sha256_hex
from activities.models import Customer, Invoice, LedgerEntry
from activities.portal_reports import HOURS_PLACES, hours_between, utc_bounds

GENERATOR = "cashcycle approval turnaround report 1"

# The events that start, end or restart an approval tier (states.py).
STARTS_TIER_ONE = "submit"
APPROVALS = ("approve_tier", "approve")
ENDS_UNAPPROVED = ("reject", "edit", "void")
EVENTS = (STARTS_TIER_ONE, *APPROVALS, *ENDS_UNAPPROVED)

QUERY = (
    "ledger_entry rows (object_type 'invoice', event in submit, approve_tier, approve, reject, edit, void) "
    "of the invoices with legal_entity in :legal_entities that have an entry of those events with "
    "at >= :from_utc and at < :before_utc; each invoice's entries walked in seq order: a tier starts at "
    "submit or at the approval of the tier before it, and ends at its approval (counted when that is in "
    "the period) or at reject, edit or void"
)

# The histogram's bucket edges in hours: [0, 1), [1, 4), ... [240, ∞).
BUCKET_EDGES_HOURS: tuple[int, ...] = (1, 4, 8, 24, 48, 120, 240)


@dataclass(frozen=True)
class TierApproval:
    """One approval of one tier: the unit of the population."""

    legal_entity: str
    invoice_id: str
    submission: int  # 1 for the invoice's first submission for approval, 2 after a rejection or edit...
    tier: int
    role: str
    approver: str
    on_behalf_of: str | None  # the delegator, when a delegate approved
    started_at: datetime
    approved_at: datetime
    hours: Decimal  # exact
    seq: int  # the approval's ledger entry
    entry_hash: str

    @property
    def hours_text(self) -> str:
        return _hours(self.hours)


@dataclass(frozen=True)
class UnapprovedTier:
    """A tier of the period that was not approved: ended (rejected, edited, voided) or still waiting."""

    legal_entity: str
    invoice_id: str
    submission: int
    tier: int
    started_at: datetime
    ended_at: datetime | None  # None while it waits
    how: str  # "reject", "edit", "void" or "waiting"
    hours: Decimal  # from its start to its end, or to generated_at

    @property
    def hours_text(self) -> str:
        return _hours(self.hours)


@dataclass(frozen=True)
class Turnaround:
    count: int
    p50_hours: str | None  # nearest rank
    p90_hours: str | None  # nearest rank
    mean_hours: str | None
    max_hours: str | None


@dataclass(frozen=True)
class TierFigures:
    tier: int
    role: str
    turnaround: Turnaround


@dataclass(frozen=True)
class ApproverFigures:
    approver: str
    tiers: tuple[int, ...]  # the tier levels they approved
    on_behalf: int  # approvals as a delegate
    turnaround: Turnaround


@dataclass(frozen=True)
class Bucket:
    label: str  # "1-4 h"
    from_hours: int
    to_hours: int | None  # exclusive; None for the last, open bucket
    count: int


@dataclass(frozen=True)
class Unapproved:
    ended: int  # tiers that ended in the period without an approval (rejected, edited, voided)
    rejected: int  # ... of which by a rejection
    waiting: int  # tiers started in the period and still waiting at generated_at
    oldest_waiting_hours: str | None


@dataclass(frozen=True)
class Provenance:
    generator: str
    query: str
    legal_entities: tuple[str, ...]
    period_start: date
    period_end: date  # inclusive
    day_boundaries: str  # "UTC"
    approved_from: datetime  # inclusive
    approved_before: datetime  # exclusive
    generated_at: datetime  # also the "now" of the waiting tiers' ages
    invoices_read: int
    entries_read: int
    rows_sha256: str  # over (legal_entity, seq, entry_hash) of the entries read, in that order


@dataclass(frozen=True)
class ApprovalReport:
    approvals: int
    invoices: int  # invoices with at least one tier approved in the period
    overall: Turnaround
    by_tier: tuple[TierFigures, ...]  # by tier level, then role
    by_approver: tuple[ApproverFigures, ...]  # most approvals first, then by name
    histogram: tuple[Bucket, ...]
    unapproved: Unapproved
    produced: Provenance
    population: tuple[TierApproval, ...]  # in approval order (approved_at, legal_entity, seq)
    unapproved_tiers: tuple[UnapprovedTier, ...]  # ended ones in order of their end, then the waiting


def _hours(value: Decimal) -> str:
    return str(value.quantize(HOURS_PLACES, ROUND_HALF_UP))


def nearest_rank(sorted_values: Sequence[Decimal], p: int) -> Decimal:
    """The ceil(p/100 n)-th smallest of a non-empty sorted sequence (integer arithmetic)."""
    n = len(sorted_values)
    rank = max(1, -(-p * n // 100))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class ExactTurnaround:
    """The figures of Turnaround, exact (for pages that say "40 s" rather than "0.0 h")."""

    count: int
    p50: Decimal | None
    p90: Decimal | None
    mean: Decimal | None
    max: Decimal | None


def exact_turnaround(hours: Iterable[Decimal]) -> ExactTurnaround:
    values = sorted(hours)
    if not values:
        return ExactTurnaround(0, None, None, None, None)
    return ExactTurnaround(
        count=len(values),
        p50=nearest_rank(values, 50),
        p90=nearest_rank(values, 90),
        mean=sum(values, Decimal(0)) / len(values),
        max=values[-1],
    )


def turnaround(hours: Iterable[Decimal]) -> Turnaround:
    e = exact_turnaround(hours)
    if e.count == 0:
        return Turnaround(0, None, None, None, None)
    return Turnaround(
        count=e.count,
        p50_hours=None if e.p50 is None else _hours(e.p50),
        p90_hours=None if e.p90 is None else _hours(e.p90),
        mean_hours=None if e.mean is None else _hours(e.mean),
        max_hours=None if e.max is None else _hours(e.max),
    )


def percentile_rank(count: int, p: int) -> int:
    """The 1-based rank (in ascending turnaround) of the approval a nearest-rank percentile is."""
    return max(1, -(-p * count // 100))


def bucket_label(lo: int, hi: int | None) -> str:
    def fmt(h: int) -> str:
        return f"{h // 24} d" if h >= 48 and h % 24 == 0 else f"{h} h"

    if hi is None:
        return f"{fmt(lo)} or more"
    if lo == 0:
        return f"under {fmt(hi)}"
    return f"{fmt(lo)} to {fmt(hi)}"


def bucket_of(hours: Decimal) -> tuple[int, int | None]:
    lo = 0
    for edge in BUCKET_EDGES_HOURS:
        if hours < edge:
            return lo, edge
        lo = edge
    return lo, None


def histogram(approvals: Sequence[TierApproval]) -> tuple[Bucket, ...]:
    counts: dict[int, int] = defaultdict(int)
    for a in approvals:
        counts[bucket_of(a.hours)[0]] += 1
    edges = (0, *BUCKET_EDGES_HOURS)
    out = []
    for i, lo in enumerate(edges):
        hi = edges[i + 1] if i + 1 < len(edges) else None
        out.append(Bucket(bucket_label(lo, hi), lo, hi, counts[lo]))
    return tuple(out)


def _rows(session: Session, entities: Sequence[str], lo: str, hi: str) -> list[LedgerEntry]:
    """Every tier-relevant entry of the invoices touched in the period: one query, the invoices as a
    subquery. Entries after the period are read too: they say whether a tier of the period still waits."""
    row = LedgerEntry
    touched = sa_select(col(row.object_id)).where(
        col(row.legal_entity).in_(entities),
        col(row.object_type) == "invoice",
        col(row.event).in_(EVENTS),
        col(row.at) >= lo,
        col(row.at) < hi,
    )
    query = (
        sa_select(row)
        .where(
            col(row.legal_entity).in_(entities),
            col(row.object_type) == "invoice",
            col(row.event).in_(EVENTS),
            col(row.object_id).in_(touched),
        )
        .order_by(col(row.legal_entity), col(row.object_id), col(row.seq))
    )
    return list(session.execute(query).scalars())


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def approval_report(
    session: Session,
    legal_entities: Sequence[str],
    period_start: date,
    period_end: date,
    now: datetime | None = None,
) -> ApprovalReport:
    """Approval turnaround for the tier approvals of `legal_entities` recorded between `period_start` and
    `period_end` (UTC days, inclusive). The caller has checked who may see which legal entities."""
    if period_end < period_start:
        raise ValueError("period_end is before period_start")
    generated_at = (now or datetime.now(UTC)).astimezone(UTC)
    entities = tuple(sorted(set(legal_entities)))
    lo, hi = utc_bounds(period_start, period_end)
    # `at` is written by the workflow as ISO 8601 in UTC ("+00:00"): the string bounds select the period,
    # a few microseconds' formatting aside; each entry's parsed instant then decides.
    rows = _rows(session, entities, lo.isoformat(), hi.isoformat()) if entities else []

    def in_period(t: datetime) -> bool:
        return lo <= t < hi

    population: list[TierApproval] = []
    ended: list[UnapprovedTier] = []
    waiting: list[UnapprovedTier] = []
    by_invoice: dict[tuple[str, str], list[LedgerEntry]] = defaultdict(list)
    for r in rows:
        by_invoice[r.legal_entity, r.object_id].append(r)
    for (entity, invoice_id), entries in by_invoice.items():
        started: datetime | None = None
        submission = level = 0
        for e in entries:
            t = _instant(e.at)
            if e.event == STARTS_TIER_ONE:
                submission += 1
                started, level = t, 1
            elif e.event in APPROVALS:
                if started is not None and in_period(t):
                    tier = json.loads(e.payload).get("tier") or {}
                    population.append(
                        TierApproval(
                            legal_entity=entity,
                            invoice_id=invoice_id,
                            submission=submission,
                            tier=int(tier.get("level") or level),  # entries before tiers: 1
                            role=str(tier.get("role") or ""),
                            approver=str(tier.get("approver") or e.actor),
                            on_behalf_of=tier.get("on_behalf_of") or None,
                            started_at=started,
                            approved_at=t,
                            hours=hours_between(started, t),
                            seq=e.seq,
                            entry_hash=e.entry_hash,
                        )
                    )
                started = t if e.event == "approve_tier" else None
                level += 1
            elif e.event in ENDS_UNAPPROVED:
                if started is not None and in_period(t):
                    ended.append(
                        UnapprovedTier(
                            entity,
                            invoice_id,
                            submission,
                            level,
                            started,
                            t,
                            e.event,
                            hours_between(started, t),
                        )
                    )
                started = None
        if started is not None and in_period(started):
            waiting.append(
                UnapprovedTier(
                    entity,
                    invoice_id,
                    submission,
                    level,
                    started,
                    None,
                    "waiting",
                    hours_between(started, generated_at),
                )
            )

    population.sort(key=lambda a: (a.approved_at, a.legal_entity, a.seq))
    per_tier: dict[tuple[int, str], list[Decimal]] = defaultdict(list)
    per_approver: dict[str, list[TierApproval]] = defaultdict(list)
    for a in population:
        per_tier[a.tier, a.role].append(a.hours)
        per_approver[a.approver].append(a)
    by_approver = sorted(
        (
            ApproverFigures(
                approver=name,
                tiers=tuple(sorted({a.tier for a in items})),
                on_behalf=sum(1 for a in items if a.on_behalf_of),
                turnaround=turnaround(a.hours for a in items),
            )
            for name, items in per_approver.items()
        ),
        key=lambda f: (-f.turnaround.count, f.approver),
    )
    ended.sort(key=lambda u: (u.ended_at or generated_at, u.legal_entity, u.invoice_id))
    waiting.sort(key=lambda u: (u.started_at, u.legal_entity, u.invoice_id))
    oldest = max((u.hours for u in waiting), default=None)
    return ApprovalReport(
        approvals=len(population),
        invoices=len({(a.legal_entity, a.invoice_id) for a in population}),
        overall=turnaround(a.hours for a in population),
        by_tier=tuple(
            TierFigures(tier, role, turnaround(hours)) for (tier, role), hours in sorted(per_tier.items())
        ),
        by_approver=tuple(by_approver),
        histogram=histogram(population),
        unapproved=Unapproved(
            ended=len(ended),
            rejected=sum(1 for u in ended if u.how == "reject"),
            waiting=len(waiting),
            oldest_waiting_hours=None if oldest is None else _hours(oldest),
        ),
        produced=Provenance(
            generator=GENERATOR,
            query=QUERY,
            legal_entities=entities,
            period_start=period_start,
            period_end=period_end,
            day_boundaries="UTC",
            approved_from=lo,
            approved_before=hi,
            generated_at=generated_at,
            invoices_read=len(by_invoice),
            entries_read=len(rows),
            rows_sha256=sha256_hex(canonical_json([[r.legal_entity, r.seq, r.entry_hash] for r in rows])),
        ),
        population=tuple(population),
        unapproved_tiers=(*ended, *waiting),
    )


def approvals_behind(
    report: ApprovalReport,
    *,
    tier: int | None = None,
    role: str | None = None,
    approver: str | None = None,
    bucket_from: int | None = None,
) -> list[TierApproval]:
    """The approvals behind one figure of the report (a tier, an approver, a histogram bucket, or all),
    in ascending turnaround (then approval order), so that rank k is the k-th smallest: the rank a
    percentile names (percentile_rank)."""
    chosen = [
        a
        for a in report.population
        if (tier is None or a.tier == tier)
        and (role is None or a.role == role)
        and (approver is None or a.approver == approver)
        and (bucket_from is None or bucket_of(a.hours)[0] == bucket_from)
    ]
    return sorted(chosen, key=lambda a: a.hours)


def unapproved_behind(report: ApprovalReport, which: str) -> list[UnapprovedTier]:
    """The tiers behind one of the unapproved counts: "ended" (rejected, edited or voided in the period),
    "rejected", or "waiting" (started in the period, waiting still), longest first."""
    wanted = {"ended": ("reject", "edit", "void"), "rejected": ("reject",), "waiting": ("waiting",)}
    chosen = [u for u in report.unapproved_tiers if u.how in wanted.get(which, ())]
    return sorted(chosen, key=lambda u: u.hours, reverse=True)


@dataclass(frozen=True)
class InvoiceSummary:
    """What a list of the invoices behind a figure shows of each."""

    id: str
    legal_entity: str
    number: str | None
    external_id: str
    customer_id: str
    customer_name: str
    status: str
    currency: str
    total_minor: int


def invoice_summaries(session: Session, invoice_ids: Sequence[str]) -> dict[str, InvoiceSummary]:
    """The invoices of a page of figures, with their customers' names: one query per 500 ids."""
    out: dict[str, InvoiceSummary] = {}
    ids = sorted(set(invoice_ids))
    for chunk in range(0, len(ids), 500):
        rows = session.execute(
            sa_select(Invoice, col(Customer.name))
            .join(Customer, col(Customer.id) == col(Invoice.customer_id))
            .where(col(Invoice.id).in_(ids[chunk : chunk + 500]))
        ).all()
        for inv, name in rows:
            out[inv.id] = InvoiceSummary(
                id=inv.id,
                legal_entity=inv.legal_entity,
                number=inv.number,
                external_id=inv.external_id,
                customer_id=inv.customer_id,
                customer_name=name,
                status=inv.status,
                currency=inv.currency,
                total_minor=inv.total_minor,
            )
    return out

"""Dispute figures (domain.md, "Figures"): the queries behind GET /api/v1/reports/disputes and the CAPA
effectiveness check's recurrence count. Read-only; every figure is an exact count or a sum of minor units.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import and_, func, or_
from sqlalchemy import select as sa_select
from sqlmodel import Session, col

from activities.approval_reports import percentile_rank
from activities.disputes import Dispute
from activities.ledger import canonical_json, sha256_hex
from activities.models import Invoice, LedgerEntry
from activities.portal_reports import rate, utc_bounds
from activities.queries import customer_names
from workflows.capa_states import OUTCOMES as CAPA_OUTCOMES
from workflows.capa_states import Status as CapaStatus
from workflows.root_causes import ROOT_CAUSES


def cases_opened(
    session: Session, legal_entity: str, customer_id: str, causes: list[str], start: datetime, end: datetime
) -> int:
    """Cases opened in [start, end) whose validated root cause is one of `causes` (closed cases: the root
    cause is known at closing); one customer's, or every customer's when customer_id is ""."""
    q = sa_select(func.count()).where(
        col(Dispute.legal_entity) == legal_entity,
        col(Dispute.root_cause).in_(causes),
        col(Dispute.opened_at) >= start,
        col(Dispute.opened_at) < end,
    )
    if customer_id:
        q = q.where(col(Dispute.customer_id) == customer_id)
    return int(session.execute(q).scalar_one())


# -- the dispute figures report (GET /api/v1/reports/disputes) -----------------------------------------

GENERATOR = "cashcycle dispute figures report 1"

QUERY = (
    "dispute rows with legal_entity in :legal_entities and opened_at < :before_utc and (closed_at is null or "
    "closed_at >= :from_utc), and those with sla_due_at < :generated_at (open past their SLA now); invoice "
    "rows with delivered_at >= :from_utc and < :before_utc (issued in the period); ledger_entry rows "
    "(object_type 'dispute') of the deduction cases read, at < :before_utc, walked in seq order for the "
    "amounts at the period's start and end; capa rows of the legal entities opened before :before_utc"
)

DAY = timedelta(days=1)
DAYS_PLACES = Decimal("0.01")
MICROSECONDS_PER_DAY = Decimal(86_400_000_000)
VALID = ("valid", "partly_valid")
WEEKLY_UP_TO_DAYS = 92  # longer periods are shown month by month
CAPA_STATUSES = tuple(s.value for s in CapaStatus)


@dataclass(frozen=True)
class CaseFacts:
    """One case the report read, with what the figures need of it (the population behind each number)."""

    id: str
    legal_entity: str
    case_number: str
    customer_id: str
    currency: str
    source: str
    status: str
    reason: str
    root_cause: str
    validity: str
    opened_at: datetime
    closed_at: datetime | None
    original_minor: int
    open_minor: int
    recovered_minor: int
    sla_due_at: datetime | None
    opened_in_period: bool
    closed_in_period: bool  # closed with a root cause (not voided) in the period
    cycle_days: Decimal | None  # opened -> closed, exact, for cases closed in the period
    past_sla: bool  # open past its SLA as of generated_at
    deduction_open_at_end_minor: int  # deductions: open at the period's end (0 when closed by then)
    deducted_in_period_minor: int  # deductions: original amount added in the period


@dataclass(frozen=True)
class CurrencyRate:
    currency: str
    disputed_minor: int  # original amount of the cases opened in the period
    invoiced_minor: int  # total of the invoices issued in the period
    rate: str | None  # disputed / invoiced, 4 places


@dataclass(frozen=True)
class DisputeRate:
    cases_opened: int
    invoices_issued: int
    rate: str | None  # cases / invoices, 4 places
    by_currency: tuple[CurrencyRate, ...]


@dataclass(frozen=True)
class RateSlice:
    """The dispute rate of one week or month of the period (clipped to the period)."""

    label: str
    start: date
    end: date  # inclusive
    rate: DisputeRate


@dataclass(frozen=True)
class CycleTime:
    cases_closed: int
    p50_days: str | None  # nearest rank: one real case's
    p90_days: str | None
    mean_days: str | None
    max_days: str | None
    p50_case: str  # the id of the case at p50 ("" when none)
    p90_case: str


@dataclass(frozen=True)
class PastSla:
    as_of: datetime
    cases: int
    by_currency: tuple[tuple[str, int, int], ...]  # currency, cases, open amount


@dataclass(frozen=True)
class Ddo:
    """Days deductions outstanding, per currency: open deduction amount at the period's end / deductions
    opened in the period x days in the period (domain.md)."""

    currency: str
    open_at_end_minor: int
    cases_open_at_end: int
    deducted_in_period_minor: int
    cases_opened: int
    days_in_period: int
    ddo_days: str | None  # 2 places; None when nothing was deducted in the period


@dataclass(frozen=True)
class Validity:
    closed: int  # closed with a root cause and validity in the period
    valid: int
    partly_valid: int
    invalid: int
    voided: int  # closed in the period without a case (the invoice refused it): not in `closed`
    validity_rate: str | None  # (valid + partly valid) / closed


@dataclass(frozen=True)
class Recovery:
    currency: str
    cases: int  # closed invalid in the period
    deducted_minor: int  # their original amount
    recovered_minor: int
    rate: str | None


@dataclass(frozen=True)
class ParetoRow:
    currency: str
    rank: int
    root_cause: str
    cause: str
    internal: bool
    cases: int
    value_minor: int
    share: str | None  # of the currency's value, 4 places
    cumulative_share: str | None


@dataclass(frozen=True)
class CustomerRow:
    customer_id: str
    name: str
    currency: str
    cases_opened: int
    disputed_minor: int
    invoices_issued: int
    invoiced_minor: int
    count_rate: str | None
    value_rate: str | None
    cases_closed: int
    closed_valid: int


@dataclass(frozen=True)
class ReasonRow:
    reason: str
    label: str
    currency: str
    cases_opened: int
    disputed_minor: int
    cases_closed: int
    closed_valid: int


@dataclass(frozen=True)
class CapaFigures:
    opened: int  # CAPAs opened in the period
    by_status: tuple[tuple[str, int], ...]  # of those, by status now
    checks: int  # effectiveness checks decided in the period
    by_outcome: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class DisputeProvenance:
    generator: str
    query: str
    legal_entities: tuple[str, ...]
    period_start: date
    period_end: date  # inclusive
    day_boundaries: str
    from_utc: datetime
    before_utc: datetime
    generated_at: datetime
    cases_read: int
    invoices_read: int
    entries_read: int
    capas_read: int
    rows_sha256: str


@dataclass(frozen=True)
class DisputeReport:
    dispute_rate: DisputeRate
    over_time: tuple[RateSlice, ...]
    granularity: str  # "week" | "month"
    cycle_time: CycleTime
    past_sla: PastSla
    ddo: tuple[Ddo, ...]
    validity: Validity
    recovery: tuple[Recovery, ...]
    pareto: tuple[ParetoRow, ...]
    by_customer: tuple[CustomerRow, ...]
    by_reason: tuple[ReasonRow, ...]
    capa: CapaFigures
    produced: DisputeProvenance
    cases: tuple[CaseFacts, ...]  # the population, by opened_at then case number (not in the JSON)


def _aware(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _instant(text: str) -> datetime:
    return _aware(datetime.fromisoformat(text))


def days_between(start: datetime, end: datetime) -> Decimal:
    """Exact days (microsecond arithmetic, no float)."""
    return Decimal((end - start) // timedelta(microseconds=1)) / MICROSECONDS_PER_DAY


def _days(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(DAYS_PLACES, ROUND_HALF_UP))


def slices(period_start: date, period_end: date) -> tuple[str, list[tuple[str, date, date]]]:
    """The weeks (Monday to Sunday) or months of the period, clipped to it."""
    out: list[tuple[str, date, date]] = []
    if (period_end - period_start).days + 1 <= WEEKLY_UP_TO_DAYS:
        start = period_start
        while start <= period_end:
            end = min(start + timedelta(days=6 - start.weekday()), period_end)
            out.append((f"{start.isoformat()} to {end.isoformat()}", start, end))
            start = end + DAY
        return "week", out
    start = period_start
    while start <= period_end:
        next_month = (start.replace(day=1) + timedelta(days=32)).replace(day=1)
        end = min(next_month - DAY, period_end)
        out.append((start.strftime("%Y-%m"), start, end))
        start = end + DAY
    return "month", out


def _dispute_rate(
    cases: Sequence[CaseFacts], invoices: Sequence[tuple[str, str, str, int, datetime]]
) -> DisputeRate:
    disputed: dict[str, int] = defaultdict(int)
    invoiced: dict[str, int] = defaultdict(int)
    for c in cases:
        disputed[c.currency] += c.original_minor
    for _, _, currency, total, _ in invoices:
        invoiced[currency] += total
    return DisputeRate(
        cases_opened=len(cases),
        invoices_issued=len(invoices),
        rate=rate(len(cases), len(invoices)),
        by_currency=tuple(
            CurrencyRate(cur, disputed[cur], invoiced[cur], rate(disputed[cur], invoiced[cur]))
            for cur in sorted(set(disputed) | set(invoiced))
        ),
    )


def _ledger_amounts(
    session: Session, cases: Sequence[Dispute], lo: datetime, hi: datetime
) -> tuple[dict[str, tuple[int, int, int]], list[LedgerEntry]]:
    """Per deduction case: (original before the period, original at its end, open at its end; 0 when
    closed by then), from the case's ledger entries recorded before the period's end."""
    ids = [c.id for c in cases]
    used: list[LedgerEntry] = []
    out: dict[str, tuple[int, int, int]] = {}
    for chunk in range(0, len(ids), 500):
        rows = session.execute(
            sa_select(LedgerEntry)
            .where(
                col(LedgerEntry.object_type) == "dispute",
                col(LedgerEntry.object_id).in_(ids[chunk : chunk + 500]),
            )
            .order_by(col(LedgerEntry.legal_entity), col(LedgerEntry.object_id), col(LedgerEntry.seq))
        ).scalars()
        for e in rows:
            at = _instant(e.at)
            if at >= hi:
                continue
            used.append(e)
            amounts = json.loads(e.payload).get("amounts") or {}
            before, _, _ = out.get(e.object_id, (0, 0, 0))
            original = int(amounts.get("original", 0))
            open_now = 0 if e.to_status == "closed" else int(amounts.get("open", 0))
            if at < lo:
                before = original
            out[e.object_id] = (before, original, open_now)
    return out, used


def dispute_report(
    session: Session,
    legal_entities: Sequence[str],
    period_start: date,
    period_end: date,
    now: datetime | None = None,
) -> DisputeReport:
    """The dispute figures of `legal_entities` for the UTC days period_start..period_end (inclusive). The
    caller has checked who may see which legal entities. Amounts are per currency, never converted."""
    from activities.capa import Capa  # capa imports this module (the recurrence count)

    if period_end < period_start:
        raise ValueError("period_end is before period_start")
    generated_at = _aware(now or datetime.now(UTC))
    entities = tuple(sorted(set(legal_entities)))
    lo, hi = utc_bounds(period_start, period_end)
    days_in_period = (period_end - period_start).days + 1
    rows: list[Dispute] = []
    invoices: list[tuple[str, str, str, int, datetime]] = []
    capas: list[Capa] = []
    if entities:
        rows = list(
            session.execute(
                sa_select(Dispute).where(
                    col(Dispute.legal_entity).in_(entities),
                    or_(
                        and_(
                            col(Dispute.opened_at) < hi,
                            or_(col(Dispute.closed_at).is_(None), col(Dispute.closed_at) >= lo),
                        ),
                        col(Dispute.sla_due_at) < generated_at,
                    ),
                )
            ).scalars()
        )
        invoices = [
            (str(i), str(cust), str(cur), int(total), _aware(at))
            for i, cust, cur, total, at in session.execute(
                sa_select(
                    col(Invoice.id),
                    col(Invoice.customer_id),
                    col(Invoice.currency),
                    col(Invoice.total_minor),
                    col(Invoice.delivered_at),
                )
                .where(
                    col(Invoice.legal_entity).in_(entities),
                    col(Invoice.delivered_at).is_not(None),
                    col(Invoice.delivered_at) >= lo,
                    col(Invoice.delivered_at) < hi,
                )
                .order_by(col(Invoice.id))
            ).all()
        ]
        capas = list(
            session.execute(
                sa_select(Capa).where(col(Capa.legal_entity).in_(entities), col(Capa.opened_at) < hi)
            ).scalars()
        )
    rows.sort(key=lambda d: (_aware(d.opened_at), d.legal_entity, d.case_number))
    deductions = [d for d in rows if d.source == "deduction" and _aware(d.opened_at) < hi]
    amounts, entries = _ledger_amounts(session, deductions, lo, hi) if deductions else ({}, [])

    cases: list[CaseFacts] = []
    for d in rows:
        opened, closed = _aware(d.opened_at), _aware(d.closed_at) if d.closed_at else None
        closed_in = closed is not None and lo <= closed < hi and bool(d.validity)
        before, original_end, open_end = amounts.get(d.id, (0, 0, 0))
        cases.append(
            CaseFacts(
                id=d.id,
                legal_entity=d.legal_entity,
                case_number=d.case_number,
                customer_id=d.customer_id,
                currency=d.currency,
                source=d.source,
                status=d.status,
                reason=d.reason,
                root_cause=d.root_cause,
                validity=d.validity,
                opened_at=opened,
                closed_at=closed,
                original_minor=d.original_minor,
                open_minor=d.open_minor,
                recovered_minor=d.recovered_minor,
                sla_due_at=_aware(d.sla_due_at) if d.sla_due_at else None,
                opened_in_period=lo <= opened < hi,
                closed_in_period=closed_in,
                cycle_days=days_between(opened, closed) if closed_in and closed else None,
                past_sla=d.sla_due_at is not None and _aware(d.sla_due_at) < generated_at,
                deduction_open_at_end_minor=open_end if d.source == "deduction" else 0,
                deducted_in_period_minor=original_end - before if d.source == "deduction" else 0,
            )
        )
    opened_cases = [c for c in cases if c.opened_in_period]
    closed_cases = [c for c in cases if c.closed_in_period]

    # Dispute rate, and over time.
    granularity, parts = slices(period_start, period_end)
    over_time = []
    for label, a, b in parts:
        s_lo, s_hi = utc_bounds(a, b)
        over_time.append(
            RateSlice(
                label,
                a,
                b,
                _dispute_rate(
                    [c for c in opened_cases if s_lo <= c.opened_at < s_hi],
                    [i for i in invoices if s_lo <= i[4] < s_hi],
                ),
            )
        )

    # Cycle time (nearest rank, so p50 and p90 are real cases).
    by_days = sorted(
        (c for c in closed_cases if c.cycle_days is not None), key=lambda c: (c.cycle_days, c.id)
    )
    values = [c.cycle_days for c in by_days if c.cycle_days is not None]
    n = len(values)
    p50_case = by_days[percentile_rank(n, 50) - 1] if n else None
    p90_case = by_days[percentile_rank(n, 90) - 1] if n else None
    cycle = CycleTime(
        cases_closed=n,
        p50_days=_days(p50_case.cycle_days) if p50_case else None,
        p90_days=_days(p90_case.cycle_days) if p90_case else None,
        mean_days=_days(sum(values, Decimal(0)) / n) if n else None,
        max_days=_days(values[-1]) if n else None,
        p50_case=p50_case.id if p50_case else "",
        p90_case=p90_case.id if p90_case else "",
    )

    # Past SLA, now (the board's `past_sla` filter: the same cases).
    late = [c for c in cases if c.past_sla]
    late_by: dict[str, list[CaseFacts]] = defaultdict(list)
    for c in late:
        late_by[c.currency].append(c)
    past = PastSla(
        generated_at,
        len(late),
        tuple((cur, len(cs), sum(c.open_minor for c in cs)) for cur, cs in sorted(late_by.items())),
    )

    # Days deductions outstanding.
    ded: dict[str, list[CaseFacts]] = defaultdict(list)
    for c in cases:
        if c.source == "deduction" and c.opened_at < hi:
            ded[c.currency].append(c)
    ddo = []
    for cur, cs in sorted(ded.items()):
        open_end = sum(c.deduction_open_at_end_minor for c in cs)
        deducted = sum(c.deducted_in_period_minor for c in cs)
        ddo.append(
            Ddo(
                currency=cur,
                open_at_end_minor=open_end,
                cases_open_at_end=sum(1 for c in cs if c.deduction_open_at_end_minor > 0),
                deducted_in_period_minor=deducted,
                cases_opened=sum(1 for c in cs if c.opened_in_period),
                days_in_period=days_in_period,
                ddo_days=_days(Decimal(open_end) / Decimal(deducted) * days_in_period) if deducted else None,
            )
        )

    # Validity and recovery.
    counts = {v: sum(1 for c in closed_cases if c.validity == v) for v in (*VALID, "invalid")}
    voided = sum(1 for c in cases if c.closed_at is not None and lo <= c.closed_at < hi and not c.validity)
    validity = Validity(
        closed=len(closed_cases),
        valid=counts["valid"],
        partly_valid=counts["partly_valid"],
        invalid=counts["invalid"],
        voided=voided,
        validity_rate=rate(counts["valid"] + counts["partly_valid"], len(closed_cases)),
    )
    invalid_by: dict[str, list[CaseFacts]] = defaultdict(list)
    for c in closed_cases:
        if c.validity == "invalid":
            invalid_by[c.currency].append(c)
    recovery = tuple(
        Recovery(
            cur,
            len(cs),
            sum(c.original_minor for c in cs),
            sum(c.recovered_minor for c in cs),
            rate(sum(c.recovered_minor for c in cs), sum(c.original_minor for c in cs)),
        )
        for cur, cs in sorted(invalid_by.items())
    )

    # Pareto: root causes of the cases opened in the period (recorded at closing), by value, per currency.
    causes: dict[tuple[str, str], list[CaseFacts]] = defaultdict(list)
    for c in opened_cases:
        if c.root_cause:
            causes[c.currency, c.root_cause].append(c)
    pareto: list[ParetoRow] = []
    for cur in sorted({k[0] for k in causes}):
        ranked = sorted(
            ((code, cs) for (cu, code), cs in causes.items() if cu == cur),
            key=lambda x: (-sum(c.original_minor for c in x[1]), -len(x[1]), x[0]),
        )
        total = sum(sum(c.original_minor for c in cs) for _, cs in ranked)
        running = 0
        for i, (code, cs) in enumerate(ranked, start=1):
            value = sum(c.original_minor for c in cs)
            running += value
            rc = ROOT_CAUSES.get(code)
            pareto.append(
                ParetoRow(
                    cur,
                    i,
                    code,
                    rc.cause if rc else code,
                    rc.internal if rc else True,
                    len(cs),
                    value,
                    rate(value, total),
                    rate(running, total),
                )
            )

    # Per customer and per reason.
    names = customer_names(session, sorted({c.customer_id for c in cases} | {i[1] for i in invoices}))
    keys = {(c.customer_id, c.currency) for c in opened_cases + closed_cases} | {
        (i[1], i[2]) for i in invoices
    }
    by_customer = []
    for cust, cur in keys:
        opened_here = [c for c in opened_cases if (c.customer_id, c.currency) == (cust, cur)]
        closed_here = [c for c in closed_cases if (c.customer_id, c.currency) == (cust, cur)]
        issued = [i for i in invoices if (i[1], i[2]) == (cust, cur)]
        disputed = sum(c.original_minor for c in opened_here)
        invoiced = sum(i[3] for i in issued)
        by_customer.append(
            CustomerRow(
                cust,
                names.get(cust, cust),
                cur,
                len(opened_here),
                disputed,
                len(issued),
                invoiced,
                rate(len(opened_here), len(issued)),
                rate(disputed, invoiced),
                len(closed_here),
                sum(1 for c in closed_here if c.validity in VALID),
            )
        )
    by_customer.sort(key=lambda r: (-r.disputed_minor, -r.cases_opened, r.name, r.currency))
    reason_keys = {(c.reason, c.currency) for c in opened_cases + closed_cases}
    by_reason = []
    for reason_code, cur in reason_keys:
        opened_here = [c for c in opened_cases if (c.reason, c.currency) == (reason_code, cur)]
        closed_here = [c for c in closed_cases if (c.reason, c.currency) == (reason_code, cur)]
        rc = ROOT_CAUSES.get(reason_code)
        by_reason.append(
            ReasonRow(
                reason_code,
                rc.cause if rc else reason_code,
                cur,
                len(opened_here),
                sum(c.original_minor for c in opened_here),
                len(closed_here),
                sum(1 for c in closed_here if c.validity in VALID),
            )
        )
    by_reason.sort(key=lambda r: (-r.disputed_minor, -r.cases_opened, r.reason, r.currency))

    # CAPA.
    capa_opened = [k for k in capas if lo <= _aware(k.opened_at) < hi]
    status_counts: dict[str, int] = defaultdict(int)
    for k in capa_opened:
        status_counts[k.status] += 1
    outcomes: dict[str, int] = defaultdict(int)
    for k in capas:
        for check in json.loads(k.checks_json or "[]"):
            decided = check.get("after_to") or ""
            if decided and lo <= _instant(decided) < hi:
                outcomes[str(check.get("outcome", ""))] += 1
    capa = CapaFigures(
        opened=len(capa_opened),
        by_status=tuple((s, status_counts[s]) for s in CAPA_STATUSES if status_counts[s])
        + tuple(sorted((s, n) for s, n in status_counts.items() if s not in CAPA_STATUSES)),
        checks=sum(outcomes.values()),
        by_outcome=tuple((o, outcomes[o]) for o in CAPA_OUTCOMES if outcomes[o]),
    )

    digest = sha256_hex(
        canonical_json(
            {
                "cases": sorted([d.id, d.transition_seq] for d in rows),
                "invoices": [[i[0], i[3]] for i in invoices],
                "ledger": [[e.legal_entity, e.seq, e.entry_hash] for e in entries],
                "capas": sorted([c.id, c.transition_seq] for c in capas),
            }
        )
    )
    return DisputeReport(
        dispute_rate=_dispute_rate(opened_cases, invoices),
        over_time=tuple(over_time),
        granularity=granularity,
        cycle_time=cycle,
        past_sla=past,
        ddo=tuple(ddo),
        validity=validity,
        recovery=recovery,
        pareto=tuple(pareto),
        by_customer=tuple(by_customer),
        by_reason=tuple(by_reason),
        capa=capa,
        produced=DisputeProvenance(
            generator=GENERATOR,
            query=QUERY,
            legal_entities=entities,
            period_start=period_start,
            period_end=period_end,
            day_boundaries="UTC",
            from_utc=lo,
            before_utc=hi,
            generated_at=generated_at,
            cases_read=len(rows),
            invoices_read=len(invoices),
            entries_read=len(entries),
            capas_read=len(capas),
            rows_sha256=digest,
        ),
        cases=tuple(cases),
    )


# What each number of the report stands for, as a list of cases (the figures pages' "cases behind").
CASE_FIGURES = {
    "opened": "Cases opened in the period",
    "closed": "Cases closed in the period with a root cause, shortest cycle first",
    "valid": "Cases closed valid or partly valid in the period",
    "invalid": "Cases closed invalid in the period",
    "past_sla": "Open cases past their SLA now",
    "deductions_open": "Deductions open at the period's end",
    "deductions_opened": "Deductions with an amount deducted in the period",
}


def cases_behind(report: DisputeReport, figure: str, currency: str = "") -> list[CaseFacts]:
    """The cases behind one number of the report (closed ones in ascending cycle time, so that rank k is
    the k-th shortest: the rank a percentile names)."""
    picks: dict[str, Callable[[CaseFacts], bool]] = {
        "opened": lambda c: c.opened_in_period,
        "closed": lambda c: c.closed_in_period,
        "valid": lambda c: c.closed_in_period and c.validity in VALID,
        "invalid": lambda c: c.closed_in_period and c.validity == "invalid",
        "past_sla": lambda c: c.past_sla,
        "deductions_open": lambda c: c.deduction_open_at_end_minor > 0,
        "deductions_opened": lambda c: c.deducted_in_period_minor > 0,
    }
    pick = picks[figure]
    chosen = [c for c in report.cases if pick(c) and (not currency or c.currency == currency)]
    if figure == "closed":
        chosen.sort(key=lambda c: (c.cycle_days or Decimal(0), c.id))
    return chosen

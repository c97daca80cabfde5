"""The portal figures: first-pass acceptance, rejections by normalised reason, customer and portal, and
time in portal, read from `portal_submission` (one row per pass of an invoice through a customer's portal,
written by the invoice workflow).

The population is a cohort: the invoices whose *first* pass was submitted in the period. Every figure is
about those invoices, whatever happened to them afterwards (a second pass next month still counts here),
so that first-pass acceptance divides like by like: invoices accepted at their first submission over
invoices submitted for the first time (domain.md, "Figures"). Counting rows submitted in the period
instead would put second passes in the denominator and make a month with many fixes look better.

Days are UTC days, start and end inclusive: the period is [start 00:00 UTC, end + 1 day 00:00 UTC). The
report is cross-entity (portals are shared by customers of several companies), so no one entity's time
zone would do; the bounds used are part of the report.

Like every report an auditor may rely on, it says how it was produced: the query, filters, bounds, run
time, record counts, control totals and a hash of the rows read.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import exists
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from activities.ledger import canonical_json, sha256_hex
from activities.models import Customer, PortalSubmission
from activities.portals.status import REASON_LABELS, ReasonCode

GENERATOR = "cashcycle portal report 1"
RATE_PLACES = Decimal("0.0001")
HOURS_PLACES = Decimal("0.1")
MICROSECONDS_PER_HOUR = Decimal(3_600_000_000)

QUERY = (
    "portal_submission rows (every pass) of the invoices whose first pass (lowest submission_pass) has "
    "legal_entity in :legal_entities, submitted_at >= :submitted_from and submitted_at < :submitted_before"
    ", and portal = :portal, customer_id = :customer_id when given; customer names from customer"
)


@dataclass(frozen=True)
class ReasonCount:
    code: str  # a ReasonCode value ("REF", "PRI", ...); "" when the portal gave none
    name: str  # the ReasonCode member's name ("REFERENCES"); "UNSPECIFIED" for "", "UNKNOWN" otherwise
    label: str  # for people (REASON_LABELS)
    count: int


@dataclass(frozen=True)
class CustomerCount:
    customer_id: str
    name: str
    count: int


@dataclass(frozen=True)
class PortalFigures:
    portal: str
    channel: str
    invoices_submitted: int  # invoices of the cohort whose first pass went through this portal
    first_pass_accepted: int
    first_pass_acceptance_rate: str | None
    rejections: int  # rejected passes through this portal (any pass)


@dataclass(frozen=True)
class Rejections:
    total: int
    by_reason: tuple[ReasonCount, ...]
    by_customer: tuple[CustomerCount, ...]


@dataclass(frozen=True)
class AcceptedTime:
    """Hours from submission to acceptance of the accepted passes (decimal strings, 1 decimal)."""

    count: int
    mean_hours: str | None
    median_hours: str | None
    p90_hours: str | None  # nearest rank: the ceil(0.9 n)-th smallest


@dataclass(frozen=True)
class OpenTime:
    """Passes still waiting in a portal (neither accepted nor rejected), as of `generated_at`."""

    count: int
    oldest_hours: str | None


@dataclass(frozen=True)
class TimeInPortal:
    accepted: AcceptedTime
    open: OpenTime


@dataclass(frozen=True)
class Provenance:
    generator: str
    query: str
    legal_entities: tuple[str, ...]
    period_start: date
    period_end: date  # inclusive
    portal: str | None
    customer_id: str | None
    day_boundaries: str  # "UTC"
    submitted_from: datetime  # inclusive
    submitted_before: datetime  # exclusive
    generated_at: datetime  # also the "now" of the open passes' ages
    first_passes_read: int
    passes_read: int
    customers_read: int
    rows_sha256: str  # over the rows read, canonical JSON in submission_key order


@dataclass(frozen=True)
class PortalReport:
    invoices_submitted: int
    first_pass_accepted: int
    first_pass_acceptance_rate: str | None  # accepted / submitted, 4 decimals; None when nothing submitted
    passes: int
    rejections: Rejections
    by_portal: tuple[PortalFigures, ...]
    time_in_portal: TimeInPortal
    produced: Provenance


def utc_bounds(period_start: date, period_end: date) -> tuple[datetime, datetime]:
    """The period's UTC instants: [start 00:00, day after end 00:00)."""
    lo = datetime.combine(period_start, time(0), UTC)
    return lo, datetime.combine(period_end + timedelta(days=1), time(0), UTC)


def rate(numerator: int, denominator: int) -> str | None:
    """A share as a decimal string with 4 places, half up (2/3 -> "0.6667"); None for 0 of 0."""
    if denominator == 0:
        return None
    return str((Decimal(numerator) / Decimal(denominator)).quantize(RATE_PLACES, ROUND_HALF_UP))


def _hours(value: Decimal) -> str:
    return str(value.quantize(HOURS_PLACES, ROUND_HALF_UP))


def hours_between(start: datetime, end: datetime) -> Decimal:
    """Exact hours (microsecond arithmetic, no float)."""
    return Decimal((end - start) // timedelta(microseconds=1)) / MICROSECONDS_PER_HOUR


def duration_stats(hours: Iterable[Decimal]) -> AcceptedTime:
    """Mean, median (the mean of the two middle values for an even count) and nearest-rank p90."""
    values = sorted(hours)
    n = len(values)
    if n == 0:
        return AcceptedTime(0, None, None, None)
    mid = n // 2
    median = values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2
    p90 = values[-(-9 * n // 10) - 1]  # rank ceil(0.9 n), in integers
    return AcceptedTime(n, _hours(sum(values, Decimal(0)) / n), _hours(median), _hours(p90))


def _accepted(row: PortalSubmission) -> bool:
    # A pass accepted and then withdrawn (cXML "canceled" after "reconciled") was not accepted in the end.
    return row.accepted_at is not None and row.rejected_at is None


def _reason(code: str, count: int) -> ReasonCount:
    if code == "":
        return ReasonCount("", "UNSPECIFIED", "No reason given", count)
    try:
        known = ReasonCode(code)
    except ValueError:
        return ReasonCount(code, "UNKNOWN", code, count)
    return ReasonCount(code, known.name, REASON_LABELS.get(known, known.name), count)


def _fingerprint(rows: Sequence[PortalSubmission]) -> str:
    def at(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat()

    return sha256_hex(
        canonical_json(
            [
                {
                    "submission_key": r.submission_key,
                    "invoice_id": r.invoice_id,
                    "legal_entity": r.legal_entity,
                    "customer_id": r.customer_id,
                    "portal": r.portal,
                    "channel": r.channel,
                    "submission_pass": r.submission_pass,
                    "submitted_at": at(r.submitted_at),
                    "status": r.status,
                    "status_at": at(r.status_at),
                    "reason_code": r.reason_code,
                    "accepted_at": at(r.accepted_at),
                    "rejected_at": at(r.rejected_at),
                }
                for r in sorted(rows, key=lambda r: r.submission_key)
            ]
        )
    )


def _rows(
    session: Session,
    legal_entities: Sequence[str],
    lo: datetime,
    hi: datetime,
    portal: str | None,
    customer_id: str | None,
) -> list[PortalSubmission]:
    """Every pass of the cohort's invoices: one query, the cohort as a subquery (no id list in Python)."""
    row = PortalSubmission
    earlier = aliased(PortalSubmission)
    cohort = select(row.invoice_id).where(
        col(row.legal_entity).in_(legal_entities),
        col(row.submitted_at) >= lo,
        col(row.submitted_at) < hi,
        ~exists().where(
            col(earlier.invoice_id) == col(row.invoice_id),
            col(earlier.submission_pass) < col(row.submission_pass),
        ),
    )
    if portal is not None:
        cohort = cohort.where(row.portal == portal)
    if customer_id is not None:
        cohort = cohort.where(row.customer_id == customer_id)
    query = (
        select(row)
        .where(col(row.legal_entity).in_(legal_entities), col(row.invoice_id).in_(cohort))
        .order_by(col(row.invoice_id), col(row.submission_pass))
    )
    return list(session.exec(query))


def portal_report(
    session: Session,
    legal_entities: Sequence[str],
    period_start: date,
    period_end: date,
    portal: str | None,
    customer_id: str | None,
    now: datetime | None = None,
) -> PortalReport:
    """The portal figures for the invoices of `legal_entities` whose first pass was submitted between
    `period_start` and `period_end` (UTC days, inclusive), optionally through one portal or for one
    customer (both filters select invoices by their first pass). The caller has checked who may see
    which legal entities; this function reads only what it is given."""
    if period_end < period_start:
        raise ValueError("period_end is before period_start")
    generated_at = (now or datetime.now(UTC)).astimezone(UTC)
    entities = tuple(sorted(set(legal_entities)))
    lo, hi = utc_bounds(period_start, period_end)
    rows = _rows(session, entities, lo, hi, portal, customer_id) if entities else []

    passes_of: dict[str, list[PortalSubmission]] = defaultdict(list)
    for r in rows:
        passes_of[r.invoice_id].append(r)
    firsts = [min(passes, key=lambda r: r.submission_pass) for passes in passes_of.values()]
    accepted_first = sum(1 for r in firsts if _accepted(r))

    rejected = [r for r in rows if r.rejected_at is not None]
    reasons = Counter(r.reason_code for r in rejected)
    by_reason = tuple(
        _reason(code, n) for code, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    )

    customer_ids = sorted({r.customer_id for r in rows})
    names: dict[str, str] = {}
    if customer_ids:
        names = {
            cid: name
            for cid, name in session.exec(
                select(Customer.id, Customer.name).where(col(Customer.id).in_(customer_ids))
            )
        }
    per_customer = Counter(r.customer_id for r in rejected)
    by_customer = tuple(
        sorted(
            (CustomerCount(cid, names.get(cid, ""), n) for cid, n in per_customer.items()),
            key=lambda c: (-c.count, c.name, c.customer_id),
        )
    )

    portals = sorted({(r.portal, r.channel) for r in rows})
    submitted_via = Counter((r.portal, r.channel) for r in firsts)
    accepted_via = Counter((r.portal, r.channel) for r in firsts if _accepted(r))
    rejected_via = Counter((r.portal, r.channel) for r in rejected)
    by_portal = tuple(
        PortalFigures(
            portal=p,
            channel=ch,
            invoices_submitted=submitted_via[p, ch],
            first_pass_accepted=accepted_via[p, ch],
            first_pass_acceptance_rate=rate(accepted_via[p, ch], submitted_via[p, ch]),
            rejections=rejected_via[p, ch],
        )
        for p, ch in portals
    )

    accepted_hours = [
        hours_between(r.submitted_at, r.accepted_at)
        for r in rows
        if _accepted(r) and r.accepted_at is not None
    ]
    still_open = [r for r in rows if r.accepted_at is None and r.rejected_at is None]
    oldest = max((hours_between(r.submitted_at, generated_at) for r in still_open), default=None)

    return PortalReport(
        invoices_submitted=len(firsts),
        first_pass_accepted=accepted_first,
        first_pass_acceptance_rate=rate(accepted_first, len(firsts)),
        passes=len(rows),
        rejections=Rejections(total=len(rejected), by_reason=by_reason, by_customer=by_customer),
        by_portal=by_portal,
        time_in_portal=TimeInPortal(
            accepted=duration_stats(accepted_hours),
            open=OpenTime(len(still_open), None if oldest is None else _hours(oldest)),
        ),
        produced=Provenance(
            generator=GENERATOR,
            query=QUERY,
            legal_entities=entities,
            period_start=period_start,
            period_end=period_end,
            portal=portal,
            customer_id=customer_id,
            day_boundaries="UTC",
            submitted_from=lo,
            submitted_before=hi,
            generated_at=generated_at,
            first_passes_read=len(firsts),
            passes_read=len(rows),
            customers_read=len(names),
            rows_sha256=_fingerprint(rows),
        ),
    )


# The figures of the report a page can list the passes of (the invoices behind each number).
PASS_FIGURES = ("submitted", "first_pass_accepted", "rejected", "accepted", "open")


def passes_behind(
    session: Session,
    legal_entities: Sequence[str],
    period_start: date,
    period_end: date,
    portal: str | None,
    customer_id: str | None,
    figure: str,
    *,
    via: str | None = None,
    reason: str | None = None,
    rejected_customer: str | None = None,
) -> list[PortalSubmission]:
    """The passes behind one number of `portal_report` with the same arguments: the first passes
    ("submitted", "first_pass_accepted"), the rejected passes (optionally of one reason code, "" for
    none given, or one customer), the accepted ones (ascending time in portal, the order its percentiles
    rank) or those still open (oldest first); `via` narrows any of them to one portal."""
    if figure not in PASS_FIGURES:
        raise ValueError(f"unknown figure {figure!r}")
    entities = tuple(sorted(set(legal_entities)))
    lo, hi = utc_bounds(period_start, period_end)
    rows = _rows(session, entities, lo, hi, portal, customer_id) if entities else []
    if figure in ("submitted", "first_pass_accepted"):
        firsts: dict[str, PortalSubmission] = {}
        for r in rows:
            if r.invoice_id not in firsts or r.submission_pass < firsts[r.invoice_id].submission_pass:
                firsts[r.invoice_id] = r
        rows = list(firsts.values())
        if figure == "first_pass_accepted":
            rows = [r for r in rows if _accepted(r)]
    elif figure == "rejected":
        rows = [
            r
            for r in rows
            if r.rejected_at is not None
            and (reason is None or r.reason_code == reason)
            and (rejected_customer is None or r.customer_id == rejected_customer)
        ]
    elif figure == "accepted":
        rows = [r for r in rows if _accepted(r)]
    else:
        rows = [r for r in rows if r.accepted_at is None and r.rejected_at is None]
    if via is not None:
        rows = [r for r in rows if r.portal == via]
    if figure == "accepted":
        return sorted(
            rows,
            key=lambda r: (hours_between(r.submitted_at, r.accepted_at or r.submitted_at), r.submission_key),
        )
    return sorted(rows, key=lambda r: (r.submitted_at, r.submission_key))

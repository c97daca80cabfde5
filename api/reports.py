"""Reports for the billing team and its supervisors: figures computed from the read models, each saying how
it was produced (query, filters, bounds, run time, record counts, hash of the rows read) so that the
figures an auditor or a customer review relies on can be checked.

Authorisation is `report:read` per legal entity: a report covers every legal entity the caller may report
on, or the one asked for (403 naming the action when the caller may not).
"""

from __future__ import annotations

import asyncio
import csv
import io
from dataclasses import asdict, replace
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from activities import queries
from activities.approval_reports import ApprovalReport, approval_report
from activities.db import Store, reading
from activities.dispute_reports import DisputeReport, dispute_report
from activities.portal_reports import PortalReport, portal_report
from api.deps import AppContext, ContextDep, CurrentUser, SessionDep, entities_for
from api.errors import Invalid, NotFound, errors
from api.schemas import Day

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])

MAX_PERIOD_DAYS = 366  # a year, leap or not: longer periods are several reports


class ReasonCountOut(BaseModel):
    code: str = Field(description='normalised reason (Peppol OPStatusReason, plus DUP); "" when none given')
    name: str = Field(description="the reason's name (ReasonCode), UNSPECIFIED or UNKNOWN")
    label: str
    count: int


class CustomerCountOut(BaseModel):
    customer_id: str
    name: str
    count: int


class RejectionsOut(BaseModel):
    total: int = Field(description="rejected passes (any pass) of the invoices reported on")
    by_reason: list[ReasonCountOut] = Field(description="most frequent first, then by code")
    by_customer: list[CustomerCountOut] = Field(description="most frequent first, then by name")


class PortalFiguresOut(BaseModel):
    portal: str
    channel: str
    invoices_submitted: int = Field(description="invoices whose first pass went through this portal")
    first_pass_accepted: int
    first_pass_acceptance_rate: str | None
    rejections: int = Field(description="rejected passes through this portal")


class AcceptedTimeOut(BaseModel):
    count: int
    mean_hours: str | None
    median_hours: str | None
    p90_hours: str | None = Field(description="nearest rank")


class OpenTimeOut(BaseModel):
    count: int = Field(description="passes neither accepted nor rejected yet")
    oldest_hours: str | None = Field(description="age of the oldest, as of generated_at")


class TimeInPortalOut(BaseModel):
    accepted: AcceptedTimeOut = Field(description="hours from submission to acceptance, accepted passes")
    open: OpenTimeOut


class ProvenanceOut(BaseModel):
    generator: str
    query: str
    legal_entities: list[str]
    period_start: date
    period_end: date = Field(description="inclusive")
    portal: str | None
    customer_id: str | None
    day_boundaries: str = Field(description="the time zone of the period's days")
    submitted_from: datetime = Field(description="first passes submitted at or after this instant")
    submitted_before: datetime = Field(description="... and before this one")
    generated_at: datetime
    first_passes_read: int
    passes_read: int
    customers_read: int
    rows_sha256: str = Field(description="SHA-256 of the rows read (canonical JSON, by submission_key)")


class PortalReportOut(BaseModel):
    invoices_submitted: int = Field(description="invoices whose first portal pass was in the period")
    first_pass_accepted: int
    first_pass_acceptance_rate: str | None = Field(
        description="first_pass_accepted / invoices_submitted, 4 decimals; null when nothing was submitted"
    )
    passes: int = Field(description="every pass of those invoices")
    rejections: RejectionsOut
    by_portal: list[PortalFiguresOut]
    time_in_portal: TimeInPortalOut
    produced: ProvenanceOut


def check_period(period_start: date, period_end: date) -> None:
    """A report's period: `to` on or after `from`, at most MAX_PERIOD_DAYS days (422 invalid_range)."""
    if period_end < period_start:
        raise Invalid("to is before from", code="invalid_range", field="to")
    if (period_end - period_start).days + 1 > MAX_PERIOD_DAYS:
        raise Invalid(f"a period is at most {MAX_PERIOD_DAYS} days", code="invalid_range", field="to")


def _run(
    store: Store,
    entities: list[str],
    start: date,
    end: date,
    portal: str | None,
    customer_id: str | None,
) -> PortalReport:
    with reading(store) as session:
        return portal_report(session, entities, start, end, portal, customer_id)


@router.get(
    "/portals",
    response_model=PortalReportOut,
    responses=errors("forbidden", "not_found", "invalid_range"),
)
async def portals_report(
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    period_start: Annotated[Day, Query(alias="from", description="first day (UTC), inclusive")],
    period_end: Annotated[Day, Query(alias="to", description="last day (UTC), inclusive")],
    entity: Annotated[str | None, Query(max_length=32)] = None,
    portal: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[str | None, Query(max_length=36)] = None,
) -> PortalReportOut:
    """First-pass acceptance, rejections by normalised reason, customer and portal, and time in portal,
    for the invoices whose first portal submission fell in the period (UTC days), in every legal entity
    the caller may report on (or `entity`), optionally one portal or one customer."""
    report = await portal_figures(
        ctx, session, user.username, period_start, period_end, entity, portal, customer_id
    )
    return PortalReportOut.model_validate(asdict(report))


async def portal_figures(
    ctx: AppContext,
    session: Session,
    username: str,
    period_start: date,
    period_end: date,
    entity: str | None,
    portal: str | None,
    customer_id: str | None,
) -> PortalReport:
    """The portal report as the caller may see it (the JSON route and the figures pages)."""
    check_period(period_start, period_end)
    entities = portal_entities(ctx, session, username, entity, customer_id)
    return await asyncio.to_thread(
        _run, ctx.store, entities, period_start, period_end, portal or None, customer_id
    )


def portal_entities(
    ctx: AppContext, session: Session, username: str, entity: str | None, customer_id: str | None
) -> list[str]:
    """The legal entities a portal report covers: those the caller may report on (or `entity`), narrowed
    to the customer's. An unknown customer and another entity's look the same (404)."""
    entities = entities_for(ctx, session, username, "report:read", entity)
    if customer_id is not None:
        customer = queries.customer_by_id(session, customer_id)
        if customer is None or customer.legal_entity not in entities:
            raise NotFound(f"customer {customer_id} not found", customer_id=customer_id)
        entities = [customer.legal_entity]
    return entities


# Approval turnaround


class TurnaroundOut(BaseModel):
    count: int = Field(description="tier approvals")
    p50_hours: str | None = Field(description="nearest rank: the turnaround of one real approval")
    p90_hours: str | None = Field(description="nearest rank")
    mean_hours: str | None
    max_hours: str | None


class TierTurnaroundOut(BaseModel):
    tier: int = Field(description="1 for the first tier, approved first")
    role: str = Field(description="the role the tier needed")
    turnaround: TurnaroundOut


class ApproverTurnaroundOut(BaseModel):
    approver: str = Field(description="who approved (a delegate, when approving on someone's behalf)")
    tiers: list[int] = Field(description="the tier levels they approved")
    on_behalf: int = Field(description="approvals made as a delegate")
    turnaround: TurnaroundOut


class BucketOut(BaseModel):
    label: str
    from_hours: int = Field(description="inclusive")
    to_hours: int | None = Field(description="exclusive; null for the last bucket")
    count: int


class UnapprovedOut(BaseModel):
    ended: int = Field(description="tiers that ended in the period without an approval")
    rejected: int = Field(description="... of which by a rejection (the others: edited or voided)")
    waiting: int = Field(description="tiers started in the period and still waiting, as of generated_at")
    oldest_waiting_hours: str | None


class ApprovalProvenanceOut(BaseModel):
    generator: str
    query: str
    legal_entities: list[str]
    period_start: date
    period_end: date = Field(description="inclusive")
    day_boundaries: str = Field(description="the time zone of the period's days")
    approved_from: datetime = Field(description="approvals recorded at or after this instant")
    approved_before: datetime = Field(description="... and before this one")
    generated_at: datetime
    invoices_read: int
    entries_read: int = Field(description="ledger entries read")
    rows_sha256: str = Field(
        description="SHA-256 of the entries read: canonical JSON of [legal_entity, seq, entry_hash] rows"
    )


class ApprovalReportOut(BaseModel):
    approvals: int = Field(description="tier approvals recorded in the period")
    invoices: int = Field(description="invoices with at least one of them")
    overall: TurnaroundOut = Field(description="hours from each tier's start to its approval")
    by_tier: list[TierTurnaroundOut] = Field(description="by tier level, then role")
    by_approver: list[ApproverTurnaroundOut] = Field(description="most approvals first, then by name")
    histogram: list[BucketOut] = Field(description="approvals by turnaround")
    unapproved: UnapprovedOut
    produced: ApprovalProvenanceOut


CSV_COLUMNS = [
    "group",
    "tier",
    "role",
    "approver",
    "bucket",
    "count",
    "p50_hours",
    "p90_hours",
    "mean_hours",
    "max_hours",
]


def approval_csv_rows(report: ApprovalReport) -> list[list[Any]]:
    """The report as one table: the whole population, each tier, each approver, each histogram bucket."""

    def figures(t: Any) -> list[Any]:
        return [t.count, t.p50_hours, t.p90_hours, t.mean_hours, t.max_hours]

    rows: list[list[Any]] = [["all", "", "", "", "", *figures(report.overall)]]
    rows += [["tier", t.tier, t.role, "", "", *figures(t.turnaround)] for t in report.by_tier]
    rows += [["approver", "", "", a.approver, "", *figures(a.turnaround)] for a in report.by_approver]
    rows += [["bucket", "", "", "", b.label, b.count, "", "", "", ""] for b in report.histogram]
    return rows


def csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue().encode("utf-8")


def approval_provenance_headers(report: ApprovalReport) -> dict[str, str]:
    """How the report was produced, for a CSV (which has no place for it)."""
    p = report.produced
    return {
        "X-Report-Generator": p.generator,
        "X-Report-Generated-At": p.generated_at.isoformat(),
        "X-Report-Legal-Entities": ",".join(p.legal_entities),
        "X-Report-Period": f"{p.approved_from.isoformat()}/{p.approved_before.isoformat()}",
        "X-Report-Entries-Read": str(p.entries_read),
        "X-Report-Rows-SHA256": p.rows_sha256,
    }


def _approvals(store: Store, entities: list[str], start: date, end: date) -> ApprovalReport:
    with reading(store) as session:
        return approval_report(session, entities, start, end)


async def approval_figures(
    ctx: AppContext,
    session: Session,
    username: str,
    period_start: date,
    period_end: date,
    legal_entity: str | None,
) -> ApprovalReport:
    """The approval turnaround report as the caller may see it (the JSON route and the figures pages)."""
    check_period(period_start, period_end)
    entities = entities_for(ctx, session, username, "report:read", legal_entity)
    return await asyncio.to_thread(_approvals, ctx.store, entities, period_start, period_end)


@router.get(
    "/approvals",
    response_model=ApprovalReportOut,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "the report (JSON), or its table as CSV (`format=csv` or `Accept: text/csv`), "
            "with how it was produced in the X-Report-* headers",
        },
        **errors("forbidden", "invalid_range"),
    },
)
async def approvals_report(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    period_start: Annotated[Day, Query(alias="from", description="first day (UTC), inclusive")],
    period_end: Annotated[Day, Query(alias="to", description="last day (UTC), inclusive")],
    legal_entity: Annotated[str | None, Query(max_length=32)] = None,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="csv for the report's table; otherwise as Accept says (JSON by default)"),
    ] = None,
) -> Any:
    """Approval turnaround: hours from each tier's start (the submission, or the approval of the tier
    before) to its approval, for the tier approvals recorded in the period (UTC days), per tier and per
    approver (p50 and p90 by nearest rank, mean, max), with a histogram, the tiers that ended unapproved
    and those still waiting; from the evidence ledger, in every legal entity the caller may report on
    (or `legal_entity`)."""
    report = await approval_figures(ctx, session, user.username, period_start, period_end, legal_entity)
    accept = request.headers.get("accept", "")
    wants_csv = format == "csv" or (format is None and "text/csv" in accept and "json" not in accept)
    if wants_csv:
        name = f"approval-turnaround-{period_start.isoformat()}-{period_end.isoformat()}.csv"
        return Response(
            csv_bytes(CSV_COLUMNS, approval_csv_rows(report)),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                **approval_provenance_headers(report),
            },
        )
    return ApprovalReportOut.model_validate(asdict(replace(report, population=(), unapproved_tiers=())))


# Dispute figures


class CurrencyRateOut(BaseModel):
    currency: str
    disputed_minor: int = Field(description="original amount of the cases opened in the period")
    invoiced_minor: int = Field(description="total of the invoices issued (delivered) in the period")
    rate: str | None = Field(description="disputed / invoiced, 4 decimals; null when nothing was invoiced")


class DisputeRateOut(BaseModel):
    cases_opened: int
    invoices_issued: int
    rate: str | None = Field(description="cases opened / invoices issued, 4 decimals")
    by_currency: list[CurrencyRateOut] = Field(description="by value, per currency, never converted")


class RateSliceOut(BaseModel):
    label: str
    start: date
    end: date = Field(description="inclusive")
    rate: DisputeRateOut


class CycleTimeOut(BaseModel):
    cases_closed: int = Field(description="closed in the period with a root cause and validity")
    p50_days: str | None = Field(description="opened -> closed, nearest rank: one real case's")
    p90_days: str | None
    mean_days: str | None
    max_days: str | None
    p50_case: str = Field(description="the dispute id of the case at p50")
    p90_case: str


class PastSlaCurrencyOut(BaseModel):
    currency: str
    cases: int
    open_minor: int


class PastSlaOut(BaseModel):
    as_of: datetime = Field(
        description="now (generated_at): the board's past_sla filter lists the same cases"
    )
    cases: int
    by_currency: list[PastSlaCurrencyOut]


class DdoOut(BaseModel):
    currency: str
    open_at_end_minor: int = Field(description="open amount of deduction cases at the period's end (ledger)")
    cases_open_at_end: int
    deducted_in_period_minor: int = Field(description="deduction amounts opened (or joined) in the period")
    cases_opened: int
    days_in_period: int
    ddo_days: str | None = Field(description="open at end / deducted in period x days, 2 decimals")


class ValidityOut(BaseModel):
    closed: int
    valid: int
    partly_valid: int
    invalid: int
    voided: int = Field(description="closed in the period without a validity (void): not in `closed`")
    validity_rate: str | None = Field(description="(valid + partly valid) / closed, 4 decimals")


class RecoveryOut(BaseModel):
    currency: str
    cases: int = Field(description="closed invalid in the period")
    deducted_minor: int
    recovered_minor: int
    rate: str | None = Field(description="recovered / deducted, 4 decimals")


class ParetoOut(BaseModel):
    currency: str
    rank: int
    root_cause: str
    cause: str
    internal: bool
    cases: int
    value_minor: int
    share: str | None
    cumulative_share: str | None


class DisputeCustomerOut(BaseModel):
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


class DisputeReasonOut(BaseModel):
    reason: str
    label: str
    currency: str
    cases_opened: int
    disputed_minor: int
    cases_closed: int
    closed_valid: int


class CountOut(BaseModel):
    key: str
    count: int


class CapaFiguresOut(BaseModel):
    opened: int = Field(description="CAPAs opened in the period")
    by_status: list[CountOut] = Field(description="of those, by status now")
    checks: int = Field(description="effectiveness checks decided in the period")
    by_outcome: list[CountOut]


class DisputeProvenanceOut(BaseModel):
    generator: str
    query: str
    legal_entities: list[str]
    period_start: date
    period_end: date = Field(description="inclusive")
    day_boundaries: str
    from_utc: datetime
    before_utc: datetime
    generated_at: datetime
    cases_read: int
    invoices_read: int
    entries_read: int = Field(description="ledger entries of the deduction cases read")
    capas_read: int
    rows_sha256: str = Field(description="SHA-256 of the rows read (canonical JSON)")


class DisputeReportOut(BaseModel):
    dispute_rate: DisputeRateOut
    over_time: list[RateSliceOut]
    granularity: str = Field(description="week (periods up to 92 days) or month")
    cycle_time: CycleTimeOut
    past_sla: PastSlaOut
    ddo: list[DdoOut]
    validity: ValidityOut
    recovery: list[RecoveryOut]
    pareto: list[ParetoOut] = Field(
        description="root causes of the cases opened in the period (recorded at closing), by value, "
        "per currency, with the cumulative share"
    )
    by_customer: list[DisputeCustomerOut]
    by_reason: list[DisputeReasonOut]
    capa: CapaFiguresOut
    produced: DisputeProvenanceOut


DISPUTE_CSV_COLUMNS = ["group", "key", "label", "currency", "count", "amount_minor", "base", "figure", "note"]


def dispute_csv_rows(r: DisputeReport) -> list[list[Any]]:
    """The dispute report as one table: each figure a row (group, key, label, currency, count, amount,
    its base, the figure itself)."""
    dr = r.dispute_rate
    rows: list[list[Any]] = [
        [
            "dispute_rate",
            "count",
            "cases opened / invoices issued",
            "",
            dr.cases_opened,
            "",
            dr.invoices_issued,
            dr.rate,
            "",
        ]
    ]
    rows += [
        [
            "dispute_rate",
            "value",
            "disputed / invoiced",
            c.currency,
            "",
            c.disputed_minor,
            c.invoiced_minor,
            c.rate,
            "",
        ]
        for c in dr.by_currency
    ]
    rows += [
        [
            "over_time",
            s.start.isoformat(),
            s.label,
            "",
            s.rate.cases_opened,
            "",
            s.rate.invoices_issued,
            s.rate.rate,
            r.granularity,
        ]
        for s in r.over_time
    ]
    ct = r.cycle_time
    rows += [
        ["cycle_time", "p50_days", "opened -> closed", "", ct.cases_closed, "", "", ct.p50_days, ct.p50_case],
        ["cycle_time", "p90_days", "opened -> closed", "", ct.cases_closed, "", "", ct.p90_days, ct.p90_case],
        ["cycle_time", "mean_days", "opened -> closed", "", ct.cases_closed, "", "", ct.mean_days, ""],
        ["cycle_time", "max_days", "opened -> closed", "", ct.cases_closed, "", "", ct.max_days, ""],
        [
            "past_sla",
            "cases",
            "open past SLA",
            "",
            r.past_sla.cases,
            "",
            "",
            "",
            f"as of {r.past_sla.as_of.isoformat()}",
        ],
    ]
    rows += [
        ["past_sla", "open", "open past SLA", c, n, amount, "", "", ""]
        for c, n, amount in r.past_sla.by_currency
    ]
    rows += [
        [
            "ddo",
            "days",
            "open at end / deducted in period x days",
            d.currency,
            d.cases_open_at_end,
            d.open_at_end_minor,
            d.deducted_in_period_minor,
            d.ddo_days,
            f"{d.days_in_period} days",
        ]
        for d in r.ddo
    ]
    v = r.validity
    rows += [
        [
            "validity",
            "rate",
            "closed valid or partly valid / closed",
            "",
            v.valid + v.partly_valid,
            "",
            v.closed,
            v.validity_rate,
            "",
        ],
        ["validity", "valid", "closed valid", "", v.valid, "", v.closed, "", ""],
        ["validity", "partly_valid", "closed partly valid", "", v.partly_valid, "", v.closed, "", ""],
        ["validity", "invalid", "closed invalid", "", v.invalid, "", v.closed, "", ""],
        ["validity", "voided", "voided (not counted as closed)", "", v.voided, "", "", "", ""],
    ]
    rows += [
        [
            "recovery",
            "rate",
            "recovered / deducted on cases closed invalid",
            x.currency,
            x.cases,
            x.recovered_minor,
            x.deducted_minor,
            x.rate,
            "",
        ]
        for x in r.recovery
    ]
    rows += [
        [
            "pareto",
            p.root_cause,
            p.cause,
            p.currency,
            p.cases,
            p.value_minor,
            "",
            p.share,
            f"rank {p.rank}, cumulative {p.cumulative_share}",
        ]
        for p in r.pareto
    ]
    rows += [
        [
            "customer",
            c.customer_id,
            c.name,
            c.currency,
            c.cases_opened,
            c.disputed_minor,
            c.invoices_issued,
            c.count_rate,
            f"value rate {c.value_rate}; invoiced {c.invoiced_minor}; "
            f"closed {c.cases_closed}, valid {c.closed_valid}",
        ]
        for c in r.by_customer
    ]
    rows += [
        [
            "reason",
            x.reason,
            x.label,
            x.currency,
            x.cases_opened,
            x.disputed_minor,
            "",
            "",
            f"closed {x.cases_closed}, valid {x.closed_valid}",
        ]
        for x in r.by_reason
    ]
    rows += [
        ["capa_status", s, "CAPAs opened in the period, status now", "", n, "", r.capa.opened, "", ""]
        for s, n in r.capa.by_status
    ]
    rows += [
        ["capa_check", o, "effectiveness checks decided in the period", "", n, "", r.capa.checks, "", ""]
        for o, n in r.capa.by_outcome
    ]
    return rows


def dispute_provenance_headers(r: DisputeReport) -> dict[str, str]:
    p = r.produced
    return {
        "X-Report-Generator": p.generator,
        "X-Report-Generated-At": p.generated_at.isoformat(),
        "X-Report-Legal-Entities": ",".join(p.legal_entities),
        "X-Report-Period": f"{p.from_utc.isoformat()}/{p.before_utc.isoformat()}",
        "X-Report-Records-Read": f"cases={p.cases_read};invoices={p.invoices_read};"
        f"entries={p.entries_read};capas={p.capas_read}",
        "X-Report-Rows-SHA256": p.rows_sha256,
    }


def dispute_report_out(r: DisputeReport) -> DisputeReportOut:
    data = asdict(replace(r, cases=()))
    data.pop("cases")
    data["past_sla"]["by_currency"] = [
        {"currency": c, "cases": n, "open_minor": m} for c, n, m in r.past_sla.by_currency
    ]
    data["capa"]["by_status"] = [{"key": k, "count": n} for k, n in r.capa.by_status]
    data["capa"]["by_outcome"] = [{"key": k, "count": n} for k, n in r.capa.by_outcome]
    return DisputeReportOut.model_validate(data)


def _disputes(store: Store, entities: list[str], start: date, end: date) -> DisputeReport:
    with reading(store) as session:
        return dispute_report(session, entities, start, end)


async def dispute_figures(
    ctx: AppContext,
    session: Session,
    username: str,
    period_start: date,
    period_end: date,
    legal_entity: str | None,
) -> DisputeReport:
    """The dispute report as the caller may see it (the JSON route and the figures pages)."""
    check_period(period_start, period_end)
    entities = entities_for(ctx, session, username, "report:read", legal_entity)
    return await asyncio.to_thread(_disputes, ctx.store, entities, period_start, period_end)


@router.get(
    "/disputes",
    response_model=DisputeReportOut,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "the report (JSON), or its table as CSV (`format=csv` or `Accept: text/csv`), "
            "with how it was produced in the X-Report-* headers",
        },
        **errors("forbidden", "invalid_range"),
    },
)
async def disputes_report(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    user: CurrentUser,
    period_start: Annotated[Day, Query(alias="from", description="first day (UTC), inclusive")],
    period_end: Annotated[Day, Query(alias="to", description="last day (UTC), inclusive")],
    legal_entity: Annotated[str | None, Query(max_length=32)] = None,
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="csv for the report's table; otherwise as Accept says (JSON by default)"),
    ] = None,
) -> Any:
    """Dispute figures for the period (UTC days), in every legal entity the caller may report on (or
    `legal_entity`): dispute rate (cases opened / invoices issued; disputed / invoiced amount per
    currency, never converted), week by week or month by month; cycle time opened -> closed (p50, p90 by
    nearest rank) of the cases closed in the period; open cases past their SLA now; days deductions
    outstanding (open deduction amount at the period's end / deductions opened in the period x days);
    validity and recovery rates of the cases closed in the period; root causes by value (Pareto, with
    the cumulative share); per customer and per reason; CAPAs by status and effectiveness checks by
    outcome; and how it was produced."""
    report = await dispute_figures(ctx, session, user.username, period_start, period_end, legal_entity)
    accept = request.headers.get("accept", "")
    wants_csv = format == "csv" or (format is None and "text/csv" in accept and "json" not in accept)
    if wants_csv:
        name = f"dispute-figures-{period_start.isoformat()}-{period_end.isoformat()}.csv"
        return Response(
            csv_bytes(DISPUTE_CSV_COLUMNS, dispute_csv_rows(report)),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="{name}"',
                **dispute_provenance_headers(report),
            },
        )
    return dispute_report_out(report)

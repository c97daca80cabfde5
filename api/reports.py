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

"""Reports for the billing team and its supervisors: figures computed from the read models, each saying how
it was produced (query, filters, bounds, run time, record counts, hash of the rows read) so that the
figures an auditor or a customer review relies on can be checked.

Authorisation is `report:read` per legal entity: a report covers every legal entity the caller may report
on, or the one asked for (403 naming the action when the caller may not).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from activities import queries
from activities.db import Store, reading
from activities.portal_reports import PortalReport, portal_report
from api.deps import ContextDep, CurrentUser, SessionDep, entities_for
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
    if period_end < period_start:
        raise Invalid("to is before from", code="invalid_range", field="to")
    if (period_end - period_start).days + 1 > MAX_PERIOD_DAYS:
        raise Invalid(f"a period is at most {MAX_PERIOD_DAYS} days", code="invalid_range", field="to")
    entities = entities_for(ctx, session, user.username, "report:read", entity)
    if customer_id is not None:
        # Unknown and not-yours look the same: the report does not reveal other entities' customers.
        customer = queries.customer_by_id(session, customer_id)
        if customer is None or customer.legal_entity not in entities:
            raise NotFound(f"customer {customer_id} not found", customer_id=customer_id)
        entities = [customer.legal_entity]
    report = await asyncio.to_thread(
        _run, ctx.store, entities, period_start, period_end, portal or None, customer_id
    )
    return PortalReportOut.model_validate(asdict(report))

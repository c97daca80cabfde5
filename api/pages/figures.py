"""The figures pages: the portal figures (first-pass acceptance, rejections by reason and customer, time in
portal) and approval turnaround (per tier, per approver, p50 and p90), as server-rendered SVG charts, each
with the table behind it, a CSV of that table, and every number linking to the invoices behind it.

The numbers come from the JSON API's own report functions (api/reports.py portal_figures and
approval_figures: the same authorisation, `report:read`, the same period rules); the lists behind them
from the same report modules (activities/portal_reports.py passes_behind, activities/approval_reports.py
approvals_behind and unapproved_behind), so a list always has as many rows as the number it stands behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from activities.approval_reports import (
    ApprovalReport,
    ExactTurnaround,
    InvoiceSummary,
    TierApproval,
    UnapprovedTier,
    approvals_behind,
    bucket_of,
    exact_turnaround,
    invoice_summaries,
    percentile_rank,
    unapproved_behind,
)
from activities.db import reading
from activities.models import PortalSubmission
from activities.money import format_minor
from activities.portal_reports import PASS_FIGURES, PortalReport, hours_between, passes_behind
from api.deps import entities_for
from api.errors import Invalid
from api.pages.common import PageUser, render
from api.reports import (
    CSV_COLUMNS,
    MAX_PERIOD_DAYS,
    approval_csv_rows,
    approval_figures,
    approval_provenance_headers,
    csv_bytes,
    portal_figures,
)

router = APIRouter()

PAGE_SIZE = 50
CHART_ROWS = 15  # a chart shows this many bars at most; its table lists every row
MAX_OFFSET = 10**9
_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
APPROVAL_FIGURES = ("all", "tier", "approver", "bucket", "ended", "rejected", "waiting")
SHORT_BUCKETS = {
    0: "<1 h",
    1: "1\u20134 h",
    4: "4\u20138 h",
    8: "8\u201324 h",
    24: "1\u20132 d",
    48: "2\u20135 d",
    120: "5\u201310 d",
}


# -- the period and the legal entity, from the query string -------------------------------------------


@dataclass(frozen=True)
class Period:
    start: date
    end: date
    legal_entity: str | None

    def query(self, **more: Any) -> str:
        """The query string of a link about this period (and more parameters, None ones left out)."""
        params: dict[str, Any] = {"from": self.start.isoformat(), "to": self.end.isoformat()}
        if self.legal_entity:
            params["legal_entity"] = self.legal_entity
        params.update({k: v for k, v in more.items() if v is not None})
        return urlencode(params)


def _day(text: str, name: str, errors: list[dict[str, str]]) -> date | None:
    label = "Start date" if name == "from" else "End date"
    if not _DATE.match(text):
        errors.append({"field": name, "reason": f"{label} must be a date like 2026-11-01"})
        return None
    try:
        value = date.fromisoformat(text)
    except ValueError:
        errors.append({"field": name, "reason": f"{label} {text} is not a real date"})
        return None
    if not 1900 <= value.year <= 2999:
        errors.append({"field": name, "reason": f"{label} must be between 1900 and 2999"})
        return None
    return value


def read_period(
    params: Mapping[str, str], allowed: Sequence[str], today: date
) -> tuple[Period, list[dict[str, str]], dict[str, str]]:
    """The period asked for (default: the last 30 days, today included), the problems with it (each
    naming its field, for the error summary), and the values to show back in the form."""
    errors: list[dict[str, str]] = []
    raw = {
        "from": (params.get("from") or "").strip()[:20],
        "to": (params.get("to") or "").strip()[:20],
        "legal_entity": (params.get("legal_entity") or "").strip()[:32],
    }
    start = _day(raw["from"], "from", errors) if raw["from"] else today - timedelta(days=29)
    end = _day(raw["to"], "to", errors) if raw["to"] else today
    entity = raw["legal_entity"] or None
    if entity is not None and entity not in allowed:
        errors.append(
            {
                "field": "legal_entity",
                "reason": f"Legal entity {entity} is not one you may see figures of ({', '.join(allowed)})",
            }
        )
    if start is not None and end is not None:
        if end < start:
            errors.append({"field": "to", "reason": "End date must be on or after the start date"})
        elif (end - start).days + 1 > MAX_PERIOD_DAYS:
            errors.append({"field": "to", "reason": f"A period is at most {MAX_PERIOD_DAYS} days"})
    shown = {
        "from": raw["from"] or (start.isoformat() if start else ""),
        "to": raw["to"] or (end.isoformat() if end else ""),
        "legal_entity": raw["legal_entity"],
    }
    if errors or start is None or end is None:
        return Period(today - timedelta(days=29), today, None), errors, shown
    return Period(start, end, entity), errors, shown


def presets(today: date) -> list[tuple[str, date, date]]:
    month_start = today.replace(day=1)
    last_month_end = month_start - timedelta(days=1)
    return [
        ("Last 30 days", today - timedelta(days=29), today),
        ("This month", month_start, today),
        ("Last month", last_month_end.replace(day=1), last_month_end),
        ("Last 90 days", today - timedelta(days=89), today),
        ("This year", today.replace(month=1, day=1), today),
    ]


def _offset(params: Mapping[str, str]) -> int:
    text = params.get("offset") or "0"
    return min(int(text), MAX_OFFSET) if text.isdigit() else 0


# -- formatting ---------------------------------------------------------------------------------------


def duration(hours: Decimal | str | None) -> str:
    """A duration as people read it: "40 s", "12 min", "5.5 h", "3.2 d" ("\u2013" for none)."""
    if hours is None:
        return "\u2013"
    h = Decimal(hours)
    if h * 60 < 1:
        seconds = int((h * 3600).to_integral_value(ROUND_HALF_UP))
        return f"{seconds} s" if seconds else "under 1 s"
    if h < 1:
        return f"{int((h * 60).to_integral_value(ROUND_HALF_UP))} min"
    if h < 48:
        return f"{h.quantize(Decimal('0.1'), ROUND_HALF_UP)} h"
    return f"{(h / 24).quantize(Decimal('0.1'), ROUND_HALF_UP)} d"


def percent(rate: str | None) -> str:
    if rate is None:
        return "\u2013"
    return f"{(Decimal(rate) * 100).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"


def _csv_response(name: str, header: list[str], rows: Iterable[list[Any]], extra: dict[str, str]) -> Response:
    return Response(
        csv_bytes(header, list(rows)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', **extra},
    )


def _context(user: PageUser) -> tuple[list[str], date]:
    """The legal entities the user may see figures of (403 naming report:read when none) and today."""
    with reading(user.ctx.store) as session:
        allowed = entities_for(user.ctx, session, user.username, "report:read", None)
    return allowed, datetime.now(UTC).date()


def _period_context(
    period: Period,
    errors: list[dict[str, str]],
    shown: dict[str, str],
    allowed: list[str],
    today: date,
    tab: str,
) -> dict[str, Any]:
    return {
        "tab": tab,
        "period": period,
        "errors": errors,
        "shown": shown,
        "allowed": allowed,
        "presets": [(label, Period(a, b, period.legal_entity).query()) for label, a, b in presets(today)],
        "duration": duration,
        "chart_rows": CHART_ROWS,
        "percent": percent,
    }


def ranked(href: str, rank: int) -> str:
    """A link to the row of rank `rank` in a list of PAGE_SIZE rows a page: on its page, highlighted."""
    offset = (rank - 1) // PAGE_SIZE * PAGE_SIZE
    extra = urlencode({"highlight": rank, **({"offset": offset} if offset else {})})
    return f"{href}&{extra}#rank-{rank}"


# -- the portal figures -------------------------------------------------------------------------------


@router.get("/figures")
async def figures(request: Request, user: PageUser) -> Response:
    """The figures start with the portal figures (the billing team's headline)."""
    _context(user)
    query = request.url.query
    return Response(
        status_code=303, headers={"Location": "/figures/portals" + (f"?{query}" if query else "")}
    )


def portal_charts(report: PortalReport, period: Period) -> dict[str, Any]:
    """The portal report as the charts and tables of its page (links included)."""

    def behind(figure: str, **more: Any) -> str:
        return "/figures/portals/invoices?" + period.query(figure=figure, **more)

    by_portal = [
        {
            "label": f"{p.portal} ({p.channel})",
            "values": [
                None if p.first_pass_acceptance_rate is None else float(p.first_pass_acceptance_rate) * 100
            ],
            "texts": [
                f"{percent(p.first_pass_acceptance_rate)} ({p.first_pass_accepted} of {p.invoices_submitted})"
            ],
            "row": p,
            "submitted_href": behind("submitted", via=p.portal),
            "accepted_href": behind("first_pass_accepted", via=p.portal),
            "rejections_href": behind("rejected", via=p.portal),
        }
        for p in report.by_portal
    ]
    reasons = [
        {
            "label": f"{r.label} ({r.code})" if r.code and r.label != r.code else r.label,
            "values": [r.count],
            "texts": [str(r.count)],
            "row": r,
            "href": behind("rejected", reason=r.code),
        }
        for r in report.rejections.by_reason
    ]
    customers = [
        {
            "label": c.name or c.customer_id,
            "values": [c.count],
            "texts": [str(c.count)],
            "row": c,
            "href": behind("rejected", customer=c.customer_id),
        }
        for c in report.rejections.by_customer
    ]
    accepted = report.time_in_portal.accepted
    time_rows = [
        {"label": label, "values": [float(value)], "texts": [duration(value)]}
        for label, value in (
            ("Median", accepted.median_hours),
            ("Mean", accepted.mean_hours),
            ("90th percentile", accepted.p90_hours),
        )
        if value is not None
    ]
    return {
        "report": report,
        "by_portal": by_portal,
        "reasons": reasons,
        "customers": customers,
        "time_rows": time_rows,
        "p90_href": ranked(behind("accepted"), percentile_rank(accepted.count, 90)) if accepted.count else "",
        "links": {
            "submitted": behind("submitted"),
            "first_pass_accepted": behind("first_pass_accepted"),
            "rejected": behind("rejected"),
            "accepted": behind("accepted"),
            "open": behind("open"),
        },
        "csv": lambda table: "/figures/portals.csv?" + period.query(table=table),
    }


@router.get("/figures/portals")
async def portals_page(request: Request, user: PageUser) -> Response:
    allowed, today = _context(user)
    period, errors, shown = read_period(request.query_params, allowed, today)
    context = _period_context(period, errors, shown, allowed, today, "portals")
    if errors:
        return render(request, "figures/portals.html", context, user=user, status_code=422)
    with reading(user.ctx.store) as session:
        report = await portal_figures(
            user.ctx, session, user.username, period.start, period.end, period.legal_entity, None, None
        )
    context.update(portal_charts(report, period))
    return render(request, "figures/portals.html", context, user=user)


PORTAL_TABLES = ("by_portal", "reasons", "customers", "time")


@router.get("/figures/portals.csv")
async def portals_csv(request: Request, user: PageUser) -> Response:
    """The table behind one chart of the portal figures, as CSV."""
    allowed, today = _context(user)
    period, errors, _ = read_period(request.query_params, allowed, today)
    table = request.query_params.get("table", "")
    if table not in PORTAL_TABLES:
        errors.append({"field": "table", "reason": f"table must be one of {', '.join(PORTAL_TABLES)}"})
    if errors:
        raise Invalid("; ".join(e["reason"] for e in errors), code="invalid_input", fields=errors)
    with reading(user.ctx.store) as session:
        r = await portal_figures(
            user.ctx, session, user.username, period.start, period.end, period.legal_entity, None, None
        )
    name = f"portal-{table.replace('_', '-')}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    extra = {
        "X-Report-Generator": r.produced.generator,
        "X-Report-Generated-At": r.produced.generated_at.isoformat(),
        "X-Report-Legal-Entities": ",".join(r.produced.legal_entities),
        "X-Report-Rows-SHA256": r.produced.rows_sha256,
    }
    if table == "by_portal":
        return _csv_response(
            name,
            [
                "portal",
                "channel",
                "invoices_submitted",
                "first_pass_accepted",
                "first_pass_acceptance_rate",
                "rejections",
            ],
            (
                [
                    p.portal,
                    p.channel,
                    p.invoices_submitted,
                    p.first_pass_accepted,
                    p.first_pass_acceptance_rate,
                    p.rejections,
                ]
                for p in r.by_portal
            ),
            extra,
        )
    if table == "reasons":
        return _csv_response(
            name,
            ["code", "name", "label", "rejections"],
            ([x.code, x.name, x.label, x.count] for x in r.rejections.by_reason),
            extra,
        )
    if table == "customers":
        return _csv_response(
            name,
            ["customer_id", "customer", "rejections"],
            ([c.customer_id, c.name, c.count] for c in r.rejections.by_customer),
            extra,
        )
    a, o = r.time_in_portal.accepted, r.time_in_portal.open
    return _csv_response(
        name,
        ["passes", "count", "mean_hours", "median_hours", "p90_hours", "oldest_hours"],
        [
            ["accepted", a.count, a.mean_hours, a.median_hours, a.p90_hours, ""],
            ["open", o.count, "", "", "", o.oldest_hours],
        ],
        extra,
    )


@dataclass(frozen=True)
class PassItem:
    rank: int
    passed: PortalSubmission
    invoice: InvoiceSummary | None
    hours: Decimal  # in the portal: to its answer, or until now

    @property
    def hours_text(self) -> str:
        return str(self.hours.quantize(Decimal("0.1"), ROUND_HALF_UP))


@dataclass(frozen=True)
class ApprovalItem:
    rank: int
    row: TierApproval | UnapprovedTier
    invoice: InvoiceSummary | None


def _pass_hours(p: PortalSubmission, now: datetime) -> Decimal:
    end = p.accepted_at or p.rejected_at or now
    return hours_between(p.submitted_at, end)


PASS_TITLES = {
    "submitted": "Invoices submitted to a portal for the first time",
    "first_pass_accepted": "Invoices accepted at their first submission",
    "rejected": "Rejected portal passes",
    "accepted": "Accepted portal passes, shortest time in the portal first",
    "open": "Portal passes still waiting for an answer, oldest first",
}


@router.get("/figures/portals/invoices")
async def portal_invoices(request: Request, user: PageUser) -> Response:
    """The portal passes (and their invoices) behind one number of the portal figures."""
    allowed, today = _context(user)
    q = request.query_params
    period, errors, shown = read_period(q, allowed, today)
    figure = q.get("figure", "")
    if figure not in PASS_FIGURES:
        errors.append({"field": "figure", "reason": f"figure must be one of {', '.join(PASS_FIGURES)}"})
    via = (q.get("via") or "")[:64] or None
    reason = q.get("reason")
    reason = reason[:8] if reason is not None else None
    customer = (q.get("customer") or "")[:36] or None
    highlight = _int(q.get("highlight"), "highlight", [], 1, MAX_OFFSET) if q.get("highlight") else None
    context = _period_context(period, errors, shown, allowed, today, "portals")
    if errors:
        raise Invalid("; ".join(e["reason"] for e in errors), code="invalid_input", fields=errors)
    now = datetime.now(UTC)
    with reading(user.ctx.store) as session:
        entities = entities_for(user.ctx, session, user.username, "report:read", period.legal_entity)
        rows = passes_behind(
            session,
            entities,
            period.start,
            period.end,
            None,
            None,
            figure,
            via=via,
            reason=reason,
            rejected_customer=customer,
        )
        offset = _offset(q)
        page = rows if q.get("format") == "csv" else rows[offset : offset + PAGE_SIZE]
        invoices = invoice_summaries(session, [r.invoice_id for r in page])
    items = [
        PassItem(i, r, invoices.get(r.invoice_id), _pass_hours(r, now))
        for i, r in enumerate(page, start=1 + (0 if q.get("format") == "csv" else offset))
    ]
    if q.get("format") == "csv":
        name = f"portal-{figure.replace('_', '-')}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
        return _csv_response(
            name,
            [
                "invoice_id",
                "number",
                "legal_entity",
                "customer",
                "portal",
                "pass",
                "submitted_at",
                "status",
                "reason_code",
                "reason_text",
                "hours",
                "total",
                "currency",
            ],
            (_pass_csv_row(it) for it in items),
            {},
        )
    narrowed = [
        text
        for text in (
            f"portal {via}" if via else "",
            f"reason {reason or 'none given'}" if reason is not None else "",
            f"customer {invoices[rows[0].invoice_id].customer_name}"
            if customer and rows and rows[0].invoice_id in invoices
            else (f"customer {customer}" if customer else ""),
        )
        if text
    ]
    context.update(
        {
            "title": PASS_TITLES[figure],
            "narrowed": narrowed,
            "items": items,
            "total": len(rows),
            "offset": offset,
            "limit": PAGE_SIZE,
            "base_query": period.query(figure=figure, via=via, reason=reason, customer=customer),
            "back": "/figures/portals?" + period.query(),
            "money_fmt": format_minor,
            "figure": figure,
            "highlight": highlight,
        }
    )
    return render(request, "figures/portal_invoices.html", context, user=user)


# -- approval turnaround ------------------------------------------------------------------------------


def approval_charts(report: ApprovalReport, period: Period) -> dict[str, Any]:
    """The approval report as the charts and tables of its page (links included)."""

    def behind(figure: str, rank: int | None = None, **more: Any) -> str:
        href = "/figures/approvals/invoices?" + period.query(figure=figure, **more)
        return href if rank is None else ranked(href, rank)

    def links(t: Any, figure: str, **more: Any) -> dict[str, str]:
        n = t.count
        return {
            "count": behind(figure, **more),
            "p50": behind(figure, percentile_rank(n, 50), **more) if n else "",
            "p90": behind(figure, percentile_rank(n, 90), **more) if n else "",
            "max": behind(figure, n, **more) if n else "",
        }

    def bars(label: str, e: ExactTurnaround) -> dict[str, Any]:
        return {
            "label": label,
            "values": [None if v is None else float(v) for v in (e.p50, e.p90)],
            "texts": [duration(e.p50), duration(e.p90)],
            "exact": e,
        }

    tiers = [
        {
            **bars(
                f"Tier {t.tier} · {t.role}" if t.role else f"Tier {t.tier}",
                exact_turnaround(a.hours for a in approvals_behind(report, tier=t.tier, role=t.role)),
            ),
            "row": t,
            "links": links(t.turnaround, "tier", tier=t.tier, role=t.role or None),
        }
        for t in report.by_tier
    ]
    approvers = [
        {
            **bars(
                a.approver, exact_turnaround(x.hours for x in approvals_behind(report, approver=a.approver))
            ),
            "row": a,
            "links": links(a.turnaround, "approver", approver=a.approver),
        }
        for a in report.by_approver
    ]
    buckets = [
        {
            "short": SHORT_BUCKETS.get(b.from_hours, f"≥{b.from_hours // 24} d"),
            "count": b.count,
            "row": b,
            "href": behind("bucket", bucket=b.from_hours),
        }
        for b in report.histogram
    ]
    return {
        "report": report,
        "tiers": tiers,
        "approvers": approvers,
        "buckets": buckets,
        "overall": exact_turnaround(a.hours for a in report.population),
        "overall_links": links(report.overall, "all"),
        "oldest_waiting": max((u.hours for u in unapproved_behind(report, "waiting")), default=None),
        "unapproved_links": {w: behind(w) for w in ("ended", "rejected", "waiting")},
        "csv": lambda table: "/figures/approvals.csv?" + period.query(table=table),
    }


@router.get("/figures/approvals")
async def approvals_page(request: Request, user: PageUser) -> Response:
    allowed, today = _context(user)
    period, errors, shown = read_period(request.query_params, allowed, today)
    context = _period_context(period, errors, shown, allowed, today, "approvals")
    if errors:
        return render(request, "figures/approvals.html", context, user=user, status_code=422)
    with reading(user.ctx.store) as session:
        report = await approval_figures(
            user.ctx, session, user.username, period.start, period.end, period.legal_entity
        )
    context.update(approval_charts(report, period))
    return render(request, "figures/approvals.html", context, user=user)


APPROVAL_TABLES = ("all", "tiers", "approvers", "histogram")


@router.get("/figures/approvals.csv")
async def approvals_csv(request: Request, user: PageUser) -> Response:
    """The table behind one chart of approval turnaround (or all of them: `table=all`, as the JSON API's
    CSV), as CSV."""
    allowed, today = _context(user)
    period, errors, _ = read_period(request.query_params, allowed, today)
    table = request.query_params.get("table", "all")
    if table not in APPROVAL_TABLES:
        errors.append({"field": "table", "reason": f"table must be one of {', '.join(APPROVAL_TABLES)}"})
    if errors:
        raise Invalid("; ".join(e["reason"] for e in errors), code="invalid_input", fields=errors)
    with reading(user.ctx.store) as session:
        report = await approval_figures(
            user.ctx, session, user.username, period.start, period.end, period.legal_entity
        )
    name = f"approval-{table}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    extra = approval_provenance_headers(report)
    figures_header = ["approvals", "p50_hours", "p90_hours", "mean_hours", "max_hours"]

    def figures_of(t: Any) -> list[Any]:
        return [t.count, t.p50_hours, t.p90_hours, t.mean_hours, t.max_hours]

    if table == "tiers":
        return _csv_response(
            name,
            ["tier", "role", *figures_header],
            ([t.tier, t.role, *figures_of(t.turnaround)] for t in report.by_tier),
            extra,
        )
    if table == "approvers":
        return _csv_response(
            name,
            ["approver", "tiers", "on_behalf", *figures_header],
            (
                [a.approver, " ".join(str(t) for t in a.tiers), a.on_behalf, *figures_of(a.turnaround)]
                for a in report.by_approver
            ),
            extra,
        )
    if table == "histogram":
        return _csv_response(
            name,
            ["bucket", "from_hours", "to_hours", "approvals"],
            ([b.label, b.from_hours, b.to_hours, b.count] for b in report.histogram),
            extra,
        )
    return _csv_response(name, CSV_COLUMNS, approval_csv_rows(report), extra)


APPROVAL_TITLES = {
    "all": "Tier approvals, shortest turnaround first",
    "tier": "Approvals of one tier, shortest turnaround first",
    "approver": "One approver's approvals, shortest turnaround first",
    "bucket": "Approvals with a turnaround in one range",
    "ended": "Tiers that ended without an approval (rejected, edited or voided), longest first",
    "rejected": "Tiers that ended in a rejection, longest first",
    "waiting": "Tiers started in the period and still waiting, longest first",
}


@router.get("/figures/approvals/invoices")
async def approval_invoices(request: Request, user: PageUser) -> Response:
    """The approvals (and their invoices) behind one number of approval turnaround."""
    allowed, today = _context(user)
    q = request.query_params
    period, errors, shown = read_period(q, allowed, today)
    figure = q.get("figure", "")
    if figure not in APPROVAL_FIGURES:
        errors.append({"field": "figure", "reason": f"figure must be one of {', '.join(APPROVAL_FIGURES)}"})
    tier = _int(q.get("tier"), "tier", errors, 1, 99) if figure == "tier" else None
    bucket = _int(q.get("bucket"), "bucket", errors, 0, 10**6) if figure == "bucket" else None
    approver = (q.get("approver") or "")[:64] if figure == "approver" else None
    role = (q.get("role") or "")[:64] or None if figure == "tier" else None
    highlight = _int(q.get("highlight"), "highlight", [], 1, MAX_OFFSET) if q.get("highlight") else None
    context = _period_context(period, errors, shown, allowed, today, "approvals")
    if errors:
        raise Invalid("; ".join(e["reason"] for e in errors), code="invalid_input", fields=errors)
    with reading(user.ctx.store) as session:
        report = await approval_figures(
            user.ctx, session, user.username, period.start, period.end, period.legal_entity
        )
        rows: Sequence[TierApproval | UnapprovedTier]
        if figure in ("ended", "rejected", "waiting"):
            rows = unapproved_behind(report, figure)
        else:
            rows = approvals_behind(
                report,
                tier=tier,
                role=role,
                approver=approver,
                bucket_from=bucket_of(Decimal(bucket))[0] if bucket is not None else None,
            )
        csv_wanted = q.get("format") == "csv"
        offset = _offset(q)
        page: Sequence[TierApproval | UnapprovedTier] = (
            rows if csv_wanted else rows[offset : offset + PAGE_SIZE]
        )
        invoices = invoice_summaries(session, [r.invoice_id for r in page])
    start = 1 if csv_wanted else offset + 1
    items = [ApprovalItem(i, r, invoices.get(r.invoice_id)) for i, r in enumerate(page, start=start)]
    if csv_wanted:
        return _csv_response(
            f"approval-{figure}-{period.start.isoformat()}-{period.end.isoformat()}.csv",
            [
                "rank",
                "invoice_id",
                "number",
                "legal_entity",
                "customer",
                "submission",
                "tier",
                "approver",
                "on_behalf_of",
                "started_at",
                "ended_at",
                "how",
                "hours",
                "total",
                "currency",
            ],
            (_approval_csv_row(it) for it in items),
            approval_provenance_headers(report),
        )
    bucket_label = ""
    if bucket is not None:
        lo = bucket_of(Decimal(bucket))[0]
        bucket_label = next((f"turnaround {b.label}" for b in report.histogram if b.from_hours == lo), "")
    narrowed = [
        text
        for text in (
            (f"tier {tier}" + (f" ({role})" if role else "")) if tier is not None else "",
            f"approver {approver}" if approver else "",
            bucket_label,
        )
        if text
    ]
    context.update(
        {
            "title": APPROVAL_TITLES[figure],
            "narrowed": narrowed,
            "items": items,
            "total": len(rows),
            "offset": offset,
            "limit": PAGE_SIZE,
            "highlight": highlight,
            "unapproved": figure in ("ended", "rejected", "waiting"),
            "base_query": period.query(figure=figure, tier=tier, role=role, approver=approver, bucket=bucket),
            "back": "/figures/approvals?" + period.query(),
            "money_fmt": format_minor,
            "figure": figure,
        }
    )
    return render(request, "figures/approval_invoices.html", context, user=user)


def _int(text: str | None, name: str, errors: list[dict[str, str]], lo: int, hi: int) -> int | None:
    if text is None or not text.isdigit() or not lo <= int(text) <= hi:
        errors.append({"field": name, "reason": f"{name} must be a whole number from {lo} to {hi}"})
        return None
    return int(text)


def _pass_csv_row(it: PassItem) -> list[Any]:
    p, inv = it.passed, it.invoice
    return [
        p.invoice_id,
        inv.number if inv else "",
        p.legal_entity,
        inv.customer_name if inv else "",
        p.portal,
        p.submission_pass,
        p.submitted_at.isoformat(),
        p.status,
        p.reason_code,
        p.reason_text,
        it.hours_text,
        format_minor(inv.total_minor, inv.currency) if inv else "",
        inv.currency if inv else "",
    ]


def _approval_csv_row(it: ApprovalItem) -> list[Any]:
    rank, row, inv = it.rank, it.row, it.invoice
    if isinstance(row, TierApproval):
        who, on_behalf_of, ended, how = (
            row.approver,
            row.on_behalf_of or "",
            row.approved_at.isoformat(),
            "approve",
        )
    else:
        who, on_behalf_of, ended, how = "", "", row.ended_at.isoformat() if row.ended_at else "", row.how
    return [
        rank,
        row.invoice_id,
        inv.number if inv else "",
        row.legal_entity,
        inv.customer_name if inv else "",
        row.submission,
        row.tier,
        who,
        on_behalf_of,
        row.started_at.isoformat(),
        ended,
        how,
        row.hours_text,
        format_minor(inv.total_minor, inv.currency) if inv else "",
        inv.currency if inv else "",
    ]

"""The dispute figures page (/figures/disputes): dispute rate over time, cycle time, the Pareto of root
causes by value, validity and recovery, days deductions outstanding, per customer and per reason, CAPAs;
server-rendered SVG charts (ui/templates/_charts.html), each with its table, a CSV of it, and every number
linking to the cases behind it: the dispute board filtered (/disputes?root_cause=..&opened_from=..) where
the board's filters say exactly the same thing, otherwise the list of the report's own cases
(/figures/disputes/cases?figure=..).

The numbers come from the JSON API's report function (api/reports.py dispute_figures: `report:read`, the
same period rules) and the lists from the same report (activities/dispute_reports.py cases_behind), so a
list has as many rows as the number it stands behind.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from activities import queries
from activities.db import reading
from activities.dispute_reports import CASE_FIGURES, DisputeReport, cases_behind
from activities.money import format_minor
from api.errors import Invalid
from api.pages.common import PageUser, render
from api.pages.figures import (
    PAGE_SIZE,
    Period,
    _context,
    _csv_response,
    _offset,
    _period_context,
    percent,
    read_period,
)
from api.reports import (
    DISPUTE_CSV_COLUMNS,
    dispute_csv_rows,
    dispute_figures,
    dispute_provenance_headers,
)
from workflows.root_causes import ROOT_CAUSES

router = APIRouter()

TABLES = ("all", "over_time", "cycle_time", "pareto", "validity", "recovery", "ddo", "customers", "reasons")


def days(text: str | None) -> str:
    return "\u2013" if text is None else f"{text} d"


def _board(period: Period, **filters: Any) -> str:
    """The dispute board filtered to the cases opened in the period (and more)."""
    params = {
        "opened_from": period.start.isoformat(),
        "opened_to": period.end.isoformat(),
        **{k: v for k, v in filters.items() if v},
    }
    return "/disputes?" + urlencode(params)


def dispute_charts(r: DisputeReport, period: Period) -> dict[str, Any]:
    """The report as the charts and tables of the page (links included)."""

    def behind(figure: str, **more: Any) -> str:
        return "/figures/disputes/cases?" + period.query(figure=figure, **more)

    over_time = [
        {
            "label": s.label,
            "values": [None if s.rate.rate is None else float(Decimal(s.rate.rate) * 100)],
            "texts": [
                f"{percent(s.rate.rate)} ({s.rate.cases_opened} of {s.rate.invoices_issued})"
                if s.rate.rate is not None
                else "no invoice issued"
            ],
            "row": s,
            "href": "/disputes?"
            + urlencode({"opened_from": s.start.isoformat(), "opened_to": s.end.isoformat()}),
        }
        for s in r.over_time
    ]
    ct = r.cycle_time
    cycle = [
        {"label": label, "values": [float(value)], "texts": [days(value)]}
        for label, value in (
            ("Median (p50)", ct.p50_days),
            ("90th percentile", ct.p90_days),
            ("Mean", ct.mean_days),
            ("Longest", ct.max_days),
        )
        if value is not None
    ]
    pareto: dict[str, list[dict[str, Any]]] = {}
    for p in r.pareto:
        pareto.setdefault(p.currency, []).append(
            {
                "label": f"{p.root_cause} \u00b7 {p.cause}",
                "values": [p.value_minor],
                "texts": [
                    f"{format_minor(p.value_minor, p.currency)} {p.currency}"
                    f" \u00b7 {percent(p.cumulative_share)} cumulative"
                ],
                "row": p,
                "href": _board(period, root_cause=p.root_cause, status="closed"),
            }
        )
    v = r.validity
    validity = [
        {"label": label, "values": [n], "texts": [str(n)], "href": behind(fig), "count": n}
        for label, n, fig in (
            ("Valid", v.valid, "valid"),
            ("Partly valid", v.partly_valid, "valid"),
            ("Invalid", v.invalid, "invalid"),
        )
    ]
    ddo = [
        {
            "label": d.currency,
            "values": [None if d.ddo_days is None else float(d.ddo_days)],
            "texts": [days(d.ddo_days) if d.ddo_days is not None else "nothing deducted in the period"],
            "row": d,
        }
        for d in r.ddo
    ]
    return {
        "report": r,
        "over_time": over_time,
        "cycle": cycle,
        "pareto": pareto,
        "validity_rows": validity,
        "ddo_rows": ddo,
        "links": {
            "opened": _board(period),
            "closed": behind("closed"),
            "valid": behind("valid"),
            "invalid": behind("invalid"),
            "past_sla": "/disputes?past_sla=1",
            "deductions_open": behind("deductions_open"),
            "deductions_opened": behind("deductions_opened"),
            "p50": f"/disputes/{r.cycle_time.p50_case}" if r.cycle_time.p50_case else "",
            "p90": f"/disputes/{r.cycle_time.p90_case}" if r.cycle_time.p90_case else "",
        },
        "customer_href": lambda c: _board(period, customer_id=c),
        "reason_href": lambda code: _board(period, reason=code),
        "capa_href": lambda status: "/capa?" + urlencode({"status": status}),
        "capa_outcome_href": lambda outcome: "/capa?" + urlencode({"outcome": outcome}),
        "behind": behind,
        "money_fmt": format_minor,
        "days": days,
        "csv": lambda table: "/figures/disputes.csv?" + period.query(table=table),
        "root_causes": ROOT_CAUSES,
    }


@router.get("/figures/disputes")
async def disputes_page(request: Request, user: PageUser) -> Response:
    allowed, today = _context(user)
    period, errors, shown = read_period(request.query_params, allowed, today)
    context = _period_context(period, errors, shown, allowed, today, "disputes")
    if errors:
        return render(request, "figures/disputes.html", context, user=user, status_code=422)
    with reading(user.ctx.store) as session:
        report = await dispute_figures(
            user.ctx, session, user.username, period.start, period.end, period.legal_entity
        )
    context.update(dispute_charts(report, period))
    context["may_capa"] = user.may("capa:read")
    return render(request, "figures/disputes.html", context, user=user)


@router.get("/figures/disputes.csv")
async def disputes_csv(request: Request, user: PageUser) -> Response:
    """The table behind one chart of the dispute figures (or every figure: `table=all`), as CSV."""
    allowed, today = _context(user)
    period, errors, _ = read_period(request.query_params, allowed, today)
    table = request.query_params.get("table", "all")
    if table not in TABLES:
        errors.append({"field": "table", "reason": f"table must be one of {', '.join(TABLES)}"})
    if errors:
        raise Invalid("; ".join(e["reason"] for e in errors), code="invalid_input", fields=errors)
    with reading(user.ctx.store) as session:
        r = await dispute_figures(
            user.ctx, session, user.username, period.start, period.end, period.legal_entity
        )
    name = f"dispute-{table.replace('_', '-')}-{period.start.isoformat()}-{period.end.isoformat()}.csv"
    extra = dispute_provenance_headers(r)
    if table == "over_time":
        return _csv_response(
            name,
            ["start", "end", "cases_opened", "invoices_issued", "rate"],
            ([s.start, s.end, s.rate.cases_opened, s.rate.invoices_issued, s.rate.rate] for s in r.over_time),
            extra,
        )
    if table == "cycle_time":
        ct = r.cycle_time
        return _csv_response(
            name,
            ["cases_closed", "p50_days", "p90_days", "mean_days", "max_days", "p50_case", "p90_case"],
            [
                [
                    ct.cases_closed,
                    ct.p50_days,
                    ct.p90_days,
                    ct.mean_days,
                    ct.max_days,
                    ct.p50_case,
                    ct.p90_case,
                ]
            ],
            extra,
        )
    if table == "pareto":
        return _csv_response(
            name,
            [
                "currency",
                "rank",
                "root_cause",
                "cause",
                "internal",
                "cases",
                "value_minor",
                "share",
                "cumulative_share",
            ],
            (
                [
                    p.currency,
                    p.rank,
                    p.root_cause,
                    p.cause,
                    p.internal,
                    p.cases,
                    p.value_minor,
                    p.share,
                    p.cumulative_share,
                ]
                for p in r.pareto
            ),
            extra,
        )
    if table == "validity":
        v = r.validity
        return _csv_response(
            name,
            ["closed", "valid", "partly_valid", "invalid", "voided", "validity_rate"],
            [[v.closed, v.valid, v.partly_valid, v.invalid, v.voided, v.validity_rate]],
            extra,
        )
    if table == "recovery":
        return _csv_response(
            name,
            ["currency", "cases_closed_invalid", "deducted_minor", "recovered_minor", "recovery_rate"],
            ([x.currency, x.cases, x.deducted_minor, x.recovered_minor, x.rate] for x in r.recovery),
            extra,
        )
    if table == "ddo":
        return _csv_response(
            name,
            [
                "currency",
                "open_at_end_minor",
                "cases_open_at_end",
                "deducted_in_period_minor",
                "cases_opened",
                "days_in_period",
                "ddo_days",
            ],
            (
                [
                    d.currency,
                    d.open_at_end_minor,
                    d.cases_open_at_end,
                    d.deducted_in_period_minor,
                    d.cases_opened,
                    d.days_in_period,
                    d.ddo_days,
                ]
                for d in r.ddo
            ),
            extra,
        )
    if table == "customers":
        return _csv_response(
            name,
            [
                "customer_id",
                "customer",
                "currency",
                "cases_opened",
                "disputed_minor",
                "invoices_issued",
                "invoiced_minor",
                "count_rate",
                "value_rate",
                "cases_closed",
                "closed_valid",
            ],
            (
                [
                    c.customer_id,
                    c.name,
                    c.currency,
                    c.cases_opened,
                    c.disputed_minor,
                    c.invoices_issued,
                    c.invoiced_minor,
                    c.count_rate,
                    c.value_rate,
                    c.cases_closed,
                    c.closed_valid,
                ]
                for c in r.by_customer
            ),
            extra,
        )
    if table == "reasons":
        return _csv_response(
            name,
            ["reason", "label", "currency", "cases_opened", "disputed_minor", "cases_closed", "closed_valid"],
            (
                [
                    x.reason,
                    x.label,
                    x.currency,
                    x.cases_opened,
                    x.disputed_minor,
                    x.cases_closed,
                    x.closed_valid,
                ]
                for x in r.by_reason
            ),
            extra,
        )
    return _csv_response(name, DISPUTE_CSV_COLUMNS, dispute_csv_rows(r), extra)


@router.get("/figures/disputes/cases")
async def dispute_cases(request: Request, user: PageUser) -> Response:
    """The cases behind one number of the dispute figures that the board cannot filter for (closed in the
    period, validity, deductions at the period's end)."""
    allowed, today = _context(user)
    q = request.query_params
    period, errors, shown = read_period(q, allowed, today)
    figure = q.get("figure", "")
    if figure not in CASE_FIGURES:
        errors.append({"field": "figure", "reason": f"figure must be one of {', '.join(CASE_FIGURES)}"})
    currency = (q.get("currency") or "")[:3]
    context = _period_context(period, errors, shown, allowed, today, "disputes")
    if errors:
        raise Invalid("; ".join(e["reason"] for e in errors), code="invalid_input", fields=errors)
    with reading(user.ctx.store) as session:
        r = await dispute_figures(
            user.ctx, session, user.username, period.start, period.end, period.legal_entity
        )
        rows = cases_behind(r, figure, currency)
        offset = _offset(q)
        page = rows[offset : offset + PAGE_SIZE]
        names = queries.customer_names(session, sorted({c.customer_id for c in page}))
    context.update(
        {
            "title": CASE_FIGURES[figure],
            "items": [
                {
                    "rank": i,
                    "case": c,
                    "customer": names.get(c.customer_id, c.customer_id),
                    "original": format_minor(c.original_minor, c.currency),
                    "open_at_end": format_minor(c.deduction_open_at_end_minor, c.currency),
                    "deducted": format_minor(c.deducted_in_period_minor, c.currency),
                    "recovered": format_minor(c.recovered_minor, c.currency),
                    "cycle": None
                    if c.cycle_days is None
                    else str(c.cycle_days.quantize(Decimal("0.01"), ROUND_HALF_UP)),
                }
                for i, c in enumerate(page, start=offset + 1)
            ],
            "figure": figure,
            "currency": currency,
            "total": len(rows),
            "offset": offset,
            "limit": PAGE_SIZE,
            "base_query": period.query(figure=figure, currency=currency or None),
            "back": "/figures/disputes?" + period.query(),
        }
    )
    return render(request, "figures/dispute_cases.html", context, user=user)

"""GET /api/v1/reports/disputes over HTTP: the figures for the legal entities the caller may report on, as
JSON and as CSV with how they were produced, 403 naming report:read for everyone else, 422 for a period
that is not one. The arithmetic is tested without a server in tests/activities/test_dispute_reports.py."""

from __future__ import annotations

import csv
import io

from tests.activities.test_dispute_reports import Case, at, issued
from tests.conftest import Stack

DISPUTES = "/api/v1/reports/disputes"
NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}


async def test_dispute_figures_as_json_and_csv_for_those_who_may_read_reports(stack: Stack) -> None:
    initech, hooli = stack.customers["initech"], stack.customers["hooli"]
    for d in (2, 3, 4, 5):
        issued(stack.store, initech, at(11, d, 9), "EUR", 10000)
    issued(stack.store, hooli, at(11, 5), "USD", 10000, entity="GLOBEX")
    a = Case(stack.store, initech, "EUR", "manual", "PRC", at(11, 2), 3000)
    a.record("resolve", "resolved", at(11, 3), amounts=a.amounts(open_minor=0, credited_minor=3000))
    a.close(at(11, 4, 12), "PRC", "valid")
    b = Case(stack.store, initech, "EUR", "deduction", "DLV", at(11, 20), 1000)
    Case(stack.store, hooli, "USD", "manual", "PRC", at(11, 6), 500, entity="GLOBEX")
    supervisor, collector, compliance = await stack.clients("supervisor", "collector", "compliance")

    r = await supervisor.get(DISPUTES, params=NOVEMBER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dispute_rate"] == {
        "cases_opened": 2,
        "invoices_issued": 4,
        "rate": "0.5000",
        "by_currency": [
            {"currency": "EUR", "disputed_minor": 4000, "invoiced_minor": 40000, "rate": "0.1000"}
        ],
    }
    assert body["cycle_time"] == {
        "cases_closed": 1,
        "p50_days": "2.50",
        "p90_days": "2.50",
        "mean_days": "2.50",
        "max_days": "2.50",
        "p50_case": a.id,
        "p90_case": a.id,
    }
    assert body["ddo"] == [
        {
            "currency": "EUR",
            "open_at_end_minor": 1000,
            "cases_open_at_end": 1,
            "deducted_in_period_minor": 1000,
            "cases_opened": 1,
            "days_in_period": 30,
            "ddo_days": "30.00",
        }
    ]
    assert body["validity"]["validity_rate"] == "1.0000"
    assert body["pareto"] == [
        {
            "currency": "EUR",
            "rank": 1,
            "root_cause": "PRC",
            "cause": body["pareto"][0]["cause"],
            "internal": True,
            "cases": 1,
            "value_minor": 3000,
            "share": "1.0000",
            "cumulative_share": "1.0000",
        }
    ]
    assert body["past_sla"]["cases"] == 0
    assert body["capa"] == {"opened": 0, "by_status": [], "checks": 0, "by_outcome": []}
    produced = body["produced"]
    assert produced["legal_entities"] == ["ACME"]  # not GLOBEX's Hooli
    assert (produced["from_utc"], produced["before_utc"]) == ("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")
    assert (produced["cases_read"], produced["invoices_read"], produced["entries_read"]) == (2, 4, 1)
    assert len(produced["rows_sha256"]) == 64
    assert b.id not in body["cycle_time"].values()

    r = await supervisor.get(DISPUTES, params={**NOVEMBER, "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-report-rows-sha256"] == produced["rows_sha256"]
    assert r.headers["x-report-legal-entities"] == "ACME"
    assert "dispute-figures-2026-11-01-2026-11-30.csv" in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert {"group": "ddo", "currency": "EUR", "figure": "30.00"}.items() <= next(
        row for row in table if row["group"] == "ddo"
    ).items()
    assert [row["key"] for row in table if row["group"] == "pareto"] == ["PRC"]
    r = await supervisor.get(DISPUTES, params=NOVEMBER, headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")

    empty = (await supervisor.get(DISPUTES, params={"from": "2027-01-01", "to": "2027-01-31"})).json()
    assert (empty["dispute_rate"]["cases_opened"], empty["dispute_rate"]["rate"]) == (0, None)

    for who, params in [
        (collector, NOVEMBER),
        (compliance, NOVEMBER),
        (supervisor, {**NOVEMBER, "legal_entity": "GLOBEX"}),
    ]:
        r = await who.get(DISPUTES, params=params)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["details"]["action"] == "report:read"

    for params, field in [
        ({"from": "2026-11-30", "to": "2026-11-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),
        ({"to": "2026-11-30"}, "query.from"),
        ({**NOVEMBER, "format": "xml"}, "query.format"),
    ]:
        r = await supervisor.get(DISPUTES, params=params)
        assert r.status_code == 422, (params, r.text)
        details = r.json()["error"]["details"]
        assert details.get("field") == field or field in [f["field"] for f in details.get("fields", [])]

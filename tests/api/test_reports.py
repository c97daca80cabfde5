"""GET /api/v1/reports/portals over HTTP: the figures for the legal entities the caller may report on,
403 naming report:read for everyone else, 422 for a period that is not one. The arithmetic itself is
tested without a server in tests/activities/test_portal_reports.py."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from activities.ledger import canonical_json, sha256_hex
from tests.activities.test_portal_reports import ARIBA, add_invoice, add_pass, at
from tests.api.test_approvals import add_cast, pending
from tests.conftest import Stack

PORTALS = "/api/v1/reports/portals"
NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}


async def test_portal_figures_for_those_who_may_read_reports_over_a_valid_period(stack: Stack) -> None:
    # One test (one stack per backend): stacks are slow to start.
    initech, hooli = stack.customers["initech"], stack.customers["hooli"]
    accepted = add_invoice(stack.store, "ACME", initech)
    add_pass(stack.store, accepted, 1, ARIBA, at(11, 2, 9), accepted=at(11, 2, 21))
    fixed = add_invoice(stack.store, "ACME", initech)
    add_pass(stack.store, fixed, 1, ARIBA, at(11, 3), rejected=at(11, 3, 6), reason="REF")
    add_pass(stack.store, fixed, 2, ARIBA, at(11, 4), accepted=at(11, 4, 3))
    elsewhere = add_invoice(stack.store, "GLOBEX", hooli)
    add_pass(stack.store, elsewhere, 1, ("peppol-hooli", "peppol"), at(11, 5))
    supervisor, collector, compliance = await stack.clients("supervisor", "collector", "compliance")

    r = await supervisor.get(PORTALS, params=NOVEMBER)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["invoices_submitted"], body["first_pass_accepted"], body["first_pass_acceptance_rate"]) == (
        2,
        1,
        "0.5000",
    )
    assert body["passes"] == 3
    assert body["rejections"] == {
        "total": 1,
        "by_reason": [
            {
                "code": "REF",
                "name": "REFERENCES",
                "label": "References incorrect (purchase order missing or wrong)",
                "count": 1,
            }
        ],
        "by_customer": [{"customer_id": initech, "name": "Initech GmbH", "count": 1}],
    }
    assert body["by_portal"] == [
        {
            "portal": "ariba-initech",
            "channel": "cxml",
            "invoices_submitted": 2,
            "first_pass_accepted": 1,
            "first_pass_acceptance_rate": "0.5000",
            "rejections": 1,
        }
    ]
    assert body["time_in_portal"] == {
        "accepted": {"count": 2, "mean_hours": "7.5", "median_hours": "7.5", "p90_hours": "12.0"},
        "open": {"count": 0, "oldest_hours": None},
    }
    produced = body["produced"]
    assert produced["legal_entities"] == ["ACME"]  # the supervisor reports on ACME only: not GLOBEX's Hooli
    assert (produced["submitted_from"], produced["submitted_before"]) == (
        "2026-11-01T00:00:00Z",
        "2026-12-01T00:00:00Z",
    )
    assert (produced["passes_read"], produced["day_boundaries"]) == (3, "UTC")

    empty = (await supervisor.get(PORTALS, params={"from": "2027-01-01", "to": "2027-01-31"})).json()
    assert (empty["invoices_submitted"], empty["first_pass_acceptance_rate"]) == (0, None)

    for who, params in [
        (collector, NOVEMBER),
        (compliance, NOVEMBER),  # compliance reads evidence, not the billing figures
        (supervisor, {**NOVEMBER, "entity": "GLOBEX"}),
    ]:
        r = await who.get(PORTALS, params=params)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["details"]["action"] == "report:read"
        assert "report:read" in r.json()["error"]["message"]

    # Another legal entity's customer is as unknown as a customer that does not exist.
    r = await supervisor.get(PORTALS, params={**NOVEMBER, "customer_id": hooli})
    assert r.status_code == 404, r.text

    # A period is from <= to, at most a year (366 days), both dates given as dates.
    for params, field in [
        ({"from": "2026-11-30", "to": "2026-11-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),  # 367 days
        ({"to": "2026-11-30"}, "query.from"),
        ({"from": "2026-11-01", "to": "30/11/2026"}, "query.to"),
    ]:
        r = await supervisor.get(PORTALS, params=params)
        assert r.status_code == 422, (params, r.text)
        details = r.json()["error"]["details"]
        assert details.get("field") == field or field in [f["field"] for f in details.get("fields", [])]
    r = await supervisor.get(PORTALS, params={"from": "2024-01-01", "to": "2024-12-31"})  # leap year: 366
    assert r.status_code == 200, r.text


APPROVALS = "/api/v1/reports/approvals"


def _hours(start: datetime, end: datetime) -> Decimal:
    return Decimal((end - start) // timedelta(microseconds=1)) / Decimal(3_600_000_000)


def _text(value: Decimal) -> str:
    return str(value.quantize(Decimal("0.1"), ROUND_HALF_UP))


def _expected(hours: list[Decimal]) -> dict[str, Any]:
    """The figures computed here, independently of the report: nearest rank is the ceil(p n)-th smallest."""
    values = sorted(hours)
    n = len(values)
    return {
        "count": n,
        "p50_hours": _text(values[math.ceil(n * 0.5) - 1]),
        "p90_hours": _text(values[math.ceil(n * 0.9) - 1]),
        "mean_hours": _text(sum(values, Decimal(0)) / n),
        "max_hours": _text(values[-1]),
    }


async def test_approval_turnaround_from_the_approvals_made_through_the_api(stack: Stack) -> None:
    """Invoices approved, rejected and resubmitted, and left waiting through the real workflow; the report's
    figures against those computed here from each invoice's ledger history (when each tier started and
    was approved), JSON and CSV, and who may see them."""
    add_cast(stack)
    approver, approver2, manager, preparer, supervisor = await stack.clients(
        "approver", "approver2", "manager", "preparer", "supervisor"
    )
    small = await pending(stack, "500.00")
    medium = await pending(stack, "20000.00")  # two tiers: ar_approver, then finance_manager
    sent_back = await pending(stack, "700.00")
    waiting = await pending(stack, "800.00")
    assert (await approver.post(f"/api/v1/invoices/{small}/approve")).status_code == 200
    assert (await approver.post(f"/api/v1/invoices/{medium}/approve", json={"tier": 1})).status_code == 200
    assert (await manager.post(f"/api/v1/invoices/{medium}/approve", json={"tier": 2})).status_code == 200
    r = await approver.post(f"/api/v1/invoices/{sent_back}/reject", json={"reason": "wrong PO"})
    assert r.status_code == 200, r.text
    assert (await preparer.post(f"/api/v1/invoices/{sent_back}/submit")).status_code == 200
    assert (await approver2.post(f"/api/v1/invoices/{sent_back}/approve")).status_code == 200

    # What the test did, from the ledger: each tier's start (submission, or the tier before approved).
    history = {
        i: (await supervisor.get(f"/api/v1/invoices/{i}/history")).json()
        for i in (small, medium, sent_back, waiting)
    }
    by_tier: dict[int, list[Decimal]] = {1: [], 2: []}
    by_approver: dict[str, list[Decimal]] = {"approver": [], "approver2": [], "manager": []}
    read: list[tuple[str, int, str]] = []
    for _, entries in sorted(history.items()):  # the report reads by legal entity, invoice, seq
        started, tier = None, 0
        for e in entries:
            if e["event"] not in ("submit", "approve_tier", "approve", "reject", "edit", "void"):
                continue
            read.append(("ACME", e["seq"], e["entry_hash"]))
            when = datetime.fromisoformat(e["at"])
            if e["event"] == "submit":
                started, tier = when, 1
            elif e["event"] in ("approve_tier", "approve"):
                assert started is not None
                by_tier[tier].append(_hours(started, when))
                by_approver[e["actor"]].append(_hours(started, when))
                started, tier = when, tier + 1
            else:
                started = None
    everything = by_tier[1] + by_tier[2]
    assert len(everything) == 4

    today = datetime.now(UTC).date()
    period = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
    r = await supervisor.get(APPROVALS, params=period)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["approvals"], body["invoices"]) == (4, 3)
    assert body["overall"] == _expected(everything)
    assert body["by_tier"] == [
        {"tier": 1, "role": "ar_approver", "turnaround": _expected(by_tier[1])},
        {"tier": 2, "role": "finance_manager", "turnaround": _expected(by_tier[2])},
    ]
    assert body["by_approver"] == [
        {
            "approver": "approver",
            "tiers": [1],
            "on_behalf": 0,
            "turnaround": _expected(by_approver["approver"]),
        },
        {
            "approver": "approver2",
            "tiers": [1],
            "on_behalf": 0,
            "turnaround": _expected(by_approver["approver2"]),
        },
        {
            "approver": "manager",
            "tiers": [2],
            "on_behalf": 0,
            "turnaround": _expected(by_approver["manager"]),
        },
    ]
    assert sum(b["count"] for b in body["histogram"]) == 4
    assert body["histogram"][0]["count"] == sum(1 for h in everything if h < 1)
    assert body["unapproved"]["ended"] == body["unapproved"]["rejected"] == 1
    assert body["unapproved"]["waiting"] == 1  # `waiting`, tier 1
    produced = body["produced"]
    assert produced["legal_entities"] == ["ACME"]
    assert (produced["invoices_read"], produced["entries_read"]) == (4, len(read))
    assert produced["rows_sha256"] == sha256_hex(canonical_json([list(row) for row in read]))
    assert produced["approved_from"] == f"{period['from']}T00:00:00Z"

    # The same report as CSV: by the parameter, or by Accept.
    for params, headers in [({**period, "format": "csv"}, {}), (period, {"Accept": "text/csv"})]:
        r = await supervisor.get(APPROVALS, params=params, headers=headers)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        assert r.headers["x-report-rows-sha256"] == produced["rows_sha256"]
        assert "attachment" in r.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert rows[0] == {
            "group": "all",
            "tier": "",
            "role": "",
            "approver": "",
            "bucket": "",
            **body["overall"],
        } | {"count": "4"}
        tiers = [
            (row["tier"], row["role"], row["count"], row["p90_hours"])
            for row in rows
            if row["group"] == "tier"
        ]
        assert tiers == [
            (str(t["tier"]), t["role"], str(t["turnaround"]["count"]), t["turnaround"]["p90_hours"])
            for t in body["by_tier"]
        ]
        assert [row["approver"] for row in rows if row["group"] == "approver"] == [
            "approver",
            "approver2",
            "manager",
        ]
        assert [row["count"] for row in rows if row["group"] == "bucket"] == [
            str(b["count"]) for b in body["histogram"]
        ]

    # A period without approvals, and who may not see them.
    empty = (await supervisor.get(APPROVALS, params={"from": "2027-01-01", "to": "2027-01-31"})).json()
    assert (empty["approvals"], empty["overall"]["p50_hours"], empty["by_tier"]) == (0, None, [])
    collector, compliance = await stack.clients("collector", "compliance")
    for who, params in [
        (collector, period),
        (compliance, period),
        (supervisor, {**period, "legal_entity": "GLOBEX"}),
    ]:
        r = await who.get(APPROVALS, params=params)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["details"]["action"] == "report:read"
    for params, field in [
        ({"from": "2026-11-30", "to": "2026-11-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),
        ({"from": "2026-11-01"}, "query.to"),
        ({"from": "2026-11-01", "to": "2026-11-31"}, "query.to"),
        ({**NOVEMBER, "format": "xml"}, "query.format"),
        ({**NOVEMBER, "legal_entity": "X" * 33}, "query.legal_entity"),
    ]:
        r = await supervisor.get(APPROVALS, params=params)
        assert r.status_code == 422, (params, r.text)
        details = r.json()["error"]["details"]
        assert field in [f["field"] for f in details["fields"]], details

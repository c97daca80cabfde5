"""GET /api/v1/reports/portals over HTTP: the figures for the legal entities the caller may report on,
403 naming report:read for everyone else, 422 for a period that is not one. The arithmetic itself is
tested without a server in tests/activities/test_portal_reports.py."""

from __future__ import annotations

from tests.activities.test_portal_reports import ARIBA, add_invoice, add_pass, at
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

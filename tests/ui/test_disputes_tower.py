"""Disputes in the control tower: a case past its SLA is listed by GET /api/v1/workflows/stuck and on
/tower with why (the SLA passed, the escalation level), its owner, age, amount at stake and a link to the
case; the tower's filters apply; a case within its SLA is not listed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from activities.disputes import DISPUTES_FILE
from tests.ui.conftest import UiStack, both_widths
from tests.ui.test_disputes import case_via_api


@pytest.fixture
def fast_sla(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """policies/disputes.toml with every case past its SLA two seconds after it opens."""
    text = DISPUTES_FILE.read_text()
    start = text.index("[sla.default]")
    end = text.index("# Who owns a new case")
    fast = (
        '[sla.default]\nresolve = "2 seconds"\nescalate = [{ after = "2 seconds", to = "ar_supervisor" }]\n\n'
    )
    path = tmp_path / "disputes.toml"
    path.write_text(text[:start] + fast + text[end:])
    monkeypatch.setenv("CASHCYCLE_DISPUTES_FILE", str(path))


async def test_a_case_past_its_sla_is_in_the_tower_with_why(ui_stack: UiStack, fast_sla: None) -> None:
    stack = ui_stack.stack
    case, _ = await case_via_api(stack)
    supervisor = await stack.client("supervisor")
    found: list[dict[str, Any]] = []
    for _ in range(40):
        page = (await supervisor.get("/api/v1/workflows/stuck")).json()
        found = [d for d in page["disputes"] if d["dispute_id"] == case["id"]]
        if found and found[0]["escalation_level"]:
            break
        await asyncio.sleep(0.5)
    assert found, "the case never showed in the tower"
    row = found[0]
    assert row["cause"]["code"] == "dispute_past_sla"
    assert "escalation level 1" in row["cause"]["detail"]
    assert (row["owner"], row["amount_at_stake"], row["currency"]) == ("collector", "200.00", "EUR")
    assert row["url"] == f"/disputes/{case['id']}" and row["case_number"] == case["case_number"]
    # The tower's filters: by cause and owner it stays; an invoice status filter leaves disputes out.
    by_cause = (await supervisor.get("/api/v1/workflows/stuck", params={"cause": "dispute_past_sla"})).json()
    assert [d["dispute_id"] for d in by_cause["disputes"]] == [case["id"]] and by_cause["items"] == []
    other = (await supervisor.get("/api/v1/workflows/stuck", params={"owner": "someone_else"})).json()
    assert other["disputes"] == []
    by_status = (await supervisor.get("/api/v1/workflows/stuck", params={"status": "submitted"})).json()
    assert by_status["disputes"] == []

    p = await ui_stack.logged_in("supervisor")
    await p.goto("/tower")
    tr = p.locator(f"#stuck-disputes tr[data-dispute='{case['id']}']")
    await expect(tr).to_contain_text("dispute past its SLA")
    await expect(tr).to_contain_text("collector")
    await expect(tr).to_contain_text("200.00")
    await expect(tr.locator("a")).to_have_attribute("href", f"/disputes/{case['id']}")
    await both_widths(p, "tower-disputes")
    await tr.locator("a").click()
    await expect(p.locator("#case")).to_have_attribute("data-sla", "past_sla")
    await expect(p.locator("#sla")).to_contain_text("past SLA")
    await both_widths(p, "dispute-case-past-sla")


async def test_a_case_within_its_sla_is_not_in_the_tower(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    await case_via_api(stack)
    page = (await (await stack.client("supervisor")).get("/api/v1/workflows/stuck")).json()
    assert page["disputes"] == []
    p = await ui_stack.logged_in("supervisor")
    await p.goto("/tower")
    await expect(p.locator("#disputes-title")).to_contain_text("0 cases")

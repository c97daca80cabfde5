"""The control tower in Chromium: a supervisor finds a stuck invoice and reassigns it (tick, choose, check
your answers, confirm, result per row), errors and empty states, who sees it, axe at 1280 and 390 px,
screenshots."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from lxml import html
from playwright.async_api import Browser
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from activities.db import reading
from activities.models import LedgerEntry
from tests.api.test_tower import SLA, pending
from tests.conftest import running_stack
from tests.ui.conftest import UiStack, assert_accessible, both_widths, screenshot


@pytest.fixture
async def tower_ui(
    ui_db_url: str,
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
    browser: Browser,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[UiStack]:
    sla = tmp_path / "sla.toml"
    sla.write_text(SLA)
    monkeypatch.setenv("CASHCYCLE_SLA_FILE", str(sla))
    monkeypatch.setenv("CASHCYCLE_TEMPORAL_UI_URL", "http://127.0.0.1:8233")
    async with running_stack(ui_db_url, temporal_env, tmp_path) as stack:
        ui = UiStack(stack, browser, [])
        try:
            yield ui
        finally:
            for context in ui.contexts:
                await context.close()


async def test_a_supervisor_finds_a_stuck_invoice_and_reassigns_it(tower_ui: UiStack) -> None:
    stack = tower_ui.stack
    late = await pending(stack)
    other = await pending(stack, unit_price="40.00")
    await asyncio.sleep(1.2)
    page = await tower_ui.logged_in("supervisor")
    await page.goto("/tower")
    row = page.locator(f'tr[data-invoice="{late}"]')
    await row.wait_for()
    assert await row.get_attribute("data-cause") == "approval_tier_1"
    assert "tier 1 approval overdue" in await row.inner_text()
    assert await page.locator("#stuck-total").inner_text() == "2 invoices"
    link = await row.locator("a[target=_blank]").get_attribute("href")
    assert link is not None and link.startswith("http://127.0.0.1:8233/namespaces/default/workflows/")
    await both_widths(page, "tower")

    await page.check(f"#sel-{late}")
    await page.select_option("#action", "reassign")
    await page.fill("#assignee", "approver2")
    await page.fill("#reason", "approver is on leave")
    await page.click("#bulk button[type=submit]")
    await page.wait_for_url("**/tower/actions/check")
    assert await page.locator("#will-touch").inner_text() == "1 invoice"
    assert await page.locator("#check-reason").inner_text() == "approver is on leave"
    await assert_accessible(page, context="check your answers")
    await screenshot(page, "tower-check-1280")
    before = await stack.client("supervisor")
    assert (await before.get(f"/api/v1/invoices/{late}")).json()["approval"]["steps"][0][
        "assigned_to"
    ] is None

    # What the confirmation posts, kept to send it again as a double click or a resubmission would.
    fields: list[list[str]] = await page.evaluate(
        "() => Array.from(new FormData(document.querySelector('form.confirm')).entries())"
    )
    await page.click("form.confirm button[type=submit]")
    await page.wait_for_url("**/tower/actions")
    assert "1 done" in await page.locator("h1").inner_text()
    assert await page.locator('#result tr[data-outcome="applied"]').count() == 1
    await both_widths(page, "tower-result")
    inv = (await before.get(f"/api/v1/invoices/{late}")).json()
    assert inv["approval"]["steps"][0]["assigned_to"] == "approver2"
    other_inv = (await before.get(f"/api/v1/invoices/{other}")).json()
    assert other_inv["approval"]["steps"][0]["assigned_to"] is None, "only the ticked row is touched"
    with reading(stack.store) as s:
        [entry] = s.exec(
            select(LedgerEntry).where(LedgerEntry.object_id == late, LedgerEntry.event == "reassign_approval")
        ).all()
    assert entry.actor == "supervisor" and json.loads(entry.actor_roles) == ["ar_supervisor"]
    assert entry.reason.startswith("tier 1 reassigned to approver2: approver is on leave")
    # The same confirmation again (a double click, a resubmitted form) applies nothing twice.
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    async with httpx.AsyncClient(base_url=stack.base_url, cookies=cookies) as client:
        again = await client.post(
            "/tower/actions",
            content=urlencode([(k, v) for k, v in fields]),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert again.status_code == 200 and "1 done" in again.text
    with reading(stack.store) as s:
        count = len(
            s.exec(
                select(LedgerEntry).where(
                    LedgerEntry.object_id == late, LedgerEntry.event == "reassign_approval"
                )
            ).all()
        )
    assert count == 1


async def test_the_check_step_explains_skips_and_errors_change_nothing(tower_ui: UiStack) -> None:
    stack = tower_ui.stack
    late = await pending(stack)
    await asyncio.sleep(1.2)
    page = await tower_ui.logged_in("supervisor")
    await page.goto("/tower")
    await page.check(f"#sel-{late}")
    await page.select_option("#action", "reassign")
    await page.fill("#assignee", "preparer")  # not an approver
    await page.fill("#reason", "cover")
    await page.click("#bulk button[type=submit]")
    await page.wait_for_url("**/tower/actions/check")
    skipped = page.locator('#preview tr[data-outcome="skipped"]')
    assert await skipped.count() == 1
    assert "does not hold ar_approver" in await skipped.inner_text()
    assert await page.locator("form.confirm").count() == 0
    await screenshot(page, "tower-check-skipped-1280")

    # No reason: the tower again, with an error summary linking to the field, the row still ticked.
    await page.goto("/tower")
    await page.check(f"#sel-{late}")
    await page.select_option("#action", "remind")
    await page.evaluate("document.querySelector('#reason').removeAttribute('required')")
    await page.click("#bulk button[type=submit]")
    summary = page.locator(".error-summary")
    await summary.wait_for()
    assert "Give a reason" in await summary.inner_text()
    assert await page.locator(".error-summary a[href='#reason']").count() == 1
    assert await page.is_checked(f"#sel-{late}")
    await assert_accessible(page, context="tower with an error")
    with reading(stack.store) as s:
        events = [e.event for e in s.exec(select(LedgerEntry).where(LedgerEntry.object_id == late)).all()]
    assert "remind_approvers" not in events


async def test_the_tower_is_for_supervisors_and_says_when_nothing_is_stuck(tower_ui: UiStack) -> None:
    supervisor = await tower_ui.logged_in("supervisor")
    await supervisor.goto("/tower")
    doc = html.fromstring(await supervisor.content())
    assert doc.xpath("//nav[@class='nav']//a[@href='/tower']"), "the supervisor's navigation leads there"
    assert "Nothing is stuck" in doc.text_content()
    assert doc.xpath("//*[@id='pipeline']") == [] and "No invoices yet" in doc.text_content()
    await both_widths(supervisor, "tower-empty")
    approver = await tower_ui.logged_in("approver")
    response = await approver.goto("/tower")
    assert response is not None and response.status == 403
    doc = html.fromstring(await approver.content())
    assert not doc.xpath("//nav[@class='nav']//a[@href='/tower']")


async def test_a_bulk_form_posted_without_its_csrf_token_is_refused(tower_ui: UiStack) -> None:
    stack = tower_ui.stack
    late = await pending(stack)
    page = await tower_ui.logged_in("supervisor")
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    async with httpx.AsyncClient(base_url=stack.base_url, cookies=cookies) as client:
        r = await client.post(
            "/tower/actions",
            data={"action": "remind", "invoice_ids": late, "reason": "x", "idempotency_key": "k"},
        )
    assert r.status_code == 403
    with reading(stack.store) as s:
        events = [e.event for e in s.exec(select(LedgerEntry).where(LedgerEntry.object_id == late)).all()]
    assert "remind_approvers" not in events

"""The delegations page in Chromium: lend my approval role for a date range (errors summarised at the top,
each linking to its field), see it given and received, and end it."""

from __future__ import annotations

from datetime import timedelta

from playwright.async_api import Dialog, expect

from tests.conftest import acme_today
from tests.ui.conftest import UiStack, both_widths
from tests.ui.pages import page, page_client, text


async def test_lend_see_and_end_a_delegation(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    p = await ui_stack.logged_in("approver2")
    await p.goto("/delegations")
    await expect(p.locator("h1")).to_have_text("Delegations")
    await expect(p.locator("#role option")).to_have_count(1)
    await both_widths(p, "delegations-empty")

    # Nobody named, and a last day before the first: the summary names both problems, in order.
    await p.fill("#ends_on", (acme_today() - timedelta(days=3)).isoformat())
    await p.click("#lend button[type=submit]")
    summary = p.locator(".error-summary")
    await expect(summary).to_be_visible()
    await expect(summary.locator("a").first).to_have_attribute("href", "#delegate")
    await expect(p.locator("#delegate")).to_have_attribute("aria-invalid", "true")
    await p.fill("#delegate", "controller")
    await p.click("#lend button[type=submit]")
    await expect(summary.locator("a").first).to_have_attribute("href", "#ends_on")
    await expect(summary).to_contain_text("ends_on is before starts_on")
    await both_widths(p, "delegations-error")

    await p.fill("#ends_on", (acme_today() + timedelta(days=10)).isoformat())
    await p.fill("#reason", "annual leave")
    await p.click("#lend button[type=submit]")
    await expect(p.locator(".banner")).to_contain_text("controller may approve as ar_approver in ACME")
    given = p.locator("#given tbody tr")
    await expect(given).to_have_count(1)
    await expect(given.first).to_contain_text("in force")
    await expect(given.first).to_contain_text("annual leave")
    await both_widths(p, "delegations")

    received = await page(await page_client(stack, "controller"), "/delegations")
    rows = received.xpath("//table[@id='received']/tbody/tr")
    assert len(rows) == 1 and "approver2" in text(rows[0]) and "in force" in text(rows[0])
    assert not received.xpath("//table[@id='received']//form")  # the delegate cannot end it
    api = await stack.client("approver2")
    assert [d["delegate"] for d in (await api.get("/api/v1/delegations")).json()] == ["controller"]

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    p.on("dialog", accept)
    await given.first.locator("button").click()
    await expect(p.locator(".banner")).to_contain_text("The delegation to controller has ended.")
    await expect(given.first).to_contain_text("ended by approver2")
    assert (await api.get("/api/v1/delegations")).json()[0]["revoked_by"] == "approver2"


async def test_who_may_not_lend_sees_why(ui_stack: UiStack) -> None:
    doc = await page(await page_client(ui_stack.stack, "supervisor"), "/delegations")
    assert "You hold no approval role you may lend." in text(doc)
    assert not doc.xpath("//form[@id='lend']")

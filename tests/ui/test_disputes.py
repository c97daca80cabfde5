"""The dispute pages in Chromium: a collector opens a case from the invoice page, finds it on the board with
its filters, adds a note and an attachment (its SHA-256 shown, the download the same bytes), waits on the
customer and resumes, resolves as invalid after checking the answers, and closes with a root cause (the
customer's, or ours with its corrective and preventive actions); refusals explained; a form without its
CSRF token changes nothing. axe and screenshots at 1280 and 390 px on every page."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from playwright.async_api import Page, expect

from tests.api.test_disputes import delivered, open_case
from tests.conftest import Stack
from tests.ui.conftest import UiStack, both_widths
from tests.ui.pages import action_on, page, page_client, text


async def case_via_api(
    stack: Stack, amount: str = "200.00", code: str = "PRICE"
) -> tuple[dict[str, Any], str]:
    """A delivered invoice of Initech's and a case on it opened by the collector: (case, invoice id)."""
    inv = await delivered(stack)
    r = await open_case(await stack.client("collector"), inv["id"], amount, code)
    assert r.status_code == 201, r.text
    return r.json(), inv["id"]


async def case_status(stack: Stack, dispute_id: str) -> dict[str, Any]:
    r = await (await stack.client("supervisor")).get(f"/api/v1/disputes/{dispute_id}")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_a_collector_opens_a_case_from_the_invoice_page_and_finds_it_on_the_board(
    ui_stack: UiStack,
) -> None:
    stack = ui_stack.stack
    inv = await delivered(stack)
    p = await ui_stack.logged_in("collector")
    await p.goto(f"/invoices/{inv['id']}")
    await p.click("#dispute-action a")
    await expect(p.locator("h1")).to_have_text("Open a dispute")
    await expect(p.locator("#amount")).to_have_value("1872.66")
    await both_widths(p, "dispute-new")
    # Nothing chosen: the error summary links to each field, and nothing is opened.
    await p.fill("#amount", "")
    await p.click("form[action='/disputes/new'] button[type=submit]")
    summary = p.locator(".error-summary")
    await expect(summary).to_contain_text("Enter the disputed amount")
    await expect(summary).to_contain_text("Choose the customer's reason")
    await expect(summary.locator("a").first).to_have_attribute("href", "#amount")
    await both_widths(p, "dispute-new-errors")
    await p.fill("#amount", "200.00")
    await p.select_option("#reason_code", "PRICE")
    await p.fill("#description", "The contract price is 10 % lower")
    await p.click("form[action='/disputes/new'] button[type=submit]")
    await expect(p.locator(".banner--success")).to_contain_text("is open for 200.00 EUR")
    await expect(p.locator("h1")).to_contain_text("DSP-")
    await expect(p.locator("#claimed")).to_contain_text("PRICE")
    await expect(p.locator("#reason")).to_contain_text("PRC")
    await expect(p.locator("#reason")).to_contain_text("default.toml 2026.1")
    await expect(p.locator("#owner")).to_have_text("collector")
    await expect(p.locator("#amounts tr[data-part='open'] td")).to_contain_text("200.00")
    await expect(p.locator("#adds-up")).to_contain_text("= original")
    await expect(p.locator(f"#invoices li[data-invoice='{inv['id']}'] a")).to_have_attribute(
        "href", f"/invoices/{inv['id']}"
    )
    await expect(p.locator("#timeline li")).to_have_count(1)
    await both_widths(p, "dispute-case-open")
    number = (await p.locator("h1").text_content() or "").split()[1]

    # The invoice now says so, and offers no second Dispute.
    await p.goto(f"/invoices/{inv['id']}")
    await expect(p.locator("#dispute a")).to_have_text(number)
    await expect(p.locator("#dispute-action")).to_have_count(0)

    # The board: counts by status, the row, filters.
    await p.goto("/disputes")
    await expect(p.locator("#status-counts li[data-status='open'] .count")).to_have_text("1")
    row = p.locator("#disputes tbody tr").first
    await expect(row).to_contain_text(number)
    await expect(row).to_contain_text("Initech GmbH")
    await expect(row).to_contain_text("on time")
    await both_widths(p, "dispute-board")
    await p.check("#f-mine")
    await p.click("form[role=search] button[type=submit]")
    await expect(p.locator("#disputes tbody tr")).to_have_count(1)
    await p.goto("/disputes?past_sla=1")
    await expect(p.locator(".empty__title")).to_have_text("No case matches these filters")
    await both_widths(p, "dispute-board-empty")
    await p.goto("/disputes?status=closed")
    await expect(p.locator("#disputes")).to_have_count(0)
    await p.goto(f"/disputes?reason=PRC&customer_id={stack.customers['initech']}&owner=collector")
    await expect(p.locator("#disputes tbody tr")).to_have_count(1)
    await p.goto("/disputes?root_cause=CUS&opened_from=2020-01-01&opened_to=2020-12-31")
    await expect(p.locator("#also-filtered")).to_contain_text("root cause CUS")
    await expect(p.locator("#disputes")).to_have_count(0)
    await p.locator("#disputes, .empty").first.wait_for()
    await p.goto("/disputes")
    await p.click(f"#disputes a:text('{number}')")
    await expect(p.locator("h1")).to_contain_text(number)

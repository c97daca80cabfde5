"""The CAPA pages in Chromium: the board (filters, overdue, empty state) and a CAPA page; an extension
asked by the action's owner and approved by a supervisor in the browser; the owner's own approval refused
with the reason (shown before, and refused again when posted anyway); the owner completing an action in
place; structure per role. axe and screenshots at 1280 and 390 px."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from playwright.async_api import expect

from tests.api.test_capa import started, until_listed
from tests.ui.conftest import UiStack, both_widths
from tests.ui.pages import action_on, page, page_client, text


async def test_the_board_an_extension_approved_and_an_owners_own_approval_refused(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    supervisor_api = await stack.client("supervisor")
    run = uuid.uuid4().hex[:6]
    first = await started(stack, f"DSP-{run}-1", stack.customers["initech"])
    second = await started(stack, f"DSP-{run}-2", stack.customers["umbrella"], corrective_owner="supervisor")
    await until_listed(supervisor_api, first)
    await until_listed(supervisor_api, second)

    # The board, as the supervisor sees it.
    p = await ui_stack.logged_in("supervisor")
    await p.goto("/capa")
    await expect(p.locator("#capas tbody tr")).to_have_count(2)
    await expect(p.locator("nav[aria-label='Main']")).to_contain_text("CAPA")
    await both_widths(p, "capa-board")
    await p.select_option("#f-customer", stack.customers["umbrella"])
    await p.click("form[role=search] button[type=submit]")
    await expect(p.locator("#capas tbody tr")).to_have_count(1)
    await expect(p.locator(f"#capas tr[data-capa='{second}']")).to_be_visible()
    await p.goto("/capa?outcome=effective")
    await expect(p.locator(".empty__title")).to_have_text("No CAPA matches these filters")

    # The collector owns the first CAPA's corrective action: asks for more time.
    c = await ui_stack.logged_in("collector")
    await c.goto(f"/capa/{first}")
    await expect(c.locator("h1")).to_contain_text(f"CAPA DSP-{run}-1")
    new_due = (datetime.now(UTC) + timedelta(days=40)).date().isoformat()
    await c.fill("#corrective-new-due", new_due)
    await c.fill("#corrective-ext-reason", "the supplier's price list arrives next month")
    await c.click("#corrective form[action$='/request-extension'] button[type=submit]")
    await expect(c.locator(".banner")).to_contain_text("waits for a decision")
    await expect(c.locator("#corrective-extension")).to_contain_text(new_due)
    # The owner cannot decide their own extension: the buttons say why.
    why = c.locator(f"#act--capa-{first}-actions-corrective-approve-extension-why")
    await expect(why).to_contain_text("You own this action")
    await both_widths(c, "capa-page-extension-asked")

    # The supervisor approves it in the browser: the due date moves, the timeline says so.
    await p.goto(f"/capa/{first}")
    await p.fill("#corrective-decision", "fine, one more month")
    await p.click("#corrective form[action$='/approve-extension'] button[type=submit]")
    await expect(p.locator(".banner")).to_contain_text("approved")
    await expect(p.locator("#corrective .due")).to_contain_text(new_due)
    await expect(p.locator("#corrective-extension")).to_have_count(0)
    await expect(p.locator("#timeline li[data-event='approve_extension']")).to_have_count(1)

    # The supervisor owns the second CAPA's corrective action: asks, and may not approve it.
    await p.goto(f"/capa/{second}")
    await p.fill("#corrective-new-due", new_due)
    await p.fill("#corrective-ext-reason", "waiting for the new contract")
    await p.click("#corrective form[action$='/request-extension'] button[type=submit]")
    await expect(p.locator("#corrective-extension")).to_be_visible()
    refusal = p.locator(f"#act--capa-{second}-actions-corrective-approve-extension-why")
    await expect(refusal).to_contain_text("never by its owner")
    await expect(p.locator("#corrective-extension button[disabled]")).to_have_count(2)
    # Posted anyway (a stale page, a crafted request): refused by the workflow, with the reason.
    token = await p.locator("form[action='/logout'] input[name='csrf_token']").get_attribute("value")
    r = await p.request.post(
        f"/capa/{second}/actions/corrective/approve-extension",
        form={"csrf_token": token or "", "reason": "self"},
        max_redirects=0,
    )
    assert r.status == 403, await r.text()
    body = await r.text()
    assert "owner" in body
    api = await supervisor_api.get(f"/api/v1/capa/{second}")
    assert api.json()["corrective"]["extension"] is not None  # still waiting: nothing changed
    await both_widths(p, "capa-page-own-extension")

    # The owner completes the action in place.
    await c.goto(f"/capa/{first}")
    await c.fill("#corrective-note", "credited the difference")
    await c.click("#corrective form[action$='/complete'] button[type=submit]")
    await expect(c.locator("#corrective")).to_have_attribute("data-action-status", "done")
    await expect(c.locator("#corrective .done")).to_contain_text("credited the difference")
    await expect(c.locator("#timeline li[data-event='complete_corrective']")).to_have_count(1)


async def test_structure_per_role(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    run = uuid.uuid4().hex[:6]
    capa = await started(stack, f"DSP-{run}-9", stack.customers["initech"])
    await until_listed(await stack.client("supervisor"), capa)
    url = f"/capa/{capa}"

    supervisor = await page_client(stack, "supervisor")
    doc = await page(supervisor, "/capa")
    nav = [text(a) for a in doc.xpath("//nav[@aria-label='Main']//a")]
    assert "CAPA" in nav and "Figures" in nav
    assert [text(a) for a in doc.xpath("//table[@id='capas']//th[@scope='row']/a")] == [f"DSP-{run}-9"]
    doc = await page(supervisor, url)
    complete = action_on(doc, f"{url}/actions/corrective/complete")
    assert complete is not None and complete.disabled and complete.instead == ["collector"]
    assert all(f.xpath(".//input[@name='csrf_token']/@value") for f in doc.xpath("//form[@method='post']"))

    collector = await page_client(stack, "collector")
    doc = await page(collector, url)
    assert "CAPA" in [text(a) for a in doc.xpath("//nav[@aria-label='Main']//a")]
    complete = action_on(doc, f"{url}/actions/corrective/complete")
    assert complete is not None and not complete.disabled
    preventive = action_on(doc, f"{url}/actions/preventive/complete")
    assert preventive is not None and preventive.disabled and preventive.instead == ["preparer"]

    # Without capa:read: no CAPA in the menu, 403 on the board; another entity's user: 404 on the CAPA.
    cashier = await page_client(stack, "cashier")
    await page(cashier, "/capa", status=403)
    outsider = await page_client(stack, "globex_approver")
    await page(outsider, url, status=404)
    r = await collector.post(f"{url}/actions/corrective/complete", data={"note": "no token"})
    assert r.status_code == 403
    assert (await (await stack.client("supervisor")).get(f"/api/v1/capa/{capa}")).json()["corrective"][
        "status"
    ] == "open"

"""The approver's inbox in Chromium: what the user may approve now, longest waiting first, with customer,
amount, tier, age and SLA; search; keyboard (j/k, Enter, `a` behind a confirmation); empty states."""

from __future__ import annotations

from playwright.async_api import Dialog, expect

from tests.conftest import Stack
from tests.ui.conftest import UiStack, both_widths
from tests.ui.pages import page, page_client, text
from tests.ui.test_invoice_page import pending_invoice


async def three_waiting(stack: Stack) -> list[str]:
    return [await pending_invoice(stack, po_number=f"PO-90{i}") for i in range(3)]


async def test_the_inbox_lists_oldest_first_and_searches(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    ids = await three_waiting(stack)
    p = await ui_stack.logged_in("approver")
    await p.goto("/inbox")
    rows = p.locator("#inbox tbody tr")
    await expect(rows).to_have_count(3)
    assert [await r.get_attribute("data-invoice") for r in await rows.all()] == ids
    first = rows.first
    await expect(first).to_contain_text("Initech GmbH")
    await expect(first).to_contain_text("1872.66")
    await expect(first).to_contain_text("1 · ar_approver")
    await expect(first).to_contain_text("on time")
    await expect(first).to_contain_text("PO-900")
    await both_widths(p, "inbox")

    await p.fill("#q", "po-902")
    await p.click("form[role=search] button[type=submit]")
    await expect(rows).to_have_count(1)
    assert await rows.first.get_attribute("data-invoice") == ids[2]
    await p.fill("#q", "Initech")
    await p.click("form[role=search] button[type=submit]")
    await expect(rows).to_have_count(3)
    await p.fill("#q", "no such thing")
    await p.click("form[role=search] button[type=submit]")
    await expect(p.locator(".empty__title")).to_have_text("Nothing matches these filters")


async def test_keyboard_moves_opens_and_approves_after_confirming(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    ids = await three_waiting(stack)
    p = await ui_stack.logged_in("approver")
    await p.goto("/inbox")
    rows = p.locator("#inbox tbody tr")
    await p.locator("h1").click()
    await p.keyboard.press("j")
    await expect(rows.nth(0)).to_have_class("is-current")
    await p.keyboard.press("j")
    await expect(rows.nth(1)).to_have_class("is-current")
    await p.keyboard.press("k")
    await expect(rows.nth(0)).to_have_class("is-current")
    await p.keyboard.press("Enter")
    await p.wait_for_url(f"**/invoices/{ids[0]}")
    await p.go_back()

    answers: list[str] = []

    async def decline_then_accept(dialog: Dialog) -> None:
        answers.append(dialog.message)
        await (dialog.dismiss() if len(answers) == 1 else dialog.accept())

    p.on("dialog", decline_then_accept)
    await p.locator("h1").click()
    await p.keyboard.press("j")
    await p.keyboard.press("a")  # declined: nothing happens
    await expect(rows).to_have_count(3)
    api = await stack.client("approver")
    assert (await api.get(f"/api/v1/invoices/{ids[0]}")).json()["status"] == "pending_approval"
    await p.keyboard.press("a")  # accepted
    await expect(p.locator(".banner")).to_contain_text("is approved")
    await expect(rows).to_have_count(2)
    assert len(answers) == 2 and "Approve invoice" in answers[0] and "tier 1" in answers[0]
    assert (await api.get(f"/api/v1/invoices/{ids[0]}")).json()["status"] in ("approved", "submitted")


async def test_structure_and_empty_inbox_per_role(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    ids = await three_waiting(stack)
    approver = await page(await page_client(stack, "approver"), "/inbox")
    table = approver.xpath("//table[@id='inbox'][@data-keylist]")[0]
    assert [text(th) for th in table.xpath(".//thead/tr/th")][:7] == [
        "Invoice",
        "Customer",
        "PO",
        "Amount",
        "Tier",
        "Waiting",
        "SLA",
    ]
    for row, invoice_id in zip(table.xpath(".//tbody/tr[@data-row]"), ids, strict=True):
        form = row.xpath(f".//form[@action='/invoices/{invoice_id}/approve']")[0]
        assert form.get("data-confirm") and form.xpath(".//input[@name='csrf_token']/@value")
        assert form.xpath(".//button[@data-key='a']") and row.xpath(".//a[@data-key='r']")
    assert text(approver.xpath("//*[@id='total']")[0]) == "3 waiting"
    # The preparer who submitted them: nothing to approve, and no inbox in the navigation either.
    controller = await page(await page_client(stack, "controller"), "/inbox")
    assert text(controller.xpath("//*[@class='empty__title']")[0]) == "Nothing waits for your approval"
    preparer_nav = await page(await page_client(stack, "preparer"), "/account")
    assert "/inbox" not in preparer_nav.xpath("//nav[@aria-label='Main']//a/@href")
    # The JSON inbox: the same invoices, filtered and paginated with the total in a header.
    api = await stack.client("approver")
    r = await api.get("/api/v1/approvals/inbox", params={"limit": 2})
    assert [i["invoice_id"] for i in r.json()] == ids[:2] and r.headers["X-Total-Count"] == "3"
    r = await api.get("/api/v1/approvals/inbox", params={"limit": 2, "offset": 2})
    assert [i["invoice_id"] for i in r.json()] == ids[2:]
    r = await api.get("/api/v1/approvals/inbox", params={"po_number": "90-1"})
    assert r.json() == [] and r.headers["X-Total-Count"] == "0"
    r = await api.get("/api/v1/approvals/inbox", params={"q": "PO-901", "sla": "on_time", "tier": 1})
    assert [i["invoice_id"] for i in r.json()] == [ids[1]] and r.json()[0]["customer_name"] == "Initech GmbH"
    assert (await api.get("/api/v1/approvals/inbox", params={"limit": 501})).status_code == 422

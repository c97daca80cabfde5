"""Credit memos and write-offs in Chromium: an approver finds them in the inbox (marked by kind, with amount,
customer, invoice and age) and approves a credit memo from its page; a refusal is explained in place (why,
and who can instead); the inbox and the document pages pass axe at 1280 and 390 px (screenshots in
test-artefacts/screenshots/)."""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.api.test_credit_memos import CM, WO, delivered, grant, until
from tests.conftest import Stack
from tests.ui.conftest import UiStack, both_widths
from tests.ui.pages import action_on, page, page_client


async def propose(stack: Stack, invoice_id: str, amount: str, by: str = "collector") -> dict[str, Any]:
    client = await stack.client(by)
    r = await client.post(CM, json={"invoice_id": invoice_id, "amount": amount, "reason": "damaged goods"})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_an_approver_finds_a_credit_memo_in_the_inbox_and_approves_it_from_its_page(
    ui_stack: UiStack,
) -> None:
    stack = ui_stack.stack
    inv = await delivered(stack)
    memo = await propose(stack, inv["id"], "120.00")
    collector = await stack.client("collector")
    r = await collector.post(
        WO, json={"invoice_id": inv["id"], "amount": "50.00", "reason": "short paid, agreed"}
    )
    assert r.status_code == 201 and r.json()["status"] == "pending_approval", r.text
    write_off = r.json()

    p = await ui_stack.logged_in("approver")
    await p.goto("/inbox")
    documents = p.locator("#inbox tbody tr[data-kind='credit_memo'], #inbox tbody tr[data-kind='write_off']")
    await expect(documents).to_have_count(2)
    row = p.locator(f"#inbox tbody tr[data-document='{memo['id']}']")
    await expect(row).to_contain_text("credit memo")
    await expect(row).to_contain_text("Initech GmbH")
    await expect(row).to_contain_text("120.00")
    await expect(row).to_contain_text(inv["number"])
    await expect(p.locator(f"#inbox tbody tr[data-document='{write_off['id']}']")).to_contain_text(
        "write-off"
    )
    await both_widths(p, "inbox-credit-memos")
    # Keyboard: the first row is the oldest document; Enter opens its page.
    await p.locator("h1").click()
    await p.keyboard.press("j")
    await p.keyboard.press("Enter")
    await p.wait_for_url(f"**/credit-memos/{memo['id']}")
    await expect(p.locator("h1")).to_contain_text("Credit memo")
    await expect(p.locator("#invoice a")).to_have_attribute("href", f"/invoices/{inv['id']}")
    await expect(p.locator("#chain [data-tier='1']")).to_contain_text("waiting")
    await expect(p.locator("#timeline li")).to_have_count(2)
    await both_widths(p, "credit-memo-pending")
    await p.fill("#comment", "checked against the delivery note")
    await p.locator("#actions button:has-text('Approve')").click()
    await expect(p.locator(".banner")).to_contain_text("is approved")
    api = await stack.client("approver")
    done = await until(api, f"{CM}/{memo['id']}", "applied")
    await p.goto(f"/credit-memos/{memo['id']}")
    await expect(p.locator("#documents a").first).to_have_attribute(
        "href", f"/credit-memos/{memo['id']}/credit-note.pdf"
    )
    await expect(p.locator("h1")).to_contain_text(done["number"])
    await both_widths(p, "credit-memo-applied")
    pdf = await (await page_client(stack, "approver")).get(f"/credit-memos/{memo['id']}/credit-note.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    # The write-off's page and the list of both.
    await p.goto(f"/write-offs/{write_off['id']}")
    await expect(p.locator("h1")).to_contain_text("Write-off")
    await both_widths(p, "write-off-pending")
    await p.goto("/credit-memos")
    await expect(p.locator("#documents-list tbody tr")).to_have_count(2)
    await both_widths(p, "credit-memos-list")


async def test_a_refusal_is_explained_with_who_can_instead(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    inv = await delivered(stack)
    await grant(stack, "collector", "ar_approver")
    memo = await propose(stack, inv["id"], "60.00")
    url = f"/credit-memos/{memo['id']}"
    # Parsed: the approve action is shown refused, with the words of the API and who can instead.
    doc = await page(await page_client(stack, "collector"), url)
    shown = action_on(doc, f"{url}/approve")
    assert shown is not None and shown.disabled
    assert shown.reason == "collector proposed this credit memo and cannot approve it"
    assert "approver" in shown.instead
    # In the browser: the collector's inbox does not list it; the page explains the refusal.
    p = await ui_stack.logged_in("collector")
    await p.goto("/inbox")
    await expect(p.locator(f"#inbox tbody tr[data-document='{memo['id']}']")).to_have_count(0)
    await p.goto(url)
    refusal = p.locator(".action--refused .refusal").first
    await expect(refusal).to_contain_text("collector proposed this credit memo and cannot approve it")
    await expect(refusal).to_contain_text("approver")
    await both_widths(p, "credit-memo-refused")
    # Cancelling (allowed to the proposer) needs a reason: said in place, nothing changed.
    await p.locator("#actions button:has-text('Cancel')").click()
    await expect(p.locator("#cancel_reason-error")).to_be_visible()
    api = await stack.client("collector")
    assert (await api.get(f"{CM}/{memo['id']}")).json()["status"] == "pending_approval"

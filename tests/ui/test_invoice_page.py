"""The invoice page in Chromium: everything an approver reads before deciding, approve in place and see
the timeline grow, a segregation-of-duties refusal explained with who can approve instead, a rejection
that needs its reason, and the reminder mail's link landing on the page."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Dialog, Page, expect
from sqlmodel import select

from activities.approvals import ApprovalActivities
from activities.db import reading, writing
from activities.directory import add_user, grant
from activities.models import Invoice, Notification
from api.approvals import rules_state
from tests.conftest import PASSWORD, PASSWORD_HASH, Stack, invoice_body
from tests.ui.conftest import UiStack, both_widths
from tests.ui.pages import action_on, page, page_client, text
from worker import smtp_config
from workflows.types import NotifyRequest


async def pending_invoice(
    stack: Stack, creator: str = "erp", submitter: str = "preparer", **body: Any
) -> str:
    c_creator, c_submitter = await stack.clients(creator, submitter)
    r = await c_creator.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"], **body))
    assert r.status_code == 201, r.text
    invoice_id: str = r.json()["id"]
    r = await c_submitter.post(f"/api/v1/invoices/{invoice_id}/submit", json={"comment": "October"})
    assert r.status_code == 200, r.text
    return invoice_id


def accept_dialogs(p: Page, seen: list[str]) -> None:
    async def on_dialog(dialog: Dialog) -> None:
        seen.append(dialog.message)
        await dialog.accept()

    p.on("dialog", on_dialog)


async def test_an_approver_approves_in_place_and_the_timeline_grows(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    invoice_id = await pending_invoice(stack, po_number="PO-7781")
    p = await ui_stack.logged_in("approver")
    await p.goto(f"/invoices/{invoice_id}")
    await expect(p.locator("h1")).to_contain_text("pending approval")
    await expect(p.locator("#customer")).to_have_text("Initech GmbH")
    await expect(p.locator("#po")).to_have_text("PO-7781")
    await expect(p.locator("#lines tbody tr")).to_have_count(2)
    await expect(p.locator("#totals")).to_contain_text("1872.66")  # 1250 + 310.55 net, 20 % tax
    await expect(p.locator("#chain tbody tr")).to_have_count(1)
    await expect(p.locator("#chain tbody tr").first).to_contain_text("waiting")
    before = await p.locator("#timeline li").count()
    assert before == 2  # created, submitted
    await expect(p.locator("#timeline li").last).to_contain_text("preparer")
    await expect(p.locator("#timeline li").last).to_contain_text("October")
    await both_widths(p, "invoice-pending")

    seen: list[str] = []
    accept_dialogs(p, seen)
    await p.fill("#comment", "matches the order")
    await p.click("form[action$='/approve'] button[type=submit]")
    await expect(p.locator("#done")).to_contain_text("is approved")
    assert seen and "Approve invoice" in seen[0]
    await expect(p.locator("#timeline li")).to_have_count(before + 1)
    newest = p.locator("#timeline li").nth(before)
    await expect(newest).to_contain_text("approve")
    await expect(newest).to_contain_text("approver")
    await expect(newest).to_contain_text("matches the order")
    await expect(p.locator("#chain tbody tr").first).to_contain_text("approved")
    # Applied once, in the store and the ledger.
    history = (await (await stack.client("supervisor")).get(f"/api/v1/invoices/{invoice_id}/history")).json()
    assert [h["event"] for h in history].count("approve") == 1
    await both_widths(p, "invoice-approved")


async def test_a_double_submit_of_the_same_form_approves_once(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    invoice_id = await pending_invoice(stack)
    client = await page_client(stack, "approver")
    doc = await page(client, f"/invoices/{invoice_id}")
    form = doc.xpath(f"//form[@action='/invoices/{invoice_id}/approve']")[0]
    fields = {i.get("name"): i.get("value") or "" for i in form.xpath(".//input")}
    assert fields["csrf_token"] and len(fields["idempotency_key"]) == 32
    for _ in range(2):
        r = await client.post(f"/invoices/{invoice_id}/approve", data={**fields, "comment": "ok"})
        assert r.status_code == 303, r.text
    history = (await (await stack.client("supervisor")).get(f"/api/v1/invoices/{invoice_id}/history")).json()
    assert [h["event"] for h in history].count("approve") == 1
    # Without its CSRF token the same form is refused and changes nothing.
    other = await pending_invoice(stack)
    r = await client.post(f"/invoices/{other}/approve", data={"comment": "ok"})
    assert r.status_code == 403
    assert (await (await stack.client("approver")).get(f"/api/v1/invoices/{other}")).json()["status"] == (
        "pending_approval"
    )


async def test_a_segregation_of_duties_refusal_says_why_and_who_can_instead(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    with writing(stack.store) as s:
        add_user(s, "clerk", PASSWORD, "test", password_hash=PASSWORD_HASH)
        grant(s, "clerk", "ar_preparer", "ACME", "test")
        grant(s, "clerk", "ar_approver", "ACME", "test")
    invoice_id = await pending_invoice(stack, creator="clerk", submitter="clerk")
    p = await ui_stack.logged_in("clerk")
    await p.goto(f"/invoices/{invoice_id}")
    refused = p.locator(".action--refused").first
    await expect(refused.locator("button")).to_be_disabled()
    await expect(refused.locator(".refusal__reason")).to_have_text(
        "clerk prepared this invoice and cannot approve it"
    )
    await expect(refused.locator(".refusal__instead")).to_have_text(
        "approver or approver2 can do this instead."
    )
    await both_widths(p, "invoice-refused")
    # The same words as the API's.
    api = (await (await stack.client("clerk")).get(f"/api/v1/invoices/{invoice_id}")).json()
    listed = next(u for u in api["unavailable_actions"] if u["action"] == "approve")
    assert listed["who_can_instead"] == ["approver", "approver2"]


async def test_a_rejection_needs_its_reason_and_sends_the_invoice_back(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    invoice_id = await pending_invoice(stack)
    p = await ui_stack.logged_in("approver2")
    seen: list[str] = []
    accept_dialogs(p, seen)
    await p.goto(f"/invoices/{invoice_id}")
    await p.click("form[action$='/reject'] button[type=submit]")
    summary = p.locator(".error-summary")
    await expect(summary).to_contain_text("Say why the invoice goes back")
    await expect(summary.locator("a")).to_have_attribute("href", "#reason")
    assert (await (await stack.client("approver2")).get(f"/api/v1/invoices/{invoice_id}")).json()[
        "status"
    ] == "pending_approval"
    await p.fill("#reason", "PO number does not match the order")
    await p.click("form[action$='/reject'] button[type=submit]")
    await expect(p.locator("#done")).to_contain_text("went back to draft")
    await expect(p.locator("#invoice")).to_have_attribute("data-status", "draft")
    await expect(p.locator("#timeline li").last).to_contain_text("PO number does not match the order")


async def test_structure_per_role(ui_stack: UiStack) -> None:
    """The elements that matter, parsed: an approver gets the forms; a supervisor reads the same invoice
    with approve refused (and who can); someone of another legal entity gets a 404."""
    stack = ui_stack.stack
    invoice_id = await pending_invoice(stack)
    url = f"/invoices/{invoice_id}"
    approver = await page(await page_client(stack, "approver"), url)
    approve = action_on(approver, f"{url}/approve")
    reject = action_on(approver, f"{url}/reject")
    assert approve and not approve.disabled and approve.label == "Approve tier 1"
    assert reject and not reject.disabled
    assert approver.xpath("//textarea[@name='reason']") and approver.xpath("//textarea[@name='comment']")
    assert [text(h) for h in approver.xpath("//h2")] == [
        "Decision",
        "Lines",
        "Approval chain",
        "Delivery and portal",
        "Payments",
        "Documents",
        "Timeline",
    ]
    supervisor = await page(await page_client(stack, "supervisor"), url)
    shown = action_on(supervisor, f"{url}/approve")
    assert shown and shown.disabled and shown.instead == ["approver", "approver2"]
    assert shown.reason.startswith("supervisor may not invoice:approve")
    await page(await page_client(stack, "globex_approver"), url, status=404)


async def test_the_reminder_mail_links_to_the_invoice_page(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    invoice_id = await pending_invoice(stack, external_id="ERP-REMIND-1")
    with reading(stack.store) as session:
        inv = session.get(Invoice, invoice_id)
        assert inv is not None
        state = rules_state(inv)
    activities = ApprovalActivities(stack.store, smtp_config(stack.settings), ui_base_url=stack.base_url)
    activities.notify_approval_sla(
        NotifyRequest(inv.workflow_id, 99, "approval_reminder", state, 1, "ar_approver", None)
    )
    with reading(stack.store) as session:
        bodies = [
            n.body for n in session.exec(select(Notification).where(Notification.recipient == "approver"))
        ]
    link = f"{stack.base_url}/invoices/{invoice_id}"
    assert bodies and all(f"Open the invoice: {link}" in b for b in bodies)
    p = await ui_stack.page()
    await p.goto(link)  # signed out: the login page, then back to the invoice
    await p.fill("#username", "approver")
    await p.fill("#password", PASSWORD)
    await p.click("button[type=submit]")
    await expect(p.locator("h1")).to_contain_text("ERP-REMIND-1")

"""The dispute pages in Chromium: a collector opens a case from the invoice page, finds it on the board with
its filters, adds a note and an attachment (its SHA-256 shown, the download the same bytes), waits on the
customer and resumes, resolves as invalid after checking the answers, and closes with a root cause (the
customer's, or ours with its corrective and preventive actions); refusals explained; a form without its
CSRF token changes nothing. axe and screenshots at 1280 and 390 px on every page."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from playwright.async_api import expect

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


async def test_the_thread_takes_a_note_and_an_attachment_and_the_clock_pauses_while_waiting(
    ui_stack: UiStack, tmp_path: Path
) -> None:
    stack = ui_stack.stack
    case, _ = await case_via_api(stack)
    p = await ui_stack.logged_in("collector")
    await p.goto(f"/disputes/{case['id']}")
    # A note needs its text.
    await p.click(f"form[action='/disputes/{case['id']}/note'] button[type=submit]")
    await expect(p.locator(".error-summary")).to_contain_text("Write the note")
    await p.fill("#note-text", "Called their AP: they will send the contract page")
    await p.click(f"form[action='/disputes/{case['id']}/note'] button[type=submit]")
    await expect(p.locator("#done")).to_contain_text("thread")
    await expect(p.locator("#thread li[data-event='note']")).to_contain_text("contract page")

    content = b"%PDF-1.4 contract page 7, price list 2026\n"
    upload = tmp_path / "contract page 7.pdf"
    upload.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    await p.set_input_files("#attach-file", str(upload))
    await p.fill("#attach-text", "price list")
    await p.click(f"form[action='/disputes/{case['id']}/attach'] button[type=submit]")
    await expect(p.locator(".banner--success")).to_contain_text(digest)
    item = p.locator(f"#thread li[data-sha256='{digest}']")
    await expect(item).to_contain_text(f"SHA-256 {digest}")
    await expect(item).to_contain_text("contract page 7.pdf")
    async with p.expect_download() as info:
        await item.locator("a").click()
    download = await info.value
    saved = await download.path()
    assert hashlib.sha256(await asyncio.to_thread(saved.read_bytes)).hexdigest() == digest
    # The ledger has the hash (the timeline's attach entry).
    await expect(p.locator("#timeline li[data-event='attach']")).to_have_count(1)

    # Waiting on the customer pauses the clock and says why; resuming restarts it.
    await p.click(f"form[action='/disputes/{case['id']}/wait'] button[type=submit]")
    await expect(p.locator(".error-summary a")).to_have_attribute("href", "#wait-reason")
    await p.fill("#wait-reason", "the signed contract page")
    await p.click(f"form[action='/disputes/{case['id']}/wait'] button[type=submit]")
    await expect(p.locator("#case")).to_have_attribute("data-status", "waiting_on_customer")
    await expect(p.locator("#sla")).to_contain_text("Waiting on the customer since")
    await expect(p.locator("#sla")).to_contain_text("the signed contract page")
    await expect(p.locator("#sla")).to_contain_text("paused")
    assert (await case_status(stack, case["id"]))["sla_due_at"] is None
    await both_widths(p, "dispute-case-waiting")
    await p.fill("#resume-reason", "contract page received")
    await p.click(f"form[action='/disputes/{case['id']}/resume'] button[type=submit]")
    await expect(p.locator("#case")).to_have_attribute("data-status", "open")
    await expect(p.locator("#done")).to_contain_text("runs again")
    assert (await case_status(stack, case["id"]))["sla_due_at"] is not None
    events = [t["event"] for t in (await case_status(stack, case["id"]))["timeline"]]
    assert events == ["open", "note", "attach", "wait_on_customer", "resume"]


async def test_refusals_are_explained_and_closing_needs_a_root_cause(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    case, _ = await case_via_api(stack)
    # A preparer may add notes but not resolve: the button is disabled with why and who can.
    p = await ui_stack.logged_in("preparer")
    await p.goto(f"/disputes/{case['id']}")
    refused = p.locator(f"#act--disputes-{case['id']}-resolve-why")
    await expect(refused.locator(".refusal__reason")).to_contain_text("preparer may not dispute:resolve")
    await expect(refused.locator(".refusal__instead")).to_contain_text("collector")
    await expect(p.locator(f"form[action='/disputes/{case['id']}/note']")).to_have_count(1)
    await both_widths(p, "dispute-case-refused")
    r = await p.goto(f"/disputes/{case['id']}/resolve")
    assert r is not None and r.status == 403

    # The collector resolves as invalid (check your answers first), then closing without a root cause
    # shows the error summary and changes nothing.
    c = await ui_stack.logged_in("collector")
    await c.goto(f"/disputes/{case['id']}")
    await c.click("text=Resolve…")
    await expect(c.locator("h1")).to_contain_text("Resolve dispute")
    await both_widths(c, "dispute-resolve")
    await c.click("form.resolve-form button[type=submit]")
    await expect(c.locator(".error-summary")).to_contain_text("Choose how the case is resolved")
    await expect(c.locator(".error-summary a").first).to_have_attribute("href", "#kind")
    await c.check("#kind-invalid")
    await c.fill("#reason", "The contract price applies: the customer's price list is out of date")
    await c.click("form.resolve-form button[type=submit]")
    await expect(c.locator("h1")).to_contain_text("Check your answers")
    await expect(c.locator("#answers")).to_contain_text("Invalid")
    await expect(c.locator("#next")).to_contain_text("collections resume")
    await both_widths(c, "dispute-resolve-check")
    assert (await case_status(stack, case["id"]))["status"] == "open"  # nothing changed yet
    await c.click("text=Confirm and resolve")
    await expect(c.locator(".banner--success")).to_contain_text("is resolved")
    await expect(c.locator("#case")).to_have_attribute("data-status", "resolved")
    await expect(c.locator("#resolution")).to_contain_text("Invalid")

    await c.click("text=Close the case…")
    await c.click("form.close-form button[type=submit]")
    summary = c.locator(".error-summary")
    await expect(summary).to_contain_text("Choose the root cause")
    await expect(summary.locator("a").first).to_have_attribute("href", "#root_cause")
    await expect(c.locator(".capa").first).to_be_hidden()  # no internal root cause chosen: no CAPA fields
    await both_widths(c, "dispute-close-errors")
    assert (await case_status(stack, case["id"]))["status"] == "resolved"
    await c.select_option("#root_cause", "CUS")
    await c.check("#validity-invalid")
    await c.click("form.close-form button[type=submit]")
    await expect(c.locator(".banner--success")).to_contain_text("is closed: root cause CUS, invalid")
    await expect(c.locator("#root-cause")).to_contain_text("CUS")
    closed = await case_status(stack, case["id"])
    assert (closed["status"], closed["root_cause"], closed["validity"], closed["capa_reference"]) == (
        "closed",
        "CUS",
        "invalid",
        "",
    )
    await both_widths(c, "dispute-case-closed")


async def test_an_internal_root_cause_needs_corrective_and_preventive_actions(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    case, _ = await case_via_api(stack, code="DUPLICATE")
    collector = await stack.client("collector")
    r = await collector.post(
        f"/api/v1/disputes/{case['id']}/resolve", json={"kind": "withdrawn", "reason": "customer withdrew"}
    )
    assert r.status_code == 200, r.text
    p = await ui_stack.logged_in("collector")
    await p.goto(f"/disputes/{case['id']}/close")
    await expect(p.locator(".capa").first).to_be_hidden()
    await p.select_option("#root_cause", "BIL")
    await expect(p.locator("#corrective-owner")).to_be_visible()  # shown for a root cause of ours, no JS
    await p.check("#validity-valid")
    await p.click("form.close-form button[type=submit]")
    summary = p.locator(".error-summary")
    await expect(summary).to_contain_text("Choose who owns the corrective action")
    await expect(summary).to_contain_text("Enter the preventive action's due date")
    await expect(summary.locator("a[href='#preventive-description']")).to_have_count(1)
    await expect(p.locator("#preventive-description")).to_have_attribute("aria-invalid", "true")
    await both_widths(p, "dispute-close-capa-errors")
    assert (await case_status(stack, case["id"]))["status"] == "resolved"
    for plan, owner, what in (
        ("corrective", "collector", "Credit the duplicate and tell Initech"),
        ("preventive", "supervisor", "Block a second invoice for the same delivery note"),
    ):
        await p.select_option(f"#{plan}-owner", owner)
        await p.fill(f"#{plan}-due", "2099-01-31")
        await p.fill(f"#{plan}-description", what)
    await p.click("form.close-form button[type=submit]")
    await expect(p.locator(".banner--success")).to_contain_text("root cause BIL, valid")
    closed = await case_status(stack, case["id"])
    assert closed["status"] == "closed" and closed["capa_reference"]
    await expect(p.locator("#root-cause")).to_contain_text(closed["capa_reference"])


async def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    case, invoice_id = await case_via_api(stack)
    client = await page_client(stack, "collector")
    for path, data in (
        (f"/disputes/{case['id']}/note", {"text": "sneaky"}),
        (f"/disputes/{case['id']}/wait", {"reason": "sneaky"}),
        (f"/disputes/{case['id']}/resolve", {"kind": "withdrawn", "reason": "sneaky"}),
        (
            "/disputes/new",
            {"invoice_id": invoice_id, "amount": "1.00", "reason_code": "PRICE", "description": "x"},
        ),
    ):
        r = await client.post(path, data=data)
        assert r.status_code == 403 and "Nothing was changed" in r.text, (path, r.status_code)
    after = await case_status(stack, case["id"])
    assert after["status"] == "open" and [t["event"] for t in after["timeline"]] == ["open"]
    assert (await (await stack.client("collector")).get("/api/v1/disputes")).json()["total"] == 1


async def test_structure_per_role(ui_stack: UiStack) -> None:
    """Parsed pages: the collector works the case; an approver reads it with every action refused and who
    can; a supervisor may reassign; someone of another legal entity gets a 404; compliance sees no
    Disputes in the menu."""
    stack = ui_stack.stack
    case, invoice_id = await case_via_api(stack)
    url = f"/disputes/{case['id']}"
    collector = await page_client(stack, "collector")
    doc = await page(collector, url)
    assert [text(a) for a in doc.xpath("//nav[@aria-label='Main']//a")] == ["Disputes", "CAPA"]
    assert text(doc.xpath("//h1")[0]).startswith(f"Dispute {case['case_number']}")
    shown = {k: action_on(doc, f"{url}/{k}") for k in ("note", "attach", "wait", "assign")}
    assert {k: (s.disabled if s else None) for k, s in shown.items()} == {
        "note": False,
        "attach": False,
        "wait": False,
        "assign": True,
    }
    assert doc.xpath(f"//a[@href='{url}/resolve']")
    assert doc.xpath(f"//form[@action='{url}/attach']/@enctype") == ["multipart/form-data"]
    assert all(f.xpath(".//input[@name='csrf_token']/@value") for f in doc.xpath("//form[@method='post']"))
    assert text(doc.xpath("//table[@id='amounts']//td")[0]) == "200.00 EUR"

    approver = await page_client(stack, "approver")
    doc = await page(approver, url)
    note = action_on(doc, f"{url}/note")
    assert note is not None and note.disabled and "collector" in note.instead
    resolve = action_on(doc, f"{url}/resolve")
    assert resolve is not None and resolve.disabled and "may not dispute:resolve" in resolve.reason
    assert not doc.xpath("//form[@method='post'][not(@action='/logout')]")

    supervisor = await page_client(stack, "supervisor")
    doc = await page(supervisor, url)
    assign = action_on(doc, f"{url}/assign")
    assert assign is not None and not assign.disabled
    r = await supervisor.post(
        f"{url}/assign",
        data={
            "csrf_token": doc.xpath("//form[@action='/logout']//input[@name='csrf_token']/@value")[0],
            "owner": "supervisor",
            "reason": "collector on leave",
        },
    )
    assert r.status_code == 303
    assert (await case_status(stack, case["id"]))["owner"] == "supervisor"
    board = await page(supervisor, "/disputes?owner=supervisor")
    assert [text(a) for a in board.xpath("//table[@id='disputes']//td[1]/a")] == [case["case_number"]]

    outsider = await page_client(stack, "globex_approver")
    await page(outsider, url, status=404)
    doc = await page(await page_client(stack, "compliance"), "/compliance")
    assert "Disputes" not in [text(a) for a in doc.xpath("//nav[@aria-label='Main']//a")]
    # The invoice page of a case's invoice links to it, for whoever reads disputes.
    doc = await page(approver, f"/invoices/{invoice_id}")
    assert doc.xpath(f"//dd[@id='dispute']/a[@href='{url}']")

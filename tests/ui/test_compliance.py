"""The compliance pages in Chromium and over HTTP: an evidence pack built with its progress shown, then
downloaded and checked as an auditor would (every file's hash in the manifest, the population of the
approvals the test made, the sample's attribute tests); a build that fails says why; ledger verification
per legal entity, intact and then tampered; a checkpoint signed and downloaded, its signature checked
offline; the access review with a conflict of duties; who may see which page."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from lxml import html as lxml_html
from sqlalchemy import text

from activities.db import writing
from activities.directory import ensure_legal_entity, grant
from activities.models import LegalEntity, RoleAssignment
from tests.conftest import Stack, invoice_body
from tests.ui.conftest import UiStack, assert_accessible, both_widths
from tests.ui.test_session import http_login

PACK_FILES = {
    "README.txt",
    "manifest.json",
    "population.csv",
    "population.jsonl",
    "sample.csv",
    "sample_tests.jsonl",
    "verification.json",
}


async def approved_invoices(stack: Stack, n: int) -> list[str]:
    """`n` invoices created by the ERP, submitted by the preparer and approved (tier 1) by the approver."""
    erp, preparer, approver = await stack.clients("erp", "preparer", "approver")
    ids = []
    for _ in range(n):
        r = await erp.post("/api/v1/invoices", json=invoice_body(stack.customers["initech"]))
        assert r.status_code == 201, r.text
        invoice_id = r.json()["id"]
        assert (await preparer.post(f"/api/v1/invoices/{invoice_id}/submit")).status_code == 200
        r = await approver.post(f"/api/v1/invoices/{invoice_id}/approve", json={"comment": "checked"})
        assert r.status_code == 200, r.text
        ids.append(invoice_id)
    return ids


async def signed_in(ui: UiStack, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=ui.base_url, timeout=60)
    ui.stack.opened.append(client)
    r = await http_login(client, username)
    assert r.status_code == 303, r.text
    return client


def tree(body: str) -> lxml_html.HtmlElement:
    return lxml_html.fromstring(body)


def form_fields(doc: lxml_html.HtmlElement, form_id: str) -> dict[str, str]:
    [form] = doc.xpath(f'//form[@id="{form_id}"]')
    return {i.get("name"): i.get("value") or "" for i in form.xpath(".//input[@name]")}


def check_pack(data: bytes, approved: list[str], seed: int) -> dict[str, object]:
    """The pack as an auditor checks it: the files, each one's SHA-256 and size in the manifest, the
    population (the approvals the test made, each with its ledger entry), the sample and its tests."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert set(zf.namelist()) == PACK_FILES
        files = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(files["manifest.json"])
    for name, meta in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == meta["sha256"], name
        assert len(files[name]) == meta["bytes"], name
    population = list(csv.DictReader(io.StringIO(files["population.csv"].decode())))
    assert sorted(p["object_id"] for p in population) == sorted(approved)
    assert {(p["event"], p["actor"]) for p in population} == {("approve", "approver")}
    assert all(len(p["entry_hash"]) == 64 for p in population)
    assert manifest["record_count"] == len(population) == len(files["population.jsonl"].splitlines())
    assert manifest["control"]["id"] == "OTC-01" and manifest["sample"]["seed"] == seed
    assert manifest["sample"]["exceptions"] == 0
    tests = [json.loads(line) for line in files["sample_tests.jsonl"].splitlines()]
    assert len(tests) == manifest["sample"]["size"] == len(population)  # 25 asked, fewer exist
    assert all(t["passed"] for t in tests)
    verification = json.loads(files["verification.json"])
    assert verification["ACME"]["intact"] is True
    return manifest


def period() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()


async def test_compliance_builds_an_evidence_pack_watching_its_progress_then_downloads_it(
    ui_stack: UiStack, tmp_path: Path
) -> None:
    stack = ui_stack.stack
    approved = await approved_invoices(stack, 2)
    page = await ui_stack.logged_in("compliance")
    await page.goto("/compliance")
    assert await page.locator("h1").inner_text() == "Compliance"
    await both_widths(page, "compliance-overview")
    await page.click("text=Control catalogue")
    assert await page.locator("#controls tbody tr").count() >= 4
    await both_widths(page, "compliance-controls")
    await page.click("#control-OTC-01 a:has-text('Evidence pack')")
    await page.wait_for_url(re.compile(r"/compliance/packs/new\?control_id=OTC-01"))
    assert await page.locator("#control_id").input_value() == "OTC-01"
    first, last = period()
    await page.fill("#period_start", first)
    await page.fill("#period_end", last)
    await page.fill("#seed", "7")
    await both_widths(page, "compliance-pack-form")

    # The ledger is held by another writer: the build stops where it records itself in the ledger, and the
    # page shows where it stands, polling, until the writer lets go.
    with stack.store.write.begin() as held:
        held.execute(text("UPDATE legal_entity SET name = name WHERE code = 'ACME'"))
        await page.click("#pack-form button[type=submit]")
        await page.wait_for_url(re.compile(r"/compliance/packs/[0-9a-f]{32}$"))
        progress = page.locator("#pack-progress")
        await progress.locator("text=recording the pack in the ledger").wait_for()
        assert await progress.get_attribute("data-state") == "running"
        assert await progress.get_attribute("hx-trigger") == "every 1s"
        assert await page.locator("#pack-progress progress").get_attribute("value") == "98"
        await assert_accessible(page, context="evidence pack building")
        await both_widths(page, "compliance-pack-building")
    # Released: the next poll shows the pack ready, without reloading the page.
    await page.locator("#pack-download").wait_for(timeout=30_000)
    assert await progress.get_attribute("data-state") == "done"
    assert await progress.get_attribute("hx-trigger") is None  # polling stopped
    await both_widths(page, "compliance-pack-ready")
    async with page.expect_download() as info:
        await page.click("#pack-download")
    download = await info.value
    assert re.fullmatch(
        r"evidence-OTC-01-\d{4}-\d{2}-\d{2}-\d{4}-\d{2}-\d{2}\.zip", download.suggested_filename
    )
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    manifest = check_pack(saved.read_bytes(), approved, seed=7)
    assert manifest["generated_by"] == "compliance"
    ready = await page.locator("#pack-progress").inner_text()
    assert f"{len(approved)} records" in ready

    # The same pack from the JSON API has the same population, byte for byte.
    api = await stack.client("compliance")
    r = await api.post(
        "/api/v1/evidence/packs",
        json={"control_id": "OTC-01", "period_start": first, "period_end": last, "seed": 7},
    )
    files = manifest["files"]
    assert isinstance(files, dict)
    assert r.headers["x-population-sha256"] == files["population.csv"]["sha256"]


async def test_the_pack_form_posted_twice_is_one_build_and_bad_input_starts_nothing(
    ui_stack: UiStack,
) -> None:
    approved = await approved_invoices(ui_stack.stack, 1)
    client = await signed_in(ui_stack, "compliance")
    doc = tree((await client.get("/compliance/packs/new?control_id=OTC-01")).text)
    fields = form_fields(doc, "pack-form")
    first, last = period()
    form = {**fields, "control_id": "OTC-01", "period_start": first, "period_end": last, "seed": "3"}
    one = await client.post("/compliance/packs", data=form)
    two = await client.post("/compliance/packs", data=form)
    assert one.status_code == two.status_code == 303
    assert one.headers["location"] == two.headers["location"]
    job = one.headers["location"]
    for _ in range(100):
        page = tree((await client.get(job)).text)
        if page.xpath('//div[@id="pack-progress"]/@data-state') != ["running"]:
            break
    assert page.xpath('//div[@id="pack-progress"]/@data-state') == ["done"]
    r = await client.get(f"{job}/download")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    check_pack(r.content, approved, seed=3)
    # One build, one ledger entry for it.
    api = await ui_stack.stack.client("compliance")
    history = await api.get("/api/v1/evidence/ledger/verify", params={"entity": "ACME"})
    assert history.json()[0]["intact"]

    # Another user cannot see the build (nor its pack).
    other = await signed_in(ui_stack, "supervisor")
    assert (await other.get(f"{job}/download")).status_code == 403  # supervisors may not export evidence

    # Bad input: a clear message per field, and nothing built.
    for change, field, words in [
        ({"control_id": "NOPE"}, "control_id", "Choose a control"),
        ({"period_start": "2026-02-30"}, "period_start", "Enter the first day"),
        ({"period_end": "2000-01-01"}, "period_end", "on or after the first day"),
        ({"legal_entity": "GLOBEX"}, "legal_entity", "you may export"),
        ({"sample_size": "-1"}, "sample_size", "whole number"),
    ]:
        fresh = form_fields(tree((await client.get("/compliance/packs/new")).text), "pack-form")
        r = await client.post("/compliance/packs", data={**form, **fresh, **change}, follow_redirects=False)
        assert r.status_code == 422, (change, r.status_code)
        doc = tree(r.text)
        [link] = doc.xpath('//div[@class="error-summary"]//a')
        assert link.get("href") == f"#{field}" and words in link.text_content(), link.text_content()
        assert doc.xpath(f'//*[@id="{field}"]/@aria-invalid') == ["true"]
    r = await client.post("/compliance/packs", data={k: v for k, v in form.items() if k != "csrf_token"})
    assert r.status_code == 403  # without its CSRF token


async def test_a_build_that_fails_says_why(ui_stack: UiStack) -> None:
    """A legal entity whose master data names a time zone that does not exist: its calendar days cannot be
    turned into instants, and the page says so instead of spinning."""
    with writing(ui_stack.stack.store) as session:
        ensure_legal_entity(
            session, LegalEntity(code="MARS", name="Mars Base", currency="EUR", timezone="Mars/Olympus")
        )
        grant(session, "compliance", "compliance", "MARS", "test")
    page = await ui_stack.logged_in("compliance")
    await page.goto("/compliance/packs/new?control_id=OTC-01")
    await page.select_option("#legal_entity", "MARS")
    await page.click("#pack-form button[type=submit]")
    alert = page.locator("#pack-progress [role=alert]")
    await alert.wait_for(timeout=30_000)
    message = await alert.inner_text()
    assert "The pack could not be built" in message and "Mars/Olympus" in message
    assert await page.locator("#pack-progress").get_attribute("data-state") == "failed"
    await assert_accessible(page, context="a failed pack")
    await both_widths(page, "compliance-pack-failed")


async def test_ledger_verification_per_legal_entity_intact_then_broken_at_the_first_changed_entry(
    ui_stack: UiStack,
) -> None:
    stack = ui_stack.stack
    await approved_invoices(stack, 1)
    page = await ui_stack.logged_in("compliance")
    await page.goto("/compliance/ledger")
    await both_widths(page, "compliance-ledger")
    await page.click("#verify-form button[type=submit]")  # every legal entity (htmx swaps the result in)
    rows = page.locator("#verification tbody tr")
    await rows.first.wait_for()
    assert (
        await page.locator("#verification tbody tr[data-entity=ACME]").get_attribute("data-intact") == "true"
    )
    assert "OK" in await page.locator("#verification tr[data-entity=ACME] td[data-label=Result]").inner_text()
    assert await rows.count() == 1  # compliance reads ACME's ledger only
    await both_widths(page, "compliance-ledger-ok")

    with stack.store.write.begin() as conn:
        conn.execute(text("DROP TRIGGER ledger_entry_no_update"))
        conn.execute(
            text("UPDATE ledger_entry SET reason = 'rewritten' WHERE legal_entity = 'ACME' AND seq = 2")
        )
    await page.select_option("#legal_entity", "ACME")
    await page.click("#verify-form button[type=submit]")
    broken = page.locator("#verification tr[data-entity=ACME][data-intact=false]")
    await broken.wait_for()
    assert "Broken at entry 2" in await broken.inner_text()
    await assert_accessible(page, context="a broken ledger")
    await both_widths(page, "compliance-ledger-broken")

    # Without htmx (a plain form post), the same result in a whole page; with a CSRF token only.
    client = await signed_in(ui_stack, "compliance")
    csrf = form_fields(tree((await client.get("/compliance/ledger")).text), "verify-form")["csrf_token"]
    r = await client.post("/compliance/ledger/verify", data={"csrf_token": csrf, "legal_entity": "ACME"})
    doc = tree(r.text)
    assert doc.xpath("//h1")[0].text == "Ledger verification"
    assert doc.xpath('//tr[@data-entity="ACME"]/@data-intact') == ["false"]
    assert (await client.post("/compliance/ledger/verify", data={"legal_entity": "ACME"})).status_code == 403


async def test_a_checkpoint_signed_from_the_page_downloads_and_verifies_offline(
    ui_stack: UiStack, tmp_path: Path
) -> None:
    await approved_invoices(ui_stack.stack, 1)
    page = await ui_stack.logged_in("compliance")
    await page.goto("/compliance/checkpoints")
    assert await page.locator(".empty").count() == 1
    await both_widths(page, "compliance-checkpoints-empty")
    page.on("dialog", lambda dialog: dialog.accept())
    await page.select_option("#sign_entity", "ACME")
    await page.click("#sign-form button[type=submit]")
    await page.wait_for_url(re.compile(r"/compliance/checkpoints$"))
    assert "Signed: ACME at entry" in await page.locator("[role=status]").first.inner_text()
    row = page.locator("#checkpoints tbody tr").first
    assert "valid" in await row.inner_text()
    await both_widths(page, "compliance-checkpoints")
    async with page.expect_download() as info:
        await row.locator("a:has-text('JSON')").click()
    download = await info.value
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    cp = json.loads(saved.read_text())
    assert (
        cp["legal_entity"] == "ACME" and cp["requested_by"] == "compliance" and cp["trigger"] == "on_demand"
    )
    Ed25519PublicKey.from_public_bytes(bytes.fromhex(cp["public_key"])).verify(
        bytes.fromhex(cp["signature"]), cp["message"].encode()
    )
    # The same checkpoint as the JSON API exports it; and all of them in one file.
    api = await ui_stack.stack.client("compliance")
    assert (await api.get("/api/v1/evidence/checkpoints")).json() == [cp]
    client = await signed_in(ui_stack, "compliance")
    assert json.loads((await client.get("/compliance/checkpoints.json")).content) == [cp]
    assert (await client.get("/compliance/checkpoints/999999.json")).status_code == 404
    overview = tree((await client.get("/compliance")).text)
    [latest] = overview.xpath('//p[@data-section="/compliance/checkpoints"]')
    assert f"ACME at entry {cp['seq']}" in latest.text_content()


async def test_access_review_lists_who_holds_what_and_every_conflict_of_duties(ui_stack: UiStack) -> None:
    with writing(ui_stack.stack.store) as session:
        # Held before the conflicts file said so: what the report exists to find.
        session.add(
            RoleAssignment(username="cashier", role="ar_preparer", legal_entity="ACME", granted_by="before")
        )
    page = await ui_stack.logged_in("compliance")
    await page.goto("/compliance/access")
    conflicts = page.locator("#conflicts tbody tr")
    assert await conflicts.count() == 1
    text_ = await conflicts.inner_text()
    assert "cashier" in text_ and "cash_applier + ar_preparer" in text_ and "hide a receipt" in text_
    assert await page.locator("#assignments tbody tr").count() >= 10
    await both_widths(page, "compliance-access")
    await page.select_option("#role", "ar_preparer")
    await page.click("#access-filters button[type=submit]")
    await page.wait_for_url(re.compile(r"role=ar_preparer"))
    users = await page.locator("#assignments tbody th").all_inner_texts()
    assert sorted(users) == ["cashier", "preparer", "preparer2"]
    async with page.expect_download() as info:
        await page.click("text=Download 3 assignments (CSV)")
    saved = await (await info.value).path()
    rows = list(csv.DictReader(io.StringIO(await asyncio.to_thread(Path(saved).read_text))))
    assert sorted(r["username"] for r in rows) == ["cashier", "preparer", "preparer2"]
    await page.fill("#q", "nobody-by-this-name")
    await page.click("#access-filters button[type=submit]")
    await page.locator(".empty").wait_for()
    await assert_accessible(page, context="access review without a match")
    await page.goto("/compliance")
    assert await page.locator('[data-section="/compliance/access"]').inner_text() == (
        "1 conflict of duties to review."
    )


@pytest.mark.parametrize(
    ("username", "sections", "refused"),
    [
        (
            "compliance",
            [
                "/compliance/controls",
                "/compliance/packs/new",
                "/compliance/ledger",
                "/compliance/checkpoints",
                "/compliance/access",
            ],
            [],
        ),
        (
            "supervisor",  # reads the ledger; exports no evidence, reviews no access
            ["/compliance/controls", "/compliance/ledger", "/compliance/checkpoints"],
            ["/compliance/packs/new", "/compliance/access"],
        ),
        ("admin", ["/compliance/access"], ["/compliance/ledger", "/compliance/packs/new"]),
        (
            "approver",
            [],
            ["/compliance", "/compliance/ledger", "/compliance/access", "/compliance/checkpoints"],
        ),
    ],
)
async def test_each_role_sees_the_compliance_pages_its_actions_allow(
    ui_stack: UiStack, username: str, sections: list[str], refused: list[str]
) -> None:
    client = await signed_in(ui_stack, username)
    if sections:
        doc = tree((await client.get("/compliance")).text)
        assert doc.xpath('//ul[contains(@class, "sections")]//h2/a/@href') == sections
        for path in sections:
            r = await client.get(path)
            assert r.status_code == 200, (username, path, r.status_code)
            shown = tree(r.text).xpath('//nav[@aria-label="Compliance"]//a/@href')
            assert shown == [s for s in sections], (username, path)
    for path in refused:
        r = await client.get(path)
        assert r.status_code == 403, (username, path)
        assert "may not" in r.text

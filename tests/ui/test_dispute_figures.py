"""The dispute figures page in Chromium: charts with the table behind each, the CSV of a table, a Pareto
number leading to the dispute board filtered to the very cases it counts, the cases behind the cycle time,
axe and screenshots at 1280 and 390 px; who may see it. The cases are recorded as the workflow records
them (read model and ledger); the arithmetic is tested in tests/activities/test_dispute_reports.py."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import expect

from tests.activities.test_dispute_reports import Case, issued
from tests.ui.conftest import UiStack, both_widths
from tests.ui.pages import page, page_client, text


async def test_dispute_figures_charts_tables_csv_and_links(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    store, initech, umbrella = stack.store, stack.customers["initech"], stack.customers["umbrella"]
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    day = timedelta(days=1)
    for d in range(2, 12):
        issued(store, initech, now - d * day, "EUR", 100000)
    issued(store, umbrella, now - 3 * day, "EUR", 50000)
    a = Case(store, initech, "EUR", "manual", "PRC", now - 10 * day, 30000)
    a.record("resolve", "resolved", now - 8 * day, amounts=a.amounts(open_minor=0, credited_minor=30000))
    a.close(now - 7 * day, "PRC", "valid")
    b = Case(store, initech, "EUR", "manual", "BIL", now - 9 * day, 12000)
    b.record("resolve", "resolved", now - 6 * day, amounts=b.amounts(open_minor=0, credited_minor=12000))
    b.close(now - 5 * day, "BIL", "partly_valid")
    c = Case(store, umbrella, "EUR", "deduction", "DLV", now - 4 * day, 5000, sla_due=now - day)
    c.record("resolve", "resolved", now - 2 * day, sla_due_at="")
    c.close(now - day, "CUS", "invalid")
    Case(
        store,
        umbrella,
        "EUR",
        "deduction",
        "QLT",
        now - 3 * day,
        7000,
        sla_due=now - timedelta(hours=2),
    )
    period = f"from={(today - 20 * day).isoformat()}&to={today.isoformat()}"

    p = await ui_stack.logged_in("supervisor")
    await p.goto(f"/figures/disputes?{period}")
    await expect(p.locator("h2#dispute-figures")).to_contain_text("Disputes")
    await expect(p.locator("nav[aria-label='Figures'] a[aria-current='page']")).to_have_text("Disputes")
    for chart in ("chart-rate", "chart-cycle", "chart-pareto-EUR", "chart-validity", "chart-ddo"):
        await expect(p.locator(f"svg#{chart}[role='img']")).to_have_count(1)
    for table in (
        "table-rate",
        "table-cycle",
        "table-pareto-EUR",
        "table-validity",
        "table-ddo",
        "table-customers",
    ):
        await expect(p.locator(f"table#{table}")).to_have_count(1)
    # Pareto: PRC 300.00, BIL 120.00, CUS 50.00 (the cases opened in the period, closed with a root cause).
    rows = p.locator("#table-pareto-EUR tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_contain_text("PRC")
    await expect(rows.nth(0)).to_contain_text("300.00")
    await expect(rows.nth(1)).to_contain_text("BIL")
    await expect(p.locator(".headline").nth(2)).to_contain_text("1")  # past SLA now: the open deduction
    await both_widths(p, "dispute-figures")

    # The CSV of the Pareto table.
    async with p.expect_download() as info:
        await p.click("section[aria-labelledby='pareto-title'] .download a")
    download = await info.value
    content = await asyncio.to_thread(Path(str(await download.path())).read_text, encoding="utf-8")
    lines = content.strip().splitlines()
    assert lines[0] == "currency,rank,root_cause,cause,internal,cases,value_minor,share,cumulative_share"
    assert lines[1].startswith("EUR,1,PRC,") and lines[1].endswith(",True,1,30000,0.6383,0.6383")

    # A Pareto number leads to the board, filtered to the case it counts.
    await p.click("#table-pareto-EUR tbody tr:nth-child(2) td[data-label='Cases'] a")
    await expect(p).to_have_url(re.compile(r"/disputes\?.*root_cause=BIL"))
    await expect(p.locator("#disputes tbody tr")).to_have_count(1)
    await expect(p.locator("#disputes tbody tr")).to_contain_text(b.state.case_number)
    await expect(p.locator("#also-filtered")).to_contain_text("BIL")

    # The cases behind the cycle time: the three closed, shortest first; p50 is a case page.
    await p.goto(f"/figures/disputes?{period}")
    await p.click("#table-cycle a >> nth=0")
    await expect(p.locator("h1")).to_have_text(
        "Cases closed in the period with a root cause, shortest cycle first"
    )
    await expect(p.locator("#figure-cases tbody tr")).to_have_count(3)
    await both_widths(p, "dispute-figures-cases")
    await p.goto(f"/figures/disputes?{period}")
    await p.click("#table-cycle tr:nth-child(2) a")
    await expect(p).to_have_url(re.compile(f"/disputes/({a.id}|{c.id})$"))


async def test_who_sees_the_dispute_figures(ui_stack: UiStack) -> None:
    stack = ui_stack.stack
    supervisor = await page_client(stack, "supervisor")
    doc = await page(supervisor, "/figures/disputes?from=2027-01-01&to=2027-01-31")
    assert [text(a) for a in doc.xpath("//nav[@aria-label='Figures']//a")] == [
        "Portal figures",
        "Approval turnaround",
        "Disputes",
    ]
    assert doc.xpath("//div[contains(@class,'empty')]")  # empty period: empty states, no error
    assert text(doc.xpath("//div[@class='headline']//p[@class='headline__value']")[0]) == "\u2013"
    r = await supervisor.get("/figures/disputes.csv?from=2027-01-01&to=2027-01-31&table=all")
    assert r.status_code == 200 and r.headers["x-report-rows-sha256"]
    r = await supervisor.get("/figures/disputes.csv?from=2027-01-01&to=2027-01-31&table=nope")
    assert r.status_code == 422
    doc = await page(supervisor, "/figures/disputes?from=2027-02-01&to=2027-01-01", status=422)
    assert doc.xpath("//div[@class='error-summary']")
    collector = await page_client(stack, "collector")
    doc = await page(collector, "/figures/disputes", status=403)
    assert "report:read" in text(doc.xpath("//main")[0])

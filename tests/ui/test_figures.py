"""The figures pages: portal figures and approval turnaround as SVG charts with the table behind each, a
CSV of each table, and every number linking to the invoices behind it; the period's errors and empty
states; who may see them. Approvals go through the real workflow (API); portal passes are written to
their read model as the invoice workflow writes them (the portal flow itself is tested in tests/portals).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from lxml import html as lxml_html

from tests.activities.test_portal_reports import add_invoice, add_pass
from tests.api.test_approvals import add_cast, pending
from tests.ui.conftest import UiStack, assert_accessible, both_widths
from tests.ui.test_session import http_login

ARIBA = ("ariba-initech", "cxml")
COUPA = ("coupa-umbrella", "coupa")


@dataclass
class Figures:
    """What the test did: four tier approvals (two tiers), one rejection, one tier still waiting, and three
    invoices through customer portals (one accepted first time, one rejected then accepted, one open)."""

    stack: UiStack
    approved: list[str]
    waiting: str
    portal_invoices: list[str]


@pytest.fixture
async def figures(ui_stack: UiStack) -> Figures:
    stack = ui_stack.stack
    add_cast(stack)
    approver, approver2, manager, preparer = await stack.clients(
        "approver", "approver2", "manager", "preparer"
    )
    small = await pending(stack, "500.00")
    medium = await pending(stack, "20000.00")
    sent_back = await pending(stack, "700.00")
    waiting = await pending(stack, "800.00")
    assert (await approver.post(f"/api/v1/invoices/{small}/approve")).status_code == 200
    assert (await approver.post(f"/api/v1/invoices/{medium}/approve", json={"tier": 1})).status_code == 200
    assert (await manager.post(f"/api/v1/invoices/{medium}/approve", json={"tier": 2})).status_code == 200
    r = await approver.post(f"/api/v1/invoices/{sent_back}/reject", json={"reason": "wrong PO"})
    assert r.status_code == 200, r.text
    assert (await preparer.post(f"/api/v1/invoices/{sent_back}/submit")).status_code == 200
    assert (await approver2.post(f"/api/v1/invoices/{sent_back}/approve")).status_code == 200

    now = datetime.now(UTC).replace(microsecond=0)
    initech, umbrella = stack.customers["initech"], stack.customers["umbrella"]
    first = add_invoice(stack.store, "ACME", initech)
    add_pass(
        stack.store, first, 1, ARIBA, now - timedelta(days=5), accepted=now - timedelta(days=4, hours=12)
    )
    fixed = add_invoice(stack.store, "ACME", initech)
    add_pass(
        stack.store, fixed, 1, ARIBA, now - timedelta(days=4), rejected=now - timedelta(days=3), reason="REF"
    )
    add_pass(stack.store, fixed, 2, ARIBA, now - timedelta(days=3), accepted=now - timedelta(days=2))
    still = add_invoice(stack.store, "ACME", umbrella)
    add_pass(stack.store, still, 1, COUPA, now - timedelta(days=1))
    return Figures(ui_stack, [small, medium, sent_back], waiting, [first, fixed, still])


async def signed_in(ui: UiStack, username: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=ui.base_url, timeout=60)
    ui.stack.opened.append(client)
    r = await http_login(client, username)
    assert r.status_code == 303, r.text
    return client


def tree(text: str) -> lxml_html.HtmlElement:
    return lxml_html.fromstring(text)


def period() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}


def cell_link(doc: lxml_html.HtmlElement, table_id: str, row: int, label: str) -> tuple[str, str]:
    """The text and href of the link in the cell of column `label` (data-label) of row `row`."""
    [a] = doc.xpath(f'//table[@id="{table_id}"]/tbody/tr[{row}]/td[@data-label="{label}"]/a')
    return a.text_content().strip(), a.get("href")


async def rows_behind(client: httpx.AsyncClient, href: str) -> lxml_html.HtmlElement:
    r = await client.get(href)
    assert r.status_code == 200, (href, r.text[:2000])
    return tree(r.text)


def charts_are_images_with_their_table(doc: lxml_html.HtmlElement, expected: int) -> None:
    svgs = doc.xpath("//svg")
    assert len(svgs) == expected
    for svg in svgs:
        assert svg.get("role") == "img"
        title, desc = svg.get("aria-labelledby").split()
        assert doc.xpath(f'//*[@id="{title}"]')[0].tag == "title"
        assert doc.xpath(f'//*[@id="{desc}"]')[0].text_content().strip()
        # The table behind the chart follows it in its section, and every count in it is a link.
        section = svg.xpath("ancestor::section[1]")[0]
        assert section.xpath(".//table/tbody/tr"), f"no table behind {svg.get('id')}"
        assert section.xpath('.//a[contains(@href, ".csv")]'), f"no CSV of {svg.get('id')}"


async def test_portal_figures_with_charts_tables_csv_and_the_invoices_behind_each_number(
    figures: Figures,
) -> None:
    client = await signed_in(figures.stack, "supervisor")
    r = await client.get("/figures", params=period(), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/figures/portals?from=")
    r = await client.get("/figures/portals", params=period())
    assert r.status_code == 200, r.text
    doc = tree(r.text)
    assert doc.xpath('//nav[@aria-label="Figures"]//a[@aria-current="page"]')[0].text == "Portal figures"
    headlines = [h.text_content().strip() for h in doc.xpath('//p[@class="headline__value"]')]
    assert headlines == ["33.3 %", "3", "1", "1"]  # 1 of 3 accepted first time; 1 rejected pass; 1 open
    charts_are_images_with_their_table(doc, 4)

    # Each number leads to as many passes, of the invoices the test made.
    assert cell_link(doc, "table-by-portal", 1, "Invoices submitted")[0] == "2"  # ariba: first and fixed
    text, href = cell_link(doc, "table-by-portal", 1, "Accepted first time")
    behind = await rows_behind(client, href)
    assert text == "1" and len(behind.xpath('//table[@id="figure-invoices"]/tbody/tr')) == 1
    assert behind.xpath('//table[@id="figure-invoices"]//a/@href') == [
        f"/invoices/{figures.portal_invoices[0]}"
    ]
    text, href = cell_link(doc, "table-reasons", 1, "Rejected passes")
    behind = await rows_behind(client, href)
    assert text == "1"
    assert behind.xpath('//table[@id="figure-invoices"]//a/@href') == [
        f"/invoices/{figures.portal_invoices[1]}"
    ]
    assert "REF" in behind.xpath('//td[@data-label="Reason"]')[0].text_content()
    text, href = cell_link(doc, "table-time", 2, "Count")  # waiting for an answer
    behind = await rows_behind(client, href)
    assert behind.xpath('//table[@id="figure-invoices"]//a/@href') == [
        f"/invoices/{figures.portal_invoices[2]}"
    ]

    # The CSV of a table holds the same figures.
    [csv_href] = doc.xpath('//section[.//table[@id="table-by-portal"]]//a[contains(@href, ".csv")]/@href')
    r = await client.get(csv_href)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(x["portal"], x["invoices_submitted"], x["first_pass_accepted"]) for x in rows] == [
        ("ariba-initech", "2", "1"),
        ("coupa-umbrella", "1", "0"),
    ]
    assert len(r.headers["x-report-rows-sha256"]) == 64
    # ... and the list behind a number, as CSV.
    r = await client.get(href + "&format=csv")
    assert [x["invoice_id"] for x in csv.DictReader(io.StringIO(r.text))] == [figures.portal_invoices[2]]


async def test_approval_turnaround_per_tier_and_approver_with_p50_and_p90_leading_to_their_approval(
    figures: Figures,
) -> None:
    client = await signed_in(figures.stack, "supervisor")
    r = await client.get("/figures/approvals", params=period())
    assert r.status_code == 200, r.text
    doc = tree(r.text)
    charts_are_images_with_their_table(doc, 3)
    tiers = [
        (
            tr.xpath("th")[0].text_content().strip(),
            tr.xpath('td[@data-label="Approvals"]')[0].text_content().strip(),
        )
        for tr in doc.xpath('//table[@id="table-tiers"]/tbody/tr')
    ]
    assert tiers == [("Tier 1", "3"), ("Tier 2", "1")]
    approvers = [
        (
            tr.xpath("th")[0].text_content().strip(),
            tr.xpath('td[@data-label="Approvals"]')[0].text_content().strip(),
        )
        for tr in doc.xpath('//table[@id="table-approvers"]/tbody/tr')
    ]
    assert approvers == [("approver", "2"), ("approver2", "1"), ("manager", "1")]
    # The bars of the chart: one row per tier, a p50 and a p90 bar in each.
    assert len(doc.xpath('//svg[@id="chart-tiers"]//g[@class="chart__row"]')) == 2
    assert len(doc.xpath('//svg[@id="chart-tiers"]//rect[contains(@class, "chart__track")]')) == 4

    # Tier 1's approvals, and its p90: the approval at rank ceil(0.9 * 3) = 3, highlighted.
    _, href = cell_link(doc, "table-tiers", 1, "Approvals")
    behind = await rows_behind(client, href)
    listed = behind.xpath('//table[@id="figure-invoices"]/tbody/tr')
    assert len(listed) == 3
    assert {a for a in behind.xpath('//table[@id="figure-invoices"]//th//a/@href')} == {
        f"/invoices/{i}" for i in figures.approved
    }
    turnarounds = [float(td.get("data-hours")) for td in behind.xpath('//td[@data-label="Turnaround"]')]
    assert turnarounds == sorted(turnarounds)
    p90_text, p90_href = cell_link(doc, "table-tiers", 1, "p90")
    assert urlsplit(p90_href).fragment == "rank-3" and parse_qs(urlsplit(p90_href).query)["highlight"] == [
        "3"
    ]
    behind = await rows_behind(client, p90_href)
    [current] = behind.xpath('//tr[contains(@class, "is-current")]')
    assert current.get("id") == "rank-3"
    assert current.xpath('td[@data-label="Turnaround"]')[0].text_content().strip() == p90_text

    # The tiers not approved: one rejection, one still waiting (the `waiting` invoice's tier 1).
    [waiting_link] = doc.xpath('//ul[@class="counts"]/li[2]/a[1]')
    assert waiting_link.text == "1"
    behind = await rows_behind(client, waiting_link.get("href"))
    assert behind.xpath('//table[@id="figure-invoices"]//th//a/@href') == [f"/invoices/{figures.waiting}"]

    # The CSV of the whole page is the JSON API's table (GET /api/v1/reports/approvals?format=csv).
    [all_csv] = doc.xpath('//a[contains(@href, "table=all")]/@href')
    page_csv = list(csv.DictReader(io.StringIO((await client.get(all_csv)).text)))
    api = await figures.stack.stack.client("supervisor")
    api_csv = list(
        csv.DictReader(
            io.StringIO(
                (await api.get("/api/v1/reports/approvals", params={**period(), "format": "csv"})).text
            )
        )
    )
    assert page_csv == api_csv and page_csv[0]["count"] == "4"


async def test_bad_dates_say_what_is_wrong_and_an_empty_period_says_so(figures: Figures) -> None:
    client = await signed_in(figures.stack, "supervisor")
    for path in ("/figures/portals", "/figures/approvals"):
        for params, field, words in [
            ({"from": "2026-13-01", "to": "2026-12-31"}, "from", "not a real date"),
            ({"from": "yesterday", "to": "2026-12-31"}, "from", "must be a date"),
            ({"from": "2026-11-30", "to": "2026-11-01"}, "to", "on or after"),
            ({"from": "2024-01-01", "to": "2026-01-01"}, "to", "at most 366 days"),
            (
                {"from": "2026-11-01", "to": "2026-11-30", "legal_entity": "GLOBEX"},
                "legal_entity",
                "not one you may",
            ),
        ]:
            r = await client.get(path, params=params)
            assert r.status_code == 422, (path, params)
            doc = tree(r.text)
            [summary] = doc.xpath('//div[@class="error-summary"]//a')
            assert summary.get("href") == f"#{field}" and words in summary.text_content()
            assert doc.xpath(f'//*[@id="{field}"]/@aria-invalid') == ["true"]
            assert not doc.xpath("//svg") and not doc.xpath('//div[@class="headlines"]')
            assert doc.xpath('//input[@id="from"]/@value') == [params["from"]]  # what was typed, shown back
        r = await client.get(path, params={"from": "2027-01-01", "to": "2027-01-31"})
        assert r.status_code == 200
        doc = tree(r.text)
        assert doc.xpath('//div[@class="empty"]') and not doc.xpath("//svg")
    r = await client.get("/figures/approvals/invoices", params={**period(), "figure": "tier", "tier": "x"})
    assert r.status_code == 422
    r = await client.get("/figures/portals.csv", params={**period(), "table": "nope"})
    assert r.status_code == 422


async def test_only_those_who_may_read_reports_see_figures(figures: Figures) -> None:
    for username in ("compliance", "approver", "collector"):
        client = await signed_in(figures.stack, username)
        for path in ("/figures/portals", "/figures/approvals", "/figures/approvals.csv?table=all"):
            r = await client.get(path)
            assert r.status_code == 403, (username, path)
            assert "report:read" in r.text
    controller = await signed_in(figures.stack, "controller")
    assert (await controller.get("/figures/approvals")).status_code == 200


async def test_figures_in_chromium_at_desktop_and_phone_width(figures: Figures) -> None:
    page = await figures.stack.logged_in("supervisor")
    query = "&".join(f"{k}={v}" for k, v in period().items())
    await page.goto(f"/figures/portals?{query}")
    assert await page.locator("svg#chart-by-portal").count() == 1
    await both_widths(page, "figures-portals")
    await page.click("#table-reasons a")
    await page.wait_for_url(re.compile(r"/figures/portals/invoices"))
    assert await page.locator("#figure-invoices tbody tr").count() == 1
    await both_widths(page, "figures-portal-invoices")

    await page.goto(f"/figures/approvals?{query}")
    await both_widths(page, "figures-approvals")
    await page.click('#table-tiers tbody tr:first-child td[data-label="p90"] a')
    await page.wait_for_url(re.compile(r"highlight=3"))
    assert await page.locator("tr.is-current").get_attribute("id") == "rank-3"
    await both_widths(page, "figures-approval-invoices")

    await page.goto("/figures/approvals?from=2026-11-30&to=2026-11-01")
    assert "on or after" in await page.locator(".error-summary").inner_text()
    await assert_accessible(page, context="figures with a bad period")
    await page.goto("/figures/approvals?from=2027-01-01&to=2027-01-31")
    await both_widths(page, "figures-empty")


async def test_long_lists_page_through_and_a_percentile_link_lands_on_its_page(ui_stack: UiStack) -> None:
    """60 accepted passes: the list behind the count pages by 50; the p90 (rank 54) opens page 2 at it."""
    stack = ui_stack.stack
    now = datetime.now(UTC).replace(microsecond=0)
    for n in range(60):
        invoice = add_invoice(stack.store, "ACME", stack.customers["initech"])
        submitted = now - timedelta(days=3, minutes=n)
        add_pass(stack.store, invoice, 1, ARIBA, submitted, accepted=submitted + timedelta(minutes=10 + n))
    client = await signed_in(ui_stack, "supervisor")
    doc = tree((await client.get("/figures/portals", params=period())).text)
    _, count_href = cell_link(doc, "table-time", 1, "Count")
    first = await rows_behind(client, count_href)
    assert len(first.xpath('//table[@id="figure-invoices"]/tbody/tr')) == 50
    assert first.xpath('//nav[@class="pager"]/span')[0].text_content().strip() == "1\u201350 of 60"
    [next_href] = first.xpath('//nav[@class="pager"]/a[@rel="next"]/@href')
    second = await rows_behind(client, "/figures/portals/invoices" + next_href)
    ranks = [int(td.text_content()) for td in second.xpath('//td[@data-label="#"]')]
    assert ranks == list(range(51, 61))
    hours = [float(td.get("data-hours")) for td in first.xpath("//td[@data-hours]")]
    assert hours == sorted(hours) and hours[0] == pytest.approx(10 / 60)
    text, p90_href = cell_link(doc, "table-time", 1, "90th percentile")
    assert "offset=50" in p90_href and p90_href.endswith("#rank-54")
    page = await rows_behind(client, p90_href)
    [current] = page.xpath('//tr[contains(@class, "is-current")]')
    assert current.get("id") == "rank-54"
    assert float(current.xpath("td[@data-hours]")[0].get("data-hours")) == pytest.approx((10 + 53) / 60)
    assert text == "1.1 h"  # 63 minutes


def test_chart_macros_draw_bars_to_scale_wrap_long_labels_and_say_what_they_leave_out() -> None:
    from api.pages.common import templates

    charts = templates.env.get_template("_charts.html").module
    rows = [
        {
            "label": f"Reason {i} with a label long enough to need a second line",
            "values": [i],
            "texts": [str(i)],
        }
        for i in range(1, 21)
    ]
    svg = lxml_html.fromstring(
        str(charts.bar_chart("c", "Title", "What it shows", rows[:15][::-1], max_value=30))
    )
    assert svg.get("role") == "img" and svg.get("aria-labelledby") == "c-title c-desc"
    bars = svg.xpath('//rect[contains(@class, "chart__bar--s0")]')
    assert [b.get("width") for b in bars][:2] == ["50.00%", "46.67%"]  # 15 and 14 of 30
    assert all(len(t.xpath("tspan")) == 2 for t in svg.xpath('//text[@class="chart__label"]'))
    ys = [float(b.get("y")) for b in bars]
    assert ys == sorted(ys) and len(set(ys)) == 15  # one row under the other, none overlapping
    assert float(svg.get("height")) >= ys[-1] + 16
    caption = str(charts.more(rows, 15, "most frequent reasons"))
    assert "shows the 15 most frequent reasons; the table lists all 20" in caption
    assert str(charts.more(rows[:15], 15, "x")).strip() == ""
    hist = lxml_html.fromstring(
        str(charts.histogram("h", "T", "D", [{"short": "<1 h", "count": 4}, {"short": "1-4 h", "count": 2}]))
    )
    heights = [float(r.get("height")) for r in hist.xpath('//rect[contains(@class, "chart__bar")]')]
    assert heights == [150.0, 75.0]

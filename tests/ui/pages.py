"""Reading the approver's pages as HTML (html.parser via lxml): a signed-in HTTP client per user, and what
a page says about an action it refuses. Shared by the page tests and tests/api/test_refusals.py."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from lxml import html

from tests.conftest import PASSWORD, Stack


async def page_client(stack: Stack, username: str) -> httpx.AsyncClient:
    """An HTTP client signed in to the web UI through its login form (cookies kept)."""
    client = httpx.AsyncClient(base_url=stack.base_url, timeout=60)
    stack.opened.append(client)
    form = html.fromstring((await client.get("/login")).text)
    token = form.xpath("//input[@name='csrf_token']/@value")[0]
    r = await client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token, "next": "/account"}
    )
    assert r.status_code == 303, r.text
    return client


async def page(client: httpx.AsyncClient, path: str, status: int = 200) -> html.HtmlElement:
    r = await client.get(path)
    assert r.status_code == status, (path, r.status_code, r.text[:2000])
    return html.fromstring(r.text)


def text(node: html.HtmlElement) -> str:
    return re.sub(r"\s+", " ", node.text_content()).strip()


@dataclass(frozen=True)
class Shown:
    """An action as a page shows it: offered (a form) or disabled with the reason and who can instead."""

    disabled: bool
    reason: str
    instead: list[str]
    label: str


def action_on(doc: html.HtmlElement, url: str) -> Shown | None:
    """The action posting to `url` on the page (the `action_button` macro's markup), if it is there."""
    forms = doc.xpath(f"//form[@action='{url}']")
    if forms:
        return Shown(False, "", [], text(forms[0].xpath(".//button[@type='submit']")[0]))
    why = doc.xpath(f"//p[@id='act-{url.replace('/', '-')}-why']")
    if not why:
        return None
    box = why[0].getparent()
    button = box.xpath(".//button")[0]
    reason = text(why[0].xpath(".//*[@class='refusal__reason']")[0])
    instead_nodes = why[0].xpath(".//*[@class='refusal__instead']")
    instead: list[str] = []
    if instead_nodes:
        sentence = text(instead_nodes[0]).removesuffix(" can do this instead.")
        instead = sentence.split(" or ")
    return Shown(button.get("disabled") is not None, reason, instead, text(button))


async def page_refusal(stack: Stack, username: str, invoice_id: str, action: str) -> Shown:
    """What the invoice page shows `username` about `action` (asserting that it shows it)."""
    client = await page_client(stack, username)
    doc = await page(client, f"/invoices/{invoice_id}")
    shown = action_on(doc, f"/invoices/{invoice_id}/{action}")
    assert shown is not None, f"the page shows {username} no {action} on {invoice_id}"
    return shown

"""Signing in and out of the web UI: the session cookie, CSRF, navigation by role, a disabled user."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from activities.db import writing
from activities.directory import disable_user
from tests.conftest import PASSWORD
from tests.ui.conftest import UiStack, assert_accessible, both_widths, login


class _Page(HTMLParser):
    """The elements the session tests look at: nav links, forms and their hidden fields, the h1."""

    def __init__(self) -> None:
        super().__init__()
        self.nav: list[str] = []
        self.forms: list[dict[str, str]] = []
        self.inputs: list[dict[str, str]] = []
        self.h1 = ""
        self._in_nav = self._in_h1 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "nav" and a.get("aria-label") == "Main":
            self._in_nav = True
        elif tag == "a" and self._in_nav:
            self.nav.append(a.get("href", ""))
        elif tag == "form":
            self.forms.append(a)
        elif tag == "input":
            self.inputs.append(a)
        elif tag == "h1":
            self._in_h1 = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_nav = False
        elif tag == "h1":
            self._in_h1 = False

    def handle_data(self, data: str) -> None:
        if self._in_h1:
            self.h1 += data


def parse(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    return p


async def http_login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    form = parse((await client.get("/login")).text)
    token = next(i["value"] for i in form.inputs if i.get("name") == "csrf_token")
    return await client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token, "next": "/"}
    )


@pytest.fixture
async def anonymous(ui_stack: UiStack) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=ui_stack.base_url, follow_redirects=False, timeout=30)
    ui_stack.stack.opened.append(client)
    return client


async def test_a_page_without_a_session_sends_the_browser_to_login_and_back(
    anonymous: httpx.AsyncClient,
) -> None:
    r = await anonymous.get("/account?tab=roles")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=%2Faccount%3Ftab%3Droles"
    page = parse((await anonymous.get(r.headers["location"])).text)
    assert page.h1 == "Sign in to Cashcycle"
    assert {"name": "next", "type": "hidden", "value": "/account?tab=roles"} in page.inputs


async def test_login_sets_an_http_only_same_site_session_cookie_with_an_expiry(
    anonymous: httpx.AsyncClient,
) -> None:
    r = await http_login(anonymous, "approver")
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("cashcycle_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and re.search(r"Max-Age=\d+", cookie)
    home = await anonymous.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/inbox"  # an approver's first page


async def test_wrong_password_is_refused_and_opens_no_session(anonymous: httpx.AsyncClient) -> None:
    r = await http_login(anonymous, "approver", "not-the-password")
    assert r.status_code == 401
    assert "Wrong username or password." in r.text
    assert "cashcycle_session" not in anonymous.cookies
    assert (await anonymous.get("/account")).status_code == 303


async def test_login_form_posted_without_its_token_is_refused(anonymous: httpx.AsyncClient) -> None:
    await anonymous.get("/login")
    r = await anonymous.post("/login", data={"username": "approver", "password": PASSWORD})
    assert r.status_code == 403
    assert "cashcycle_session" not in anonymous.cookies


async def test_navigation_shows_only_what_the_roles_allow(ui_stack: UiStack) -> None:
    seen: dict[str, list[str]] = {}
    for username in ("approver", "supervisor", "compliance", "preparer", "collector", "outsider"):
        async with httpx.AsyncClient(base_url=ui_stack.base_url, timeout=30) as client:
            await http_login(client, username)
            seen[username] = parse((await client.get("/account")).text).nav
    assert seen["approver"] == ["/inbox", "/delegations", "/disputes", "/capa"]
    assert seen["supervisor"] == ["/tower", "/disputes", "/capa", "/figures", "/compliance"]
    assert seen["compliance"] == ["/capa", "/compliance"]
    assert seen["collector"] == ["/disputes", "/capa"]
    assert seen["preparer"] == ["/disputes", "/capa"]
    assert seen["outsider"] == []


async def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    ui_stack: UiStack, anonymous: httpx.AsyncClient
) -> None:
    await http_login(anonymous, "approver")
    r = await anonymous.post("/logout", data={})
    assert r.status_code == 403
    assert "Nothing was changed" in r.text
    assert (await anonymous.get("/account")).status_code == 200  # still signed in: logout did not happen
    r = await anonymous.post("/logout", data={"csrf_token": "0" * 64})
    assert r.status_code == 403
    assert (await anonymous.get("/account")).status_code == 200


async def test_logout_ends_the_session_everywhere(anonymous: httpx.AsyncClient) -> None:
    await http_login(anonymous, "supervisor")
    stolen = anonymous.cookies["cashcycle_session"]
    account = parse((await anonymous.get("/account")).text)
    token = next(i["value"] for i in account.inputs if i.get("name") == "csrf_token")
    r = await anonymous.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    # A copy of the cookie taken before logout opens nothing either.
    async with httpx.AsyncClient(base_url=str(anonymous.base_url)) as other:
        other.cookies.set("cashcycle_session", stolen)
        assert (await other.get("/account")).status_code == 303


async def test_a_disabled_user_loses_the_session_at_the_next_request(
    ui_stack: UiStack, anonymous: httpx.AsyncClient
) -> None:
    await http_login(anonymous, "approver")
    assert (await anonymous.get("/account")).status_code == 200
    with writing(ui_stack.stack.store) as session:
        disable_user(session, "approver", "admin", reason="left the company")
    r = await anonymous.get("/account")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


async def test_a_forged_session_cookie_is_refused(anonymous: httpx.AsyncClient) -> None:
    await http_login(anonymous, "approver")
    token, mac = anonymous.cookies["cashcycle_session"].rsplit(".", 1)
    anonymous.cookies.set("cashcycle_session", f"{token}x.{mac}")
    assert (await anonymous.get("/account")).status_code == 303


async def test_next_never_leaves_the_site(anonymous: httpx.AsyncClient) -> None:
    form = parse((await anonymous.get("/login")).text)
    token = next(i["value"] for i in form.inputs if i.get("name") == "csrf_token")
    r = await anonymous.post(
        "/login",
        data={"username": "approver", "password": PASSWORD, "csrf_token": token, "next": "//evil.example/x"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/"


async def test_pages_carry_security_headers_and_json_errors_stay_json(anonymous: httpx.AsyncClient) -> None:
    r = await anonymous.get("/login")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    api = await anonymous.get("/api/v1/invoices/nope")
    assert api.status_code == 401 and api.json()["error"]["code"] == "unauthenticated"
    missing = await anonymous.get("/no-such-page")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]


async def test_login_and_logout_in_chromium(ui_stack: UiStack) -> None:
    page = await ui_stack.page()
    await page.goto("/account")
    assert page.url.endswith("/login?next=%2Faccount")
    await assert_accessible(page, context="login")
    await both_widths(page, "login")
    await login(page, "supervisor", "wrong")
    assert await page.locator(".error-summary").inner_text() != ""
    await assert_accessible(page, context="login with an error")
    await login(page, "supervisor")
    await page.goto("/account")
    assert await page.locator("h1").inner_text() == "supervisor"
    await assert_accessible(page, context="account")
    await page.click("text=Sign out")
    await page.wait_for_url("**/login")
    assert "supervisor signed out." in await page.locator("[role=status]").inner_text()
    await page.goto("/account")
    assert "/login" in page.url

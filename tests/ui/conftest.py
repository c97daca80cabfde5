"""Fixtures of the web UI's tests: a running Cashcycle, real headless Chromium (Debian's, driven by
Playwright through its executable path; never `playwright install`), axe-core, screenshots.

The stack runs in the test's event loop (uvicorn beside the worker), so the browser is driven with
Playwright's async API: its sync API would block the loop the server answers on.

Screenshots go to test-artefacts/screenshots/ (CI keeps that folder): look at them after a change of a page.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from temporalio.testing import WorkflowEnvironment

from activities.db import migrate
from tests.conftest import PASSWORD, ROOT, Stack, running_stack

CHROMIUM = os.environ.get("CASHCYCLE_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = ROOT / "test-artefacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def _chromium_missing() -> str | None:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return None
    return f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium (make browser)"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    missing = _chromium_missing()
    if missing:
        if os.environ.get("CASHCYCLE_REQUIRE_SHARED") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield b
        finally:
            await b.close()


@dataclass
class UiStack:
    """A running Cashcycle for browser tests: the API's stack, its base URL, and pages signed in."""

    stack: Stack
    browser: Browser
    contexts: list[BrowserContext]

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    async def page(self, width: int = DESKTOP["width"], height: int = DESKTOP["height"]) -> Page:
        """A fresh browser context (no cookies) and its page."""
        context = await self.browser.new_context(
            base_url=self.base_url, viewport={"width": width, "height": height}
        )
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        return await context.new_page()

    async def logged_in(self, username: str, **viewport: int) -> Page:
        """A page signed in as `username` through the login form, as a person would."""
        page = await self.page(**viewport)
        await login(page, username)
        return page


async def login(page: Page, username: str, password: str = PASSWORD) -> None:
    await page.goto("/login")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


@pytest.fixture
async def ui_db_url(tmp_path: Path) -> str:
    """A fresh SQLite store (the browser tests check pages; the store's tests cover both backends)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    migrate(url)
    return url


@pytest.fixture
async def ui_stack(
    ui_db_url: str, temporal_env: WorkflowEnvironment, tmp_path: Path, browser: Browser
) -> AsyncIterator[UiStack]:
    async with running_stack(ui_db_url, temporal_env, tmp_path) as stack:
        ui = UiStack(stack, browser, [])
        try:
            yield ui
        finally:
            for context in ui.contexts:
                await context.close()


async def assert_accessible(page: Page, *, context: str = "") -> None:
    """axe-core (vendored, ui/static/vendor/axe.min.js) on the page as it is now: no serious or critical
    violation (WCAG 2.1 A and AA rules and best practices)."""
    # Loaded from the site itself: the pages' Content-Security-Policy refuses inline scripts.
    if not await page.evaluate("() => typeof axe !== 'undefined'"):
        await page.add_script_tag(url="/static/vendor/axe.min.js")
    result: dict[str, Any] = await page.evaluate(
        """async () => await axe.run(document, {resultTypes: ['violations']})"""
    )
    bad = [v for v in result["violations"] if v.get("impact") in ("serious", "critical")]
    lines = [
        f"{v['id']} ({v['impact']}): {v['help']} -> "
        + "; ".join(n.get("target", [""])[0] if n.get("target") else "" for n in v["nodes"][:5])
        for v in bad
    ]
    assert not bad, f"accessibility violations on {context or page.url}:\n" + "\n".join(lines)


async def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save the page as test-artefacts/screenshots/<name>.png (look at it after changing the page)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def both_widths(page: Page, name: str) -> None:
    """Screenshots at 1280 px and at a phone's 390 px, and axe at both."""
    await page.set_viewport_size(DESKTOP)
    await assert_accessible(page, context=f"{name} at 1280 px")
    await screenshot(page, f"{name}-1280")
    await page.set_viewport_size(PHONE)
    await assert_accessible(page, context=f"{name} at 390 px")
    await screenshot(page, f"{name}-390")
    await page.set_viewport_size(DESKTOP)

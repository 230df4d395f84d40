"""The dashboard's "log out everywhere" in a real browser (issue 9, item 5): Playwright driving
Debian's Chromium against an in-process daemon, two browsers logged in."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, async_playwright, expect

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import Dash, dash_of  # noqa: E402

from hivetest import require  # noqa: E402
from hyperhive.core.daemon import Daemon  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
T = 10_000  # ms: the bound on every wait


@pytest.fixture
def dash(hive: Daemon) -> Dash:
    return dash_of(hive)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed (apt install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def logged_in_context(browser: Browser, dash: Dash) -> BrowserContext:
    ctx = await browser.new_context()
    page = await ctx.new_page()
    page.on("dialog", lambda d: d.accept())
    await page.goto(dash.login_url)
    await expect(page.locator("#conn")).to_have_text("● live", timeout=T)
    return ctx


async def test_log_out_everywhere_ends_every_browsers_session(dash: Dash, browser: Browser) -> None:
    """The header's `l0g0ut 3v3rywh3r3` (after a confirm) revokes this browser's session and the
    other browser's, and takes this one to the login page; the other's next request is 401."""
    here = await logged_in_context(browser, dash)
    there = await logged_in_context(browser, dash)
    try:
        assert (await there.request.get(dash.base + "/api/state")).status == 200
        page = here.pages[0]
        await page.locator("#logout-all-btn").click()
        await expect(page).to_have_url(dash.base + "/login", timeout=T)
        assert (await there.request.get(dash.base + "/api/state")).status == 401
        assert (await here.request.get(dash.base + "/api/state")).status == 401
    finally:
        await here.close()
        await there.close()

"""An open dashboard survives a daemon restart (issue 10, "one event pipe"): the new run's hub
numbers its events from 1 again, so the page's Last-Event-ID belongs to the old run. The stream
tells the page its epoch is gone, the page reloads the snapshot in place, and live events flow
again. Real daemon, real Chromium."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import dash_of  # noqa: E402

from hivetest import make_config, require, start_daemon, stop_daemon  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
T = 15_000  # ms: the bound on every wait (a restart included)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed (apt install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def test_a_dashboard_open_across_a_daemon_restart_shows_the_new_runs_events(
    tmp_path: Path, short_dir: Path, browser: Browser
) -> None:
    """Before the fix the page dropped every event of the new run until its seq passed the old
    Last-Event-ID. Now: the old run publishes more events than the new one will, the daemon
    restarts on the same port and state, and a message sent by the new run appears in the open
    page without a navigation."""
    daemon, task = await start_daemon(make_config(tmp_path, short_dir))
    port = 0
    try:
        dash = dash_of(daemon)
        port = dash.port
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        await page.goto(dash.login_url)
        await expect(page.locator("#conn")).to_have_text("● live", timeout=T)
        await page.evaluate("window.__marker = 'no reload'")
        before = []
        for i in range(12):  # the old run's seq ends well past what the new run reaches below
            before += await dash.services.broker.send("system", "operator", f"before the restart {i}")
        await expect(page.locator(f'.hh-term-row[data-flow="{before[-1]}"]')).to_have_count(1, timeout=T)
        assert daemon.services is not None
        old_epoch = daemon.services.hub.epoch
    finally:
        await stop_daemon(daemon, task)
    await expect(page.locator("#conn")).not_to_have_text("● live", timeout=T)

    daemon, task = await start_daemon(make_config(tmp_path, short_dir, port=port))
    try:
        s = daemon.services
        assert s is not None and s.hub.epoch != old_epoch
        await expect(page.locator("#conn")).to_have_text("● live", timeout=T)
        [after] = await s.broker.send("system", "operator", "after the restart")
        assert s.hub.seq < 12, "the new run's seq must stay below the page's old Last-Event-ID"
        row = page.locator(f'.hh-term-row[data-flow="{after}"]')
        await expect(row).to_have_count(1, timeout=T)
        await expect(row).to_contain_text("after the restart")
        assert await page.evaluate("window.__marker") == "no reload"
        await context.close()
    finally:
        await stop_daemon(daemon, task)

"""The dashboard shows the broker's unread count, never its own tally (issue 10): every message
event carries the count, and a requeue (a turn that failed) or an acknowledgement is an event
too, so the cell follows the queue through send, delivery, requeue and ack. Real daemon, real
broker, real Chromium."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import dash_of  # noqa: E402

from hivetest import require, wire_agent  # noqa: E402
from hyperhive.core.daemon import Daemon  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
T = 10_000  # ms: the bound on every wait


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed (apt install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def test_the_unread_cell_follows_send_delivery_requeue_and_ack(hive: Daemon, browser: Browser) -> None:
    """Before: the page added one per send and took one per delivery, so a requeued message
    (back in the queue) still showed 0. Now each step shows the broker's own number."""
    dash = dash_of(hive)
    s = dash.services
    await wire_agent(hive, "worker")
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        await page.goto(dash.login_url)
        await expect(page.locator("#conn")).to_have_text("● live", timeout=T)
        cell = page.locator('tr[data-agent="worker"] td.unread')
        await s.broker.send("operator", "worker", "one")
        await s.broker.send("operator", "worker", "two")
        await expect(cell).to_have_text("2", timeout=T)
        await s.broker.recv("worker", 0, max_messages=2)
        await expect(cell).to_have_text("0", timeout=T)
        await s.broker.requeue_inflight("worker")  # the turn failed: both are back in the queue
        await expect(cell).to_have_text("2", timeout=T)
        assert s.broker.unread("worker") == 2
        await s.broker.recv("worker", 0, max_messages=2)
        await s.broker.ack_turn("worker")
        await expect(cell).to_have_text("0", timeout=T)
    finally:
        await context.close()

"""The dashboard and an agent's page on a laptop (1440×900) and a phone (390×844), in Debian's
Chromium through Playwright against a real daemon, a real harness on the offline model and a real
harness that exits non-zero (issue 15): no horizontal scroll, every row action reachable, the
agent page's prompt at least 200 px wide, a down agent's row and page saying why, plain-text
section names. Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hivetest import make_config, require, start_daemon, stop_daemon, until
from hyperhive.core.daemon import Daemon
from hyperhive.offline_model.server import OfflineModelServer

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
VIEWPORTS = [(1440, 900), (390, 844)]
T = 30_000
CRASHY = 'description = "crashy"\ninstructions = "instructions.md"\n[mcp_servers.broken]\ncommand = "no-such-hh15"\n'
OVERFLOW = "() => [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]"


@dataclass
class Rig:
    daemon: Daemon
    browser: Browser
    login_url: str
    base: str

    async def page(self, width: int, height: int) -> Page:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        page.set_default_timeout(T)
        page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await page.goto(self.login_url)
        return page


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require(async_playwright is not None, "playwright is not installed")
    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed")
    model = OfflineModelServer()
    await model.start()
    env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline"}
    daemon, task = await start_daemon(make_config(tmp_path, short_dir, agent_env=env))
    s = daemon.services
    assert s is not None and daemon.dashboard_url is not None
    try:
        await s.lifecycle.spawn("alice")
        await s.lifecycle.wait_healthy("alice", 60)
        await s.repos.seed("crashy", None, toml=CRASHY)
        await s.lifecycle.spawn("crashy")
        await until(s.hub, "crashy's crash", lambda: s.lifecycle.agents["crashy"].down, 60,
                    explain=lambda: str(s.lifecycle.row("crashy")))  # fmt: skip
        await s.lifecycle.spawn("old")
        await s.lifecycle.destroy("old")  # a K3PT ST4T3 row
        await s.approvals.request_spawn("newbie", "a pending approval card", requested_by="operator")
        base = re.match(r"https?://[^/]+", daemon.dashboard_url)
        assert base is not None
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                yield Rig(daemon, browser, daemon.dashboard_url, base[0])
            finally:
                await browser.close()
    finally:
        await stop_daemon(daemon, task)
        await model.stop()


async def no_horizontal_scroll(page: Page, what: str) -> None:
    doc, body, inner = await page.evaluate(OVERFLOW)
    assert doc <= inner and body <= inner, f"{what} scrolls sideways: content {doc}/{body} px in {inner} px"


async def reachable(page: Page, locator_text: str, width: int) -> None:
    """Visible, inside the viewport's width, and big enough to tap."""
    button = page.locator(locator_text)
    await expect(button).to_be_visible()
    await button.scroll_into_view_if_needed()
    box = await button.bounding_box()
    assert box is not None, locator_text
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, (locator_text, box, width)
    assert box["height"] >= 16, (locator_text, box)


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_both_pages_fit_a_laptop_and_a_phone(rig: Rig) -> None:
    for width, height in VIEWPORTS:
        page = await rig.page(width, height)
        await expect(page.locator("#conn")).to_have_text("● live", timeout=T)
        alice = page.locator("tr[data-agent='alice']")
        await expect(alice.locator(".badge")).to_have_text("idle", timeout=T)
        await no_horizontal_scroll(page, f"the dashboard at {width}×{height}")
        for verb in ("stop", "restart", "log", "destroy", "purge"):
            await reachable(page, f"tr[data-agent='alice'] [data-action='{verb}']", width)
        for verb in ("start", "restart", "log", "destroy", "purge"):
            await reachable(page, f"tr[data-agent='crashy'] [data-action='{verb}']", width)
        for verb in ("revive", "purge"):
            await reachable(page, f"tr[data-kept='old'] [data-action='{verb}']", width)
        for verb in ("approve", "deny"):
            await reachable(page, f"#approvals-list [data-action='{verb}']", width)
        await reachable(page, "#compose-btn", width)
        await reachable(page, "#spawn-btn", width)
        # the vibec0re headings stay; the sections' accessible names are plain words
        assert await page.get_by_role("region", name="containers").count() == 1
        assert await page.get_by_role("region", name="kept state").count() == 1
        await expect(page.locator("#sec-containers h2 [aria-hidden='true']")).to_have_text("◆ C0NTAINERS ◆")
        await expect(page.locator("#notify-btn")).to_have_text("○ notify: off")
        await shot(page, f"responsive-dashboard-{width}x{height}")

        await page.goto(f"{rig.base}/agent/alice/")
        await expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=T)
        await no_horizontal_scroll(page, f"alice's page at {width}×{height}")
        prompt = page.locator("#term-input")
        await prompt.scroll_into_view_if_needed()
        box = await prompt.bounding_box()
        assert box is not None and box["width"] >= 200, f"the prompt is {box} at {width}×{height}"
        assert box["x"] + box["width"] <= width
        await shot(page, f"responsive-agent-{width}x{height}")
        await page.context.close()


async def test_a_down_agent_says_why_on_its_row_and_its_page(rig: Rig) -> None:
    """crashy's harness exits 3: the row shows the exit, its policy and its last lines; its page
    is the core's down page with a start button and its log; start runs it again (it crashes again)."""
    s = rig.daemon.services
    assert s is not None
    width, height = VIEWPORTS[1]
    page = await rig.page(width, height)
    await expect(page.locator("#conn")).to_have_text("● live", timeout=T)
    row = page.locator("tr[data-agent='crashy']")
    why = row.locator(".down-why")
    await expect(row.locator(".badge")).to_have_text("crashed")
    await expect(why.locator(".reason")).to_contain_text("exited with status 3 · ")
    await expect(why.locator(".reason")).to_have_text(re.compile(r"· \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
    await expect(why.locator(".plan")).to_have_text("restart: no")
    await why.locator("summary").click()
    await expect(why.locator("pre")).to_contain_text("no-such-hh15")
    await shot(page, "responsive-dashboard-down-390x844")

    before = sum(1 for e in s.hub.history(after=0) if e.kind == "container_crash")
    await row.locator("[data-action='start']").click()
    await until(s.hub, "the second crash", lambda: sum(1 for e in s.hub.history(after=0)
                if e.kind == "container_crash") > before, 60, explain=lambda: str(s.lifecycle.row("crashy")))  # fmt: skip
    await expect(row.locator(".badge")).to_have_text("crashed", timeout=T)

    await page.goto(f"{rig.base}/agent/crashy/")
    await expect(page.locator("#down-page")).to_contain_text("exited with status 3")
    await expect(page.locator("#down-page")).to_contain_text("restart policy: no")
    await expect(page.locator(".down-tail")).to_contain_text("no-such-hh15")
    await no_horizontal_scroll(page, "crashy's down page on a phone")
    await reachable(page, "#down-start", width)
    await reachable(page, "#down-log", width)
    await shot(page, "responsive-agent-down-390x844")
    await page.locator("#down-start").click()
    await until(s.hub, "the third crash", lambda: sum(1 for e in s.hub.history(after=0)
                if e.kind == "container_crash") > before + 1, 60, explain=lambda: str(s.lifecycle.row("crashy")))  # fmt: skip
    await expect(page.locator("#down-page")).to_be_visible(timeout=T)
    assert page.url == f"{rig.base}/agent/crashy/"
    await page.locator("#down-log").click()
    await expect(page.locator("body")).to_contain_text("no-such-hh15")
    await page.context.close()


async def test_the_down_page_starts_a_stopped_agent_and_opens_its_page_when_it_is_up(rig: Rig) -> None:
    """alice stopped: /agent/alice/ is the down page; `▶ start` starts her and the page follows
    the live stream into her own page once her harness reports in (no polling, no manual reload)."""
    s = rig.daemon.services
    assert s is not None
    await s.lifecycle.stop("alice")
    page = await rig.page(*VIEWPORTS[1])
    await page.goto(f"{rig.base}/agent/alice/")
    await expect(page.locator("#down-page")).to_contain_text("state: stopped")
    await no_horizontal_scroll(page, "alice's down page")
    await page.locator("#down-start").click()
    await expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=T)
    assert await page.locator("#down-page").count() == 0
    await expect(page.locator("#state-badge")).to_have_attribute("data-state", "idle", timeout=T)
    await page.context.close()

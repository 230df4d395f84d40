"""Issue 12's charts in a real browser (Debian's Chromium through Playwright): a hive whose
agents reach the offline model through the gateway runs a few turns; the dashboard's ◆ SP3ND ◆
shows spend per agent and the hive-level uPlot charts (turns/min, approval queue, spend); the
agent page's ◆ T3L3M3TRY ◆ charts every series of the core's /api/stats, and a new turn adds a
point without a reload."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hivetest import make_config, require, require_sdk, start_daemon, stop_daemon, sync, until
from hyperhive.config import ApiSettings
from hyperhive.core.daemon import Daemon
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
T = 30_000
KEY = "sk-upstream-charts"
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
AGENT_CHARTS = ("turns_per_min", "turn_ms", "tool_calls", "inbox", "sent", "received", "tokens", "cost", "notes")

try:
    from playwright.async_api import Page, async_playwright, expect
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]


@dataclass
class Rig:
    daemon: Daemon
    page: Page
    base: str


def turns(daemon: Daemon, name: str) -> int:
    assert daemon.services is not None and daemon.services.telemetry is not None
    return int(sync(daemon.services.telemetry.series(name, 0))["turns"])


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require(async_playwright is not None, "playwright is not installed")
    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed")
    require_sdk()
    async with OfflineModelServer(api_key=KEY) as model:
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, api=ApiSettings(base=model.url, key=KEY)))
        try:
            s = daemon.services
            assert s is not None and daemon.dashboard_url is not None
            await s.lifecycle.spawn("alice")
            await s.lifecycle.spawn("bob")
            await s.broker.send("operator", "alice", "relay CHART-1 to bob")

            def relayed() -> bool:
                return (
                    turns(daemon, "alice") >= 1
                    and turns(daemon, "bob") >= 1
                    and any(m.sender == "bob" for m in sync(s.broker.recent("operator", 10)))
                )

            await until(s.hub, "the relay, and alice's and bob's turns in the stats", relayed, 120,
                        explain=lambda: str([(r.name, r.harness_state) for r in s.lifecycle.rows()]),
                        recheck=0.5)  # fmt: skip
            base = re.match(r"https?://[^/]+", daemon.dashboard_url)
            assert base is not None
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                try:
                    page = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
                    page.set_default_timeout(T)
                    errors: list[str] = []
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    await page.goto(daemon.dashboard_url)
                    yield Rig(daemon, page, base[0])
                    assert errors == [], errors
                finally:
                    await browser.close()
        finally:
            await stop_daemon(daemon, task)


async def test_the_dashboard_and_the_agent_page_chart_the_series(rig: Rig) -> None:
    page = rig.page
    await page.goto(rig.base + "/")
    spend = page.locator("#spend-rows tr[data-agent='alice']")
    await expect(spend).to_contain_text("$", timeout=T)
    await expect(page.locator("#spend-rows tr.total")).to_contain_text("the hive")
    await expect(page.locator("#hive-charts")).to_have_attribute("data-loaded", re.compile(r"\d+"), timeout=T)
    for chart in ("turns", "approvals", "spend"):
        await expect(page.locator(f"#hc-{chart} canvas")).to_have_count(1)
    assert int(await page.locator("#hc-turns").get_attribute("data-points") or 0) >= 1
    assert int(await page.locator("#hc-spend").get_attribute("data-points") or 0) >= 2
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "dashboard-spend.png"), full_page=True)

    await page.goto(rig.base + "/agent/alice/")
    await expect(page.locator("#telemetry")).to_have_attribute("data-loaded", re.compile(r"\d+"), timeout=T)
    for chart in AGENT_CHARTS:
        await expect(page.locator(f"#tm-{chart} canvas")).to_have_count(1)
    summary = page.locator("#tm-summary")
    await expect(summary).to_contain_text("turn p50 / p95")
    await expect(summary).to_contain_text("mcp__hyperhive__send")
    before = int(await page.locator("#tm-turn_ms").get_attribute("data-points") or 0)
    assert before >= 1
    await page.screenshot(path=str(SHOTS / "agent-telemetry.png"), full_page=True)
    await page.locator("#term-input").fill("echo one more")
    await page.locator("#term-input").press("Enter")
    await expect(page.locator("#tm-turn_ms")).to_have_attribute("data-points", str(before + 1), timeout=T)


async def test_the_dashboard_badge_counts_down_a_rate_limit(rig: Rig) -> None:
    """The upstream answers 429 with retry-after: the agent's badge reads `rate limited · MM:SS`
    while the gateway waits, then the turn completes and the badge is back to idle."""
    page = rig.page
    await page.goto(rig.base + "/")
    badge = page.locator("#containers-rows tr[data-agent='alice'] .badge")
    await expect(badge).to_have_text("idle", timeout=T)
    assert rig.daemon.services is not None
    await rig.daemon.services.broker.send("operator", "alice", "ratelimit 4")
    await expect(badge).to_have_text(re.compile(r"^rate limited · 00:0[0-4]$"), timeout=T)
    await expect(badge).to_have_class(re.compile(r"\brate-limited\b"))
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "dashboard-rate-limited.png"))
    await expect(badge).to_have_text("idle", timeout=T)

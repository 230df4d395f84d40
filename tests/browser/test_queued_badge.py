"""The dashboard shows a turn waiting for the burst scheduler (issue 13 §4): `[pool] max_turns =
1`, a's slow turn holds the slot, b's row says `queued` live, then b's turn runs and the badge
moves on. Real daemon, the REAL claude CLI on the offline model, real Chromium."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import dash_of  # noqa: E402

from hivetest import make_config, require, require_sdk, start_daemon, stop_daemon  # noqa: E402
from hyperhive.offline_model.server import OfflineModelServer  # noqa: E402
from hyperhive.poolsettings import PoolSettings  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
T = 60_000  # ms: a few real CLI start-ups on a loaded machine


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is not installed (apt install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def test_a_turn_waiting_for_a_slot_shows_queued(tmp_path: Path, short_dir: Path, browser: Browser) -> None:
    require_sdk()
    asked = asyncio.Event()

    def on_request(request: dict[str, object]) -> None:
        if "slow 60" in str(request["last_user_text"]):
            asked.set()

    async with OfflineModelServer(on_request=on_request) as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        daemon, task = await start_daemon(
            make_config(tmp_path, short_dir, agent_env=env, pool=PoolSettings(max_turns=1, warm_on_start=False))
        )
        try:
            s = daemon.services
            assert s is not None
            for name in ("a", "b"):
                await s.lifecycle.spawn(name)
                await s.lifecycle.wait_healthy(name)
            dash = dash_of(daemon)
            page = await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
            await page.goto(dash.login_url)
            badge_b = page.locator('tr[data-agent="b"] .badge')
            await expect(badge_b).to_have_text("idle", timeout=T)
            await s.broker.send("operator", "a", "slow 60")
            await expect(page.locator('tr[data-agent="a"] .badge')).to_have_text("thinking", timeout=T)
            async with asyncio.timeout(T / 1000):  # its CLI is up and asking the model (so a cancel finds it)
                await asked.wait()
            await s.broker.send("operator", "b", "echo after-a")
            await expect(badge_b).to_have_text("queued", timeout=T)
            await expect(page.locator('tr[data-agent="b"]')).to_have_attribute("data-state", "queued")
            transport = httpx.AsyncHTTPTransport(uds=str(daemon.paths.agent("a").web_socket))
            async with httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=60) as web:
                assert (await web.post("/api/cancel", json={})).json()["ok"]
            await expect(badge_b).not_to_have_text("queued", timeout=T)
        finally:
            await stop_daemon(daemon, task)

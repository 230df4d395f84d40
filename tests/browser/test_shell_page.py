"""The agent page's terminal in a real browser (issue 14 §1): Debian's Chromium through
Playwright, a real daemon with a real bwrap cage (root: the agent is its own host uid), the
harness on the offline model. The terminal reaches a login shell inside the cage over the core's
`/agent/<name>/_shell/` routes: session cookie, Origin check, single-use ticket."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hivetest import make_config, require, require_sdk, require_tool, start_daemon, stop_daemon
from hyperhive.agentconfig import default_agent_toml
from hyperhive.core.daemon import Daemon
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = [pytest.mark.browser, pytest.mark.cage]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
AGENT = "alice"
T = 30_000  # ms: every Playwright wait is bounded
CAGE_UID = "1000"
MARKER = "shell-marker-7f3a.txt"
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"

try:
    from playwright.async_api import BrowserContext, Page, async_playwright, expect
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]


@dataclass
class Rig:
    daemon: Daemon
    context: BrowserContext
    page: Page
    base: str  # http://127.0.0.1:PORT

    @property
    def url(self) -> str:
        return f"{self.base}/agent/{AGENT}/"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "_shell/ws"


async def open_page(context: BrowserContext, url: str) -> Page:
    page = await context.new_page()
    page.set_default_timeout(T)
    await page.goto(url)
    await expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=T)
    return page


async def open_terminal(page: Page) -> None:
    await page.locator("#shell-open").click()
    await expect(page.locator("#shell-note")).to_contain_text(re.compile(r"shell #\d+ in the bwrap cage"))
    await page.locator("#shell-host .xterm-helper-textarea").focus()


def screen(page: Page) -> Any:
    return page.locator("#shell-host .xterm-rows")


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require(async_playwright is not None, "playwright is not installed")
    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed")
    require_tool("bwrap")
    require_tool("nsenter")
    require(os.geteuid() == 0, "the per-agent host uid needs a root daemon")
    require_sdk()
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline"}
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, cage="bwrap", agent_env=env))
        try:
            s = daemon.services
            assert s is not None and daemon.dashboard_url is not None
            await s.repos.seed(AGENT, toml=default_agent_toml(AGENT))
            await s.lifecycle.spawn(AGENT)
            await s.lifecycle.wait_healthy(AGENT, 60)
            (daemon.paths.agent(AGENT).state / MARKER).write_text("here\n")
            base = re.match(r"https?://[^/]+", daemon.dashboard_url)
            assert base is not None
            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                try:
                    context = await browser.new_context(viewport={"width": 1400, "height": 900})
                    login = await context.new_page()
                    await login.goto(daemon.dashboard_url)  # sets the session cookie
                    await login.close()
                    errors: list[str] = []
                    page = await open_page(context, f"{base[0]}/agent/{AGENT}/")
                    page.on("pageerror", lambda exc: errors.append(str(exc)))
                    yield Rig(daemon, context, page, base[0])
                    assert errors == [], errors
                finally:
                    await browser.close()
        finally:
            await stop_daemon(daemon, task)


async def test_the_terminal_runs_in_the_cage_follows_resizes_and_is_shared(rig: Rig) -> None:
    page = rig.page
    sub = rig.daemon.services.hub.subscribe()  # type: ignore[union-attr]
    await open_terminal(page)
    await page.keyboard.type("id -u; ls /state\n")
    await expect(screen(page)).to_contain_text(MARKER)
    text = await screen(page).inner_text()
    assert re.search(rf"^{CAGE_UID}\s*$", text, re.M), text  # the agent's uid inside its cage
    height = await page.locator("#shell-host").evaluate("e => e.getBoundingClientRect().height")
    viewport = page.viewport_size
    assert viewport is not None and height <= 0.7 * viewport["height"] + 1
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "agent-shell.png"), full_page=True)

    # resize: the browser's new size reaches the PTY (stty reads it inside the cage)
    before = await page.evaluate("() => [hive.shell.term.rows, hive.shell.term.cols]")
    await page.set_viewport_size({"width": 900, "height": 700})
    await page.wait_for_function(f"() => hive.shell.term.cols < {before[1]}")
    rows, cols = await page.evaluate("() => [hive.shell.term.rows, hive.shell.term.cols]")
    await page.keyboard.type("stty size\n")
    await expect(screen(page)).to_contain_text(f"{rows} {cols}")

    # a second page gets the recent screen, then the same live shell both ways
    other = await open_page(rig.context, rig.url)
    await open_terminal(other)
    await expect(screen(other)).to_contain_text(MARKER)
    await other.keyboard.type("echo from-the-$((2*3))th-page\n")
    await expect(screen(other)).to_contain_text("from-the-6th-page")
    await expect(screen(page)).to_contain_text("from-the-6th-page")
    await other.close()

    started = [e.payload for e in sub.drain() if e.kind == "shell_started"]
    sub.close()
    assert len(started) == 1 and started[0]["via"] == "dashboard" and started[0]["agent"] == AGENT


async def test_a_websocket_without_a_ticket_with_a_used_one_or_from_another_origin_is_refused(rig: Rig) -> None:
    page = rig.page
    probe = """async (url) => new Promise((done) => {
        const ws = new WebSocket(url);
        ws.onopen = () => { done("open"); ws.close(); };
        ws.onclose = (e) => done("closed " + e.code);
    })"""
    ticket = "() => hive.post('_shell/ticket', {}).then((t) => t.ticket)"
    assert await page.evaluate(probe, rig.ws_url) == "closed 1006"
    assert await page.evaluate(probe, rig.ws_url + "?ticket=made-up") == "closed 1006"
    used = await page.evaluate(ticket)
    assert await page.evaluate(probe, f"{rig.ws_url}?ticket={used}") == "open"
    assert await page.evaluate(probe, f"{rig.ws_url}?ticket={used}") == "closed 1006"

    # outside the browser: the session cookie and a fresh ticket, but a foreign or no Origin
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in await rig.context.cookies())
    for origin in ("http://evil.example", None):
        fresh = await page.evaluate(ticket)
        headers = {"Cookie": cookie, **({"Origin": origin} if origin else {})}
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{rig.ws_url}?ticket={fresh}", additional_headers=headers, origin=None):
                pass
        assert refused.value.response.status_code == 403
    # the ticket POST itself needs the CSRF token
    status = await page.evaluate(
        "() => fetch('_shell/ticket', {method: 'POST', credentials: 'same-origin'}).then((r) => r.status)"
    )
    assert status == 403
    # the core's record route on the harness is not reachable through the proxy
    forged = "() => hive.post('_core/trail', {event: 'shell_started'}).then(() => 200, (e) => e.status)"
    assert await page.evaluate(forged) == 404
    body = await page.evaluate("() => hive.post('_shell/end', {})")
    assert json.loads(json.dumps(body))["ok"] is True

"""The per-agent page in a real browser (issue 3): Debian's Chromium through Playwright, against a
running hive on the offline model, through the core's /agent/<name>/ proxy with a logged-in
dashboard session. Screenshots of the main states go to test-output/screenshots/."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hivetest import make_config, require, start_daemon, stop_daemon
from hyperhive.client import HiveClient
from hyperhive.core.daemon import Daemon
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
AGENT = "alice"
T = 30_000  # ms: every Playwright wait is bounded
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"

FAKE_LOGIN = """\
import sys
print("If the browser didn't open, visit:", flush=True)
print("https://claude.example/oauth/authorize?state=fake", flush=True)
sys.stdout.write("Paste code here if prompted > "); sys.stdout.flush()
sys.exit(0 if sys.stdin.readline().strip() == "good-code" else 2)
"""

try:
    from playwright.async_api import Page, async_playwright, expect
except ImportError:  # pragma: no cover - the test extra installs it
    async_playwright = None  # type: ignore[assignment]


@dataclass
class Hive:
    daemon: Daemon
    model: OfflineModelServer
    page: Page
    base: str  # http://127.0.0.1:PORT

    @property
    def url(self) -> str:
        return f"{self.base}/agent/{AGENT}/"

    async def prompt(self, text: str) -> None:
        box = self.page.locator("#term-input")
        await box.fill(text)
        await box.press("Enter")

    async def idle(self) -> None:
        await expect(self.page.locator("#state-badge")).to_have_attribute("data-state", "idle", timeout=T)

    async def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"agent-{name}.png"), full_page=True)


async def open_hive(tmp_path: Path, run_dir: Path, *, api_key: bool = True, env: dict[str, str] | None = None
                    ) -> AsyncIterator[Hive]:  # fmt: skip
    require(async_playwright is not None, "playwright is not installed")
    require(Path(CHROMIUM).exists(), "Debian's chromium is not installed")
    model = OfflineModelServer()
    await model.start()
    agent_env = {"ANTHROPIC_BASE_URL": model.url, **(env or {})}
    if api_key:
        agent_env["ANTHROPIC_API_KEY"] = "offline"
    daemon, task = await start_daemon(make_config(tmp_path, run_dir, agent_env=agent_env))
    try:
        assert daemon.services is not None
        await daemon.services.lifecycle.spawn(AGENT)
        await daemon.services.lifecycle.wait_healthy(AGENT, 60)
        assert daemon.dashboard_url is not None
        base = re.match(r"https?://[^/]+", daemon.dashboard_url)
        assert base is not None
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                context = await browser.new_context(viewport={"width": 1400, "height": 900})
                page = await context.new_page()
                page.set_default_timeout(T)
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(daemon.dashboard_url)  # the login URL: sets the session cookie
                hive = Hive(daemon, model, page, base[0])
                await page.goto(hive.url)
                await expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=T)
                yield hive
                assert errors == [], errors
            finally:
                await browser.close()
    finally:
        await stop_daemon(daemon, task)
        await model.stop()


@pytest.fixture
async def hive(tmp_path: Path, short_dir: Path) -> AsyncIterator[Hive]:
    async for h in open_hive(tmp_path, short_dir):
        await h.idle()
        await h.prompt("echo ready")  # a first turn (the spawn kick runs none of its own: issue 13)
        await expect(h.page.locator(".turn-end-row")).to_have_count(1, timeout=T)
        yield h


async def test_events_appear_live_and_a_reload_keeps_the_trail(hive: Hive) -> None:
    """An operator message typed in the prompt runs a turn whose rows appear without a reload;
    the tool call renders per tool; a reload shows the same trail (issue 3)."""
    page = hive.page
    await hive.prompt("bash echo live-row-marker")
    await expect(page.locator(".hh-term-row .tool", has_text="Bash $ echo live-row-marker")).to_be_visible(timeout=T)
    await expect(page.locator(".turn-end-row")).to_have_count(2, timeout=T)
    await hive.idle()
    await expect(page.locator("#last-turn")).to_have_text(re.compile(r"last turn \d+\.\d s"))
    await expect(page.locator("#inbox li", has_text="bash echo live-row-marker")).to_be_visible()
    await expect(page.locator("[data-stat='turns']")).to_contain_text("2 (2 ok")
    ids_before = await page.locator("#term [data-id]").evaluate_all("els => els.map(e => e.dataset.id)")
    await hive.shot("idle")
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=T)
    await expect(page.locator(".hh-term-row .tool", has_text="Bash $ echo live-row-marker")).to_be_visible()
    ids_after = await page.locator("#term [data-id]").evaluate_all("els => els.map(e => e.dataset.id)")
    assert ids_after == ids_before
    assert len(set(ids_after)) == len(ids_after)


async def test_write_renders_as_a_collapsible_diff_and_send_as_an_arrow(hive: Hive) -> None:
    """Write is a collapsed +/− diff that opens on click; the hyperhive send tool reads
    `send → operator: …` (issue 3, upstream §5.3)."""
    page = hive.page
    await hive.prompt("write notes.md hello-diff-line")
    diff = page.locator("details.diff-tool", has_text="Write notes.md")
    await expect(diff).to_be_visible(timeout=T)
    await expect(diff.locator("pre.diff")).to_be_hidden()
    await diff.locator("summary").click()
    await expect(diff.locator("pre.diff .add")).to_have_text("+ hello-diff-line\n")
    await hive.idle()
    await hive.prompt("anything else")
    await expect(page.locator(".tool.send", has_text="send → operator: operator said: anything else")).to_be_visible(
        timeout=T
    )


async def test_a_script_tag_in_a_message_renders_as_text(hive: Hive) -> None:
    """Agent and message text goes through textContent: a <script> body is shown, never run."""
    page = hive.page
    body = "<script>window.__xss=1</script><img src=x onerror='window.__xss=2'>"
    await hive.prompt(body)
    await expect(page.locator(".turn-start pre.body", has_text=body)).to_be_visible(timeout=T)
    await expect(page.locator(".tool.send", has_text="operator said: <script>")).to_be_visible(timeout=T)
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("#term script, #term img, #inbox script").count() == 0


async def test_sticky_bottom_follows_at_the_bottom_and_counts_new_rows_when_scrolled_up(hive: Hive) -> None:
    """At the bottom new rows follow; scrolled up, a "↓ N new" pill counts them and a click
    jumps down (issue 3)."""
    page = hive.page
    for i in range(4):  # enough rows to scroll
        await hive.prompt(f"echo filler {i}\n" + "\n".join(f"line {j}" for j in range(12)))
        await expect(page.locator(".turn-end-row")).to_have_count(2 + i, timeout=T)
    at_bottom = (
        "() => { const s = document.getElementById('term'); return s.scrollHeight - s.scrollTop - s.clientHeight < 8; }"
    )
    assert await page.evaluate(at_bottom)
    await expect(page.locator("#term-pill")).to_be_hidden()
    await page.evaluate("document.getElementById('term').scrollTop = 0")
    host = HiveClient(hive.daemon.paths.host_socket)  # not the page's prompt: sending jumps down
    try:
        await host.call("send", to=AGENT, body="echo while-scrolled-up")
    finally:
        await host.close()
    pill = page.locator("#term-pill")
    await expect(pill).to_be_visible(timeout=T)
    await expect(pill).to_have_text(re.compile(r"↓ \d+ new"))
    assert not await page.evaluate(at_bottom)
    await pill.click()
    await expect(pill).to_be_hidden()
    assert await page.evaluate(at_bottom)


async def test_slash_help_clear_tab_completion_and_new_session(hive: Hive) -> None:
    """/help lists the commands, Tab completes, /clear empties the view but not the trail,
    /new-session notes the fresh session; Shift+Enter adds a newline (issue 3)."""
    page = hive.page
    box = page.locator("#term-input")
    await box.fill("/he")
    await box.press("Tab")
    await expect(box).to_have_value("/help")
    await box.press("Enter")
    await expect(page.locator(".ui-note", has_text="/new-session")).to_be_visible()
    await box.fill("/new")
    await box.press("Tab")
    await expect(box).to_have_value("/new-session")
    await box.press("Enter")
    await expect(page.locator(".ui-note", has_text="new session on the next turn")).to_be_visible()
    await expect(page.locator(".note", has_text="the next turn starts a new session")).to_be_visible(timeout=T)
    await hive.prompt("/clear")
    await expect(page.locator("#term [data-id]")).to_have_count(0)
    await expect(page.locator(".ui-note", has_text="view cleared")).to_be_visible()
    await box.fill("line one")
    await box.press("Shift+Enter")
    await box.type("line two")
    await expect(box).to_have_value("line one\nline two")
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=T)
    await expect(page.locator(".turn-end-row")).to_have_count(1)  # the trail is still there


async def test_cancel_button_interrupts_a_slow_turn(hive: Hive) -> None:
    """While a `slow 10` turn runs the badge says thinking and `■ cancel turn` shows; clicking it
    stops the turn, a note says so, the message comes back (redelivered) and runs to the end
    (issue 3, issue 14 §3)."""
    page = hive.page
    await hive.prompt("slow 10")
    badge = page.locator("#state-badge")
    await expect(badge).to_have_attribute("data-state", "thinking", timeout=T)
    await expect(badge).to_have_text(re.compile(r"^thinking · \d+s$"))
    claude_up = page.locator(".hh-term-row.stream.system", has_text="claude up")
    await expect(claude_up).to_have_count(2, timeout=T)  # this turn's claude is up
    await hive.shot("thinking")
    await page.locator("#cancel-btn").click()
    await expect(page.locator(".turn-end.cancelled")).to_be_visible(timeout=T)
    await expect(page.locator(".note", has_text="not acknowledged: it comes back")).to_be_visible()
    await expect(page.locator(".turn-start", has_text="redelivered")).to_be_visible(timeout=T)
    await expect(page.locator(".turn-end.ok")).to_have_count(2, timeout=2 * T)  # the first turn's, then this one
    await hive.idle()
    await expect(page.locator("#cancel-btn")).to_be_hidden()


async def test_slash_compact_and_cancel(hive: Hive) -> None:
    """/compact shows its result as a note; /cancel interrupts a slow turn, and with nothing to
    cancel says why (issue 3)."""
    page = hive.page
    await hive.prompt("/compact")
    await expect(page.locator(".ui-note", has_text=re.compile(r"^compacted$"))).to_be_visible(timeout=T)
    await hive.idle()
    claude_up = page.locator(".hh-term-row.stream.system", has_text="claude up")
    before = await claude_up.count()
    await hive.prompt("slow 10")
    await expect(page.locator("#state-badge")).to_have_attribute("data-state", "thinking", timeout=T)
    await expect(page.locator(".hh-term-row.stream.system").last).to_be_attached(timeout=T)
    await expect(claude_up).to_have_count(before + 1, timeout=T)  # this turn's claude is up
    await hive.prompt("/cancel")
    await expect(page.locator(".ui-note", has_text="turn cancelled")).to_be_visible(timeout=T)
    await expect(page.locator(".turn-end.ok")).to_have_count(2, timeout=2 * T)  # it came back and ran to the end
    await hive.idle()
    await hive.prompt("/cancel")
    await expect(page.locator(".ui-note.error", has_text="nothing to cancel")).to_be_visible(timeout=T)


async def test_slash_model_changes_the_chip_and_the_next_turns_model(hive: Hive) -> None:
    """/model haiku-x: the chip shows it queued, the next turn asks the offline model for
    haiku-x, then the chip says active (issue 3)."""
    page = hive.page
    chip = page.locator("#model-chip")
    await hive.prompt("/model haiku-x")
    await expect(chip).to_have_attribute("data-model", "haiku-x", timeout=T)
    await expect(chip).to_have_attribute("data-status", "queued for next turn")
    await expect(chip).to_contain_text("switched")
    before = len(hive.model.requests)
    await hive.prompt("model?")
    await expect(page.locator(".agent-text", has_text="model=haiku-x")).to_be_visible(timeout=T)
    assert {r["model"] for r in hive.model.requests[before:]} == {"haiku-x"}
    await expect(chip).to_have_attribute("data-status", "active", timeout=T)


async def test_nap_countdown_shows_and_the_end_nap_button_ends_it(hive: Hive) -> None:
    """A `nap 60` turn parks the agent: the badge counts down `napping ☾ · MM:SS`; the end-nap
    button ends it and the badge returns to idle (issue 3)."""
    page = hive.page
    await hive.prompt("nap 60")
    badge = page.locator("#state-badge")
    await expect(badge).to_have_attribute("data-state", "napping", timeout=T)
    await expect(badge).to_have_text(re.compile(r"^napping ☾ · 0[01]:\d\d · \d+s$"))
    await hive.shot("napping")
    await page.locator("#end-nap-btn").click()
    await expect(page.locator(".note", has_text="nap ended early by the operator")).to_be_visible(timeout=T)
    await hive.idle()


async def test_offline_badge_when_the_agent_stops(hive: Hive) -> None:
    """The badge is driven by the stream: when the agent's harness goes away it says offline."""
    assert hive.daemon.services is not None
    await hive.daemon.services.lifecycle.stop(AGENT)
    await expect(hive.page.locator("#state-badge")).to_have_attribute("data-state", "offline", timeout=T)


async def test_needs_login_panel_runs_the_login_and_passes_the_code(tmp_path: Path, short_dir: Path) -> None:
    """Without credentials the badge says needs login and the panel shows; start shows the URL
    the login command printed; the pasted code reaches it and its exit note shows (issue 3)."""
    script = tmp_path / "fake_login.py"
    script.write_text(FAKE_LOGIN)
    env = {"HYPERHIVE_LOGIN_CMD": f"{sys.executable} {script}"}
    async for h in open_hive(tmp_path, short_dir, api_key=False, env=env):
        page = h.page
        await h.idle()
        await h.prompt("echo a first turn")  # the spawn kick runs no turn of its own (issue 13)
        await expect(page.locator("#state-badge")).to_have_attribute("data-state", "needs_login", timeout=T)
        panel = page.locator("#login-panel")
        await expect(panel).to_be_visible()
        await page.locator("#login-start").click()
        await expect(page.locator("#login-url")).to_have_text("https://claude.example/oauth/authorize?state=fake")
        await h.shot("needs-login")
        await page.locator("#login-code").fill("good-code")
        await page.locator("#login-code-btn").click()
        await expect(page.locator("#login-status")).to_have_text("login finished: logged in", timeout=T)
        await expect(page.locator(".note", has_text="logged in: retrying")).to_be_visible(timeout=T)


async def test_stats_chart_is_uplot_and_a_new_turn_adds_a_point_live(hive: Hive) -> None:
    """The stats panel draws the recent turns with the vendored uPlot (loaded from the core's
    /static/ under the proxy's CSP): duration and tokens per turn plus failed-turn points; a new
    turn adds a point without a reload, and nothing trips the CSP."""
    page = hive.page
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    await page.reload()  # listen from the first byte: a CSP refusal is logged while loading
    await expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=T)
    await hive.prompt("echo chart one")
    await expect(page.locator(".turn-end-row")).to_have_count(2, timeout=T)
    await hive.idle()
    chart = page.locator("#turn-chart .uplot canvas")
    await expect(chart).to_have_count(1, timeout=T)
    await page.wait_for_function("() => window.__hiveStatsChart && window.__hiveStatsChart.data[0].length === 2",
                                 timeout=T)  # fmt: skip
    shape = await page.evaluate(
        "() => { const c = window.__hiveStatsChart; return {series: c.series.map(s => s.label),"
        " data: c.data.map(d => d.length), legend: document.querySelectorAll('#turn-chart .u-legend .u-series').length}; }"
    )
    assert shape == {"series": ["turn", "duration", "tokens", "failed"], "data": [2, 2, 2, 2], "legend": 4}
    stats = await page.evaluate("() => fetch('api/stats').then(r => r.json())")
    plotted = await page.evaluate("() => window.__hiveStatsChart.data")
    assert plotted[0] == [t["n"] for t in stats["series"]] == [1, 2]
    assert plotted[1] == [t["duration_ms"] / 1000 for t in stats["series"]]
    assert plotted[2] == [t["tokens"] for t in stats["series"]] and all(v > 0 for v in plotted[2])
    assert plotted[3] == [None, None]  # both turns ok: no failed points
    await hive.shot("stats-chart")
    await page.evaluate("window.__noReload = 1")
    host = HiveClient(hive.daemon.paths.host_socket)  # a turn the page did not start
    try:
        await host.call("send", to=AGENT, body="echo chart two")
    finally:
        await host.close()
    await page.wait_for_function("() => window.__hiveStatsChart.data[0].length === 3", timeout=T)
    assert await page.evaluate("window.__noReload") == 1
    assert await chart.count() == 1  # the same chart, updated in place
    csp = [m for m in console_errors if "Content Security Policy" in m]
    assert csp == [] and console_errors == [], console_errors


# ---- issue 14: the compact buttons, the notes, the terminal's height, the dashboard ---------------


async def test_the_compact_button_shows_while_idle_and_compacts_the_session(hive: Hive) -> None:
    """`compact` sits in the toolbar while the badge is idle, is hidden while thinking, and a
    click compacts the session (issue 14 §3 /compact)."""
    page = hive.page
    button = page.locator("#compact-btn")
    await expect(button).to_be_visible()
    await hive.prompt("slow 6")
    await expect(page.locator("#state-badge")).to_have_attribute("data-state", "thinking", timeout=T)
    await expect(button).to_be_hidden()
    await hive.idle()
    await expect(button).to_be_visible()
    await button.click()
    # the harness's own state line (a warm CLI also streams a `system status` line saying compacting)
    await expect(page.locator(".state-line", has_text="· compacting")).to_be_visible(timeout=T)
    await expect(page.locator(".ui-note", has_text=re.compile(r"^compacted$"))).to_be_visible(timeout=T)
    await hive.idle()


async def test_the_notes_chip_shows_the_size_and_the_button_compacts_them(hive: Hive) -> None:
    """The header shows the notes' size against the threshold; `compact notes` rewrites them
    through the secondary session and the trail shows the outcome (issue 14 §2)."""
    page = hive.page
    notes = hive.daemon.paths.agent(AGENT).state / "notes.md"
    before, after = "# notes\n- keep this\n- keep this\n- and this\n", "# notes\n- keep this\n- and this\n"
    notes.write_text(before, encoding="utf-8")
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=T)
    chip = page.locator("#notes-chip")
    await expect(chip).to_have_attribute("data-bytes", str(len(before)), timeout=T)
    await expect(chip).to_contain_text("32")  # the threshold, 32 KiB
    await page.locator("#compact-notes-btn").click()
    await expect(page.locator(".note", has_text="notes compacted")).to_be_visible(timeout=T)
    await expect(
        page.locator(".ui-note", has_text=f"notes compacted: {len(before)} → {len(after)} bytes")
    ).to_be_visible()
    await expect(chip).to_have_attribute("data-bytes", str(len(after)), timeout=T)
    assert notes.read_text(encoding="utf-8") == after
    await hive.shot("notes-compacted")


async def test_the_terminal_is_min_70vh_60em_tall_and_the_dashboard_link_goes_home(hive: Hive) -> None:
    """The event log's height is min(70vh, 60em) in a short and in a tall window, and
    `↑ DASHB04RD` leads to the dashboard (issue 14 §3; architecture §9)."""
    page = hive.page
    measure = ("() => { const t = document.getElementById('term'); const em = parseFloat(getComputedStyle(t).fontSize);"
               " return {h: t.getBoundingClientRect().height, vh: innerHeight * 0.7, em60: em * 60}; }")  # fmt: skip
    for width, height in ((1400, 900), (1400, 2000)):
        await page.set_viewport_size({"width": width, "height": height})
        m = await page.evaluate(measure)
        assert abs(m["h"] - min(m["vh"], m["em60"])) < 1.5, m
    assert m["em60"] < m["vh"]  # the tall window hit the 60em cap, the short one 70vh
    link = page.locator("#dash-link")
    await expect(link).to_have_text("↑ DASHB04RD")
    await link.click()
    await page.wait_for_url(f"{hive.base}/")
    await expect(page.locator(f"tr[data-agent='{AGENT}']")).to_be_visible(timeout=T)


async def test_the_dashboard_switches_an_agents_model_and_ends_its_nap(hive: Hive) -> None:
    """From the dashboard's agent row: `⇄ model` sets the operator's override (the next turn
    uses it) and `☀ end nap` shows while the agent naps and wakes it (issue 14 §3)."""
    page = hive.page
    await page.goto(f"{hive.base}/")
    row = page.locator(f"tr[data-agent='{AGENT}']")
    await expect(row).to_be_visible(timeout=T)
    page.once("dialog", lambda dialog: dialog.accept("haiku-dash"))
    await row.locator("button[data-action='model']").click()
    await expect(row.locator("td.model")).to_have_text("haiku-dash", timeout=T)
    override = hive.daemon.paths.agent(AGENT).state / "hyperhive-model"
    assert override.read_text(encoding="utf-8").strip() == "haiku-dash"
    host = HiveClient(hive.daemon.paths.host_socket)
    try:
        before = len(hive.model.requests)
        await host.call("send", to=AGENT, body="nap 600")
        end_nap = row.locator("button[data-action='end-nap']")
        await expect(end_nap).to_be_visible(timeout=T)
        assert {r["model"] for r in hive.model.requests[before:]} == {"haiku-dash"}
        await hive.shot("dashboard-napping")
        await end_nap.click()
        await expect(end_nap).to_be_hidden(timeout=T)
        await expect(row.locator(".badge")).to_have_text("idle", timeout=T)
    finally:
        await host.close()
    await page.goto(hive.url)  # the agent page's chip says the override hides the config's model
    chip = page.locator("#model-chip")
    await expect(chip).to_have_attribute("data-hidden", "1", timeout=T)
    await expect(chip).to_contain_text("model haiku-dash · active")
    await expect(chip).to_contain_text("overrides the config's sonnet")

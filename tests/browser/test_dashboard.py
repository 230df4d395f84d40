"""The operator dashboard in a real browser (Playwright driving Debian's Chromium) against an
in-process daemon: login, every section, live updates without reload, clicks that resolve
approvals and questions, the TTL countdown, hostile text, two pages, a killed stream.
Issue 6 "How it is verified"; architecture §9."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import Dash, dash_of  # noqa: E402

from hivetest import require  # noqa: E402
from hyperhive.core.daemon import Daemon  # noqa: E402
from hyperhive.core.lifecycle import AgentRuntime  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
XSS = "<img src=x onerror=window.__xss=1>"
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


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield ctx
    finally:
        await ctx.close()


async def open_dashboard(context: BrowserContext, dash: Dash) -> Page:
    page = await context.new_page()
    page.on("dialog", lambda d: d.accept())
    await page.goto(dash.login_url)
    assert page.url == dash.base + "/"
    await expect(page.locator("#conn")).to_have_text("● live", timeout=T)
    return page


async def shot(page: Page, selector: str, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.locator(selector).screenshot(path=str(SHOTS / f"{name}.png"))


def register_agent(dash: Dash, name: str, uid: int) -> None:
    """An agent the lifecycle knows about but never started (no claude needed)."""
    dash.services.lifecycle.agents[name] = AgentRuntime(name, uid, None)


async def test_login_renders_every_section_and_the_unauthenticated_page_is_refused(
    dash: Dash, browser: Browser, context: BrowserContext
) -> None:
    """Logging in with the token shows all six sections and the header counts; a fresh browser
    without the session gets the login-required page. Issue 6 "Sections"."""
    anon = await browser.new_context()
    try:
        p = await anon.new_page()
        response = await p.goto(dash.base + "/")
        assert response is not None and response.status == 401
        await expect(p.locator("body")).to_contain_text("hive dashboard-url", timeout=T)
    finally:
        await anon.close()

    s = dash.services
    await s.approvals.request_spawn("alpha", "a helper for the screenshots", requested_by="manager")
    await s.questions.ask("manager", "shall we?", options=["yes", "no"], ttl_seconds=900)
    await s.broker.send("system", "operator", "hello from the hive")
    page = await open_dashboard(context, dash)
    for sid, title in (("sec-containers", "◆ C0NTAINERS ◆"), ("sec-kept", "◆ K3PT ST4T3 ◆"),
                       ("sec-questions", "◆ M1ND H4S QU3STI0NS ◆"), ("sec-approvals", "◆ P3NDING APPR0VALS ◆"),
                       ("sec-inbox", "◆ 0PER4T0R 1NB0X ◆"), ("sec-flow", "◆ MESS4GE FL0W ◆")):  # fmt: skip
        await expect(page.locator(f"#{sid} h2")).to_contain_text(title, timeout=T)
    await expect(page.locator("[data-approval]")).to_have_count(1, timeout=T)
    await expect(page.locator("[data-question]")).to_have_count(1, timeout=T)
    await expect(page.locator("#inbox-list li")).to_contain_text("hello from the hive", timeout=T)
    await expect(page.locator("#count-approvals")).to_have_text("approvals 1", timeout=T)
    await expect(page.locator("#count-questions")).to_have_text("questions 1", timeout=T)
    await expect(page.locator("#cage-chip")).to_contain_text("unisolated", timeout=T)
    await expect(page.locator("#sec-questions")).to_have_class("hh-section pulse", timeout=T)
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "dashboard-full.png"), full_page=True)
    for sid in ("sec-questions", "sec-approvals", "sec-inbox", "sec-flow", "sec-kept"):
        await shot(page, f"#{sid}", sid)


async def test_containers_show_a_real_agent_and_stop_start_change_the_badge(
    dash: Dash, context: BrowserContext
) -> None:
    """A spawned agent appears in C0NTAINERS with its cage, badge and a link to its page; stop
    and start by click change the badge live; destroy moves it to K3PT ST4T3. Issue 6."""
    page = await open_dashboard(context, dash)
    s = dash.services
    approval = await s.approvals.request_spawn("bravo", "badge test", requested_by="operator")
    await page.locator(f'[data-approval="{approval["id"]}"] button[data-action="approve"]').click()
    row = page.locator('tr[data-agent="bravo"]')
    await expect(row).to_have_count(1, timeout=T)
    await expect(page.locator(f'[data-approval="{approval["id"]}"]')).to_have_count(0, timeout=T)
    link = row.locator("td.name a")
    assert await link.get_attribute("href") == "/agent/bravo/"
    assert await link.get_attribute("target") == "_blank"
    await expect(row.locator("td.cage")).to_contain_text("process", timeout=T)
    await expect(row.locator(".badge")).not_to_have_text("offline", timeout=T)
    await shot(page, "#sec-containers", "sec-containers")
    await row.locator('button[data-action="stop"]').click()
    await expect(row.locator(".badge")).to_have_text("offline", timeout=T)
    assert s.lifecycle.agents["bravo"].state == "stopped"
    await row.locator('button[data-action="start"]').click()
    # "starting" first (its cage starts off the loop now), then the running agent's harness state
    await expect(row.locator(".badge")).not_to_have_text(re.compile(r"^(offline|starting)$"), timeout=T)
    assert s.lifecycle.agents["bravo"].state == "running"
    await row.locator('button[data-action="destroy"]').click()  # the confirm is accepted
    await expect(row).to_have_count(0, timeout=T)
    kept = page.locator('tr[data-kept="bravo"]')
    await expect(kept).to_have_count(1, timeout=T)
    await kept.locator('button[data-action="revive"]').click()
    await expect(page.locator("[data-approval]")).to_contain_text("revive bravo", timeout=T)
    await kept.locator('button[data-action="purge"]').click()
    await expect(kept).to_have_count(0, timeout=T)
    assert s.lifecycle.kept_state() == []


async def test_compose_sends_to_an_agent_and_a_peer_reply_appears_without_reload(
    dash: Dash, context: BrowserContext
) -> None:
    """`@delta body` in the compose box commits an operator → delta message (seen in the broker)
    and makes @delta the sticky recipient; delta's reply shows up in the flow and the inbox
    live, marked as a reply. Issue 6 "MESS4GE FL0W"."""
    register_agent(dash, "delta", 910)
    s = dash.services
    await s.repos.seed("delta")  # a real config: without one delta reaches the manager only
    await s.lifecycle.refresh_config("delta")  # read once, as a start would
    page = await open_dashboard(context, dash)
    await page.evaluate("window.__marker = 'no reload'")
    box = page.locator("#compose-input")
    await box.fill("@de")
    await expect(page.locator('#compose-suggest button[data-name="delta"]')).to_have_count(1, timeout=T)
    await box.press("Tab")
    await expect(box).to_have_value("@delta ", timeout=T)
    await box.type("hello from the browser")
    await box.press("Enter")
    await expect(page.locator("#compose-prompt")).to_have_text("@delta>", timeout=T)
    row = page.locator(".hh-term-row.sent", has_text="hello from the browser")
    await expect(row).to_have_count(1, timeout=T)
    [sent] = await s.broker.recent(recipient="delta")
    assert (sent.sender, sent.body) == ("operator", "hello from the browser")
    assert await page.evaluate("localStorage.getItem('hh.compose.to')") == "delta"

    await box.fill("second, to the sticky recipient")
    await box.press("Enter")
    await expect(page.locator(".hh-term-row.sent", has_text="second, to the sticky")).to_have_count(1, timeout=T)
    assert (await s.broker.recent(recipient="delta"))[0].body == "second, to the sticky recipient"

    [reply_id] = await s.broker.send("delta", "operator", "got it, operator", in_reply_to=sent.id)
    reply = page.locator(f'.hh-term-row[data-flow="{reply_id}"]')
    await expect(reply).to_contain_text(f"↳ #{sent.id}", timeout=T)
    await expect(page.locator(f'#inbox-list li[data-message="{reply_id}"]')).to_contain_text(
        "got it, operator", timeout=T
    )
    # reply from the inbox: the prompt switches to the sender, in_reply_to is carried
    await page.locator(f'#inbox-list li[data-message="{reply_id}"] button[data-action="reply"]').click()
    await box.fill("thanks")
    await box.press("Enter")
    await expect(page.locator(".hh-term-row.sent", has_text="thanks")).to_have_count(1, timeout=T)
    assert (await s.broker.recent(recipient="delta"))[0].in_reply_to == reply_id
    assert await page.evaluate("window.__marker") == "no reload"
    await shot(page, "#sec-flow", "sec-flow-compose")


async def test_approvals_and_questions_appear_live_and_resolve_by_click(dash: Dash, context: BrowserContext) -> None:
    """Approvals and questions created by the hive appear without reload, are resolved by clicks
    (deny with a reason, answer with an option, override a peer question, cancel) and vanish."""
    s = dash.services
    page = await open_dashboard(context, dash)
    a = await s.approvals.request_spawn("charlie", "wants to exist", requested_by="manager")
    card = page.locator(f'[data-approval="{a["id"]}"]')
    await expect(card).to_contain_text("wants to exist", timeout=T)
    await expect(page.locator("#count-approvals")).to_have_text("approvals 1", timeout=T)
    await card.locator('input[name="note"]').fill("not today")
    await card.locator('button[data-action="deny"]').click()
    await expect(card).to_have_count(0, timeout=T)
    denied = await s.approvals.get(a["id"])
    assert (denied["status"], denied["note"]) == ("denied", "not today")

    q = await s.questions.ask("manager", "which colour?", options=["red", "green"])
    peer = await s.questions.ask("manager", "echo, can you review?", to="echo")
    other = await s.questions.ask("manager", "are you there?")
    qcard = page.locator(f'[data-question="{q["id"]}"]')
    await expect(qcard).to_contain_text("which colour?", timeout=T)
    await expect(page.locator("#count-questions")).to_have_text("questions 3", timeout=T)
    await shot(page, "#sec-questions", "sec-questions-live")
    await qcard.locator('input[value="green"]').check()
    await qcard.locator('button[data-action="answer"]').click()
    await expect(qcard).to_have_count(0, timeout=T)
    assert (await s.questions.get(q["id"]))["answer"] == "green"
    pcard = page.locator(f'[data-question="{peer["id"]}"]')
    await expect(pcard.locator('button[data-action="answer"]')).to_have_text("0V3RR1D3", timeout=T)
    await pcard.locator('input[name="answer"]').fill("the operator decides: yes")
    await pcard.locator('button[data-action="answer"]').click()
    await expect(pcard).to_have_count(0, timeout=T)
    assert (await s.questions.get(peer["id"]))["answerer"] == "operator"
    await page.locator(f'[data-question="{other["id"]}"] button[data-action="cancel"]').click()
    await expect(page.locator("[data-question]")).to_have_count(0, timeout=T)
    assert (await s.questions.get(other["id"]))["answer"] == "[cancelled]"
    await expect(page.locator("#sec-questions")).to_have_class("hh-section", timeout=T)

    await page.locator("#spawn-name").fill("foxtrot")
    await page.locator("#spawn-description").fill("from the form")
    await page.locator("#spawn-btn").click()
    await expect(page.locator("[data-approval]")).to_contain_text("from the form", timeout=T)
    assert [x["agent"] for x in (await s.approvals.pending())] == ["foxtrot"]


async def test_a_question_ttl_counts_down_and_expires(dash: Dash, context: BrowserContext) -> None:
    """A question with a 2 s TTL shows `◷ 00:0N` and disappears when the watchdog expires it."""
    s = dash.services
    page = await open_dashboard(context, dash)
    q = await s.questions.ask("manager", "quick, yes or no?", options=["yes", "no"], ttl_seconds=2)
    card = page.locator(f'[data-question="{q["id"]}"]')
    await expect(card.locator(".ttl")).to_contain_text("◷ 00:0", timeout=T)
    await expect(card).to_have_count(0, timeout=T)
    assert (await s.questions.get(q["id"]))["answer"] == "[expired]"
    await expect(page.locator(".hh-toast", has_text="expired")).to_have_count(1, timeout=T)


async def test_hostile_names_and_bodies_render_as_text(dash: Dash, context: BrowserContext) -> None:
    """A sender, asker, description or body carrying `<img src=x onerror=…>` shows up as text
    and never runs. Issue 6 "How it is verified"."""
    s = dash.services
    # the hostile sender is no agent with a config (its allow-list would fail closed to the
    # manager): let the broker route it as an agent allowed to reach anyone
    s.broker._allow_list = lambda _name: []
    page = await open_dashboard(context, dash)
    await s.broker.send(XSS, "operator", f"body {XSS}")
    await s.questions.ask(XSS, f"question {XSS}", options=[XSS])
    await s.approvals.request_spawn("hotel", f"description {XSS}", requested_by=XSS)
    await expect(page.locator("#inbox-list li")).to_contain_text(f"body {XSS}", timeout=T)
    await expect(page.locator(".hh-term-row.sent")).to_contain_text(XSS, timeout=T)
    await expect(page.locator("[data-question]")).to_contain_text(f"question {XSS}", timeout=T)
    await expect(page.locator("[data-approval]")).to_contain_text(f"description {XSS}", timeout=T)
    assert await page.locator("main img").count() == 0
    assert await page.evaluate("window.__xss") is None
    await shot(page, "#main", "hostile-text")


async def test_two_pages_both_stay_live(dash: Dash, context: BrowserContext) -> None:
    """Two dashboards open at once both receive every event."""
    s = dash.services
    one = await open_dashboard(context, dash)
    two = await open_dashboard(context, dash)
    ids = []
    for i in range(5):
        ids += await s.broker.send("system", "operator", f"to both {i}")
    for page in (one, two):
        for mid in ids:
            await expect(page.locator(f'.hh-term-row[data-flow="{mid}"]')).to_have_count(1, timeout=T)


async def test_a_killed_stream_resumes_without_losing_or_repeating_events(dash: Dash, context: BrowserContext) -> None:
    """The stream's requests fail (network error) while events are published: the browser's own
    reconnect resumes after the last seq it saw and every event arrives exactly once, then live
    ones keep coming. Waits on the page's public connection state (#conn[data-state])."""
    s = dash.services
    blocked = {"on": True, "aborted": 0}

    async def cut(route):
        if blocked["on"]:
            blocked["aborted"] += 1
            await route.abort()
        else:
            await route.continue_()

    page = await context.new_page()
    await page.route("**/api/stream*", cut)
    await page.goto(dash.login_url)
    conn = page.locator("#conn")
    await expect(conn).to_have_attribute("data-state", "down", timeout=T)  # snapshot shown, stream refused
    first = await s.broker.send("system", "operator", "before the cut")
    missed = []
    for i in range(4):
        missed += await s.broker.send("system", "operator", f"while down {i}")
    blocked["on"] = False
    await expect(conn).to_have_attribute("data-state", "live", timeout=T)
    for mid in [*first, *missed]:
        await expect(page.locator(f'.hh-term-row[data-flow="{mid}"]')).to_have_count(1, timeout=T)
    assert blocked["aborted"] >= 1
    later = []
    for i in range(3):
        later += await s.broker.send("system", "operator", f"live again {i}")
    for mid in later:
        await expect(page.locator(f'.hh-term-row[data-flow="{mid}"]')).to_have_count(1, timeout=T)
    await expect(page.locator(".hh-term-row.sent")).to_have_count(1 + 4 + 3, timeout=T)


async def test_dead_letters_appear_live_and_are_retried_or_discarded_by_click(
    dash: Dash, context: BrowserContext
) -> None:
    """A message parked after three failed deliveries shows up in D34D L3TT3RS without a reload
    (its body as text); R3TRY puts it back in the queue, D1SC4RD acknowledges it (issue 9)."""
    from hivetest import ask_socket, wire_agent

    s = dash.services
    worker = await wire_agent(dash.daemon, "worker")
    page = await open_dashboard(context, dash)
    await expect(page.locator("#dead-empty")).to_be_visible(timeout=T)

    async def park(body: str) -> int:
        [mid] = await s.broker.send("operator", "worker", body)
        for _ in range(3):
            assert (await ask_socket(worker, {"cmd": "recv"}))["messages"][0]["id"] == mid
            await ask_socket(worker, {"cmd": "requeue_inflight"})
        return mid

    first = await park(f"retry me {XSS}")
    row = page.locator(f'tr[data-dead="{first}"]')
    await expect(row).to_contain_text(f"retry me {XSS}", timeout=T)
    await expect(row).to_contain_text("operator → worker", timeout=T)
    await expect(page.locator("#dead-count")).to_have_text("1", timeout=T)
    assert await page.locator("main img").count() == 0
    await shot(page, "#sec-dead", "sec-dead")
    await row.locator('button[data-action="retry-dead"]').click()
    await expect(row).to_have_count(0, timeout=T)
    assert (await s.broker.dead_letters()) == [] and s.broker.unread("worker") == 1
    await ask_socket(worker, {"cmd": "recv"})
    await ask_socket(worker, {"cmd": "ack_turn"})

    second = await park("drop me")
    row = page.locator(f'tr[data-dead="{second}"]')
    await row.locator('button[data-action="discard-dead"]').click()  # the confirm is accepted
    await expect(row).to_have_count(0, timeout=T)
    assert (await s.broker.get(second)).acked_at is not None and (await s.broker.dead_letters()) == []
    await expect(page.locator("#dead-empty")).to_be_visible(timeout=T)

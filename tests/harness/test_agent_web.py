"""The per-agent web app (issue 3) driven over its real web.sock: a real in-process daemon spawns a
real agent (process cage) whose real claude CLI talks to the offline model."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import make_config, start_daemon, stop_daemon
from hyperhive.client import HiveClient
from hyperhive.core.daemon import Daemon
from hyperhive.errors import Conflict
from hyperhive.harness.login import LoginSession, default_login_argv
from hyperhive.harness.web import trail_stats
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

AGENT = "alice"
WAIT = 30.0

FAKE_LOGIN = """\
import os, pathlib, sys
print("Opening browser to sign in…", flush=True)
print("If the browser didn't open, visit:", flush=True)
print("https://claude.example/oauth/authorize?state=fake123&x=<b>", flush=True)
sys.stdout.write("Paste code here if prompted > "); sys.stdout.flush()
code = sys.stdin.readline().strip()
if code != "good-code":
    print("invalid code", flush=True); sys.exit(2)
home = pathlib.Path(os.environ["HOME"])
(home / "fake-login-was-here").write_text(code)
print("Login successful.", flush=True)
"""


def write_fake_login(directory: Path) -> str:
    script = directory / "fake_login.py"
    script.write_text(FAKE_LOGIN, encoding="utf-8")
    script.chmod(0o755)
    return f"{sys.executable} {script}"


class Trail:
    """The agent's SSE stream, read in the background: every event kept, waits bounded."""

    def __init__(self, web: httpx.AsyncClient, last_id: int = 0) -> None:
        self.web = web
        self.events: list[dict[str, Any]] = []
        self.ids: list[int] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(last_id), name="trail-reader")

    async def _read(self, last_id: int) -> None:
        headers = {"Last-Event-ID": str(last_id)} if last_id else {}
        async with self.web.stream("GET", "/events/stream", headers=headers, timeout=None) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            event_id: int | None = None
            async for line in resp.aiter_lines():
                if line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    assert event_id is not None and event["id"] == event_id
                    self.ids.append(event_id)
                    self.events.append(event)
                    self._changed.set()

    async def wait(
        self, pred: Callable[[dict[str, Any]], bool], *, after: int = 0, timeout: float = WAIT
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event["id"] > after and pred(event):
                        return event
                if self._task.done():
                    self._task.result()
                    raise AssertionError("the event stream ended")
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def kind(k: str, **payload: Any) -> Callable[[dict[str, Any]], bool]:
    def pred(e: dict[str, Any]) -> bool:
        return e["kind"] == k and all(e["payload"].get(key) == value for key, value in payload.items())

    return pred


class Agent:
    def __init__(self, daemon: Daemon, model: OfflineModelServer, web: httpx.AsyncClient, host: HiveClient) -> None:
        self.daemon = daemon
        self.model = model
        self.web = web
        self.host = host
        self.trail = Trail(web)

    async def send(self, body: str) -> int:
        reply = await self.host.call("send", to=AGENT, body=body)
        return int(reply["id"])

    async def state(self) -> dict[str, Any]:
        resp = await self.web.get("/api/state")
        assert resp.status_code == 200
        return dict(resp.json())

    async def turn(self, body: str) -> dict[str, Any]:
        """Send `body`; wait for its turn_end (the one after its turn_start)."""
        mid = await self.send(body)
        start = await self.trail.wait(kind("turn_start", id=mid))
        end = await self.trail.wait(kind("turn_end"), after=start["id"])
        await self.trail.wait(kind("state_changed"), after=end["id"])
        return end


async def hive_with_agent(
    tmp_path: Path, run_dir: Path, *, api_key: bool = True, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Agent]:
    model = OfflineModelServer()
    await model.start()
    env = {"ANTHROPIC_BASE_URL": model.url, **(extra_env or {})}
    if api_key:
        env["ANTHROPIC_API_KEY"] = "offline"
    daemon, task = await start_daemon(make_config(tmp_path, run_dir, agent_env=env))
    host = HiveClient(daemon.paths.host_socket)
    web = httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(uds=str(daemon.paths.agent(AGENT).web_socket)),
        base_url="http://agent",
        timeout=WAIT,
    )
    agent: Agent | None = None
    try:
        await host.call("spawn", name=AGENT)
        assert daemon.services is not None
        await daemon.services.lifecycle.wait_healthy(AGENT, 60)
        agent = Agent(daemon, model, web, host)
        if api_key:  # a first turn (the spawn kick runs none of its own: it waits in front of this one)
            await agent.turn("echo ready")
        yield agent
    finally:
        if agent is not None:
            await agent.trail.close()
        await web.aclose()
        await host.close()
        await stop_daemon(daemon, task)
        await model.stop()


@pytest.fixture
async def agent(tmp_path: Path, short_dir: Path) -> AsyncIterator[Agent]:
    async for a in hive_with_agent(tmp_path, short_dir):
        yield a


# ---- the page and its assets -------------------------------------------------------------------


async def test_page_is_served_with_relative_harness_urls_and_escaped_name(agent: Agent) -> None:
    """GET / is the agent's page; its own assets are relative (it lives under /agent/<name>/),
    the shared ones are the core's /static/common/ (issue 3, architecture §9)."""
    resp = await agent.web.get("/")
    assert resp.status_code == 200
    page = resp.text
    assert f'data-agent="{AGENT}"' in page
    assert 'src="static/agent.js"' in page and 'href="static/agent.css"' in page
    assert 'src="/static/common/live.js"' in page and 'src="/static/common/terminal.js"' in page
    assert "{{" not in page
    for asset in ("agent.js", "agent.css"):
        assert (await agent.web.get(f"/static/{asset}")).status_code == 200
    with_prefix = await agent.web.get("/", headers={"x-forwarded-prefix": "/agent/alice"})
    assert '<base href="/agent/alice/">' in with_prefix.text


# ---- the trail ---------------------------------------------------------------------------------


async def test_history_then_stream_resumes_after_last_event_id_without_gaps_or_duplicates(agent: Agent) -> None:
    """History, then SSE with Last-Event-ID = its last id: the stream carries exactly the events
    after it, in order, none twice (issue 3 "resuming with Last-Event-ID")."""
    history = (await agent.web.get("/events/history")).json()
    last = history["last_event_id"]
    assert [e["id"] for e in history["events"]] == sorted({e["id"] for e in history["events"]})
    resumed = Trail(agent.web, last_id=last)
    try:
        end = await agent.turn("echo resumed fine")
        await resumed.wait(lambda e: e["id"] >= end["id"])
        assert resumed.ids[0] == last + 1
        assert resumed.ids == list(range(last + 1, resumed.ids[-1] + 1))
        after = (await agent.web.get("/events/history", params={"after": last})).json()["events"]
        assert [e["id"] for e in after][: len(resumed.ids)] == resumed.ids
    finally:
        await resumed.close()


async def test_a_turn_streams_turn_start_stream_and_turn_end_live(agent: Agent) -> None:
    """An operator message becomes turn_start {from, body}, the SDK messages as stream events,
    turn_end {ok, duration_ms, usage} and the state back to idle (architecture §5/§6)."""
    end = await agent.turn("bash echo hi-from-bash")
    start = [e for e in agent.trail.events if e["kind"] == "turn_start" and e["payload"]["from"] == "operator"][-1]
    assert start["payload"]["body"] == "bash echo hi-from-bash"
    tools = [b for e in agent.trail.events if e["kind"] == "stream" and e["payload"].get("type") == "assistant"
             for b in e["payload"]["content"] if b.get("type") == "tool_use"]  # fmt: skip
    assert any(t["name"] == "Bash" and t["input"]["command"] == "echo hi-from-bash" for t in tools)
    assert end["payload"]["ok"] is True and end["payload"]["duration_ms"] > 0
    assert (await agent.state())["state"] == "idle"
    assert (await agent.state())["last_turn_ms"] == end["payload"]["duration_ms"]


# ---- inbox and stats -----------------------------------------------------------------------------


async def test_inbox_lists_the_agents_recent_messages_newest_first(agent: Agent) -> None:
    """/api/inbox returns the last N messages to the agent via the core's `recent` verb."""
    await agent.turn("echo one")
    await agent.turn("echo two")
    messages = (await agent.web.get("/api/inbox", params={"limit": 2})).json()["messages"]
    assert [m["body"] for m in messages] == ["echo two", "echo one"]
    assert all(m["sender"] == "operator" for m in messages)


async def test_stats_sum_the_usage_and_cost_of_every_turn_end_in_the_trail(agent: Agent) -> None:
    """/api/stats is per-agent token/cost accounting over the trail's turn_end events."""
    await agent.turn("echo counting")
    stats = (await agent.web.get("/api/stats")).json()
    ends = [e for e in (await agent.web.get("/events/history")).json()["events"] if e["kind"] == "turn_end"]
    assert stats["turns"] == len(ends) >= 2
    assert stats["input_tokens"] == sum(e["payload"]["usage"]["input_tokens"] for e in ends) > 0
    assert stats["cost_usd"] == pytest.approx(sum(e["payload"]["cost_usd"] or 0 for e in ends))
    assert [d["ms"] for d in stats["durations"]] == [e["payload"]["duration_ms"] for e in ends]


def test_trail_stats_counts_ok_failed_and_cancelled_and_ignores_junk_usage() -> None:
    """trail_stats tolerates missing or malformed usage (a failed turn has none)."""
    events = [
        {"id": 1, "ts": 1.0, "kind": "turn_end", "payload": {"ok": True, "duration_ms": 100, "cost_usd": 0.5,
                                                             "usage": {"input_tokens": 10, "output_tokens": 2}}},
        {"id": 2, "ts": 2.0, "kind": "turn_end", "payload": {"ok": False, "duration_ms": 50, "usage": None}},
        {"id": 3, "ts": 3.0, "kind": "turn_end", "payload": {"ok": False, "cancelled": True, "duration_ms": 7,
                                                             "usage": {"input_tokens": "x"}}},
        {"id": 4, "ts": 4.0, "kind": "note", "payload": {"text": "hi"}},
    ]  # fmt: skip
    s = trail_stats(events)
    assert (s["turns"], s["ok"], s["failed"], s["cancelled"]) == (3, 1, 1, 1)
    compaction = {"id": 5, "ts": 5.0, "kind": "notes_compacted",
                  "payload": {"usage": {"input_tokens": 7, "output_tokens": 1}, "cost_usd": 0.25}}  # fmt: skip
    with_compaction = trail_stats([*events, compaction])
    assert (with_compaction["turns"], with_compaction["compactions"]) == (3, 1)  # spent, but not a turn
    assert (with_compaction["input_tokens"], with_compaction["cost_usd"]) == (17, 0.75)
    assert (s["input_tokens"], s["output_tokens"], s["cost_usd"], s["total_ms"]) == (10, 2, 0.5, 157)
    assert s["since"] == 1.0


# ---- controls ----------------------------------------------------------------------------------


async def test_model_is_persisted_and_used_from_the_next_turn(agent: Agent) -> None:
    """POST /api/model writes the override, emits model_changed, and the next turn asks the
    model for it (checked in what the offline model received) (issue 3 /model)."""
    resp = await agent.web.post("/api/model", json={"model": "haiku-x"})
    assert resp.status_code == 200 and resp.json()["ok"] is True
    assert resp.json()["state"]["model"] == "haiku-x"
    await agent.trail.wait(kind("model_changed", model="haiku-x"))
    model_file = agent.daemon.paths.agent(AGENT).state / "hyperhive-model"
    assert model_file.read_text().strip() == "haiku-x"
    before = len(agent.model.requests)
    end = await agent.turn("model?")
    assert end["payload"]["ok"] is True and end["payload"]["model"] == "haiku-x"
    asked = [
        r["model"] for r in agent.model.requests[before:] if r["last_user_text"] and "model?" in r["last_user_text"]
    ]
    assert asked and set(asked) == {"haiku-x"}
    state = await agent.state()
    assert state["model_active"] == "haiku-x" and state["model_override"] == "haiku-x"


async def test_cancel_stops_a_slow_turn_and_its_message_comes_back(agent: Agent) -> None:
    """/api/cancel while a `slow 30` turn runs: SIGTERM stops the CLI, turn_end is cancelled,
    the message is not acknowledged and is delivered again, marked redelivered (issue 14 §3)."""
    mid = await agent.send("slow 30")
    start = await agent.trail.wait(kind("turn_start", id=mid))
    await agent.trail.wait(kind("stream", type="system"), after=start["id"])  # the CLI is running
    resp = await agent.web.post("/api/cancel")
    assert resp.status_code == 200, resp.text
    assert "stopped on SIGTERM" in resp.json()["result"]
    end = await agent.trail.wait(kind("turn_end"), after=start["id"])
    assert end["payload"]["cancelled"] is True and end["payload"]["ok"] is False
    notes = [e["payload"]["text"] for e in agent.trail.events if e["kind"] == "note" and e["id"] > start["id"]]
    assert any("cancelled by the operator" in n and "not acknowledged" in n for n in notes)
    again = await agent.trail.wait(kind("turn_start", id=mid, redelivered=True), after=end["id"])
    assert agent.daemon.services is not None
    (row,) = [m for m in (await agent.daemon.services.broker.recent(AGENT, 50)) if m.id == mid]
    assert row.acked_at is None
    await agent.trail.wait(kind("stream", type="system"), after=again["id"])
    assert (await agent.web.post("/api/cancel")).status_code == 200  # do not leave it running


async def test_cancel_with_nothing_to_cancel_is_refused_with_a_reason(agent: Agent) -> None:
    """An idle agent has nothing to cancel: 409 with the reason, not a crash."""
    resp = await agent.web.post("/api/cancel")
    assert resp.status_code == 409
    assert "nothing to cancel" in resp.json()["error"]


async def test_compact_runs_with_the_compacting_state_then_returns_to_idle(agent: Agent) -> None:
    """/api/compact compacts the session; the state is `compacting` while it runs (issue 3)."""
    last = agent.trail.events[-1]["id"]
    resp = await agent.web.post("/api/compact")
    assert resp.status_code == 200, resp.text
    await agent.trail.wait(kind("state_changed", state="compacting"), after=last)
    await agent.trail.wait(kind("state_changed", state="idle"), after=last)
    assert (await agent.state())["state"] == "idle"


async def test_nap_shows_its_end_time_and_cancel_ends_it_early(agent: Agent) -> None:
    """The nap tool parks the loop: state `napping` with nap_until; /api/cancel ends it (issue 3)."""
    end = await agent.turn("nap 60")
    nap = await agent.trail.wait(kind("state_changed", state="napping"), after=end["id"] - 1)
    state = await agent.state()
    assert state["state"] == "napping" and state["nap_until"] == nap["payload"]["until"]
    resp = await agent.web.post("/api/cancel")
    assert resp.json()["result"] == "nap ended by the operator"
    await agent.trail.wait(kind("state_changed", state="idle"), after=nap["id"])
    assert (await agent.state())["nap_until"] is None


async def test_a_napping_agent_leaves_messages_waiting_until_the_nap_ends(agent: Agent) -> None:
    """The seed's nap: the agent does not poll until its wake time, a message sent meanwhile is
    not delivered, and it is the first thing handled once /api/end-nap ends the nap (issue 14 §3)."""
    end = await agent.turn("nap 600")
    nap = await agent.trail.wait(kind("state_changed", state="napping"), after=end["id"] - 1)
    mid = await agent.send("echo after the nap")
    assert (await agent.state())["state"] == "napping"
    assert agent.daemon.services is not None
    (row,) = [m for m in (await agent.daemon.services.broker.recent(AGENT, 10)) if m.id == mid]
    assert row.delivered_at is None  # waiting: nobody polls during a nap
    resp = await agent.web.post("/api/end-nap")
    assert resp.status_code == 200 and resp.json()["result"] == "nap ended by the operator"
    woke = await agent.trail.wait(lambda e: e["kind"] == "note" and "nap ended early" in e["payload"]["text"],
                                  after=nap["id"])  # fmt: skip
    start = await agent.trail.wait(kind("turn_start"), after=woke["id"])
    assert start["payload"]["id"] == mid
    refused = await agent.web.post("/api/end-nap")
    assert refused.status_code == 409 and "not napping" in refused.json()["error"]


async def test_new_session_is_noted_for_the_next_turn(agent: Agent) -> None:
    resp = await agent.web.post("/api/new-session")
    assert resp.json()["ok"] is True
    await agent.trail.wait(lambda e: e["kind"] == "note" and "new session" in e["payload"]["text"])


async def test_oversized_and_malformed_bodies_are_refused_and_the_app_still_serves(agent: Agent) -> None:
    """Bad-then-good: a body over the cap is 413, broken JSON is 409; /api/state still answers."""
    big = await agent.web.post("/api/model", content=b"x" * (200 * 1024), headers={"content-type": "text/plain"})
    assert big.status_code == 413
    broken = await agent.web.post("/api/model", content=b"{nope", headers={"content-type": "application/json"})
    assert broken.status_code == 409
    assert (await agent.web.get("/events/history", params={"after": "junk"})).status_code == 400
    assert (await agent.state())["state"] == "idle"


async def test_a_prompt_too_long_turn_is_compacted_once_and_retried(tmp_path: Path, short_dir: Path) -> None:
    """architecture §5: the API answers `prompt is too long` (the offline model's `overflow` script,
    until the session holds a summary) and the CLI reports it (its own auto-compaction is off
    here, DISABLE_AUTO_COMPACT=1); the harness compacts the session once (state `compacting`) and
    retries the same turn, which succeeds and is acknowledged (issue 14 §3)."""
    async for agent in hive_with_agent(tmp_path, short_dir, extra_env={"DISABLE_AUTO_COMPACT": "1"}):
        mid = await agent.send("overflow still here")
        start = await agent.trail.wait(kind("turn_start", id=mid))
        await agent.trail.wait(lambda e: e["kind"] == "note" and "prompt too long" in e["payload"]["text"],
                               after=start["id"])  # fmt: skip
        compacting = await agent.trail.wait(kind("state_changed", state="compacting"), after=start["id"])
        end = await agent.trail.wait(kind("turn_end"), after=compacting["id"])
        assert end["payload"]["ok"] is True, end["payload"]
        after = [e for e in agent.trail.events if compacting["id"] < e["id"] < end["id"]]
        assert any(e["kind"] == "stream" and e["payload"].get("subtype") == "compact_boundary" for e in after)
        texts = [b["text"] for e in after if e["kind"] == "stream" and e["payload"].get("type") == "assistant"
                 for b in e["payload"]["content"] if b.get("type") == "text"]  # fmt: skip
        assert "after compaction: still here" in texts
        assert len([e for e in agent.trail.events if e["kind"] == "turn_start" and e["payload"]["id"] == mid]) == 1
        assert agent.daemon.services is not None
        (row,) = [m for m in (await agent.daemon.services.broker.recent(AGENT, 20)) if m.id == mid]
        assert row.acked_at is not None


async def test_with_the_clis_auto_compaction_an_overflow_is_handled_inside_the_turn(agent: Agent) -> None:
    """By default the CLI compacts reactively itself: the same overflow ends in one successful
    turn with the CLI's compact boundary and no harness retry (the harness path above is the
    fallback when the CLI reports the error)."""
    end = await agent.turn("overflow inside")
    assert end["payload"]["ok"] is True and end["payload"]["note"] == "after compaction: inside"
    assert not any(e["kind"] == "note" and "prompt too long" in e["payload"]["text"] for e in agent.trail.events)


# ---- notes compaction (issue 14 §2) --------------------------------------------------------------


def bloated_notes(extra: str = "") -> str:
    """Over the default 32 KiB threshold, with repeats the offline model's compaction drops."""
    lines = ["# notes", "- the build runs with `make test`", extra]
    lines += [f"- status: still waiting for bob on the release checklist ({i % 4})" for i in range(700)]
    return "\n".join(lines) + "\n"


async def test_notes_over_the_threshold_are_compacted_after_a_turn(agent: Agent) -> None:
    """Notes past notes_compact_bytes: after the next turn the secondary session rewrites them
    shorter, the badge is `compacting` (notes) meanwhile, `notes_compacted` carries the sizes and
    the kept previous version, and /api/state shows the new size (issue 14 §2)."""
    notes = agent.daemon.paths.agent(AGENT).state / "notes.md"
    original = bloated_notes()
    assert len(original) > 32 * 1024
    notes.write_text(original, encoding="utf-8")
    end = await agent.turn("echo one more turn")
    state = await agent.trail.wait(kind("state_changed", state="compacting", what="notes"), after=end["id"])
    done = await agent.trail.wait(kind("notes_compacted"), after=state["id"])
    assert done["payload"]["usage"]["output_tokens"] > 0  # what the secondary session spent
    after = notes.read_text(encoding="utf-8")
    assert done["payload"]["before_bytes"] == len(original) and done["payload"]["after_bytes"] == len(after)
    assert len(after) < len(original) and set(after.splitlines()) == set(original.splitlines())
    kept = notes.parent / "notes.history" / Path(done["payload"]["kept"]).name  # the cage's /state, on the host
    assert kept.read_text(encoding="utf-8") == original
    await agent.trail.wait(kind("state_changed", state="idle"), after=done["id"])
    snap = await agent.state()
    assert (snap["notes_bytes"], snap["notes_compact_bytes"], snap["notes_kept"]) == (len(after), 32 * 1024, 1)


async def test_a_garbage_compaction_is_rejected_and_not_retried_until_the_notes_change(agent: Agent) -> None:
    """A rewrite larger than the notes is rejected (`notes_compaction_failed` with the reason),
    the notes stay byte for byte, nothing is kept, and the next turn does not try again."""
    from hyperhive.offline_model.policy import COMPACT_GARBAGE

    notes = agent.daemon.paths.agent(AGENT).state / "notes.md"
    original = bloated_notes(COMPACT_GARBAGE)
    notes.write_text(original, encoding="utf-8")
    end = await agent.turn("echo go")
    failed = await agent.trail.wait(kind("notes_compaction_failed"), after=end["id"])
    assert "came back larger" in failed["payload"]["reason"]
    await agent.trail.wait(kind("state_changed", state="idle"), after=failed["id"])
    assert notes.read_text(encoding="utf-8") == original
    assert not (notes.parent / "notes.history").exists()
    second = await agent.turn("echo again")
    assert not [e for e in agent.trail.events if e["id"] > second["id"] - 1 and e["kind"].startswith("notes_compact")]
    assert (await agent.state())["notes_kept"] == 0


async def test_the_operator_compacts_the_notes_from_the_page(agent: Agent) -> None:
    """POST /api/compact-notes runs a compaction now, whatever the size; with no notes it is
    refused with a reason (409)."""
    empty = await agent.web.post("/api/compact-notes")
    assert empty.status_code == 409 and "no notes" in empty.json()["error"]
    notes = agent.daemon.paths.agent(AGENT).state / "notes.md"
    notes.write_text("# notes\n- a\n- a\n- b\n", encoding="utf-8")
    resp = await agent.web.post("/api/compact-notes")
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"].startswith("notes compacted: 20 → 16 bytes")
    assert notes.read_text(encoding="utf-8") == "# notes\n- a\n- b\n"
    assert resp.json()["state"]["notes_bytes"] == 16


# ---- login -------------------------------------------------------------------------------------


async def test_login_panel_runs_the_login_command_shows_its_url_and_passes_the_code(
    tmp_path: Path, short_dir: Path
) -> None:
    """Without credentials the agent is `needs_login`; /api/login/start runs HYPERHIVE_LOGIN_CMD
    over pipes and shows the first URL; /api/login/code feeds the code to its stdin; exit 0 tells
    the harness to retry, with the files written in the agent's own $HOME (issue 3 Login)."""
    cmd = write_fake_login(tmp_path)
    async for agent in hive_with_agent(tmp_path, short_dir, api_key=False, extra_env={"HYPERHIVE_LOGIN_CMD": cmd}):
        await agent.send("echo a first turn")  # the spawn kick runs no turn of its own (issue 13)
        need = await agent.trail.wait(kind("state_changed", state="needs_login"))
        assert (await agent.state())["state"] == "needs_login"
        start = await agent.web.post("/api/login/start")
        assert start.status_code == 200, start.text
        snap = start.json()["result"]
        assert snap["running"] is True
        assert snap["url"] == "https://claude.example/oauth/authorize?state=fake123&x="
        again = await agent.web.post("/api/login/start")
        assert again.status_code == 409 and "already running" in again.json()["error"]
        done = await agent.web.post("/api/login/code", json={"code": "good-code"})
        snap = done.json()["result"]
        assert (snap["running"], snap["exit_code"], snap["note"]) == (False, 0, "login finished: logged in")
        assert "Login successful." in snap["output"]
        assert (agent.daemon.paths.agent(AGENT).home / "fake-login-was-here").read_text() == "good-code"
        await agent.trail.wait(lambda e: e["kind"] == "note" and e["payload"]["text"] == "logged in: retrying",
                               after=need["id"])  # fmt: skip
        await agent.trail.wait(kind("state_changed", state="idle"), after=need["id"])


async def test_a_wrong_login_code_reports_the_exit_code(tmp_path: Path) -> None:
    """A login command that exits non-zero leaves a note with its exit code; no success call."""
    called: list[bool] = []
    session = LoginSession({"HYPERHIVE_LOGIN_CMD": write_fake_login(tmp_path)}, home=tmp_path,
                           on_success=lambda: called.append(True))  # fmt: skip
    with pytest.raises(Conflict):
        await session.send_code("early")
    await session.start()
    try:
        snap = await session.send_code("bad-code")
        snap = await session.wait(WAIT)
        assert (snap["running"], snap["exit_code"]) == (False, 2)
        assert snap["note"] == "login command exited with code 2"
        assert any("invalid code" in line for line in snap["output"])
        assert called == []
    finally:
        await session.close()


async def test_login_output_is_bounded_and_a_code_must_be_one_line(tmp_path: Path) -> None:
    """The output tail is bounded; a multi-line "code" is refused before it reaches stdin."""
    script = tmp_path / "chatty.py"
    script.write_text("import sys\nfor i in range(5000): print('line', i)\nprint('https://x.example/a', flush=True)\n"
                      "sys.stdin.readline()\n")  # fmt: skip
    session = LoginSession({"HYPERHIVE_LOGIN_CMD": f"{sys.executable} {script}"}, home=tmp_path)
    await session.start()
    try:
        async with asyncio.timeout(WAIT):
            while session.url is None:
                await session.wait(0.05)
        assert len(session.tail(10_000)) <= 200
        with pytest.raises(Conflict):
            await session.send_code("a\nb")
    finally:
        await session.close()
    assert not session.running or session.exit_code is not None


def test_default_login_command_is_the_bundled_claude_auth_login() -> None:
    argv = default_login_argv({})
    assert argv[-2:] == ["auth", "login"] and Path(argv[0]).name == "claude"
    assert default_login_argv({"HYPERHIVE_LOGIN_CMD": "fake-login --flag 'a b'"}) == ["fake-login", "--flag", "a b"]

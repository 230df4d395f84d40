"""Agents that stay up, and say why when they don't (issue 15): agent.toml's `restart`,
`restart_limit` and `restart_backoff` with a real daemon and a real harness that exits non-zero
(an MCP server command that does not exist makes the harness (`python -m hyperhive.harness`) fail at startup, exit 3),
in process cages and, where it works, bwrap cages. What the core decided is read where the
operator reads it: `hive list --json` rows and the agent's down page."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import make_config, require, require_tool, run_hive, start_daemon, stop_daemon, until
from hyperhive.cages.bwrap import BwrapCage
from hyperhive.core.daemon import Daemon

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import dash_of, logged_in  # noqa: E402

NO_MODEL = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": "none"}
BROKEN = '[mcp_servers.broken]\ncommand = "no-such-command-hh15"\n'


def toml(extra: str) -> str:
    return f'description = "crashy"\ninstructions = "instructions.md"\n{extra}\n'


async def spawn_with(daemon: Daemon, name: str, text: str) -> None:
    s = daemon.services
    assert s is not None
    await s.repos.seed(name, None, toml=text)
    await s.lifecycle.spawn(name)


def row(daemon: Daemon, name: str) -> dict[str, Any]:
    assert daemon.services is not None
    data: dict[str, Any] = daemon.services.lifecycle.row(name).model_dump()
    return data


def crashes(daemon: Daemon, name: str) -> int:
    assert daemon.services is not None
    return sum(
        1 for e in daemon.services.hub.history(after=0) if e.kind == "container_crash" and e.payload["agent"] == name
    )


async def listed(daemon: Daemon, name: str) -> dict[str, Any]:
    doc = json.loads((await run_hive(daemon.paths.run_dir, "list", "--json", ok=True)).stdout)
    found: dict[str, Any] = next(a for a in doc["agents"] if a["name"] == name)
    return found


@pytest.fixture(params=["process", "bwrap"])
async def daemon(request: pytest.FixtureRequest, tmp_path: Path, short_dir: Path) -> AsyncIterator[Daemon]:
    cage = request.param
    if cage == "bwrap":
        require_tool("bwrap")
        ok, why = BwrapCage.available()
        require(ok, f"bwrap does not work here: {why}")
    d, task = await start_daemon(make_config(tmp_path, short_dir, cage=cage, agent_env=NO_MODEL))
    try:
        yield d
    finally:
        await stop_daemon(d, task)


async def test_on_failure_restarts_with_back_off_then_gives_up_and_says_why(daemon: Daemon) -> None:
    """A harness that exits 3 at startup: restarted `restart_limit` times (back-off between), then
    left crashed with the exit status, its last stderr lines, when, and the count, in `hive list`."""
    await spawn_with(
        daemon, "crashy", toml(f'restart = "on-failure"\nrestart_limit = 2\nrestart_backoff = 0.2\n{BROKEN}')
    )
    hub = daemon.services.hub  # type: ignore[union-attr]
    explain = lambda: json.dumps(row(daemon, "crashy"), indent=1)  # noqa: E731
    await until(hub, "crashy to give up", lambda: (row(daemon, "crashy").get("down") or {}).get("gave_up"), 90,
                explain=explain)  # fmt: skip
    a = await listed(daemon, "crashy")
    assert a["state"] == "crashed" and a["restarts"] == 2 and a["pid"] is None
    down = a["down"]
    assert down["exit_code"] == 3 and down["signal"] is None and down["reason"] == "exited with status 3"
    assert down["policy"] == "on-failure" and down["gave_up"] is True and down["next_restart_at"] is None
    assert any("no-such-command-hh15" in line for line in down["last_lines"]), down["last_lines"]
    assert crashes(daemon, "crashy") == 3  # the first start and both restarts each crashed once
    text = await run_hive(daemon.paths.run_dir, "list", ok=True)
    assert "! crashy: exited with status 3 at " in text.stderr and "gave up (hive start crashy)" in text.stderr

    # a start by hand begins a fresh count (and crashes again, restarting twice more)
    await daemon.services.lifecycle.start("crashy")  # type: ignore[union-attr]
    await until(hub, "the fresh count to run out", lambda: crashes(daemon, "crashy") == 6
                and (row(daemon, "crashy").get("down") or {}).get("gave_up"), 90, explain=explain)  # fmt: skip
    assert row(daemon, "crashy")["restarts"] == 2


async def test_the_default_policy_leaves_a_crashed_agent_down_and_says_so(daemon: Daemon) -> None:
    """No `restart` key: an agent other than the manager is not restarted; the row says why."""
    await spawn_with(daemon, "once", toml(BROKEN))
    hub = daemon.services.hub  # type: ignore[union-attr]
    await until(hub, "the crash", lambda: row(daemon, "once").get("down"), 60, explain=lambda: str(row(daemon, "once")))
    a = await listed(daemon, "once")
    assert a["state"] == "crashed" and a["restarts"] == 0
    assert a["down"]["policy"] == "no" and not a["down"]["gave_up"] and a["down"]["next_restart_at"] is None
    assert crashes(daemon, "once") == 1


@pytest.mark.parametrize("daemon", ["process"], indirect=True)
async def test_always_restarts_a_clean_exit_and_on_failure_does_not(daemon: Daemon) -> None:
    """SIGTERM from outside: the harness shuts down cleanly (exit 0). `always` brings it back;
    `on-failure` leaves it down, since nothing failed."""
    await spawn_with(daemon, "steady", toml('restart = "always"\nrestart_backoff = 0.1\n'))
    await spawn_with(daemon, "calm", toml('restart = "on-failure"\nrestart_backoff = 0.1\n'))
    s = daemon.services
    assert s is not None
    reported = lambda n: s.lifecycle.agents[n].harness_state not in (None, "starting")  # noqa: E731
    await until(s.hub, "both to report in", lambda: reported("steady") and reported("calm"), 60,
                explain=lambda: str([row(daemon, n) for n in ("steady", "calm")]))  # fmt: skip
    first = s.lifecycle.agents["steady"].handle
    calm = s.lifecycle.agents["calm"].handle
    assert first is not None and calm is not None
    os.killpg(first.pid, signal.SIGTERM)
    os.killpg(calm.pid, signal.SIGTERM)
    await until(s.hub, "steady back up", lambda: row(daemon, "steady")["state"] == "running"
                and row(daemon, "steady")["restarts"] == 1 and row(daemon, "calm")["state"] == "crashed", 60,
                explain=lambda: str([row(daemon, n) for n in ("steady", "calm")]))  # fmt: skip
    assert s.lifecycle.agents["steady"].handle is not first
    steady_down = row(daemon, "steady")["down"]
    assert steady_down["reason"] == "exited with status 0" and steady_down["policy"] == "always"
    calm_row = row(daemon, "calm")
    assert calm_row["down"]["reason"] == "exited with status 0" and calm_row["restarts"] == 0
    client = await logged_in(dash_of(daemon))
    try:
        page = await client.get("/agent/calm/", headers={"accept": "text/html"})
    finally:
        await client.aclose()
    assert "restart policy: on-failure, 0 restart(s) in a row — a clean exit is not restarted" in page.text


async def test_the_down_page_says_why_and_offers_start_and_log(daemon: Daemon) -> None:
    """While the harness is gone the core serves /agent/<name>/: the exit, the policy, the last
    lines (escaped), a start form and the log, behind the dashboard session."""
    await spawn_with(daemon, "gone", toml(BROKEN.replace("no-such-command-hh15", "<b>no-such</b>")))
    hub = daemon.services.hub  # type: ignore[union-attr]
    await until(hub, "the crash", lambda: row(daemon, "gone").get("down"), 60, explain=lambda: str(row(daemon, "gone")))
    dash = dash_of(daemon)
    client = await logged_in(dash)
    try:
        page = await client.get("/agent/gone/", headers={"accept": "text/html"})
        assert page.status_code == 502
        body = page.text
        assert "exited with status 3" in body and "restart policy: no" in body
        assert "&lt;b&gt;no-such&lt;/b&gt;" in body and "<b>no-such</b>" not in body
        assert 'action="/agent/gone/_down/start"' in body and 'href="/agent/gone/_down/log"' in body
        log = await client.get("/agent/gone/_down/log")
        assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
        assert "<b>no-such</b>" in log.text
        api_log = await client.get("/api/agents/gone/log")
        assert api_log.status_code == 200 and api_log.text == log.text
        assert (await client.get("/api/agents/ghost/log")).status_code == 404
        # the start form carries the page's own token (bound to gone): no session header needed
        token = body.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        del client.headers["x-csrf-token"]
        form = {"content-type": "application/x-www-form-urlencoded"}
        assert (await client.post("/agent/gone/_down/start", content=b"csrf=nope", headers=form)).status_code == 403
        started = await client.post("/agent/gone/_down/start", content=f"csrf={token}".encode(), headers=form)
        assert started.status_code == 303 and started.headers["location"] == "/agent/gone/"
        await until(hub, "the second crash", lambda: crashes(daemon, "gone") == 2, 60,
                    explain=lambda: str(row(daemon, "gone")))  # fmt: skip
    finally:
        await client.aclose()
    async with httpx.AsyncClient(base_url=dash.base, timeout=10) as anon:
        assert (await anon.get("/agent/gone/_down/log")).status_code == 401

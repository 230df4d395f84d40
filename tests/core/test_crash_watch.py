"""The crash watch and lifecycle events (issue 4 "Lifecycle events"; architecture §4): an exit the core
did not ask for sends exactly one `container_crash {agent, exit_code, signal, last_lines}` to the
manager; a stop it asked for sends none; spawned / killed / destroyed reach the manager too.

Where the events go: the manager is registered (manager=True) but its harness is stopped, so
nothing consumes its inbox and every row addressed to `manager` stays in the broker for the test
to count. The broker writes a row for any *known* agent whether or not it runs; with no manager
registered at all (the plain `hive` fixture) the event would be dropped with a warning."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import HiveRig, make_config, start_daemon, stop_daemon
from hyperhive.client import HiveClient
from hyperhive.names import MANAGER

NO_MODEL = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": "none"}


@dataclass
class Hive(HiveRig):
    manager: HiveClient

    HIVE_OK = True

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        return self.system_events(MANAGER, event)

    def diagnostics(self) -> str:
        return f"manager inbox: {self.events()}"

    def reported_in(self, name: str) -> bool:
        rt = self.s.lifecycle.agents[name]
        return rt.state == "running" and rt.harness_state not in (None, "starting")


@pytest.fixture
async def chive(tmp_path: Path, short_dir: Path) -> AsyncIterator[Hive]:
    daemon, task = await start_daemon(make_config(tmp_path, short_dir, manager=True, agent_env=NO_MODEL))
    manager = HiveClient(daemon.paths.agent(MANAGER).socket, timeout=60)
    try:
        assert daemon.services is not None
        await daemon.services.lifecycle.stop(MANAGER)
        yield Hive(daemon, manager)
    finally:
        await manager.close()
        await stop_daemon(daemon, task)


def kill_cage(hive: Hive, name: str) -> int:
    """SIGKILL the agent's cage process group from outside, as an OOM killer or an admin would."""
    handle = hive.s.lifecycle.agents[name].handle
    assert handle is not None
    os.killpg(handle.pid, signal.SIGKILL)
    return handle.pid


async def test_killing_a_cage_from_outside_sends_exactly_one_container_crash(chive: Hive) -> None:
    """SIGKILL of alice's cage → one container_crash with the signal and the cage's last lines;
    not repeated while alice stays down; a second crash after a restart is a second event (issue 4)."""
    await chive.s.lifecycle.spawn("alice")
    await chive.until("alice's harness to report in", lambda: chive.reported_in("alice"))
    assert [e["agent"] for e in chive.events("spawned")] == ["alice"]
    kill_cage(chive, "alice")
    (crash,) = await chive.until("the container_crash", lambda: chive.events("container_crash"))
    rt = chive.s.lifecycle.agents["alice"]
    assert rt.state == "crashed" and rt.last_exit is not None
    assert crash == {"event": "container_crash", "agent": "alice", "exit_code": None, "signal": signal.SIGKILL,
                     "last_lines": rt.last_exit.last_lines[-15:]}  # fmt: skip
    # (the harness prints nothing before it is killed here, so the tail is empty; the e2e test in
    # tests/e2e/test_manager_flow.py sees a crash carry the harness's own last line)
    # Still down: the operator's stop of a crashed agent, and a list, add no second event.
    await chive.hive("stop", "alice")
    await chive.hive("list", "--json")
    assert rt.state == "stopped" and len(chive.events("container_crash")) == 1
    # Once per crash: started again and killed again is one more event, not a storm.
    await chive.s.lifecycle.start("alice")
    await chive.until("alice's harness to report in again", lambda: chive.reported_in("alice"))
    kill_cage(chive, "alice")
    await chive.until("the second container_crash", lambda: len(chive.events("container_crash")) == 2)
    assert [e["agent"] for e in chive.events("container_crash")] == ["alice", "alice"]


async def test_stops_the_core_asks_for_send_no_container_crash(chive: Hive) -> None:
    """`hive stop`, `hive restart`, the manager's kill and destroy are exits the core asked for:
    no container_crash; killed and destroyed reach the manager (issue 4; architecture §4)."""
    await chive.s.lifecycle.spawn("bob")
    await chive.until("bob's harness to report in", lambda: chive.reported_in("bob"))
    await chive.hive("stop", "bob")
    assert chive.s.lifecycle.agents["bob"].state == "stopped"
    await chive.hive("start", "bob")
    await chive.hive("restart", "bob")
    await chive.until("bob's harness to report in", lambda: chive.reported_in("bob"))
    await chive.manager.call("kill", name="bob")
    assert chive.s.lifecycle.agents["bob"].state == "stopped"
    await chive.hive("destroy", "bob")
    assert "bob" not in chive.s.lifecycle.agents
    assert [e["event"] for e in chive.events() if e["event"] != "kick"] == ["spawned", "killed", "destroyed"]
    assert chive.events("killed") == [{"event": "killed", "agent": "bob", "by": MANAGER}]
    assert chive.events("destroyed") == [{"event": "destroyed", "agent": "bob", "purged": False}]
    assert chive.events("container_crash") == []

"""The operator's gate, end to end (issue 4; architecture §4, §7, §12): the manager agent, run by the
REAL claude CLI against the offline model in a process cage, asks for a new agent, edits its
config with git and asks for the apply; the operator approves and denies with the `hive` CLI
(a separate process). Checks the git tags in the applied repo and the `approval_resolved`
events in the manager's inbox."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import HiveRig, diagnostics, make_config, start_daemon, stop_daemon, sync
from hyperhive.names import MANAGER
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

TURN_BOUND = 120.0  # one manager turn through the real CLI (a few model round trips), generous for CI
DEPLOY_BOUND = 150.0  # `hive approve` of a config: restart + wait_healthy (60 s cap in the core)


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer
    state_dir: Path

    UNTIL_BOUND = TURN_BOUND
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, approvals=10, messages=30, tail=15)

    def pending(self, kind: str, agent: str) -> dict[str, Any] | None:
        return next((a for a in sync(self.s.approvals.pending())
                     if a["kind"] == kind and a["agent"] == agent and a["status"] == "pending"), None)  # fmt: skip

    def events(self, event: str, to: str = MANAGER) -> list[dict[str, Any]]:
        return self.system_events(to, event)

    def resolved(self, aid: int) -> dict[str, Any] | None:
        return next((e for e in self.events("approval_resolved") if e["id"] == aid), None)

    def git(self, *args: str) -> str:
        repo = self.state_dir / "applied" / "scout"
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout  # fmt: skip


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        config = make_config(tmp_path, short_dir, manager=True, agent_env=env)
        daemon, task = await start_daemon(config)
        try:
            yield Rig(daemon, model, config.state_dir)
        finally:
            await stop_daemon(daemon, task)


async def configure(rig: Rig, setting: str) -> dict[str, Any]:
    """Ask the manager (as the operator, through the CLI) to change scout's agent.toml; wait for
    the manager's commit to become a pending apply_commit approval."""
    await rig.until("the manager to be idle", lambda: rig.idle(MANAGER))
    before = {a["id"] for a in (await rig.s.approvals.recent(100))}
    await rig.hive("send", MANAGER, f"configure scout {setting}")
    approval = await rig.until(
        f"the manager's request_apply_commit for {setting!r}",
        lambda: next((a for a in sync(rig.s.approvals.pending())
                      if a["kind"] == "apply_commit" and a["id"] not in before and a["status"] == "pending"), None),
    )  # fmt: skip
    return approval


def _pid(rig: Any, name: str) -> int:
    handle = rig.s.lifecycle.agents[name].handle
    assert handle is not None, f"{name} is not running"
    pid: int = handle.pid
    return pid


async def test_the_manager_creates_reconfigures_and_is_refused_through_the_operators_gate(rig: Rig) -> None:
    """Issue 4's end-to-end: init_config → approve (CLI) → config_ready → manager commits →
    apply → approve → scout answers; a breaking change ends failed/<id> with the old config
    still running; a denied change leaves denied/<id> with its reason (architecture §7)."""
    await rig.until("the manager's harness to report idle", lambda: rig.idle(MANAGER))

    # 1. The operator asks the manager for a new agent; the manager calls request_init_config.
    await rig.hive("send", MANAGER, "init config scout")
    init = await rig.until("the manager's request_init_config", lambda: rig.pending("init_config", "scout"))
    assert init["requested_by"] == MANAGER
    listed = json.loads((await rig.hive("pending", "--json")).stdout)["approvals"]
    assert [a["id"] for a in listed] == [init["id"]]

    # 2. The operator approves with the CLI; the proposed repo appears and config_ready reaches the manager.
    out = await rig.hive("approve", str(init["id"]))
    assert out.stdout.strip() == f"#{init['id']} approved"
    ready = await rig.until("config_ready in the manager's inbox", lambda: rig.events("config_ready"))
    assert ready == [{"event": "config_ready", "agent": "scout", "path": "/agents/scout/config"}]
    assert (rig.state_dir / "proposed" / "scout" / "config" / "agent.toml").is_file()
    assert "scout" not in rig.s.lifecycle.agents  # nothing runs before the first applied commit

    # 3. The manager edits agent.toml with git, commits, and asks for the apply.
    first = await configure(rig, 'description="scout: looks ahead for the swarm"')
    proposed_head = subprocess.run(
        ["git", "-C", str(rig.state_dir / "proposed" / "scout" / "config"), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    assert first["sha"] == proposed_head and first["tag"] == f"proposal/{first['id']}"
    diff = (await rig.hive("pending", "--diff", str(first["id"]))).stdout
    assert '+description = "scout: looks ahead for the swarm"' in diff  # first apply: diff from the empty tree

    # 4. The operator approves; the first applied commit creates and starts scout.
    out = await rig.hive("approve", str(first["id"]), bound=DEPLOY_BOUND)
    assert out.stdout.strip() == f"#{first['id']} deployed (deployed/{first['id']})"
    assert await rig.s.repos.applied_sha("scout") == first["sha"]
    assert rig.s.lifecycle.agent_config("scout").description == "scout: looks ahead for the swarm"
    await rig.until("scout to report idle", lambda: rig.idle("scout"))

    # 5. scout answers a message: the offline model's default script sends it on to the operator.
    await rig.hive("send", "scout", "hello scout")
    await rig.until("scout's answer in the operator's inbox",
                    lambda: any(m.sender == "scout" for m in sync(rig.s.broker.recent("operator", 50))))  # fmt: skip
    inbox = json.loads((await rig.hive("inbox", "--json")).stdout)["messages"]
    assert [m["body"] for m in inbox if m["sender"] == "scout"] == ["operator said: hello scout"]
    old_pid = _pid(rig, "scout")

    # 6. A change that breaks the agent (an MCP server whose command does not exist): failed/<id>,
    #    and scout comes back on the config that was running.
    broken = await configure(rig, 'mcp_servers={broken={command="/nonexistent/server"}}')
    out = await rig.hive("approve", str(broken["id"]), ok=False, bound=DEPLOY_BOUND)
    assert out.returncode == 1
    assert out.stdout.startswith(f"#{broken['id']} failed (failed/{broken['id']}): ")
    assert "/nonexistent/server" in out.stdout
    assert (await rig.s.approvals.get(broken["id"]))["status"] == "failed"
    assert await rig.s.repos.applied_sha("scout") == first["sha"]  # main never moved
    assert rig.s.lifecycle.agent_config("scout").mcp_servers == {}
    await rig.until("scout to come back on its old config", lambda: rig.idle("scout"))
    assert _pid(rig, "scout") != old_pid  # restarted, not left alone
    await rig.hive("send", "scout", "still there?")
    await rig.until(
        "scout's answer on the old config",
        lambda: any(m.body == "operator said: still there?" for m in sync(rig.s.broker.recent("operator", 50))),
    )

    # 7. A denied change: denied/<id> annotated with the operator's reason; nothing restarts.
    pid = _pid(rig, "scout")
    denied = await configure(rig, 'model="haiku"')
    out = await rig.hive("deny", str(denied["id"]), "--note", "keep scout on sonnet for now")
    assert out.stdout.strip() == f"#{denied['id']} denied (denied/{denied['id']})"
    assert _pid(rig, "scout") == pid
    assert rig.s.lifecycle.agent_config("scout").model == "sonnet"

    # The applied repo's tags record every request.
    f, b, d = first["id"], broken["id"], denied["id"]
    tags = rig.git("tag", "-l").split()
    assert sorted(tags) == sorted(
        [f"proposal/{f}", f"approved/{f}", f"deployed/{f}", f"proposal/{b}", f"approved/{b}", f"failed/{b}",
         f"proposal/{d}", f"denied/{d}"]
    )  # fmt: skip
    assert rig.git("rev-parse", "main").strip() == first["sha"]
    assert rig.git("rev-parse", f"failed/{b}^{{commit}}").strip() == broken["sha"]
    failed_note = rig.git("tag", "-l", "--format=%(contents)", f"failed/{b}")
    assert "/nonexistent/server" in failed_note
    assert rig.git("tag", "-l", "--format=%(contents)", f"denied/{d}").strip() == "keep scout on sonnet for now"
    assert not (await rig.s.approvals.pending())

    # The manager heard about every resolution, with the sha and the final tag.
    await rig.until("the last approval_resolved", lambda: rig.resolved(d))
    got = {e["id"]: (e["kind"], e["agent"], e["status"], e["sha"], e["tag"]) for e in rig.events("approval_resolved")}
    assert got == {
        init["id"]: ("init_config", "scout", "approved", None, None),
        f: ("apply_commit", "scout", "deployed", first["sha"], f"deployed/{f}"),
        b: ("apply_commit", "scout", "failed", broken["sha"], f"failed/{b}"),
        d: ("apply_commit", "scout", "denied", denied["sha"], f"denied/{d}"),
    }
    assert "/nonexistent/server" in (rig.resolved(b) or {})["note"]
    assert (rig.resolved(d) or {})["note"] == "keep scout on sonnet for now"
    assert [e["agent"] for e in rig.events("spawned")] == ["scout"]
    # The broken harness's exit during the deploy is the deploy's failure, reported once by
    # approval_resolved (with the harness's error), not a second time as a container_crash.
    assert rig.events("container_crash") == []

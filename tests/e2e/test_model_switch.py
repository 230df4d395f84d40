"""The model chip stays true (issue 14 §3): the manager's route to a new model (a `model` change
in agent.toml through request_apply_commit, approved by the operator) end to end with the REAL
claude CLI on the offline model, an operator override that hides the config's model, and the
chip's `active` / `last switched` across a harness restart and a config deploy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import HiveRig, diagnostics, make_config, start_daemon, stop_daemon, sync
from hyperhive.names import MANAGER
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

TURN_BOUND = 120.0
DEPLOY_BOUND = 150.0


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer

    UNTIL_BOUND = TURN_BOUND
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, approvals=10, messages=30, requests=10, tail=15)

    def web(self, name: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.daemon.paths.agent(name).web_socket))
        return httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=30)

    async def state(self, name: str) -> dict[str, Any]:
        async with self.web(name) as web:
            resp = await web.get("/api/state")
            assert resp.status_code == 200
            return dict(resp.json())

    async def history(self, name: str) -> list[dict[str, Any]]:
        async with self.web(name) as web:
            return list((await web.get("/events/history")).json()["events"])

    async def set_model(self, name: str, model: str) -> dict[str, Any]:
        async with self.web(name) as web:
            resp = await web.post("/api/model", json={"model": model})
            assert resp.status_code == 200, resp.text
            return dict(resp.json())

    async def apply(self, setting: str) -> dict[str, Any]:
        """The manager changes scout's agent.toml and asks; the operator approves (hive CLI)."""
        await self.until("the manager to be idle", lambda: self.idle(MANAGER))
        before = {a["id"] for a in (await self.s.approvals.recent(100))}
        await self.hive("send", MANAGER, f"configure scout {setting}")
        approval = await self.until(
            f"the manager's request_apply_commit for {setting!r}",
            lambda: next((a for a in sync(self.s.approvals.pending())
                          if a["kind"] == "apply_commit" and a["id"] not in before), None),
        )  # fmt: skip
        out = await self.hive("approve", str(approval["id"]), bound=DEPLOY_BOUND)
        assert out.stdout.strip() == f"#{approval['id']} deployed (deployed/{approval['id']})"
        await self.until("scout to be idle on its new config", lambda: self.idle("scout"))
        return approval

    async def ask_model(self) -> str:
        """One `model?` turn on scout; the model name the offline model was asked for."""
        before = len(self.model.requests)
        await self.hive("send", "scout", "model?")
        return await self.until(
            "scout's model? turn",
            lambda: next((r["model"] for r in self.model.requests[before:] if r["last_user_text"].endswith("model?")),
                         None),
        )  # fmt: skip


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, manager=True, agent_env=env))
        try:
            yield Rig(daemon, model)
        finally:
            await stop_daemon(daemon, task)


async def test_the_model_chip_is_true_through_the_managers_route_an_override_a_restart_and_a_deploy(rig: Rig) -> None:
    """Manager: `model = "haiku-a"` → approve → scout runs on haiku-a. Operator override opus-o
    hides it (said so). A harness restart keeps `active` and `last switched`. The manager's
    `model = "haiku-b"` deploy moves `last switched` (source config) while the override still wins;
    clearing the override runs the next turn on haiku-b."""
    await rig.until("the manager's harness to report idle", lambda: rig.idle(MANAGER))
    await rig.hive("send", MANAGER, "init config scout")
    init = await rig.until("request_init_config", lambda: next(
        (a for a in sync(rig.s.approvals.pending()) if a["kind"] == "init_config"), None))  # fmt: skip
    await rig.hive("approve", str(init["id"]))
    await rig.until("config_ready", lambda: rig.system_events(MANAGER, "config_ready"))

    # 1. the manager's route creates scout on haiku-a; the first start switches nothing
    await rig.apply('model="haiku-a"')
    assert rig.s.lifecycle.agent_config("scout").model == "haiku-a"
    assert await rig.ask_model() == "haiku-a"
    await rig.until("scout idle", lambda: rig.idle("scout"))
    state = await rig.state("scout")
    assert (state["model"], state["model_active"], state["model_switched_at"]) == ("haiku-a", "haiku-a", None)

    # 2. an operator override hides the config's model, and says so
    reply = await rig.set_model("scout", "opus-o")
    state = reply["state"]
    assert (state["model"], state["model_default"], state["model_switch_source"]) == ("opus-o", "haiku-a", "operator")
    assert state["model_config_hidden"] is True and state["model_active"] == "haiku-a"  # queued
    switched = state["model_switched_at"]
    assert await rig.ask_model() == "opus-o"
    await rig.until("scout idle", lambda: rig.idle("scout"))

    # 3. a harness restart: still active on opus-o, switched at the same moment
    await rig.hive("restart", "scout")
    await rig.until("scout back", lambda: rig.idle("scout"))
    state = await rig.state("scout")
    assert (state["model"], state["model_active"], state["model_switched_at"]) == ("opus-o", "opus-o", switched)

    # 4. the manager deploys haiku-b: "last switched" moves (a deploy), the override still hides it
    await rig.apply('model="haiku-b"')
    state = await rig.state("scout")
    assert (state["model"], state["model_default"], state["model_switch_source"]) == ("opus-o", "haiku-b", "config")
    assert state["model_switched_at"] > switched and state["model_config_hidden"] is True
    assert state["model_active"] == "opus-o"
    changed = [e["payload"] for e in await rig.history("scout") if e["kind"] == "model_changed"]
    assert changed[-1]["source"] == "config" and changed[-1]["previous_default"] == "haiku-a"
    assert changed[-1]["hidden_by_override"] is True
    assert rig.s.lifecycle.row("scout").model == "opus-o"  # what the dashboard shows

    # 5. clearing the override: the next turn runs on the deployed haiku-b
    state = (await rig.set_model("scout", ""))["state"]
    assert (state["model"], state["model_config_hidden"]) == ("haiku-b", False)
    assert await rig.ask_model() == "haiku-b"
    await rig.until("scout idle", lambda: rig.idle("scout"))
    state = await rig.state("scout")
    assert (state["model_active"], state["model_config_hidden"]) == ("haiku-b", False)

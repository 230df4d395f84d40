"""The burst scheduler end to end (issue 13 §4), REAL claude CLI on the offline model, process
cages, `[pool] max_turns = 1`: while a's turn runs, b's turn waits for the slot — `hive list`
shows b queued and b's model is not asked — and b runs once a's turn ends."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import HiveRig, diagnostics, make_config, require_sdk, start_daemon, stop_daemon
from hyperhive.offline_model.server import OfflineModelServer
from hyperhive.poolsettings import PoolSettings

pytestmark = pytest.mark.e2e


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer

    UNTIL_BOUND = 120.0
    RECHECK = 0.2
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=20, requests=10, tail=10)

    def events(self, name: str, kind: str) -> list[dict[str, Any]]:
        return [e["payload"] for e in self.s.read_agent_events(name) if e["kind"] == kind]

    def asked(self, text: str) -> bool:
        return any(text in r["last_user_text"] for r in self.model.requests)


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require_sdk()
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        config = make_config(tmp_path, short_dir, agent_env=env, pool=PoolSettings(max_turns=1, warm_on_start=False))
        daemon, task = await start_daemon(config)
        try:
            yield Rig(daemon, model)
        finally:
            await stop_daemon(daemon, task)


async def test_a_turn_waits_for_the_only_slot_and_runs_when_it_frees(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.hive("spawn", "b")
    await rig.until("a and b to be idle", lambda: rig.idle("a") and rig.idle("b"))
    await rig.hive("send", "a", "slow 60")
    await rig.until("a's model to be asked", lambda: rig.asked("slow 60"))
    await rig.hive("send", "b", "echo queued-b")
    await rig.until("b to be queued", lambda: rig.s.lifecycle.row("b").queued_since)
    listed = json.loads((await rig.hive("list", "--json")).stdout)["agents"]
    assert next(x for x in listed if x["name"] == "b")["queued_since"] is not None
    assert "queued" in (await rig.hive("list")).stdout
    assert not rig.asked("echo queued-b"), "b's turn did not start while a held the slot"
    assert rig.events("b", "turn_start") == []

    transport = httpx.AsyncHTTPTransport(uds=str(rig.daemon.paths.agent("a").web_socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=60) as web:
        assert (await web.post("/api/cancel", json={})).json()["ok"]
    await rig.until("b's turn to end", lambda: rig.events("b", "turn_end"))
    assert rig.events("b", "turn_end")[0]["ok"] and rig.asked("echo queued-b")
    assert rig.s.lifecycle.row("b").queued_since is None


async def test_a_harness_that_dies_holding_the_slot_frees_it(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.hive("spawn", "b")
    await rig.until("a and b to be idle", lambda: rig.idle("a") and rig.idle("b"))
    await rig.hive("send", "a", "slow 60")
    await rig.until("a's model to be asked", lambda: rig.asked("slow 60"))
    await rig.hive("send", "b", "echo after-a-died")
    await rig.until("b to be queued", lambda: rig.s.lifecycle.row("b").queued_since)
    rt = rig.s.lifecycle.agents["a"]
    assert rt.handle is not None
    os.killpg(os.getpgid(rt.handle.pid), signal.SIGKILL)
    await rig.until("b's turn to end", lambda: rig.events("b", "turn_end"))
    assert rig.events("b", "turn_end")[0]["ok"] and rig.s.lifecycle.row("a").warm is False

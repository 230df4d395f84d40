"""Warm agents (issue 13 §2) with the REAL claude CLI against the offline model in process cages:
one CLI serves many turns; idle, a new session, a cancel or a CLI that dies end it (the next
turn is cold and a message in flight comes back); a model switch and a compaction run on it;
the core's pool cools the longest-idle agent when more are warm than `max_warm`."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import HiveRig, diagnostics, make_config, require_sdk, start_daemon, stop_daemon
from hyperhive.offline_model.server import OfflineModelServer
from hyperhive.poolsettings import PoolSettings

pytestmark = pytest.mark.e2e

TURN_BOUND = 120.0


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer

    UNTIL_BOUND = TURN_BOUND
    RECHECK = 0.2
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=20, requests=10, tail=10)

    def events(self, name: str, kind: str) -> list[dict[str, Any]]:
        return [e["payload"] for e in self.s.read_agent_events(name) if e["kind"] == kind]

    def cooled(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events(name, "note") if e.get("pool") == "cooled"]

    async def turn(self, name: str, body: str) -> dict[str, Any]:
        """Send `body` and return the turn_end of the turn it started."""
        before = len(self.events(name, "turn_end"))
        await self.hive("send", name, body)
        ends = await self.until(f"{name}'s turn on {body!r}", lambda: self.events(name, "turn_end")[before:])
        return ends[0]

    async def pool(self, name: str) -> dict[str, Any]:
        transport = httpx.AsyncHTTPTransport(uds=str(self.daemon.paths.agent(name).web_socket))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=TURN_BOUND) as web:
            state: dict[str, Any] = (await web.get("/api/state")).json()["pool"]
        return state

    async def post(self, name: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        transport = httpx.AsyncHTTPTransport(uds=str(self.daemon.paths.agent(name).web_socket))
        async with httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=TURN_BOUND) as web:
            reply: dict[str, Any] = (await web.post(path, json=body)).json()
        return reply


def rig_fixture(**pool: Any) -> Callable[[Path, Path], AsyncIterator[Rig]]:
    async def make(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
        require_sdk()
        async with OfflineModelServer() as model:
            env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
            config = make_config(tmp_path, short_dir, agent_env=env, pool=PoolSettings(**pool))
            daemon, task = await start_daemon(config)
            try:
                yield Rig(daemon, model)
            finally:
                await stop_daemon(daemon, task)

    return make


# these start cold (no warm on start: tests/e2e/test_prewarm.py) to see each warm-up and cooling
rig = pytest.fixture(rig_fixture(warm_idle_seconds=3600.0, warm_on_start=False))
idle_rig = pytest.fixture(rig_fixture(warm_idle_seconds=0.5, warm_on_start=False))
pool_rig = pytest.fixture(rig_fixture(warm_idle_seconds=3600.0, max_warm=1, warm_on_start=False))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


async def test_one_cli_serves_two_turns_and_a_model_switch_runs_on_it(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    first = await rig.turn("a", "echo one")
    assert first["ok"] and first["warm"] is False and first["cli_pid"]
    await rig.until("a to report warm", lambda: rig.s.lifecycle.row("a").warm)
    pool = await rig.pool("a")
    assert pool["warm"] and pool["cli_pid"] == first["cli_pid"] and alive(pool["worker_pid"])
    assert pool["sdk_loaded"] is False, "the turn ran in the worker, not in the harness"
    assert pool["heavy_loaded"] == [], "a harness imports none of a turn's libraries, nor the CLI's"
    second = await rig.turn("a", "echo two")
    assert second["ok"] and second["warm"] is True and second["cli_pid"] == first["cli_pid"]

    assert (await rig.post("a", "/api/model", {"model": "haiku-warm"}))["ok"]
    third = await rig.turn("a", "echo three")
    assert third["ok"] and third["warm"] is True and third["cli_pid"] == first["cli_pid"]
    assert third["model"] == "haiku-warm"
    assert any(r["model"] == "haiku-warm" and "echo three" in r["last_user_text"] for r in rig.model.requests)

    compacted = await rig.post("a", "/api/compact", {})
    assert compacted["ok"] and compacted["result"] == "compacted", compacted
    after = await rig.turn("a", "echo four")
    assert after["ok"], after

    assert (await rig.post("a", "/api/new-session", {}))["ok"]
    fresh = await rig.turn("a", "echo five")
    assert fresh["ok"] and fresh["warm"] is False and fresh["cli_pid"] != first["cli_pid"]
    assert not alive(first["cli_pid"]), "the old CLI was ended, not left behind"


async def test_a_warm_cli_killed_mid_turn_redelivers_the_message_and_the_next_turn_is_cold(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    first = await rig.turn("a", "echo warm-up")
    await rig.hive("send", "a", "slow 30")
    await rig.until("the model to be asked about 'slow 30'",
                    lambda: any("slow 30" in r["last_user_text"] for r in rig.model.requests))  # fmt: skip
    rig.model.hurry()  # the redelivery need not be slow
    os.kill(first["cli_pid"], signal.SIGKILL)

    def again() -> list[dict[str, Any]]:
        return [e for e in rig.events("a", "turn_start") if e["body"] == "slow 30" and e["redelivered"]]

    await rig.until("'slow 30' to come back redelivered", again)
    ends = await rig.until("the redelivered turn to end",
                           lambda: [e for e in rig.events("a", "turn_end") if e["ok"] and e["note"].find("slow") >= 0])  # fmt: skip
    assert ends[-1]["warm"] is False and ends[-1]["cli_pid"] != first["cli_pid"]


async def test_cancel_on_a_warm_cli_ends_it_and_the_message_comes_back(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    first = await rig.turn("a", "echo warm-up")
    await rig.hive("send", "a", "slow 30")
    await rig.until("a's turn on 'slow 30'",
                    lambda: any("slow 30" in r["last_user_text"] for r in rig.model.requests))  # fmt: skip
    rig.model.hurry()
    assert (await rig.post("a", "/api/cancel", {}))["ok"]
    cancelled = await rig.until(
        "the cancelled turn_end", lambda: [e for e in rig.events("a", "turn_end") if e["cancelled"]]
    )
    assert cancelled[0]["warm"] is True and cancelled[0]["cli_pid"] == first["cli_pid"]
    redone = await rig.until("the redelivered turn to end",
                             lambda: [e for e in rig.events("a", "turn_end") if e["ok"] and "slow" in e["note"]])  # fmt: skip
    assert redone[0]["warm"] is False, "a cancelled CLI is not reused"


async def test_an_idle_warm_cli_is_cooled_and_the_next_turn_starts_cold(idle_rig: Rig) -> None:
    rig = idle_rig
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    before = await rig.pool("a")
    assert before["worker_pid"] is None and before["sdk_loaded"] is False, "a waiting harness holds no SDK"
    first = await rig.turn("a", "echo one")
    [cooled] = await rig.until("a to cool when idle", lambda: rig.cooled("a"))
    assert cooled["pid"] == first["cli_pid"]
    await rig.until("a to report cold", lambda: not rig.s.lifecycle.row("a").warm)
    assert not alive(first["cli_pid"])
    after = await rig.pool("a")
    assert after["worker_pid"] is None and after["sdk_loaded"] is False and after["cooled"] == 1
    assert before["heavy_loaded"] == after["heavy_loaded"] == [], "nor pydantic or the config models"
    assert after["warm"] is False
    second = await rig.turn("a", "echo two")
    assert second["ok"] and second["warm"] is False


async def test_the_core_cools_the_longest_idle_agent_over_max_warm(pool_rig: Rig) -> None:
    rig = pool_rig
    await rig.hive("spawn", "a")
    await rig.hive("spawn", "b")
    await rig.until("a and b to be idle", lambda: rig.idle("a") and rig.idle("b"))
    await rig.turn("a", "echo a1")
    await rig.until("a to report warm", lambda: rig.s.lifecycle.row("a").warm)
    await rig.turn("b", "echo b1")
    await rig.until("the pool to cool a", lambda: rig.cooled("a"))
    await rig.until("only b to stay warm", lambda: not rig.s.lifecycle.row("a").warm and rig.s.lifecycle.row("b").warm)
    assert rig.cooled("b") == []
    # b's turn (a CLI to start) waited for a's CLI to go: the pool never held two
    a_cooled = next(e["ts"] for e in rig.s.read_agent_events("a") if e["payload"].get("pool") == "cooled")
    b_started = next(e["ts"] for e in rig.s.read_agent_events("b") if e["kind"] == "turn_start")
    assert b_started >= a_cooled

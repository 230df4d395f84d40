"""No turns spent on bookkeeping (issue 13 §1), with the REAL claude CLI against the offline model
in process cages: a kick after spawn and the manager's `spawned` notice start no turn; the kick
goes in front of the agent's next real message; the manager gets its held notices with its next
wake (a `container_crash` wakes it at once) or as one digest turn."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import HiveRig, diagnostics, make_config, message, require_sdk, start_daemon, stop_daemon
from hyperhive.harness.prompting import EARLIER_PREFIX
from hyperhive.names import MANAGER
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

    def held_notes(self, name: str) -> list[str]:
        return [e["text"] for e in self.events(name, "note") if "held for the next turn" in e["text"]]

    def prompts_with(self, text: str) -> list[str]:
        return [t for r in self.model.requests for t in r["user_texts"] if text in t]


def rig_fixture(**pool: Any) -> Callable[[Path, Path], AsyncIterator[Rig]]:
    async def make(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
        require_sdk()
        async with OfflineModelServer() as model:
            env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
            config = make_config(tmp_path, short_dir, agent_env=env, pool=PoolSettings(**pool), manager=True)
            daemon, task = await start_daemon(config)
            try:
                yield Rig(daemon, model)
            finally:
                await stop_daemon(daemon, task)

    return make


rig = pytest.fixture(rig_fixture(digest_seconds=3600.0, warm_on_start=False))
digest_rig = pytest.fixture(rig_fixture(digest_seconds=1.0, warm_on_start=False))


async def test_the_spawn_kick_runs_no_turn_and_goes_in_front_of_the_next_message(rig: Rig) -> None:
    await rig.until("the manager to be idle", lambda: rig.idle(MANAGER))
    await rig.hive("spawn", "a")
    await rig.until("a's kick to be held", lambda: rig.held_notes("a"))
    kick = next(m for m in (await rig.s.broker.recent("a", 10)) if m.sender == "system")
    assert (await message(rig.s, kick.id)).acked_at is not None, "a held notice is acknowledged"
    assert rig.events("a", "turn_start") == [], "the kick started no turn"
    assert rig.prompts_with("you were spawned") == [], "the model was not asked about the kick"

    await rig.hive("send", "a", "echo first")
    await rig.until("a's turn on 'echo first' to end", lambda: rig.events("a", "turn_end"))
    [start] = rig.events("a", "turn_start")
    assert start["body"] == "echo first" and start["earlier"] == 1
    folded = rig.prompts_with("echo first")
    assert folded and all(EARLIER_PREFIX + "kick: you were spawned" in t for t in folded)

    await rig.hive("send", "a", "echo second")
    await rig.until("a's second turn to end", lambda: len(rig.events("a", "turn_end")) == 2)
    assert rig.events("a", "turn_start")[1]["earlier"] == 0, "the kick is folded once"
    assert all(EARLIER_PREFIX not in t for t in rig.prompts_with("echo second"))


async def test_the_manager_holds_spawned_and_a_crash_wakes_it_with_them_in_front(rig: Rig) -> None:
    await rig.until("the manager to be idle", lambda: rig.idle(MANAGER) and rig.held_notes(MANAGER))
    await rig.hive("spawn", "a")
    await rig.until("the manager to hold 'spawned'", lambda: len(rig.held_notes(MANAGER)) >= 2)
    assert rig.events(MANAGER, "turn_start") == [], "neither its kick nor 'spawned' started a turn"

    rt = rig.s.lifecycle.agents["a"]
    assert rt.handle is not None
    os.killpg(os.getpgid(rt.handle.pid), signal.SIGKILL)
    start = await rig.until("the crash to wake the manager", lambda: rig.events(MANAGER, "turn_start"))
    assert '"container_crash"' in start[0]["body"] and start[0]["digest"] is False
    assert start[0]["earlier"] == 2, "its kick and 'spawned' came in front of the crash"
    [prompt] = await rig.until("the crash in the model's request", lambda: set(rig.prompts_with('"container_crash"')))
    assert EARLIER_PREFIX + 'system event: {"event": "spawned", "agent": "a"}' in prompt


async def test_the_manager_gets_its_held_notices_as_one_digest_turn(digest_rig: Rig) -> None:
    rig = digest_rig
    await rig.until("the manager to be idle", lambda: rig.idle(MANAGER))
    await rig.hive("spawn", "a")

    def digest_with_spawned() -> list[dict[str, Any]]:
        return [e for e in rig.events(MANAGER, "turn_start") if e["digest"] and '"spawned"' in e["body"]]

    [digest] = await rig.until("a digest turn naming 'spawned'", digest_with_spawned)
    assert digest["from"] == "system" and digest["body"].startswith("digest: ")
    await rig.until("the digest turn to end", lambda: rig.events(MANAGER, "turn_end"))
    assert all(e["digest"] for e in rig.events(MANAGER, "turn_start")), "every manager turn was a digest"
    assert rig.held_notes(MANAGER), "the notices were held first"

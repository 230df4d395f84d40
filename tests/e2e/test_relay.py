"""Issue 2's end-to-end proofs with the REAL claude CLI (bundled in claude-agent-sdk) against the
offline model (a labelled scripted stand-in), agents in process cages:

- the operator sends `a` "relay TOKEN to b"; a's model calls send(b, TOKEN); b's model sends
  "a said: TOKEN" to the operator; `hive inbox --json`, run as a user would, shows it;
- the harness is SIGKILLed in the middle of a turn; after `hive start a` the message is
  delivered again, marked redelivered (turn_start event, wake prompt banner, model request log).
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import HiveRig, diagnostics, make_config, message, require_sdk, start_daemon, stop_daemon, sync
from hyperhive.harness.prompting import REDELIVERED_BANNER
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

TURN_BOUND = 120.0  # a few real CLI round trips; generous for a loaded CI machine


@dataclass
class Rig(HiveRig):
    """`until` is woken by the core's live events (agent state, messages), with a bounded deadline;
    the harness's own events db has no core event, so it rechecks each 0.2 s."""

    model: OfflineModelServer

    UNTIL_BOUND = TURN_BOUND
    RECHECK = 0.2
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=20, requests=10, tail=10)

    def events(self, name: str, kind: str) -> list[dict[str, Any]]:
        return [e["payload"] for e in self.s.read_agent_events(name) if e["kind"] == kind]


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require_sdk()
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, agent_env=env))
        try:
            yield Rig(daemon, model)
        finally:
            await stop_daemon(daemon, task)


async def test_a_relays_the_operators_token_to_b_and_b_answers_the_operator(rig: Rig) -> None:
    """The real CLI calls the hyperhive tools: a → send(b, TOKEN); b → send(operator, "a said:
    TOKEN"); `hive inbox --json` shows it (issue 2 "How it is verified")."""
    await rig.hive("spawn", "a")
    await rig.hive("spawn", "b")
    await rig.until("a and b to be idle", lambda: rig.idle("a") and rig.idle("b"))
    token = f"TOKEN-{uuid.uuid4().hex[:12]}"
    await rig.hive("send", "a", f"relay {token} to b")
    await rig.until("b's answer in the operator's inbox",
                    lambda: any(m.sender == "b" for m in sync(rig.s.broker.recent("operator", 50))))  # fmt: skip
    inbox = json.loads((await rig.hive("inbox", "--json")).stdout)["messages"]
    from_b = [m for m in inbox if m["sender"] == "b"]
    assert [m["body"] for m in from_b] == [f"a said: {token}"]
    hop = [m for m in (await rig.s.broker.recent("b", 50)) if m.sender == "a"]
    assert [m.body for m in hop] == [token], "a's model sent the token to b through the broker"
    assert any("mcp__hyperhive__send" in r["tools"] for r in rig.model.requests), "the tool was offered to the model"


async def test_a_harness_killed_mid_turn_gets_the_message_again_marked_redelivered(rig: Rig) -> None:
    """SIGKILL the harness (its cage's process group) during a turn; after `hive start a` the same
    message comes back with redelivered=true and the banner in the wake prompt (architecture §4, §5; issue 2)."""
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    sent = json.loads((await rig.hive("send", "a", "slow 20", "--json")).stdout)

    def turn_started() -> dict[str, Any] | None:
        return next((e for e in rig.events("a", "turn_start") if e.get("id") == sent["id"]), None)

    first = await rig.until("a's turn on 'slow 20' to start", turn_started)
    assert first["redelivered"] is False
    await rig.until("the model to be asked about 'slow 20'",
                    lambda: any("slow 20" in t for r in rig.model.requests for t in r["user_texts"]))  # fmt: skip
    rt = rig.s.lifecycle.agents["a"]
    assert rt.handle is not None
    os.killpg(os.getpgid(rt.handle.pid), signal.SIGKILL)
    await rig.until("the core to see a's harness die", lambda: rig.s.lifecycle.agents["a"].state == "crashed")
    assert (await message(rig.s, sent["id"])).acked_at is None, "a killed turn is not acknowledged"

    await rig.hive("start", "a")

    def redelivered() -> list[dict[str, Any]]:
        return [e for e in rig.events("a", "turn_start") if e.get("id") == sent["id"] and e.get("redelivered")]

    again = await rig.until("'slow 20' to be delivered again", redelivered)
    assert again[0]["body"] == "slow 20" and again[0]["from"] == "operator"
    await rig.until(
        "the redelivery banner in the model's request log",
        lambda: any(REDELIVERED_BANNER in t and "slow 20" in t for r in rig.model.requests for t in r["user_texts"]),
    )
    assert (await message(rig.s, sent["id"])).redelivered is True

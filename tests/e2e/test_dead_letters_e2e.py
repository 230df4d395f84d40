"""Dead letters with a real harness (issue 9): the REAL claude CLI against the offline model,
whose "always fail" script answers every request with an API error. The harness backs off and
requeues after each failed turn; the core parks the message after its third delivery instead
of retrying it forever, tells the operator, and the agent goes on with its next message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import HiveRig, diagnostics, make_config, message, require_sdk, start_daemon, stop_daemon, sync
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

BOUND = 150.0  # three failed turns with the harness's 2 + 4 + 8 s back-off, on a loaded machine


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer

    UNTIL_BOUND = BOUND
    RECHECK = 0.5
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=10, requests=10, tail=15)


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


async def test_a_turn_that_always_fails_is_parked_after_three_deliveries(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    sent = json.loads((await rig.hive("send", "a", "always fail", "--json")).stdout)

    def parked() -> list[dict[str, Any]]:
        return [m.model_dump() for m in sync(rig.s.broker.dead_letters()) if m.id == sent["id"]]

    [row] = await rig.until("the failing message to be parked", parked)
    assert row["attempts"] == 3 and row["acked_at"] is None
    asked = [r for r in rig.model.requests if any("always fail" in t for t in r["user_texts"])]
    assert len(asked) >= 3, f"each of the three turns asked the model: {len(asked)}"
    # the event follows the park's commit: wait for it rather than race it
    [event] = await rig.until("the operator's dead_letter event", lambda: rig.system_events("operator", "dead_letter"))
    assert (event["id"], event["recipient"], event["attempts"]) == (sent["id"], "a", 3)
    listed = json.loads((await rig.hive("dead-letters", "--json")).stdout)["dead_letters"]
    assert [m["id"] for m in listed] == [sent["id"]]

    after = json.loads((await rig.hive("send", "a", "echo still here", "--json")).stdout)
    await rig.until("a to handle its next message", lambda: sync(message(rig.s, after["id"])).acked_at)
    assert [m.id for m in (await rig.s.broker.dead_letters())] == [sent["id"]], "parked, not retried again"

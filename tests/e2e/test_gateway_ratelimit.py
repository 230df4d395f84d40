"""Issue 12's rate-limit proof with the REAL claude CLI: the upstream (the offline model's
`ratelimit N` script) answers 429 with `retry-after: 3`; the gateway waits it out for the turn
(the CLI never sees the 429, so it burns no retries), the agent's row shows `rate_limited` with
the deadline, and the turn completes after the wait."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hivetest import HiveRig, diagnostics, make_config, message, require_sdk, start_daemon, stop_daemon, sync
from hyperhive.config import ApiSettings
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

KEY = "sk-upstream-ratelimit"


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer

    UNTIL_BOUND = 90.0
    RECHECK = 0.2
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=10, requests=10, tail=15)


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require_sdk()
    async with OfflineModelServer(api_key=KEY) as model:
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, api=ApiSettings(base=model.url, key=KEY)))
        try:
            yield Rig(daemon, model)
        finally:
            await stop_daemon(daemon, task)


async def test_a_429_with_retry_after_shows_rate_limited_and_the_turn_completes_after_the_wait(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    sent = json.loads((await rig.hive("send", "a", "ratelimit 3", "--json")).stdout)
    limited = await rig.until("a's row to show rate_limited",
                              lambda: r if (r := rig.s.lifecycle.row("a")).harness_state == "rate_limited" else None)  # fmt: skip
    assert limited.blocked_until is not None and limited.state_since is not None
    assert limited.blocked_until > limited.state_since - 1
    listed = json.loads((await rig.hive("list", "--json")).stdout)["agents"]
    row = next(a for a in listed if a["name"] == "a")
    assert "blocked_until" in row, "hive list --json carries the rate limit's deadline"
    await rig.until("the turn on 'ratelimit 3' to complete", lambda: sync(message(rig.s, sent["id"])).acked_at)
    await rig.until("a to be idle again", lambda: rig.idle("a"))
    after = rig.s.lifecycle.row("a")
    assert after.harness_state == "idle" and after.blocked_until is None
    assert rig.model.app.state.offline.rate_limit.refused == 1, "one 429, waited out by the gateway"
    answered = [r for r in rig.model.requests if any("ratelimit 3" in t for t in r["user_texts"])]
    assert answered, "the same call went through after the wait"

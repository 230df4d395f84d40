"""Issue 12's telemetry with the REAL claude CLI through the gateway: after a few turns, `hive
stats a --json`, `GET /api/stats` and `GET /metrics` (bearer token or session) show every series
of the seed: turns/min, tool calls per turn, turn duration p50/p95, the claude exit
distribution, inbox depth, messages by recipient class, the approval queue, per-tool counts, time
since the last turn, the notes size, and tokens and cost per turn from the gateway."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import HiveRig, diagnostics, make_config, require_sdk, start_daemon, stop_daemon, sync
from hyperhive.config import ApiSettings
from hyperhive.offline_model.server import OfflineModelServer

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import dash_of, logged_in  # noqa: E402

pytestmark = pytest.mark.e2e

KEY = "sk-upstream-telemetry"


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer

    UNTIL_BOUND = 120.0
    RECHECK = 0.3
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=10, requests=10, tail=15)

    def stats(self, name: str) -> dict[str, Any]:
        assert self.s.telemetry is not None
        return sync(self.s.telemetry.series(name, 0))


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require_sdk()
    async with OfflineModelServer(api_key=KEY) as model:
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, api=ApiSettings(base=model.url, key=KEY)))
        try:
            yield Rig(daemon, model)
        finally:
            await stop_daemon(daemon, task)


async def test_every_series_after_a_few_turns(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.hive("spawn", "b")
    await rig.until("a and b to be idle", lambda: rig.idle("a") and rig.idle("b"))
    (rig.daemon.paths.agent("a").state / "notes.md").write_text("remember: the relay works\n")
    await rig.hive("send", "a", "relay T1 to b")
    await rig.until("b's answer", lambda: any(m.sender == "b" for m in sync(rig.s.broker.recent("operator", 20))))
    await rig.hive("send", "a", "overflow")
    await rig.until("a's compact-retry turn", lambda: rig.stats("a")["exits"]["compact_retry"] >= 1)
    await rig.until("a idle", lambda: rig.idle("a"))

    st = json.loads((await rig.hive("stats", "a", "--since", "1h", "--json")).stdout)["stats"]
    assert st["turns"] >= 2 and st["turns_per_min"]
    assert any(v >= 1 for _, v in st["tool_calls_per_turn"])
    assert st["turn_ms_p50"] is not None and st["turn_ms_p95"] >= st["turn_ms_p50"]
    assert st["exits"]["ok"] >= 1 and st["exits"]["compact_retry"] >= 1 and "failure" in st["exits"]
    assert st["inbox_depth"] and st["inbox_depth_current"] == 0 and st["inbox_depth_max"] >= 0
    assert st["sent"]["peer"] >= 1, "a sent to b"
    assert st["received"]["operator"] >= 2 and st["received"]["system"] == 0, (
        "the operator's messages; the kick ran no turn (issue 13)"
    )
    assert set(st["sent_per_turn"]) == {"peer", "operator", "manager", "system"}
    assert "approval_queue" in st and st["approval_queue_current"] == 0
    assert st["tools"]["mcp__hyperhive__send"] >= 1
    assert st["seconds_since_last_turn"] is not None
    assert st["notes_bytes"][-1][1] == len("remember: the relay works\n")
    assert all(v > 0 for _, v in st["tokens_per_turn"]) and sum(v for _, v in st["cost_per_turn"]) > 0
    b = rig.stats("b")
    assert b["sent"]["operator"] >= 1 and b["received"]["peer"] >= 1
    human = (await rig.hive("stats", "a")).stdout
    assert "turn duration: p50" in human and "mcp__hyperhive__send" in human
    bad = await rig.hive("stats", "a", "--since", "yesterday", ok=False)
    assert bad.returncode != 0 and "--since wants a duration" in bad.stderr

    dash = dash_of(rig.daemon)
    client = await logged_in(dash)
    try:
        api = (await client.get("/api/stats", params={"agent": "a", "since": 0})).json()["stats"]
        assert api["turns"] == rig.stats("a")["turns"] and api["tools"] == rig.stats("a")["tools"]
        assert (await client.get("/api/stats", params={"agent": "../x"})).status_code == 400
        hive = (await client.get("/api/stats")).json()["stats"]
        assert hive["agent"] is None and hive["turns"] >= st["turns"]
        with_session = await client.get("/metrics")
        assert with_session.status_code == 200
    finally:
        await client.aclose()
    token_file = rig.daemon.paths.state_dir / "metrics.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = token_file.read_text().strip()
    async with httpx.AsyncClient(base_url=dash.base, timeout=10) as anon:
        assert (await anon.get("/metrics")).status_code == 401
        assert (await anon.get("/metrics", headers={"authorization": "Bearer nope"})).status_code == 401
        scraped = await anon.get("/metrics", headers={"authorization": f"Bearer {token}"})
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = scraped.text
    for needle in ('hyperhive_turns_total{agent="a"}', "# TYPE hyperhive_turn_duration_seconds summary",
                   'hyperhive_claude_exits_total{agent="a",outcome="compact_retry"} 1',
                   'hyperhive_messages_sent_total{agent="a",class="peer"}', 'hyperhive_inbox_depth{agent="a"} 0',
                   'hyperhive_tool_uses_total{agent="a",tool="mcp__hyperhive__send"}',
                   "hyperhive_approval_queue_length 0", 'hyperhive_model_cost_usd_total{agent="a",model=',
                   'hyperhive_seconds_since_last_turn{agent="a"}', 'hyperhive_notes_bytes{agent="a"} 26'):  # fmt: skip
        assert needle in text, needle

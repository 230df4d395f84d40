"""Issue 11's relay across nodes with the REAL claude CLI against the offline model: two daemons
(`--node n1` / `--node n2`, own state and run dirs, one throw-away PostgreSQL). The operator
places b on n2 from n1's CLI; a on n1 is told to relay a token to b; a's model calls send(b, …),
b on n2 is woken and its model answers the operator; `hive inbox` on either node shows it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hivetest import HiveRig, diagnostics, make_config, pg_test_url, require_sdk, start_daemon, stop_daemon, sync
from hyperhive.core.daemon import Daemon
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

TURN_BOUND = 120.0


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer

    UNTIL_BOUND = TURN_BOUND
    RECHECK = 0.5
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=20, requests=10, tail=10)


@pytest.fixture
async def nodes(tmp_path: Path, short_dir: Path) -> AsyncIterator[tuple[Rig, Rig]]:
    require_sdk()
    url = pg_test_url()
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        started: list[tuple[Daemon, object]] = []
        try:
            for name in ("n1", "n2"):
                run = short_dir / name
                run.mkdir()
                run.chmod(0o711)
                config = make_config(tmp_path / name, run, agent_env=env, store_url=url, node=name)
                started.append(await start_daemon(config))
            yield Rig(started[0][0], model), Rig(started[1][0], model)
        finally:
            for daemon, task in reversed(started):
                await stop_daemon(daemon, task)  # type: ignore[arg-type]


async def test_a_on_n1_relays_the_token_to_b_on_n2_and_b_answers_the_operator(nodes: tuple[Rig, Rig]) -> None:
    n1, n2 = nodes
    await n1.hive("spawn", "a")
    placed = await n1.hive("spawn", "b", "--node", "n2")  # from n1's CLI: n2 runs it
    assert "b: running on node n2" in placed.stdout
    assert "b" in n2.s.lifecycle.agents and "b" not in n1.s.lifecycle.agents
    await n1.until("a idle", lambda: n1.idle("a"))
    await n2.until("b idle", lambda: n2.idle("b"))
    token = f"TOKEN-{uuid.uuid4().hex[:12]}"
    await n1.hive("send", "a", f"relay {token} to b")
    await n2.until("b's answer in the operator's inbox",
                   lambda: any(m.sender == "b" for m in sync(n2.s.broker.recent("operator", 50))))  # fmt: skip
    for rig in (n1, n2):
        inbox = json.loads((await rig.hive("inbox", "--json")).stdout)["messages"]
        assert [m["body"] for m in inbox if m["sender"] == "b"] == [f"a said: {token}"]
    hop = [m for m in (await n2.s.broker.recent("b", 50)) if m.sender == "a"]
    assert [m.body for m in hop] == [token], "a's model sent the token to b through the store"
    listed = {a["name"]: a for a in json.loads((await n1.hive("list", "--json")).stdout)["agents"]}
    assert listed["b"]["node"] == "n2" and listed["a"].get("node") is None

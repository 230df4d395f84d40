"""A newcomer's first words reach the manager's tools (issue 15): the REAL claude CLI runs the
manager against the offline model in a process cage; the operator types what a newcomer tries
first with the `hive` CLI, and the requests wait in `hive pending`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import HiveRig, diagnostics, make_config, start_daemon, stop_daemon, sync
from hyperhive.names import MANAGER
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e


@dataclass
class Rig(HiveRig):
    UNTIL_BOUND = 120.0  # one manager turn through the real CLI
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, approvals=10, messages=20, tail=15)

    def pending(self, kind: str, agent: str) -> dict[str, Any] | None:
        return next((a for a in sync(self.s.approvals.pending()) if a["kind"] == kind and a["agent"] == agent), None)


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, manager=True, agent_env=env))
        try:
            yield Rig(daemon)
        finally:
            await stop_daemon(daemon, task)


async def test_please_create_an_agent_called_zed_and_init_reach_the_operators_queue(rig: Rig) -> None:
    await rig.until("the manager's harness to report idle", lambda: rig.idle(MANAGER))
    await rig.hive("send", MANAGER, "Please create an agent called Zed to write the docs.")
    spawn = await rig.until("the manager's request_spawn", lambda: rig.pending("spawn", "zed"))
    assert spawn["requested_by"] == MANAGER and spawn["description"] == "write the docs"

    await rig.until("the manager to be idle again", lambda: rig.idle(MANAGER))
    await rig.hive("send", MANAGER, "init scout")
    init = await rig.until("the manager's request_init_config", lambda: rig.pending("init_config", "scout"))
    listed = json.loads((await rig.hive("pending", "--json")).stdout)["approvals"]
    assert [(a["kind"], a["agent"]) for a in listed] == [("spawn", "zed"), ("init_config", "scout")]
    assert init["requested_by"] == MANAGER

    await rig.until("the manager to be idle again", lambda: rig.idle(MANAGER))
    await rig.hive("send", MANAGER, "help")
    reply = await rig.until("the manager's list of commands", lambda: next(
        (m for m in sync(rig.s.broker.recent("operator", 20)) if m.sender == MANAGER and "I understand" in m.body), None))  # fmt: skip
    assert "create an agent called NAME" in reply.body

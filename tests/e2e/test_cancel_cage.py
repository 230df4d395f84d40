"""Cancel inside a real bubblewrap cage (issue 14 §3): the harness finds its claude CLI in the
cage's own pid namespace (/proc) by its cli_path, SIGTERM stops it, and the message comes back,
marked redelivered. The real claude CLI on the offline model."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import make_config, require, require_sdk, require_tool, start_daemon, stop_daemon
from hyperhive.harness.prompting import REDELIVERED_BANNER
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = [pytest.mark.e2e, pytest.mark.cage]

AGENT = "alice"
BOUND = 90.0


@pytest.fixture
async def caged(tmp_path: Path, short_dir: Path) -> AsyncIterator[tuple[Any, asyncio.Queue[dict[str, Any]]]]:
    require_tool("bwrap")
    from hyperhive.cages.bwrap import BwrapCage

    ok, why = BwrapCage.available()
    require(ok, f"bwrap does not work here: {why}")
    require(os.geteuid() == 0, "the per-agent host uid needs a root daemon")
    require_sdk()
    arrived: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with OfflineModelServer(on_request=arrived.put_nowait) as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, cage="bwrap", agent_env=env))
        try:
            yield daemon, arrived
        finally:
            await stop_daemon(daemon, task)


async def next_request(arrived: asyncio.Queue[dict[str, Any]], suffix: str) -> dict[str, Any]:
    async with asyncio.timeout(BOUND):
        while not (request := await arrived.get())["last_user_text"].endswith(suffix):
            pass
    return request


async def test_cancel_in_a_bwrap_cage_stops_the_cli_and_the_message_comes_back(caged: Any) -> None:
    daemon, arrived = caged
    await daemon.services.lifecycle.spawn(AGENT)
    await daemon.services.lifecycle.wait_healthy(AGENT, 60)
    transport = httpx.AsyncHTTPTransport(uds=str(daemon.paths.agent(AGENT).web_socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=BOUND) as web:
        await daemon.services.broker.send("operator", AGENT, "slow 30")
        first = await next_request(arrived, "slow 30")
        assert REDELIVERED_BANNER not in first["last_user_text"]
        resp = await web.post("/api/cancel")
        assert resp.status_code == 200, resp.text
        assert "stopped on SIGTERM" in resp.json()["result"], resp.json()
        again = await next_request(arrived, "slow 30")  # not acknowledged: delivered again
        assert REDELIVERED_BANNER in again["last_user_text"]
        resp = await web.post("/api/cancel")
        assert resp.status_code == 200, resp.text

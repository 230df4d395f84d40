"""`hive events NAME --follow` streams an agent's trail live (issue 3): history first, then new
events as they happen, ids strictly increasing (no gap, no duplicate across the hand-over)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from hivetest import make_config, start_daemon, stop_daemon
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e
BOUND = 60


async def _next_event(stream: asyncio.StreamReader) -> dict[str, object]:
    line = await stream.readline()
    assert line, "hive events --follow ended"
    event: dict[str, object] = json.loads(line)
    return event


async def test_follow_prints_the_history_then_new_events_live_in_order(tmp_path: Path, short_dir: Path) -> None:
    """After the existing trail, a message sent while following shows up as turn_start …
    turn_end, streamed (not re-read), with every id exactly once and in order."""
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, agent_env=env))
        proc = None
        try:
            services = daemon.services
            assert services is not None
            await services.lifecycle.spawn("a")
            await services.broker.send("operator", "a", "echo history")  # a first turn: there is history
            async with asyncio.timeout(BOUND):
                while not services.lifecycle.agents["a"].last_turn_ms:
                    await asyncio.sleep(0.05)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hyperhive", "events", "a", "--follow", "--json", "--run-dir", str(short_dir),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            assert proc.stdout is not None
            seen: list[dict[str, object]] = []
            async with asyncio.timeout(BOUND):
                while not any(e["kind"] == "turn_end" for e in seen):  # the first turn, from history
                    seen.append(await _next_event(proc.stdout))
                await services.broker.send("operator", "a", "echo streamed-token")
                while True:
                    event = await _next_event(proc.stdout)
                    seen.append(event)
                    if event["kind"] == "turn_end" and "streamed-token" in json.dumps(event):
                        break
            ids = [int(e["id"]) for e in seen]  # type: ignore[call-overload]
            assert ids == sorted(set(ids)), "an id came twice or out of order"
            starts = [e for e in seen if e["kind"] == "turn_start"]
            assert any(e["payload"]["body"] == "echo streamed-token" for e in starts)  # type: ignore[index]
        finally:
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()
            await stop_daemon(daemon, task)

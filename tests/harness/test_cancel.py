"""Cancel through a public path (issue 14 §3): the claude CLI is the harness's child started from
the `cli_path` the runner passes explicitly, found in the process tree; SIGTERM stops the real
CLI, and a CLI that ignores SIGTERM is killed with everything below it after the grace. Real
claude CLI on the offline model."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hyperhive.harness.cancel import descendants, find_claude_cli
from hyperhive.harness.prompting import format_wake_prompt
from hyperhive.harness.turn import TurnResult, TurnRunner, TurnSpec
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

BOUND = 60


class Rig:
    def __init__(self, tmp_path: Path, model: OfflineModelServer, arrived: asyncio.Queue[dict[str, Any]]) -> None:
        home = tmp_path / "home"
        home.mkdir()
        self.tmp = tmp_path
        self.model = model
        self.arrived = arrived
        self.env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "dummy", "HOME": str(home),
                    "CLAUDE_CONFIG_DIR": str(home / ".claude")}  # fmt: skip
        self.runner = TurnRunner(interrupt_grace=3.0)
        self.messages: list[dict[str, Any]] = []

    def spec(self, body: str, **kw: Any) -> TurnSpec:
        return TurnSpec(prompt=format_wake_prompt(1, "operator", body), cwd=self.tmp, env=self.env, **kw)

    def start(self, spec: TurnSpec) -> asyncio.Task[TurnResult]:
        return asyncio.create_task(self.runner.run(spec, self.messages.append, lambda _line: None))

    async def wait_request(self, suffix: str) -> None:
        while not (await self.arrived.get())["last_user_text"].endswith(suffix):
            pass


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with OfflineModelServer(on_request=queue.put_nowait) as model:
        yield Rig(tmp_path, model, queue)


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def test_the_cli_is_found_in_the_process_tree_and_sigterm_stops_it(rig: Rig) -> None:
    """The tracked pid is the bundled CLI the SDK started, a direct child of this process; cancel
    sends SIGTERM and the real CLI stops on it, inside the grace: no SIGKILL needed."""
    turn = rig.start(rig.spec("slow 30"))
    async with asyncio.timeout(BOUND):
        await rig.wait_request("slow 30")
        child = rig.runner._child  # noqa: SLF001 - reading our own runner's turn to check its pid
        assert child is not None
        pid = child.pid()
        assert pid is not None and alive(pid)
        assert Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0] == str(os.getpid())
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() == find_claude_cli()
        assert await rig.runner.cancel()
        result = await turn
    assert result.cancelled and not result.ok
    assert rig.runner.last_stop is not None and rig.runner.last_stop.how == "terminated"
    assert rig.runner.last_stop.pid == pid and not alive(pid)


async def test_a_cli_that_ignores_sigterm_is_killed_with_its_descendants_after_the_grace(rig: Rig) -> None:
    """A stand-in `cli_path` that ignores SIGTERM and runs the real CLI as its child (so the CLI
    keeps the output pipe open): cancel escalates to SIGKILL for it and the CLI below it, and the
    turn ends cancelled."""
    stubborn = rig.tmp / "stubborn-claude"
    stubborn.write_text(f"#!/bin/sh\ntrap '' TERM\n'{find_claude_cli()}' \"$@\"\n", encoding="utf-8")
    stubborn.chmod(0o700)
    turn = rig.start(rig.spec("slow 30", cli_path=stubborn))
    async with asyncio.timeout(BOUND):
        await rig.wait_request("slow 30")
        child = rig.runner._child  # noqa: SLF001
        assert child is not None and (pid := child.pid()) is not None
        below = descendants(pid)
        assert below, "the real CLI runs below the stubborn wrapper"
        assert await rig.runner.cancel()
        result = await turn
    assert result.cancelled and not result.ok
    stop = rig.runner.last_stop
    assert stop is not None and stop.how == "killed" and stop.pid == pid
    assert "ignored SIGTERM" in stop.describe(rig.runner.interrupt_grace)
    assert not alive(pid) and not any(alive(p) for p in below)
    assert not rig.runner.busy

"""Shared test helpers (importable as `hivetest`): a real daemon on tmp dirs, short socket
paths, and `require()` — a missing prerequisite fails under CI=true instead of skipping."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from hyperhive.config import HiveConfig
from hyperhive.core.daemon import Daemon

IN_CI = os.environ.get("CI") == "true"
CLAUDE_ENV_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


def require(ok: bool, why: str) -> None:
    """Skip locally when a prerequisite is missing; under CI=true that is a failure."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"missing prerequisite under CI: {why}")
    pytest.skip(why)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path



def make_config(tmp_path: Path, run_dir: Path, **overrides: object) -> HiveConfig:
    state = tmp_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    # the agents' uid must be able to traverse to their state dirs
    for parent in [tmp_path, *tmp_path.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    base: dict[str, object] = {"state_dir": state, "run_dir": run_dir, "port": 0, "cage": "process",
                               "manager": False, "stop_grace": 5.0}  # fmt: skip
    base.update(overrides)
    return HiveConfig(**base)  # type: ignore[arg-type]


async def start_daemon(config: HiveConfig) -> tuple[Daemon, asyncio.Task[None]]:
    ready = asyncio.Event()

    async def on_ready(_daemon: Daemon) -> None:
        ready.set()

    daemon = Daemon(config, on_ready=on_ready)
    task = asyncio.create_task(daemon.serve(), name="test-daemon")
    async with asyncio.timeout(60):
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            waiter.cancel()
            task.result()  # raises the startup error
            raise AssertionError("daemon exited during startup")
    return daemon, task


async def stop_daemon(daemon: Daemon, task: asyncio.Task[None]) -> None:
    daemon.should_exit.set()
    async with asyncio.timeout(60):
        await task

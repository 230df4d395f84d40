"""What the node tests share: a daemon of one node that a test starts, stops and restarts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivetest import start_daemon, stop_daemon, until
from hyperhive.config import HiveConfig
from hyperhive.core.daemon import Daemon

BOUND = 30.0


@dataclass
class Node:
    config: HiveConfig
    daemon: Daemon | None = None
    task: Any = None

    async def start(self) -> Daemon:
        self.daemon, self.task = await start_daemon(self.config)
        return self.daemon

    async def stop(self) -> None:
        if self.daemon is not None:
            await stop_daemon(self.daemon, self.task)
            self.daemon = None

    @property
    def d(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon

    def rows(self) -> dict[str, Any]:
        assert self.d.services is not None
        return {r.name: r for r in self.d.services.lifecycle.rows()}

    async def until(self, what: str, check: Any, bound: float = BOUND) -> Any:
        assert self.d.services is not None
        return await until(self.d.services.hub, what, check, bound, explain=lambda: f"rows: {self.rows()}",
                           recheck=0.5)  # fmt: skip


def run_dir(short_dir: Path, name: str) -> Path:
    run = short_dir / name
    run.mkdir(exist_ok=True)
    run.chmod(0o711)
    return run

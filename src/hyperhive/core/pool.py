"""The warm pool (issue 13): which agents keep their claude CLI between turns.

Each harness keeps its CLI after a turn and cools it itself after `warm_idle_seconds`; it
reports `warm` with its state. The core sees every agent, so it enforces the host's budget
(`[pool] max_warm` / `budget_mib`): when more are warm than allowed, the longest-idle warm
agents are told to cool through their harness's `/_core/cool` (web.sock; the dashboard proxy
never forwards `/_core/`). An agent in a turn, or waiting for the scheduler's slot for one, is
never cooled; it is counted and cooled later. Agents the scheduler admitted to start a CLI count
as warm, so room is made as a CLI starts, not after it is up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from hyperhive.poolsettings import PoolSettings
from hyperhive.udshttp import uds_transport

if TYPE_CHECKING:
    from hyperhive.core.lifecycle import AgentRuntime

__all__ = ["COOL_PATH", "Pool"]

log = logging.getLogger(__name__)
COOL_PATH = "/_core/cool"
POST_TIMEOUT = 10.0


class Pool:
    def __init__(
        self,
        settings: PoolSettings,
        agents: Mapping[str, AgentRuntime],
        web_socket: Callable[[str], Path],
        on_cooled: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_cooled = on_cooled or (lambda: None)
        self._agents = agents
        self._web_socket = web_socket
        self._cooling: dict[str, asyncio.Task[None]] = {}
        self.cooled = 0  # cool requests the core sent (the budget was exceeded)

    def cage_env(self) -> dict[str, str]:
        """What a harness needs to know: whether to keep its CLI, for how long, whether to start
        it when idle (warm on start, through the scheduler's pre-warms), the digest."""
        s = self.settings
        return {
            "HYPERHIVE_WARM": "0" if s.warm_limit() == 0 else "1",
            "HYPERHIVE_WARM_ON_START": "1" if s.warm_on_start else "0",
            "HYPERHIVE_WARM_IDLE_SECONDS": str(s.warm_idle_seconds),
            "HYPERHIVE_DIGEST_SECONDS": str(s.digest_seconds),
        }

    def warm(self) -> list[AgentRuntime]:
        return [rt for rt in self._agents.values() if rt.warm and rt.state == "running"]

    def warm_room(self, starting: frozenset[str]) -> int | None:
        """How many more agents may be warm now, with `starting` (pre-warms admitted) counted as
        warm (None: unbounded); the scheduler's pre-warm gate."""
        limit = self.settings.warm_limit()
        return None if limit is None else limit - len(self._counted(starting))

    def _counted(self, starting: frozenset[str]) -> set[str]:
        """The agents the limit counts: the warm ones and those starting a CLI."""
        return {rt.name for rt in self.warm()} | starting

    def rebalance(
        self, *, busy: frozenset[str] = frozenset(), starting: frozenset[str] = frozenset(), wanted: int = 0
    ) -> list[str]:
        """Cool the longest-idle warm agents above the limit; returns the names asked to cool.
        `starting` (cold turns and pre-warms admitted: CLIs starting) count as warm, and so do
        `wanted` more (cold turns waiting for room), so the pool makes room before a new CLI
        starts; `busy` (a turn running or waiting for its slot) are never chosen."""
        limit = self.settings.warm_limit()
        counted = len(self._counted(starting)) + wanted
        if limit is None or counted <= limit:
            return []
        excess = counted - limit - len(self._cooling)
        coolable = sorted(self._coolable(busy), key=lambda rt: rt.harness_since or 0.0)  # longest idle first
        chosen = [rt.name for rt in coolable[: max(0, excess)]]
        for name in chosen:
            task = asyncio.ensure_future(self._cool(name))
            task.set_name(f"cool-{name}")
            self._cooling[name] = task
            task.add_done_callback(self._done)
        return chosen

    def _coolable(self, busy: frozenset[str]) -> Iterator[AgentRuntime]:
        """Idle warm agents not being cooled and not busy."""
        return (rt for rt in self.warm() if rt.harness_state == "idle" and rt.name not in self._cooling
                and rt.name not in busy)  # fmt: skip

    def room_for_cold(self, agent: str, starting: frozenset[str], busy: Callable[[], frozenset[str]]) -> bool:
        """May `agent` start a CLI now? Yes while the pool has room (counting `starting`), and
        also when it is full but cannot make any (every warm agent `busy()`): a turn is never held
        for a room that will not come; the budget is then exceeded until a turn ends."""
        limit = self.settings.warm_limit()
        if limit is None or len(self._counted(starting) - {agent}) < limit:
            return True
        return not self._cooling and next(self._coolable(busy()), None) is None

    def _done(self, task: asyncio.Task[None]) -> None:
        for name, t in list(self._cooling.items()):
            if t is task:
                del self._cooling[name]
        self._on_cooled()

    async def _cool(self, name: str) -> None:
        self.cooled += 1
        transport = uds_transport(self._web_socket(name))
        body: dict[str, Any] = {"why": f"the pool is over its limit ({self.settings.warm_limit()} warm)"}
        try:
            async with httpx.AsyncClient(transport=transport, timeout=POST_TIMEOUT) as client:
                response = await client.post("http://agent" + COOL_PATH, json=body)
            if response.status_code != 200:
                log.info("%s did not cool: %s", name, response.text[:200])
        except (httpx.HTTPError, OSError) as exc:
            log.info("could not ask %s to cool: %s", name, exc)

    async def close(self) -> None:
        tasks = list(self._cooling.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

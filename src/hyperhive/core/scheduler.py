"""The burst scheduler (issue 13 §4): how many turns run at once on this host.

Before a turn the harness asks to be admitted (`turn_admit`, a long-poll) and after it says so
(`turn_release`). A cold turn (a claude CLI to start) costs one slot, a warm one (the CLI is
already up) a quarter; the slots are `[pool] max_turns`, by default two per core bounded by free
memory (poolsettings.default_turn_limit). Waiting turns are admitted oldest message first; a
warm turn may use capacity the oldest (cold) one cannot use yet, never capacity it could. An
agent holds at most one admission: a new admit, a release or the harness's exit frees it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["COLD_COST", "WARM_COST", "Scheduler"]

COLD_COST = 1.0
WARM_COST = 0.25


@dataclass(order=True)
class _Waiter:
    sent_at: float
    seq: int
    agent: str = field(compare=False)
    cost: float = field(compare=False)
    since: float = field(compare=False)
    admitted: asyncio.Future[None] = field(compare=False)


class Scheduler:
    def __init__(self, capacity: float, *, on_change: Callable[[str], None] | None = None) -> None:
        self.capacity = max(COLD_COST, float(capacity))
        self._on_change = on_change or (lambda _name: None)
        self._running: dict[str, float] = {}  # agent -> cost
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()
        self.admitted_total = 0

    @property
    def in_use(self) -> float:
        return sum(self._running.values())

    def queued(self) -> dict[str, float]:
        """Agents waiting for a slot, with when they started to wait."""
        return {w.agent: w.since for w in self._waiting}

    def running(self) -> list[str]:
        return sorted(self._running)

    async def admit(self, agent: str, *, sent_at: float, warm: bool, wait: float) -> bool:
        """Wait up to `wait` seconds for a slot; True once admitted (the caller must release)."""
        self.release(agent)
        cost = WARM_COST if warm else COLD_COST
        waiter = _Waiter(sent_at, next(self._seq), agent, cost, time.time(), asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        self._waiting.sort()
        self._dispatch()
        if not waiter.admitted.done():
            self._on_change(agent)
        try:
            async with asyncio.timeout(wait):
                await asyncio.shield(waiter.admitted)
        except TimeoutError:
            return self._give_up(waiter)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling() == 0 and waiter.admitted.cancelled():
                return False  # the agent was released meanwhile (its harness is gone)
            if self._give_up(waiter):
                self.release(agent)  # admitted in the same instant the caller went away
            raise
        return True

    def _give_up(self, waiter: _Waiter) -> bool:
        """Stop waiting; True if it was admitted meanwhile (the slot is held)."""
        if waiter.admitted.done() and not waiter.admitted.cancelled():
            return True
        if waiter in self._waiting:
            self._waiting.remove(waiter)
            self._on_change(waiter.agent)
        return False

    def release(self, agent: str) -> None:
        """The agent's turn ended (or its harness is gone): free its slot, admit the next."""
        if self._running.pop(agent, None) is not None:
            self._dispatch()
            self._on_change(agent)
        for w in [w for w in self._waiting if w.agent == agent]:
            self._waiting.remove(w)
            if not w.admitted.done():
                w.admitted.cancel()

    def _dispatch(self) -> None:
        free = self.capacity - self.in_use
        head_blocked = False
        for waiter in list(self._waiting):
            fits = waiter.cost <= free + 1e-9
            if fits and (not head_blocked or waiter.cost < COLD_COST):
                self._waiting.remove(waiter)
                self._running[waiter.agent] = waiter.cost
                free -= waiter.cost
                self.admitted_total += 1
                if not waiter.admitted.done():
                    waiter.admitted.set_result(None)
                self._on_change(waiter.agent)
            elif not fits and waiter.cost >= COLD_COST:
                head_blocked = True  # later cold turns wait behind the oldest one
            if free < WARM_COST - 1e-9:
                break

"""The burst scheduler (issue 13 §4): how many turns run at once on this host.

Before a turn the harness asks to be admitted (`turn_admit`, a long-poll) and after it says so
(`turn_release`). A cold turn (a claude CLI to start) costs one slot, a warm one (the CLI is
already up) a quarter; the slots are `[pool] max_turns`, by default two per core bounded by free
memory (poolsettings.default_turn_limit). Waiting turns are admitted oldest message first; a
warm turn may use capacity the oldest (cold) one cannot use yet, never capacity it could. An
agent holds at most one admission: a new admit, a release or the harness's exit frees it.

A cold turn also waits while `cold_room(agent, starting)` says no: the warm pool is full and can
make room (an idle warm agent to cool, or one cooling), so a new CLI starts once an old one has
gone and the pool's memory budget holds (the core calls `dispatch()` when a cool ends).

A pre-warm (an idle harness starting its claude CLI before any message: "warm on start") costs
a cold slot but has the lowest priority: it is admitted after every waiting turn, whatever their
ages, and only while the warm pool has room (`warm_room(starting)`: how many more agents may be
warm, counting the pre-warms admitted and not yet released, `starting`). A pre-warm that finds no room is
refused (`PrewarmRefused`): the agent stays cold. Pre-warms also wait while `hold_prewarms()`
(the core: a cage is starting; it calls `dispatch()` when that ends). Pre-warms are not queued
turns (`queued()`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["COLD_COST", "WARM_COST", "PrewarmRefused", "Scheduler"]

COLD_COST = 1.0
WARM_COST = 0.25


class PrewarmRefused(Exception):
    """No pre-warm now: the warm pool is full (the reason says how full)."""


@dataclass(order=True)
class _Waiter:
    prewarm: bool  # after every real turn, whatever its age
    sent_at: float
    seq: int
    agent: str = field(compare=False)
    cost: float = field(compare=False)
    since: float = field(compare=False)
    admitted: asyncio.Future[bool] = field(compare=False)  # False: a pre-warm refused


class Scheduler:
    def __init__(
        self,
        capacity: float,
        *,
        on_change: Callable[[str], None] | None = None,
        warm_room: Callable[[frozenset[str]], int | None] | None = None,
        hold_prewarms: Callable[[], bool] | None = None,
        cold_room: Callable[[str, frozenset[str]], bool] | None = None,
    ) -> None:
        self.capacity = max(COLD_COST, float(capacity))
        self._on_change = on_change or (lambda _name: None)
        self._warm_room = warm_room or (lambda _starting: None)
        self._hold_prewarms = hold_prewarms or (lambda: False)
        self._cold_room = cold_room or (lambda _agent, _starting: True)
        self._running: dict[str, float] = {}  # agent -> cost
        self._prewarming: set[str] = set()  # of _running: admitted pre-warms
        self._waiting: list[_Waiter] = []
        self._seq = itertools.count()
        self.admitted_total = 0

    @property
    def in_use(self) -> float:
        return sum(self._running.values())

    def queued(self) -> dict[str, float]:
        """Agents waiting for a slot for a turn, with when they started to wait."""
        return {w.agent: w.since for w in self._waiting if not w.prewarm}

    def prewarms(self) -> tuple[list[str], list[str]]:
        """Pre-warms (waiting, admitted)."""
        return sorted(w.agent for w in self._waiting if w.prewarm), sorted(self._prewarming)

    def _prewarm_refusal(self) -> str | None:
        room = self._warm_room(frozenset(self._prewarming))
        if room is None or room > 0:
            return None
        return f"the warm pool is full (with {len(self._prewarming)} pre-warm(s) starting)"

    def running(self) -> list[str]:
        return sorted(self._running)

    def busy(self) -> frozenset[str]:
        """Agents about to run a turn or running one (the pool must not cool these: a warm agent
        waiting for its slot was admitted at a warm turn's price)."""
        return frozenset(self._running) | {w.agent for w in self._waiting if not w.prewarm}

    def cold_wanted(self) -> int:
        """Cold turns that have a slot's capacity but wait for room in the warm pool (as many as
        the free capacity admits): the pool cools that many idle agents for them."""
        cold = sum(1 for w in self._waiting if not w.prewarm and w.cost >= COLD_COST)
        return min(cold, int((self.capacity - self.in_use + 1e-9) // COLD_COST))

    def starting_cold(self) -> frozenset[str]:
        """Agents admitted at a cold turn's cost (pre-warms included): each is starting a CLI
        that will be warm after, so the pool counts them as warm already."""
        return frozenset(a for a, cost in self._running.items() if cost >= COLD_COST)

    async def admit(self, agent: str, *, sent_at: float, warm: bool, wait: float, prewarm: bool = False) -> bool:
        """Wait up to `wait` seconds for a slot; True once admitted (the caller must release).
        A pre-warm with no room in the warm pool raises PrewarmRefused."""
        if prewarm and (why := self._prewarm_refusal()) is not None:
            raise PrewarmRefused(why)
        freed = self._free(agent)  # its new wait goes in first: a slot it held is never a pre-warm's
        cost = WARM_COST if warm and not prewarm else COLD_COST
        waiter = _Waiter(
            prewarm, sent_at, next(self._seq), agent, cost, time.time(), asyncio.get_running_loop().create_future()
        )
        self._waiting.append(waiter)
        self._waiting.sort()
        self._dispatch()
        if (freed or not waiter.admitted.done()) and not prewarm:
            self._on_change(agent)
        try:
            async with asyncio.timeout(wait):
                if not await asyncio.shield(waiter.admitted):
                    raise PrewarmRefused(self._prewarm_refusal() or "the warm pool is full")
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
            return waiter.admitted.result()
        if waiter in self._waiting:
            self._waiting.remove(waiter)
            if not waiter.prewarm:
                self._on_change(waiter.agent)
        return False

    def release(self, agent: str, *, prewarm: bool = False) -> None:
        """The agent's turn ended (or its harness is gone): free its slot, admit the next.
        `prewarm`: only if what it holds is a pre-warm's slot (a turn admitted since keeps its own)."""
        if prewarm and agent not in self._prewarming:
            return
        if self._free(agent):
            self._dispatch()
            self._on_change(agent)

    def _free(self, agent: str) -> bool:
        """Drop the agent's slot and waits, admitting nothing; True if it held a slot."""
        self._prewarming.discard(agent)
        for w in [w for w in self._waiting if w.agent == agent]:
            self._waiting.remove(w)
            if not w.admitted.done():
                w.admitted.cancel()
        return self._running.pop(agent, None) is not None

    def dispatch(self) -> None:
        """Admit what may go now (after `hold_prewarms()` turned false)."""
        self._dispatch()

    def _dispatch(self) -> None:
        free = self.capacity - self.in_use
        head_blocked = False
        for waiter in list(self._waiting):
            if waiter.prewarm and self._hold_prewarms():
                break  # pre-warms sort last: nothing after this one goes either
            fits = waiter.cost <= free + 1e-9
            if fits and waiter.cost >= COLD_COST and not waiter.prewarm:
                fits = self._cold_room(waiter.agent, self.starting_cold())  # the pool makes room first
            if fits and (not head_blocked or waiter.cost < COLD_COST):
                self._waiting.remove(waiter)
                if waiter.prewarm and self._prewarm_refusal() is not None:
                    if not waiter.admitted.done():
                        waiter.admitted.set_result(False)
                    continue
                self._running[waiter.agent] = waiter.cost
                if waiter.prewarm:
                    self._prewarming.add(waiter.agent)
                free -= waiter.cost
                self.admitted_total += 1
                if not waiter.admitted.done():
                    waiter.admitted.set_result(True)
                self._on_change(waiter.agent)
            elif not fits and waiter.cost >= COLD_COST:
                head_blocked = True  # later cold turns wait behind the oldest one
            if free < WARM_COST - 1e-9:
                break

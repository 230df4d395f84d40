"""Watching running agents: an exit the lifecycle did not ask for is a crash (told to the
operator or the manager, then the restart policy of agent.toml), the harness's state reports,
and the wait for a fresh cage to report in. A mixin of `Lifecycle`: it owns the policy, the
lifecycle owns starting and stopping."""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from hyperhive.cages.base import CageHandle
from hyperhive.core.registry import AgentRuntime
from hyperhive.core.restarts import RESET_AFTER, Downtime, backoff, policy_of, wants_restart
from hyperhive.errors import CageError, HiveError
from hyperhive.names import MANAGER, OPERATOR

if TYPE_CHECKING:
    from hyperhive.core.broker import Broker
    from hyperhive.core.hub import Hub
    from hyperhive.core.registry import Registry
    from hyperhive.core.scheduler import Scheduler

__all__ = ["Supervision"]

log = logging.getLogger(__name__)


class Supervision(ABC):
    registry: Registry
    hub: Hub
    broker: Broker
    scheduler: Scheduler
    deploying: set[str]
    _closing: bool

    @abstractmethod
    def _publish(self, name: str) -> None: ...

    @abstractmethod
    def rebalance_pool(self) -> None: ...

    @abstractmethod
    async def _start_locked(self, rt: AgentRuntime, reason: str) -> None: ...

    async def _watch(self, rt: AgentRuntime, handle: CageHandle) -> None:
        info = await handle.wait()
        self.scheduler.release(rt.name)  # a harness that exits holds no turn slot
        rt.warm = False
        rt.ready.set()
        if rt.handle is not handle:
            return
        rt.last_exit = info
        if rt.expected_exit or self._closing:
            return
        rt.handle = None
        if time.time() - rt.started_at > RESET_AFTER:
            rt.crash_restarts = 0
        policy = policy_of(rt.name, self.registry.config_or_none(rt.name))
        rt.down = Downtime.of(info, policy)
        rt.set_state("crashed")
        rt.harness_state = None
        self._publish(rt.name)
        log.warning("agent %s exited unexpectedly: code=%s signal=%s", rt.name, info.exit_code, info.signal)
        if rt.name in self.deploying:
            return  # the approval that is deploying reports this exit as its failure
        event = {
            "agent": rt.name,
            "exit_code": info.exit_code,
            "signal": info.signal,
            "last_lines": info.last_lines[-15:],
        }
        self.hub.publish("container_crash", event)
        await self.broker.system_event(OPERATOR if rt.name == MANAGER else MANAGER, "container_crash", **event)
        if wants_restart(rt.down.policy, info):
            await self._apply_restart_policy(rt, rt.down)

    async def _apply_restart_policy(self, rt: AgentRuntime, down: Downtime) -> None:
        """agent.toml `restart`: after back-off, start it again, at most `restart_limit` times in a
        row (a run longer than RESET_AFTER starts the count again); else it stays crashed."""
        cfg = self.registry.config_or_none(rt.name)
        limit, base = (cfg.restart_limit, cfg.restart_backoff) if cfg is not None else (3, 2.0)
        if rt.crash_restarts >= limit:
            down.gave_up = True
            self._publish(rt.name)
            log.warning("agent %s: gave up after %d restarts in a row", rt.name, rt.crash_restarts)
            return
        rt.crash_restarts += 1
        delay = backoff(base, rt.crash_restarts)
        down.next_restart_at = time.time() + delay
        self._publish(rt.name)
        await asyncio.sleep(delay)  # the restart back-off; cancelled when the daemon closes
        async with rt.lock:
            if rt.state != "crashed" or self._closing or rt.down is not down:
                return  # the operator acted meanwhile (start, stop, destroy)
            down.next_restart_at = None
            try:
                await self._start_locked(rt, f"restarted after a crash ({rt.crash_restarts} of {limit})")
            except HiveError as exc:
                down.reason = f"{down.reason}; the restart failed: {exc.message}"[:500]
                down.gave_up = True
                self._publish(rt.name)

    async def wait_healthy(self, name: str, timeout: float = 60.0) -> None:
        """Wait until the agent's harness reports in; raise CageError if its cage exits first
        or it stays silent for `timeout` seconds."""
        rt = self.registry.get(name)
        try:
            await asyncio.wait_for(rt.ready.wait(), timeout)
        except TimeoutError:
            raise CageError(f"{name} did not report in within {timeout:.0f} s") from None
        if rt.state != "running" or rt.handle is None:
            info = rt.last_exit
            tail = " | ".join(info.last_lines[-5:]) if info else ""
            code = f"exit code {info.exit_code}, signal {info.signal}" if info else "no exit status"
            raise CageError(f"{name} exited while starting ({code}): {tail}"[:2000])

    async def report_state(
        self, name: str, state: str, model: str | None, last_turn_ms: int | None, *, warm: bool | None = None
    ) -> None:
        rt = self.registry.get(name)
        previous = rt.harness_state
        if warm is not None:
            rt.warm = warm
        if state != previous:
            rt.harness_state = state
            rt.harness_since = time.time()
        if state != "starting":
            rt.ready.set()
        if model:
            rt.model = model
        if last_turn_ms is not None:
            rt.last_turn_ms = last_turn_ms
        self._publish(name)
        self.rebalance_pool()
        self.scheduler.dispatch()  # a cold turn may have waited for this agent's CLI to go
        if state == "needs_login" and previous != "needs_login":
            await self.broker.system_event(MANAGER if name != MANAGER else OPERATOR, "needs_login", agent=name)
        elif previous == "needs_login" and state != "needs_login":
            await self.broker.system_event(MANAGER if name != MANAGER else OPERATOR, "logged_in", agent=name)

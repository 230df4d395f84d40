"""The harness's share of issue 13, mixed into `Harness` (harness/loop.py): notices held for
the next turn (harness/bookkeeping.py), the manager's digest, the core's turn admission
(core/scheduler.py) and the warm claude CLI's cooling (idle, or the core's pool)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from hyperhive.client import HiveClient
from hyperhive.errors import ErrorCode, HiveError
from hyperhive.harness.bookkeeping import HeldEvents
from hyperhive.wirecaps import MAX_RECV_WAIT

# What a turn or the `hive` CLI needs and a waiting harness must not carry (issue 13): the SDK
# and MCP (the worker's), pydantic with the typed requests and the config models (the CLI's and
# the core's). click is not listed: uvicorn imports it.
HEAVY_MODULES = ("claude_agent_sdk", "mcp", "pydantic", "hyperhive.protocol", "hyperhive.agentconfig")

if TYPE_CHECKING:
    from hyperhive.harness.bus import Bus
    from hyperhive.harness.turn import TurnRunner
    from hyperhive.harness.turnspec import TurnSpec
    from hyperhive.harness.workerclient import WorkerRunner

__all__ = ["DEFAULT_WARM_IDLE", "PoolingMixin", "Refused"]

DEFAULT_WARM_IDLE = 300.0


class Refused(HiveError):
    """An operator control that cannot run now (the reason says why)."""

    code = ErrorCode.CONFLICT


class PoolingMixin(ABC):
    manager: bool
    client: HiveClient
    poll: HiveClient
    bus: Bus
    runner: TurnRunner | WorkerRunner
    held: HeldEvents
    digest_seconds: float
    warm_idle: float
    keep_warm: bool
    warm_on_start: bool
    _turn_asked: bool  # a turn (or the operator) has asked for the CLI: no pre-warm now
    _cooler: asyncio.Task[None] | None
    _stopping: asyncio.Event
    _turn_lock: asyncio.Lock

    def _warn(self, warning: str | None) -> None:
        if warning:
            self.bus.emit("note", {"text": "warning: " + warning, "level": "warning"})

    @abstractmethod
    async def _ack(self) -> None: ...

    @abstractmethod
    def _background(self, coro: Any, name: str) -> None: ...

    @abstractmethod
    async def _report(self) -> None: ...

    @abstractmethod
    def _spec(self, prompt: str) -> TurnSpec: ...

    async def _admit(self, message: dict[str, Any]) -> None:
        """Wait for a slot of the core's burst scheduler (oldest message first; a warm CLI costs
        less). A core that cannot say (an error) does not hold the turn back."""
        self._turn_asked = True
        sent_at = float(message.get("sent_at") or time.time())
        while not self._stopping.is_set():
            warm = self.runner.warm
            try:
                reply = await self.poll.call("turn_admit", sent_at=sent_at, warm=warm,
                                             wait_seconds=MAX_RECV_WAIT)  # fmt: skip
            except HiveError as exc:
                self.bus.emit(
                    "note", {"text": f"turn admission unavailable ({exc.message}): running", "level": "warning"}
                )
                return
            if reply.get("admitted") and not (warm and not self.runner.warm):
                return
            # else the CLI was cooled (or died) while it waited: a cold start costs a cold slot,
            # asked for again with the same message age (a new admit frees the slot it holds)

    async def _prewarm(self) -> None:
        """Warm on start: an idle harness starts its worker and connects the claude CLI its first
        turn would use (same options: the turn reuses it), with no query, so the first message
        finds a warm CLI. The core admits it after every waiting turn and refuses it when the warm
        pool is full (the agent stays cold); a CLI that cannot start leaves the agent cold."""
        if not (self.keep_warm and self.warm_on_start) or self.runner.warm or self._turn_asked:
            return
        admission = HiveClient(self.client.socket_path)  # its own connection: the wait is a long-poll
        admitted = False
        try:
            while not (admitted or self._stopping.is_set() or self._turn_asked):
                try:
                    reply = await admission.call("turn_admit", sent_at=time.time(), prewarm=True,
                                                 wait_seconds=MAX_RECV_WAIT)  # fmt: skip
                except (HiveError, OSError, TimeoutError) as exc:
                    self.bus.emit(
                        "note", {"text": f"no pre-warm: turn admission unavailable ({exc})", "level": "warning"}
                    )
                    return
                if reply.get("refused"):
                    self.bus.emit("note", {"text": f"no pre-warm, cold until the first message: {reply['refused']}",
                                           "pool": "prewarm_refused"})  # fmt: skip
                    return
                admitted = bool(reply.get("admitted"))
            if not admitted or self._turn_asked or self._turn_lock.locked() or self.runner.busy or self.runner.warm:
                return
            pid, why = await self.runner.prewarm(self._spec(""))
            if pid is None:
                self.bus.emit("note", {"text": f"pre-warm failed, cold until the first message: {why}",
                                       "level": "warning", "pool": "prewarm_failed"})  # fmt: skip
                return
            self.bus.emit("note", {"text": f"pre-warmed the claude CLI (pid {pid}) for the first message",
                                   "pool": "prewarmed", "pid": pid})  # fmt: skip
            await self._report()  # counted warm by the core before the pre-warm's slot is freed
            if not self._turn_asked:  # else the turn's end starts the idle timer
                self._start_cooler()
        finally:
            if admitted:
                with contextlib.suppress(HiveError, OSError, TimeoutError):
                    await admission.call("turn_release", prewarm=True)
            await admission.close()

    async def _release(self) -> None:
        with contextlib.suppress(HiveError, OSError, asyncio.TimeoutError):
            await self.client.call("turn_release")

    async def _hold(self, message: dict[str, Any], event: str) -> None:
        """A notice that needs no decision: persisted, acknowledged, folded into the next turn."""
        self._warn(self.held.add(message, event))
        await self._ack()
        self.bus.emit("note", {"text": f"system notice #{message['id']} ({event}) held for the next turn"})

    def _recv_wait(self) -> float:
        """The long-poll's bound: shorter when the manager's digest falls due sooner."""
        first = self.held.first_at()
        if not self.manager or first is None:
            return MAX_RECV_WAIT
        return max(0.0, min(float(MAX_RECV_WAIT), first + self.digest_seconds - time.time()))

    def _digest(self) -> dict[str, Any]:
        last = self.held.items[-1]
        return {"id": last.id, "sender": "system", "body": self.held.digest_body(), "redelivered": False, "digest": True,
                "sent_at": self.held.first_at()}  # fmt: skip

    def _start_cooler(self) -> None:
        self._stop_cooler()
        if self.runner.warm:
            self._cooler = asyncio.ensure_future(self._cool_when_idle())
            self._cooler.set_name("cool-when-idle")

    def _stop_cooler(self) -> None:
        if self._cooler is not None and not self._cooler.done():
            self._cooler.cancel()
        self._cooler = None

    async def _cool_when_idle(self) -> None:
        await asyncio.sleep(self.warm_idle)
        if not self._turn_lock.locked():
            await self.cool(f"idle for {self.warm_idle:g} s")

    def pool_state(self) -> dict[str, Any]:
        """Warm or cold, the turn worker's pid, and which of a turn's heavy libraries this
        process holds (none should be: only the worker imports them)."""
        worker = getattr(self.runner, "worker_pid", None)
        return {
            "warm": self.runner.warm,
            "cli_pid": self.runner.warm_pid(),
            "worker_pid": worker() if worker is not None else None,
            "sdk_loaded": "claude_agent_sdk" in sys.modules,
            "heavy_loaded": sorted(m for m in HEAVY_MODULES if m in sys.modules),
            "cooled": self.runner.cooled,
        }

    async def cool(self, why: str) -> str:
        """End the kept claude CLI (idle, or the core's pool needs the room); the session stays
        and the next turn starts cold. Refused while a turn runs."""
        if self._turn_lock.locked() or self.runner.busy:
            raise Refused("a turn is running: the CLI is cooled after it")
        pid = self.runner.warm_pid()
        if not await self.runner.cool(why):
            self._background(self._report(), "report-cold")  # the core may think it warm (a CLI that died)
            return "nothing to cool: no claude CLI is kept"
        self.bus.emit("note", {"text": f"cooled the claude CLI (pid {pid}): {why}", "pool": "cooled", "pid": pid})
        self._background(self._report(), "report-cooled")
        return "cooled"

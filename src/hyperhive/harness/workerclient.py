"""The harness's side of the turn worker (harness/worker.py): the runner the loop uses, with the
same surface as `TurnRunner` (run, compact, cancel, cool, busy, warm), but every turn runs in a
child process that holds the SDK, MCP and the claude CLI. The worker starts when a turn needs
it and exits when the agent cools (or after a turn that keeps no CLI), so a waiting agent's
harness never imports the SDK (issue 13 §3).

A worker that dies in a turn fails the turn (no ack: the message comes back, redelivered); the
next turn starts a new one, cold.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from hyperhive.harness.cancel import StopOutcome
from hyperhive.harness.turnspec import (
    MessageCallback,
    NoteCallback,
    TurnResult,
    TurnSpec,
    result_from_wire,
    spec_to_wire,
)

__all__ = ["WorkerRunner"]

log = logging.getLogger(__name__)
LINE_LIMIT = 16 * 1024 * 1024
START_BOUND = 60.0


class WorkerGone(Exception):
    pass


class WorkerRunner:
    remote = True

    def __init__(self, *, interrupt_grace: float = 5.0) -> None:
        self.interrupt_grace = interrupt_grace
        self.nap: Callable[[float], Awaitable[str]] | None = None
        self.last_stop: StopOutcome | None = None
        self.cooled = 0
        self.started = 0  # workers started (each one a cold start)
        self._lock = asyncio.Lock()
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._on_message: MessageCallback | None = None
        self._on_note: NoteCallback | None = None
        self._busy = False
        self._warm_pid: int | None = None

    # ---- the runner's surface ------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def warm(self) -> bool:
        return self._warm_pid is not None and self._proc is not None

    def warm_pid(self) -> int | None:
        return self._warm_pid if self.warm else None

    def worker_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def run(self, spec: TurnSpec, on_message: MessageCallback, on_note: NoteCallback) -> TurnResult:
        async with self._lock:
            self._busy = True
            self._on_message, self._on_note = on_message, on_note
            try:
                try:
                    await self._ensure()
                    reply = await self._request({"op": "run", "spec": spec_to_wire(spec)}, "result")
                except WorkerGone as exc:
                    self._warm_pid = None
                    await self._end()
                    return TurnResult(ok=False, note=f"the turn worker exited: {exc}")
                result = result_from_wire(reply.get("result") or {})
                self._warm_pid = result.cli_pid if reply.get("warm_after") else None
                if self._warm_pid is None:
                    await self._end()  # nothing kept: give the memory back now
                return result
            finally:
                self._busy = False
                self._on_message = self._on_note = None

    async def prewarm(self, spec: TurnSpec) -> tuple[int | None, str]:
        """Start the worker and connect the CLI `spec`'s turn would use, with no query (warm on
        start). (pid, "") once kept; (None, why) otherwise, and the worker is ended."""
        async with self._lock:
            if self.warm:
                return None, "a claude CLI is already kept"
            try:
                await self._ensure()
                reply = await self._request({"op": "prewarm", "spec": spec_to_wire(spec)}, "prewarmed")
            except (WorkerGone, TimeoutError) as exc:
                reply = {"pid": None, "note": f"the turn worker exited: {exc}"}
            pid = reply.get("pid")
            self._warm_pid = int(pid) if pid else None
            if self._warm_pid is None:
                await self._end()
                return None, str(reply.get("note") or "the claude CLI did not start")
            return self._warm_pid, ""

    async def compact(
        self, spec: TurnSpec, session_id: str, on_message: MessageCallback, on_note: NoteCallback
    ) -> TurnResult:
        return await self.run(
            dataclasses.replace(spec, prompt="/compact", resume_session=session_id), on_message, on_note
        )

    async def cancel(self) -> bool:
        if not self._busy or self._proc is None:
            return False
        try:
            reply = await self._request({"op": "cancel"}, "cancelled")
        except WorkerGone:
            self.last_stop = StopOutcome("gone")
            return True
        self.last_stop = StopOutcome(reply.get("how") or "unknown", reply.get("pid"))
        return bool(reply.get("stopped"))

    async def cool(self, why: str = "") -> bool:
        """Cool the kept CLI and end the worker (waits for a turn in flight). False if none."""
        async with self._lock:
            if self._proc is None:
                return False
            was = self.warm
            with contextlib.suppress(WorkerGone, TimeoutError):
                async with asyncio.timeout(START_BOUND):
                    await self._request({"op": "cool", "why": why}, "cooled")
            self._warm_pid = None
            await self._end()
            if was:
                self.cooled += 1
            return was

    # ---- the worker process --------------------------------------------------------------

    async def _ensure(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            return
        await self._end()
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hyperhive.harness.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=dict(os.environ), limit=LINE_LIMIT,
        )  # fmt: skip
        self.started += 1
        ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters["ready"] = ready
        self._reader = asyncio.create_task(self._read(self._proc), name="worker-reader")
        async with asyncio.timeout(START_BOUND):
            await ready

    async def _request(self, request: dict[str, Any], answer: str) -> dict[str, Any]:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise WorkerGone("not running")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[answer] = future
        try:
            proc.stdin.write((json.dumps(request) + "\n").encode())
            await proc.stdin.drain()
        except (ConnectionError, OSError) as exc:
            raise WorkerGone(str(exc)) from None
        return await future

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                event = json.loads(line)
                kind = event.get("ev")
                if kind == "message" and self._on_message is not None:
                    self._on_message(event["data"])
                elif kind == "note" and self._on_note is not None:
                    self._on_note(str(event["text"]))
                elif kind == "call":
                    asyncio.ensure_future(self._answer(proc, event))
                elif (future := self._waiters.pop(str(kind), None)) is not None and not future.done():
                    future.set_result(event)
        except (ValueError, ConnectionError) as exc:
            log.warning("the turn worker's stream broke: %s", exc)
        code = await proc.wait()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(WorkerGone(f"exit status {code}"))
        self._waiters.clear()

    async def _answer(self, proc: asyncio.subprocess.Process, event: dict[str, Any]) -> None:
        text = "nap is not available"
        if event.get("name") == "nap" and self.nap is not None:
            text = await self.nap(float(event.get("seconds", 0)))
        if proc.stdin is not None and proc.returncode is None:
            with contextlib.suppress(ConnectionError, OSError):
                proc.stdin.write((json.dumps({"op": "reply", "cid": event.get("cid"), "text": text}) + "\n").encode())
                await proc.stdin.drain()

    async def _end(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        try:
            async with asyncio.timeout(30):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
            self._reader = None

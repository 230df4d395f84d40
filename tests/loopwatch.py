"""Fail a test in which one callback holds the event loop too long (issue 10: nothing blocks it).

asyncio's own detector (`loop.set_debug(True)` + `slow_callback_duration`) only logs the handle
after the fact, and debug mode changes the loop's behaviour. This watch times every handle the
loop runs (a wrapper around `asyncio.events.Handle._run`, the one place `_run_once` calls) and a
watchdog thread grabs the loop thread's stack the moment a callback passes the threshold, so the
failure names the line that blocked, not just the task. Only the daemon is judged: a stall
whose stack holds no frame of the `hyperhive` package is the test's own code and is let pass.
So are stalls that are the machine's load, not the daemon's code: a module's first import (a
one-time cost of starting), asyncio waiting for a thread it starts (an executor worker, a child
watcher) to be scheduled, a write on a non-blocking socket (the loop thread waited for the GIL
or a CPU, not the peer), and a stall the watchdog thread could not sample (it was starved too).

`start_daemon`/`stop_daemon` in `hivetest` switch it on for every daemon a test starts; the
threshold is `SLOW_CALLBACK_MS` (100 ms), or `HYPERHIVE_TEST_SLOW_CALLBACK_MS`. Time the loop's
thread spent waiting for a CPU (another process ran: `/proc/<tid>/schedstat`) is not counted,
so a loaded machine does not fail a test; time blocked in a syscall (git, a lock, a disk) is.
Nor is a garbage collection that ran in the loop's thread (`gc.callbacks`): its length is set by
the whole test process's heap (pytest, Playwright, every earlier test's leftovers), not by the
callback it interrupted; CI saw two such pauses, 171 and 251 ms, each sampled in a weakref
callback the collection fired.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

__all__ = ["LoopWatch", "SLOW_CALLBACK_MS"]

SLOW_CALLBACK_MS = float(os.environ.get("HYPERHIVE_TEST_SLOW_CALLBACK_MS", "100"))

_OURS = f"{os.sep}src{os.sep}hyperhive{os.sep}"  # a frame of the package under test
_original_run = asyncio.events.Handle._run
_active: list[LoopWatch] = []
_patch_lock = threading.Lock()


@dataclass
class Slow:
    handle: str
    seconds: float
    stack: str


@dataclass(eq=False)
class LoopWatch:
    """Watches the loop running in the thread that creates it, until `stop()`."""

    threshold: float = SLOW_CALLBACK_MS / 1000
    thread_id: int = field(default_factory=threading.get_ident)
    slow: list[Slow] = field(default_factory=list)
    # (serial, started, run-queue wait, time in gc) when the running handle began
    _current: tuple[int, float, int, float] | None = None
    _serial: int = 0
    _stacks: dict[int, tuple[bool, str]] = field(default_factory=dict)  # serial -> (ours, stack)
    _stop: threading.Event = field(default_factory=threading.Event)
    _depth: int = 0
    _thread: threading.Thread | None = None
    _schedstat: int | None = None  # fd of the loop thread's /proc schedstat
    _gc_started: float | None = None  # a collection in the loop thread began here
    _gc_seconds: float = 0.0  # all collections the loop thread has run so far

    def start(self) -> None:
        try:
            self._schedstat = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
        except OSError:
            self._schedstat = None  # not Linux: wall time alone
        with _patch_lock:
            if not _active:
                asyncio.events.Handle._run = _timed_run  # type: ignore[method-assign,assignment]
            _active.append(self)
        gc.callbacks.append(self._on_gc)
        self._thread = threading.Thread(target=self._watchdog, name="loopwatch", daemon=True)
        self._thread.start()

    def stop(self) -> list[Slow]:
        self._stop.set()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None
        if self._thread is not None:
            self._thread.join(5)  # gone before a leak test counts threads
        with _patch_lock:
            if self in _active:
                _active.remove(self)
            if not _active:
                asyncio.events.Handle._run = _original_run  # type: ignore[method-assign]
        return self.slow

    def report(self) -> str:
        parts = [f"{len(self.slow)} callback(s) held the event loop longer than {self.threshold * 1000:.0f} ms:"]
        for s in self.slow[:5]:
            parts.append(f"--- {s.seconds * 1000:.0f} ms in {s.handle[:300]}\n{s.stack}")
        return "\n".join(parts)

    def _waited(self) -> int:
        """Nanoseconds the loop thread has spent runnable but not running (another process had
        the CPU): on a loaded machine that is not time a callback held the loop."""
        if self._schedstat is None:
            return 0
        return int(os.pread(self._schedstat, 128, 0).split()[1])

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self.thread_id:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self._gc_seconds += time.perf_counter() - self._gc_started
            self._gc_started = None

    def _begin(self) -> int:
        self._serial += 1
        self._current = (self._serial, time.perf_counter(), self._waited(), self._gc_seconds)
        return self._serial

    def _end(self, serial: int, handle: asyncio.Handle) -> None:
        current = self._current
        self._current = None
        if current is None or current[0] != serial:
            return
        took = time.perf_counter() - current[1]
        stack = self._stacks.pop(serial, None)
        if took < self.threshold:
            return
        took -= (self._waited() - current[2]) / 1e9  # preempted is not held
        took -= self._gc_seconds - current[3]  # nor is collecting the process's garbage
        if took < self.threshold:
            return
        if stack is None:
            # the watchdog never ran while the loop thread held on: it was starved of a CPU (a
            # loop blocked in a syscall releases the GIL and is sampled at once), so not judged
            return
        if not stack[0]:
            return  # the test's own code blocked (e.g. building an httpx client), not the daemon
        self.slow.append(Slow(repr(handle), took, stack[1]))

    def _watchdog(self) -> None:
        tick = min(self.threshold / 4, 0.02)
        while not self._stop.wait(tick):
            current = self._current
            if current is None or current[0] in self._stacks:
                continue
            if time.perf_counter() - current[1] < self.threshold:
                continue
            frame = sys._current_frames().get(self.thread_id)
            summary = traceback.extract_stack(frame) if frame is not None else traceback.StackSummary()
            # A module's first import (the daemon imports the dashboard lazily at startup) is a
            # one-time cost of starting, not a stall a client can cause again: not judged.
            importing = any(f.name == "_find_and_load" for f in summary)
            # Starting a thread (the default executor's worker, asyncio's child watcher for a new
            # subprocess) waits for the OS to schedule it: on a loaded machine that is CPU
            # contention once removed, and asyncio's own doing.
            spawning = any(f.name == "start" and f.filename.endswith("threading.py") for f in summary)
            # A transport's write on a non-blocking socket never waits for the peer; caught there,
            # the loop thread was waiting for the GIL or a CPU (seen at 145 and 323 ms under load).
            writing = bool(summary) and summary[-1].name == "write" and "selector_events" in summary[-1].filename
            excused = importing or spawning or writing
            ours = not excused and any(_OURS in f.filename for f in summary)
            self._stacks[current[0]] = (ours, "".join(summary.format()[-16:]))


def _timed_run(handle: asyncio.Handle) -> None:
    # the newest watch of this thread: one a failed test never stopped must not hide a later one
    watch = next((w for w in reversed(_active) if w.thread_id == threading.get_ident()), None)
    if watch is None or watch._depth:
        _original_run(handle)
        return
    watch._depth += 1
    serial = watch._begin()
    try:
        _original_run(handle)
    finally:
        watch._depth -= 1
        watch._end(serial, handle)

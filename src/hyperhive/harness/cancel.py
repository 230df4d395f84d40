"""Knowing and stopping the claude CLI of the turn in flight, through public paths only.

The runner always hands the SDK an explicit `cli_path` (public API), so the CLI is the child of
the harness whose command line starts with that path (or runs it as a script); it is found in
the harness's own process tree (`/proc`), never through the SDK's private attributes, and no
file the agent could rewrite is ever executed. Stopping escalates: SIGTERM, a bounded wait for
the turn to end (or the process to exit), then SIGKILL to the CLI and every process below it (a
Bash tool call, an MCP server, or a wrapper that does not exec), then another bounded wait.
Signals go through pidfds opened while the process is known to be our child, so a recycled pid
is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StopOutcome", "TrackedChild", "children", "descendants", "find_claude_cli", "stop_child"]

log = logging.getLogger(__name__)


@functools.cache
def find_claude_cli() -> str:
    """The claude CLI bundled in claude-agent-sdk, else `claude` on PATH."""
    import claude_agent_sdk

    bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("claude")
    if found is None:
        raise FileNotFoundError("no claude CLI: neither bundled in claude-agent-sdk nor on PATH")
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


class TrackedChild:
    """One turn's CLI: the harness's child started from `cli_path` (`--output-format` in its
    argv; a script shows as `<interpreter> <cli_path> …`)."""

    def __init__(self, cli_path: str, parent: int | None = None) -> None:
        self.cli_path = cli_path
        self.parent = os.getpid() if parent is None else parent

    def pid(self) -> int | None:
        for pid in children(self.parent):
            argv = _cmdline(pid)
            if self.cli_path in argv[:2] and "--output-format" in argv:
                return pid
        return None

    async def wait_pid(self, bound: float) -> int | None:
        """The pid, waiting up to `bound` seconds (only when a cancel races the CLI's start)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        while (pid := await asyncio.to_thread(self.pid)) is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return pid


def _parents() -> dict[int, list[int]]:
    """ppid → pids, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        # the command name may hold spaces or ')': the fields after the last ')' are fixed
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    return parents


def children(pid: int) -> list[int]:
    """The direct children of `pid`."""
    return _parents().get(pid, [])


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children before grandchildren."""
    parents = _parents()
    out: list[int] = []
    frontier = [pid]
    while frontier:
        nxt = [c for p in frontier for c in parents.get(p, [])]
        out += nxt
        frontier = nxt
    return out


async def _until_either(ended: Callable[[], Awaitable[object]], pidfd: int, bound: float) -> bool:
    """True once `ended()` returns or the process behind `pidfd` exits (the fd turns readable),
    False after `bound` seconds."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[object] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    waiter: asyncio.Future[object] = asyncio.ensure_future(ended())
    try:
        done, _ = await asyncio.wait([waiter, exited], timeout=bound, return_when=asyncio.FIRST_COMPLETED)
        return bool(done)
    finally:
        loop.remove_reader(pidfd)
        waiter.cancel()
        exited.cancel()
        await asyncio.gather(waiter, return_exceptions=True)


def _pin(pids: list[int]) -> list[int]:
    """pidfds for the pids still alive (so a kill never reaches a recycled pid)."""
    fds = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            fds.append(os.pidfd_open(pid))
    return fds


def _parent_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
        return int(status.split("PPid:", 1)[1].split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class StopOutcome:
    how: str
    """`terminated` (SIGTERM was enough), `killed` (SIGKILL after the grace), `gone` (it had
    already exited) or `unknown` (no pid was ever written)."""
    pid: int | None = None

    def describe(self, grace: float) -> str:
        if self.how == "terminated":
            return f"the claude CLI (pid {self.pid}) stopped on SIGTERM"
        if self.how == "killed":
            return f"the claude CLI (pid {self.pid}) ignored SIGTERM for {grace:g} s and was killed (SIGKILL)"
        if self.how == "gone":
            return "the claude CLI had already exited"
        return "the claude CLI's pid was never reported"


async def stop_child(child: TrackedChild, ended: Callable[[], Awaitable[object]], grace: float) -> StopOutcome:
    """SIGTERM the tracked CLI, wait up to `grace` for `ended()` (the turn is over), then SIGKILL
    it and its descendants and wait up to `grace` again. Never raises for a vanished process."""
    pid = await child.wait_pid(grace)
    if pid is None:
        return StopOutcome("unknown")
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return StopOutcome("gone", pid)
    try:
        if _parent_of(pid) != os.getpid():  # not (or no longer) our child: never signal it
            return StopOutcome("gone", pid)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        except ProcessLookupError:
            return StopOutcome("gone", pid)
        if await _until_either(ended, pidfd, grace):
            return StopOutcome("terminated", pid)
        below = _pin(await asyncio.to_thread(descendants, pid))  # before the kill: afterwards they are reparented
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        for fd in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)
        log.warning(
            "claude CLI pid %d ignored SIGTERM for %.1f s: killed with %d descendant(s)", pid, grace, len(below)
        )
        await _until_either(ended, pidfd, grace)
        return StopOutcome("killed", pid)
    finally:
        os.close(pidfd)

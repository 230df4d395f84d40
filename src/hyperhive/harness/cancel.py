"""Knowing and stopping the claude CLI of the turn in flight, through public paths only.

The SDK starts whatever `ClaudeAgentOptions.cli_path` names. We point it at a tiny wrapper
script that writes its own pid to a per-turn file and then `exec`s the real CLI, so the pid in
the file *is* the CLI's (exec keeps the pid). Stopping escalates: SIGTERM, a bounded wait for the
turn to end, then SIGKILL to the CLI and every process below it (a Bash tool call, an MCP server,
or a wrapper that did not exec), then another bounded wait. Signals go through a pidfd opened
while the process is known to be our child, so a recycled pid is never signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClaudeLauncher", "StopOutcome", "TrackedChild", "descendants", "find_claude_cli", "stop_child"]

log = logging.getLogger(__name__)

PIDFILE_ENV = "HYPERHIVE_CLAUDE_PIDFILE"
REAL_CLI_ENV = "HYPERHIVE_CLAUDE_CLI"
_WRAPPER = """\
#!/bin/sh
# hyperhive: note this process's pid for the harness (cancel), then become the claude CLI.
printf '%s\\n' "$$" > "${HYPERHIVE_CLAUDE_PIDFILE}.tmp" && mv -f "${HYPERHIVE_CLAUDE_PIDFILE}.tmp" "$HYPERHIVE_CLAUDE_PIDFILE"
exec "$HYPERHIVE_CLAUDE_CLI" "$@"
"""


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


class TrackedChild:
    """One turn's CLI: its pid once the wrapper has written it."""

    def __init__(self, pidfile: Path) -> None:
        self.pidfile = pidfile

    def pid(self) -> int | None:
        try:
            text = self.pidfile.read_text(encoding="ascii").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    async def wait_pid(self, bound: float) -> int | None:
        """The pid, waiting up to `bound` seconds for the wrapper to write it (it does so first
        thing; this only waits when a cancel races the CLI's start)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        while (pid := self.pid()) is None and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return pid

    def discard(self) -> None:
        for path in (self.pidfile, self.pidfile.with_name(self.pidfile.name + ".tmp")):
            with contextlib.suppress(OSError):
                path.unlink()


class ClaudeLauncher:
    """Writes the wrapper once (in a private directory) and hands out one pidfile per turn."""

    def __init__(self, directory: Path | None = None) -> None:
        self._given = directory
        self._dir: Path | None = None

    @property
    def directory(self) -> Path:
        if self._dir is None:
            if self._given is not None:
                self._given.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._dir = self._given
            else:
                self._dir = Path(tempfile.mkdtemp(prefix="hyperhive-claude-"))
            wrapper = self._dir / "claude"
            wrapper.write_text(_WRAPPER, encoding="utf-8")
            wrapper.chmod(0o700)
        return self._dir

    def wrap(self, real_cli: str | Path | None) -> tuple[str, dict[str, str], TrackedChild]:
        """(cli_path for the SDK, env to add, the child to track) for one turn."""
        real = str(real_cli) if real_cli is not None else find_claude_cli()
        pidfile = self.directory / f"turn-{uuid.uuid4().hex}.pid"
        env = {PIDFILE_ENV: str(pidfile), REAL_CLI_ENV: real}
        return str(self.directory / "claude"), env, TrackedChild(pidfile)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children before grandchildren."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:  # noqa: PTH123
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces or ')': the fields after the last ')' are fixed
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1].isdigit():
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
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
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:  # noqa: PTH123
            for line in f:
                if line.startswith("PPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
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
        below = _pin(descendants(pid))  # before the kill: afterwards they are reparented
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        for fd in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)
        log.warning("claude CLI pid %d ignored SIGTERM for %.1f s: killed with %d descendant(s)", pid, grace, len(below))
        await _until_either(ended, pidfd, grace)
        return StopOutcome("killed", pid)
    finally:
        os.close(pidfd)

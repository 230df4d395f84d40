"""The operator's shell into a cage (architecture §14): PTY sessions and one-off commands, run by the
core through the cage backend (`Cage.entry`), never through the harness, so no agent-reachable
path opens one.

- `PtySession`: a login shell on a PTY the core holds. Viewers attach and detach; each gets the
  recent output first (a bounded replay), then live output; the last resize wins. A dashboard
  shell outlives its viewers until it has had none for `idle_seconds` (or the operator ends
  it); a CLI shell ends with its one connection.
- `ExecRun`: a command with its stdin/stdout/stderr on pipes (`hive exec`).
- Every session is recorded: `shell_started` / `shell_ended` on the hub (the dashboard's live
  stream) and in the agent's trail (`ShellRecorder`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import logging
import os
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hyperhive.cages.base import Entry
from hyperhive.cages.spawn import SpawnedProcess, spawn_on_terminal, spawn_piped
from hyperhive.errors import CageError, Conflict
from hyperhive.shellwire import ExitStatus

if TYPE_CHECKING:
    from hyperhive.core.hub import Hub
    from hyperhive.core.lifecycle import Lifecycle

__all__ = ["ExecRun", "PtySession", "Shells", "Viewer"]

log = logging.getLogger(__name__)

REPLAY_BYTES = 64 * 1024
IDLE_SECONDS = 15 * 60.0
VIEWER_QUEUE = 64  # output chunks a viewer may lag behind before the session waits for it
SLOW_VIEWER = 10.0  # seconds a viewer may block the output before it is dropped
HANGUP_GRACE = 3.0
MAX_SESSIONS_PER_AGENT = 16
COMMAND_SHOWN = 200  # characters of an exec command line kept in the record

Recorder = Callable[[str, str, dict[str, Any]], Awaitable[None]]


def _status(rc: int) -> ExitStatus:
    if rc < 0:
        return ExitStatus(None, -rc)
    return ExitStatus(rc, None)


class Viewer:
    """One attached client of a PTY session: output chunks in order, None when it ends."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue(VIEWER_QUEUE)
        self.closed = False

    def close(self) -> None:
        """End this viewer: what it has not read yet is dropped only if its queue is full."""
        if self.closed:
            return
        self.closed = True
        if self.queue.full():
            while not self.queue.empty():
                self.queue.get_nowait()
        self.queue.put_nowait(None)


class _Session:
    _ids = itertools.count(1)

    def __init__(self, shells: Shells, agent: str, kind: str, via: str, by: str, command: list[str], entry: Entry):
        self.shells = shells
        self.id = next(self._ids)
        self.agent = agent
        self.kind = kind
        self.via = via
        self.by = by
        self.command = command
        self.isolated = entry.isolated
        self.started_at = time.time()
        self.done: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()

    def describe(self) -> dict[str, Any]:
        shown = " ".join(self.command)
        return {
            "agent": self.agent,
            "session": self.id,
            "kind": self.kind,
            "via": self.via,
            "by": self.by,
            "command": shown[:COMMAND_SHOWN] + ("…" if len(shown) > COMMAND_SHOWN else ""),
            "isolated": self.isolated,
            "started_at": self.started_at,
        }

    async def _finished(self, status: ExitStatus) -> None:
        if not self.done.done():
            self.done.set_result(status)
        self.shells._forget(self)
        payload = {**self.describe(), **status.to_json(), "ended_at": time.time()}
        payload["duration_ms"] = int((payload["ended_at"] - self.started_at) * 1000)
        await self.shells._record(self.agent, "shell_ended", payload)


class PtySession(_Session):
    """A shell on a PTY inside the cage, shared by its viewers."""

    def __init__(self, shells: Shells, agent: str, via: str, by: str, command: list[str], entry: Entry,
                 *, persistent: bool) -> None:  # fmt: skip
        super().__init__(shells, agent, "shell", via, by, command, entry)
        self.persistent = persistent
        self.master = -1
        self.proc: SpawnedProcess | None = None
        self.replay = bytearray()
        self.viewers: set[Viewer] = set()
        self.rows, self.cols = 24, 80
        self._write_lock = asyncio.Lock()
        self._idle: asyncio.TimerHandle | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ending = False

    async def start(self, entry: Entry, argv: list[str], rows: int, cols: int, term: str) -> None:
        master, slave = os.openpty()
        self.master = master
        self.rows, self.cols = rows, cols
        _set_size(slave, rows, cols)
        env = {**entry.env, "TERM": term}

        def preexec() -> None:
            if entry.preexec is not None:
                entry.preexec()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # the PTY is the shell's controlling terminal

        try:
            self.proc = await spawn_on_terminal(
                [*entry.prefix, *argv], terminal=slave, env=env, cwd=entry.cwd or "/", preexec=preexec
            )
        except BaseException:
            os.close(master)
            self.master = -1
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(), name=f"shell-{self.agent}-{self.id}")]
        if self.persistent:
            self._arm_idle()

    # ---- viewers ---------------------------------------------------------------------------

    def attach(self) -> Viewer:
        viewer = Viewer()
        if self.replay:
            viewer.queue.put_nowait(bytes(self.replay))
        if self.done.done():
            viewer.close()
            return viewer
        self.viewers.add(viewer)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        return viewer

    def detach(self, viewer: Viewer) -> None:
        viewer.close()
        self.viewers.discard(viewer)
        if self.viewers or self.done.done():
            return
        if self.persistent:
            self._arm_idle()
        else:
            self.end()

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(self.shells.idle_seconds, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle = None
        if not self.viewers:
            log.info("shell %d into %s: no viewer for %.0f s, ending it", self.id, self.agent, self.shells.idle_seconds)
            self.end()

    # ---- input -----------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        """Keystrokes into the terminal (waits while the PTY's input buffer is full)."""
        async with self._write_lock:
            view = memoryview(data)
            while view and self.master >= 0 and not self.done.done():
                try:
                    n = os.write(self.master, view)
                except BlockingIOError:
                    await _ready(self.master, write=True)
                    continue
                except OSError:
                    return
                view = view[n:]

    def resize(self, rows: int, cols: int) -> None:
        rows, cols = max(1, min(rows, 1000)), max(1, min(cols, 1000))
        self.rows, self.cols = rows, cols
        if self.master >= 0:
            with contextlib.suppress(OSError):
                _set_size(self.master, rows, cols)

    # ---- output and exit -------------------------------------------------------------------

    async def _run(self) -> None:
        assert self.proc is not None
        reader = asyncio.ensure_future(self._read_output())
        rc = await self.proc.wait()
        # what the shell printed last is still in the PTY: read it, bounded (a background job
        # left in the cage may keep the terminal open forever)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), 1.0)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        if self._idle is not None:
            self._idle.cancel()
        for viewer in list(self.viewers):
            viewer.close()
        with contextlib.suppress(OSError):
            os.close(self.master)
        self.master = -1
        await self._finished(_status(rc))

    async def _read_output(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except BlockingIOError:
                await _ready(self.master)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave fd closed
                    return
                raise
            if not data:
                return
            self.replay += data
            if len(self.replay) > REPLAY_BYTES:
                del self.replay[: len(self.replay) - REPLAY_BYTES]
            for viewer in list(self.viewers):
                try:
                    await asyncio.wait_for(viewer.queue.put(data), SLOW_VIEWER)
                except TimeoutError:
                    log.info("shell %d into %s: a viewer fell behind and was dropped", self.id, self.agent)
                    self.viewers.discard(viewer)
                    viewer.close()

    def end(self) -> None:
        """Hang up: SIGHUP to the terminal's foreground job and to nsenter, SIGKILL after a grace."""
        if self._ending or self.proc is None or self.proc.returncode is not None:
            return
        self._ending = True
        proc = self.proc
        with contextlib.suppress(OSError):
            os.killpg(os.tcgetpgrp(self.master), signal.SIGHUP)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGHUP)

        def kill() -> None:
            if proc.returncode is None:
                with contextlib.suppress(OSError):
                    if self.master >= 0:
                        os.killpg(os.tcgetpgrp(self.master), signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)

        asyncio.get_running_loop().call_later(HANGUP_GRACE, kill)


class ExecRun(_Session):
    """A command with pipes for stdin, stdout and stderr (`hive exec`)."""

    proc: SpawnedProcess

    async def start(self, entry: Entry, argv: list[str]) -> None:
        self.proc = await spawn_piped(
            [*entry.prefix, *argv], env=entry.env, cwd=entry.cwd or "/", preexec=entry.preexec
        )

    async def finish(self) -> ExitStatus:
        rc = await self.proc.wait()
        status = _status(rc)
        await self._finished(status)
        return status

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class Shells:
    """Every shell and exec session of the hive, by agent."""

    def __init__(self, lifecycle: Lifecycle, hub: Hub, *, idle_seconds: float = IDLE_SECONDS) -> None:
        self.lifecycle = lifecycle
        self.hub = hub
        self.idle_seconds = idle_seconds
        self.sessions: dict[int, _Session] = {}
        self.web: dict[str, PtySession] = {}  # the dashboard's shared shell per agent
        self.recorders: list[Recorder] = []
        self._web_lock = asyncio.Lock()

    def _entry(self, name: str) -> Entry:
        rt = self.lifecycle.get(name)
        if rt.state != "running" or rt.handle is None:
            raise Conflict(f"agent {name!r} is {rt.state}: start it first")
        if sum(1 for s in self.sessions.values() if s.agent == name) >= MAX_SESSIONS_PER_AGENT:
            raise Conflict(f"agent {name!r} already has {MAX_SESSIONS_PER_AGENT} shell sessions open")
        return self.lifecycle.cage.entry(rt.handle)

    async def open_pty(self, name: str, *, via: str, by: str, rows: int = 24, cols: int = 80,
                       term: str = "xterm-256color", persistent: bool = False) -> PtySession:  # fmt: skip
        entry = self._entry(name)
        session = PtySession(self, name, via, by, entry.shell, entry, persistent=persistent)
        try:
            await session.start(entry, entry.shell, rows, cols, term)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CageError(f"could not enter {name}'s cage: {exc}") from exc
        await self._started(session)
        return session

    async def open_exec(self, name: str, argv: list[str], *, by: str) -> ExecRun:
        entry = self._entry(name)
        run = ExecRun(self, name, "exec", "cli", by, argv, entry)
        try:
            await run.start(entry, argv)
        except (OSError, subprocess.SubprocessError) as exc:
            raise CageError(f"could not enter {name}'s cage: {exc}") from exc
        await self._started(run)
        return run

    async def web_shell(self, name: str, *, by: str) -> PtySession:
        """The agent's dashboard shell: the running one, or a new one."""
        async with self._web_lock:
            session = self.web.get(name)
            if session is not None and not session.done.done():
                return session
            session = await self.open_pty(name, via="dashboard", by=by, rows=30, cols=100, persistent=True)
            self.web[name] = session
            return session

    def end_web(self, name: str) -> bool:
        session = self.web.get(name)
        if session is None or session.done.done():
            return False
        session.end()
        return True

    async def _started(self, session: _Session) -> None:
        self.sessions[session.id] = session
        log.info("shell %d into %s opened by %s (%s)", session.id, session.agent, session.by, session.via)
        await self._record(session.agent, "shell_started", session.describe())

    def _forget(self, session: _Session) -> None:
        self.sessions.pop(session.id, None)
        if self.web.get(session.agent) is session:
            del self.web[session.agent]

    async def _record(self, agent: str, kind: str, payload: dict[str, Any]) -> None:
        self.hub.publish(kind, payload)
        for recorder in self.recorders:
            try:
                await recorder(agent, kind, payload)
            except Exception:  # noqa: BLE001 — a trail that cannot be written never breaks a shell
                log.warning("could not record %s for %s", kind, agent, exc_info=True)

    async def close(self) -> None:
        """At shutdown: hang up every session and wait for them, bounded."""
        for session in list(self.sessions.values()):
            if isinstance(session, PtySession):
                session.end()
            elif isinstance(session, ExecRun):
                session.kill()
        waits = [s.done for s in self.sessions.values()]
        if waits:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), HANGUP_GRACE + 2)


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _ready(fd: int, *, write: bool = False) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await fut
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)

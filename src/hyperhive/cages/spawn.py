"""Start a process without holding the event loop (issue 10: nothing slow on it): a cage's first
process, and the operator's shells and commands in a cage (`core/shell.py`).

`asyncio.create_subprocess_exec` with a `preexec_fn` forks the daemon and then blocks in the
loop's thread until the child has run the hook and exec'd: on a busy host (agents' CLIs starting,
a spawn of many) that was seen at 0.5-1.2 s per cage, during which no socket was answered. Here
`subprocess.Popen` runs in a worker thread; the loop then reads the child's output through a
pipe transport and learns of its exit from a pidfd (or, where the kernel has none, a thread
blocked in `waitpid`, as asyncio's own child watcher does).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Collection, Mapping
from typing import IO

__all__ = ["SpawnedProcess", "spawn", "spawn_on_terminal", "spawn_piped"]


class SpawnedProcess:
    """The part of `asyncio.subprocess.Process` its users need: pid, returncode, the pipes that
    were asked for (stdin, stdout, stderr), wait(); plus `close_output()` for an output pipe a
    leftover process holds open."""

    def __init__(self, popen: subprocess.Popen[bytes], *, stdin: asyncio.StreamWriter | None = None,
                 stdout: asyncio.StreamReader | None = None, stderr: asyncio.StreamReader | None = None,
                 outputs: tuple[asyncio.ReadTransport, ...] = ()) -> None:  # fmt: skip
        self._popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._outputs = outputs
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._watch()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        """The exit status (negative: killed by that signal), as soon as the process exits."""
        return await asyncio.shield(self._exited)

    def close_output(self) -> None:
        for transport in self._outputs:
            transport.close()

    def _exit(self, rc: int) -> None:
        self._popen.returncode = rc  # Popen must not reap the pid again (its __del__, _cleanup)
        if not self._exited.done():
            self._exited.set_result(rc)

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._watch_in_thread(loop)
            return

        def readable() -> None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = self.pid, 255 << 8  # reaped elsewhere: the status is lost
            if pid == 0:
                return
            loop.remove_reader(pidfd)
            os.close(pidfd)
            self._exit(os.waitstatus_to_exitcode(status))

        loop.add_reader(pidfd, readable)

    def _watch_in_thread(self, loop: asyncio.AbstractEventLoop) -> None:
        def reap() -> None:
            rc = self._popen.wait()
            with contextlib.suppress(RuntimeError):  # the loop closed first
                loop.call_soon_threadsafe(self._exit, rc)

        threading.Thread(target=reap, name=f"reap-{self.pid}", daemon=True).start()


class _WriteProtocol(asyncio.streams.FlowControlMixin):
    """What a StreamWriter on a pipe needs from its protocol: drain() and wait_closed()."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._closed: asyncio.Future[None] = loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        return self._closed


async def _popen(argv: list[str], *, env: Mapping[str, str], cwd: str, preexec: Callable[[], None] | None,
                 stdin: int, stdout: int, stderr: int, pass_fds: Collection[int] = ()) -> subprocess.Popen[bytes]:  # fmt: skip
    return await asyncio.to_thread(
        subprocess.Popen,
        argv,
        env=dict(env),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=preexec,
        pass_fds=tuple(pass_fds),
    )


async def _reader(pipe: IO[bytes]) -> tuple[asyncio.StreamReader, asyncio.ReadTransport]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader, transport


async def spawn(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    preexec: Callable[[], None],
    pass_fds: Collection[int] = (),
) -> SpawnedProcess:
    """Start `argv` in a new session, stdin from /dev/null, stdout and stderr into one pipe.
    Raises OSError or subprocess.SubprocessError as Popen does."""
    popen = await _popen(argv, env=env, cwd=cwd, preexec=preexec, pass_fds=pass_fds,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert popen.stdout is not None
    stdout, transport = await _reader(popen.stdout)
    return SpawnedProcess(popen, stdout=stdout, outputs=(transport,))


async def spawn_piped(
    argv: list[str], *, env: Mapping[str, str], cwd: str, preexec: Callable[[], None] | None
) -> SpawnedProcess:
    """Start `argv` in a new session with stdin, stdout and stderr each on its own pipe."""
    pipe = subprocess.PIPE
    popen = await _popen(argv, env=env, cwd=cwd, preexec=preexec, stdin=pipe, stdout=pipe, stderr=pipe)
    assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
    loop = asyncio.get_running_loop()
    try:
        stdout, out = await _reader(popen.stdout)
        stderr, err = await _reader(popen.stderr)
        protocol = _WriteProtocol(loop)
        transport, _ = await loop.connect_write_pipe(lambda: protocol, popen.stdin)
    except BaseException:
        popen.kill()
        await asyncio.to_thread(popen.wait)
        raise
    stdin = asyncio.StreamWriter(transport, protocol, None, loop)
    return SpawnedProcess(popen, stdin=stdin, stdout=stdout, stderr=stderr, outputs=(out, err))


async def spawn_on_terminal(
    argv: list[str], *, terminal: int, env: Mapping[str, str], cwd: str, preexec: Callable[[], None]
) -> SpawnedProcess:
    """Start `argv` in a new session with stdin, stdout and stderr on the `terminal` fd (a PTY's
    slave side; `preexec` makes it the controlling terminal)."""
    popen = await _popen(argv, env=env, cwd=cwd, preexec=preexec, stdin=terminal, stdout=terminal, stderr=terminal)
    return SpawnedProcess(popen)

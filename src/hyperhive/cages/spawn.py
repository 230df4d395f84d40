"""Start a cage's first process without holding the event loop (issue 10: nothing slow on it).

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

__all__ = ["SpawnedProcess", "spawn"]


class SpawnedProcess:
    """The part of `asyncio.subprocess.Process` a cage handle uses: pid, returncode, stdout,
    wait(); plus `close_output()` for a pipe a leftover process holds open."""

    def __init__(self, popen: subprocess.Popen[bytes], stdout: asyncio.StreamReader,
                 transport: asyncio.ReadTransport) -> None:  # fmt: skip
        self._popen = popen
        self.pid = popen.pid
        self.stdout = stdout
        self._transport = transport
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._watch()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        """The exit status (negative: killed by that signal), as soon as the process exits."""
        return await asyncio.shield(self._exited)

    def close_output(self) -> None:
        self._transport.close()

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
    popen = await asyncio.to_thread(
        subprocess.Popen,
        argv,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec,
        pass_fds=tuple(pass_fds),
    )
    assert popen.stdout is not None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), popen.stdout)
    return SpawnedProcess(popen, reader, transport)

"""`hive serve` / `hive demo` as real subprocesses, as an operator or systemd runs them: started
with their own arguments, waited on their printed login URL (bounded), stopped by signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

HIVE = str(Path(sys.executable).parent / "hive")


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    url: str  # the login URL the daemon printed
    err_lines: list[str] = field(default_factory=list)  # stderr so far (read in the background)
    reader: asyncio.Task[None] | None = None
    _new_line: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base(self) -> str:
        return self.url.split("/login?", 1)[0]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)

    async def wait_for_stderr(self, text: str, bound: float = 60) -> str:
        """The first stderr line containing `text`, waiting for it (bounded)."""
        async with asyncio.timeout(bound):
            while True:
                for line in self.err_lines:
                    if text in line:
                        return line
                if self.reader is not None and self.reader.done():
                    raise AssertionError(f"exited before printing {text!r}:\n{self.stderr}")
                self._new_line.clear()
                await self._new_line.wait()

    async def stop(self, sig: int = signal.SIGTERM, bound: float = 90) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(bound):
            code = await self.proc.wait()
            if self.reader is not None:
                await self.reader
        return code


async def _read_stderr(served: Served) -> None:
    assert served.proc.stderr is not None
    while line := await served.proc.stderr.readline():
        served.err_lines.append(line.decode(errors="replace").rstrip("\n"))
        served._new_line.set()
    served._new_line.set()


@contextlib.asynccontextmanager
async def serving(*args: str, verb: str = "serve", env: dict[str, str] | None = None,
                  bound: float = 120) -> AsyncIterator[Served]:  # fmt: skip
    """Run `hive VERB ARGS…` until it prints its login URL; stop it (SIGTERM) on exit."""
    proc = await asyncio.create_subprocess_exec(
        HIVE, verb, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})},
    )  # fmt: skip
    served = Served(proc, "")
    served.reader = asyncio.create_task(_read_stderr(served))
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(bound):
            while True:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    await served.reader
                    raise AssertionError(f"hive {verb} exited ({await proc.wait()}) before ready:\n{served.stderr}")
                if "login URL: " in line:
                    served.url = line.split("login URL: ", 1)[1].strip()
                    break
        yield served
    finally:
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await served.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if not served.reader.done():
            served.reader.cancel()

"""The Cage contract: how the core starts an agent's harness in a sandbox and sees it exit.

A backend turns a `CageSpec` into an argv, starts it, and returns a `CageHandle`. The core owns
the handle: it awaits `wait()` to learn of every exit the moment it happens, and calls
`stop()` to end the cage. Every wait is bounded; `stop()` escalates SIGTERM → SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from hyperhive.errors import CageError

__all__ = ["Bind", "Cage", "CageError", "CageHandle", "CageSpec", "ExitInfo", "Limits"]

log = logging.getLogger(__name__)

# Inside-the-cage locations (DESIGN §2). A backend that cannot remap paths (process) points the
# matching environment variables at the host paths instead.
CAGE_STATE = "/state"
CAGE_RUN = "/run/hive"
CAGE_HOME = "/home/agent"
ENV_STATE = "HYPERHIVE_AGENT_STATE"
ENV_RUN = "HYPERHIVE_AGENT_RUN"


@dataclass(frozen=True)
class Bind:
    """A host path made visible in the cage. `env` names a variable that tells the harness where
    it ended up (the cage path in a real sandbox, the host path in the process backend)."""

    src: Path
    dest: str
    writable: bool = False
    env: str | None = None


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None
    pids: int | None = None


@dataclass(frozen=True)
class CageSpec:
    """Everything a backend needs to start one agent's harness."""

    name: str
    argv: list[str]  # the command to run inside, e.g. [python, -m, hyperhive, agent, serve]
    state_dir: Path  # → /state (rw)
    home_dir: Path  # → $HOME (rw)
    run_dir: Path  # → /run/hive (rw: mcp.sock, web.sock)
    env: dict[str, str] = field(default_factory=dict)
    binds: list[Bind] = field(default_factory=list)
    uid: int | None = None  # host uid to run as (None: the daemon's own)
    gid: int | None = None
    network: str = "host"  # "host" or "none"
    limits: Limits = field(default_factory=Limits)
    ro_paths: list[Path] = field(default_factory=list)  # extra read-only host paths (interpreter, venv)


@dataclass(frozen=True)
class ExitInfo:
    exit_code: int | None
    signal: int | None
    last_lines: list[str]


_PR_SET_PDEATHSIG = 1


def set_parent_death_signal() -> None:
    """In a child before exec: die with SIGKILL when the daemon dies, so a killed daemon
    never leaves a second harness behind for the same agent."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class CageHandle:
    """A running cage: its process, its stderr tail, and a bounded stop."""

    TAIL_LINES = 40
    MAX_LINE = 4096

    def __init__(self, name: str, proc: asyncio.subprocess.Process, *, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.proc = proc
        self.tail: deque[str] = deque(maxlen=self.TAIL_LINES)
        self._reader = asyncio.get_running_loop().create_task(self._read_output(), name=f"cage-out-{name}")
        self._exit: ExitInfo | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read_output(self) -> None:
        stream = self.proc.stdout
        if stream is None:
            return
        buf = b""
        try:
            while chunk := await stream.read(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self._keep(line)
                if len(buf) > self.MAX_LINE:
                    self._keep(buf)
                    buf = b""
        finally:
            if buf:
                self._keep(buf)

    def _keep(self, line: bytes) -> None:
        text = line[: self.MAX_LINE].decode("utf-8", "replace").rstrip()
        self.tail.append(text)
        log.debug("[%s] %s", self.name, text)

    async def wait(self) -> ExitInfo:
        """Wait for the cage's process to exit; reaps it and drains its output."""
        if self._exit is not None:
            return self._exit
        rc = await self.proc.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), 2)
        code, sig = (None, -rc) if rc < 0 else (rc, None)
        # bwrap and shells report a signalled child as 128+N
        if code is not None and code > 128 and code - 128 < 65:
            code, sig = None, code - 128
        self._exit = ExitInfo(exit_code=code, signal=sig, last_lines=list(self.tail))
        return self._exit

    def send_signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, grace: float = 10.0) -> ExitInfo:
        """SIGTERM the cage's process group, wait `grace`, then SIGKILL and wait again."""
        if self.proc.returncode is None:
            self.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.wait(), grace)
            except asyncio.TimeoutError:
                self.send_signal(signal.SIGKILL)
        try:
            return await asyncio.wait_for(self.wait(), 5)
        except asyncio.TimeoutError as exc:
            raise CageError(f"cage {self.name} (pid {self.pid}) did not exit after SIGKILL") from exc


class Cage(ABC):
    """A sandbox backend. Subclasses state their isolation honestly in `isolated`."""

    kind: ClassVar[str]
    isolated: ClassVar[bool] = True

    @classmethod
    @abstractmethod
    def available(cls) -> tuple[bool, str]:
        """Whether this backend works on this host, and why (shown by `hive serve`)."""

    @abstractmethod
    def build_argv(self, spec: CageSpec) -> tuple[list[str], dict[str, str]]:
        """The host argv and environment that start `spec.argv` inside the cage."""

    async def start(self, spec: CageSpec) -> CageHandle:
        argv, env = self.build_argv(spec)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=set_parent_death_signal,
                cwd=str(spec.state_dir),
            )
        except OSError as exc:
            raise CageError(f"could not start the {self.kind} cage for {spec.name}: {exc}") from exc
        return CageHandle(spec.name, proc, kind=self.kind)


def base_env(spec: CageSpec) -> dict[str, str]:
    """The environment every backend starts from: nothing of the daemon's own but PATH/LANG."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(spec.env)
    return env

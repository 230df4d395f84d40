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
import shutil
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import ClassVar

from hyperhive.cages.limits import CageCgroup, Limits, place
from hyperhive.cages.spawn import SpawnedProcess, spawn
from hyperhive.errors import CageError

__all__ = [
    "Bind",
    "Cage",
    "CageError",
    "Entry",
    "CageHandle",
    "CageSpec",
    "ExitInfo",
    "Launch",
    "Limits",
    "runtime_ro_paths",
]

log = logging.getLogger(__name__)

# Inside-the-cage locations (architecture §2). A backend that cannot remap paths (process) points the
# matching environment variables at the host paths instead.
CAGE_STATE = "/state"
CAGE_RUN = "/run/hive"
CAGE_HOME = "/home/agent"
ENV_STATE = "HYPERHIVE_AGENT_STATE"
ENV_RUN = "HYPERHIVE_AGENT_RUN"
# agent.toml `[env]` reaches only the claude CLI inside the cage: a read-only file there (never the
# host-side setpriv/bwrap/nspawn's environment or argv), named by this variable.
ENV_CONFIG_ENV = "HYPERHIVE_CONFIG_ENV_FILE"
CAGE_CONFIG_ENV = "/etc/hyperhive/config-env.json"


@dataclass(frozen=True)
class Bind:
    """A host path made visible in the cage. `env` names a variable that tells the harness where
    it ended up (the cage path in a real sandbox, the host path in the process backend)."""

    src: Path
    dest: str
    writable: bool = False
    env: str | None = None


@dataclass(frozen=True)
class CageSpec:
    """Everything a backend needs to start one agent's harness."""

    name: str
    argv: list[str]  # the command to run inside, e.g. [python, -m, hyperhive, agent, serve]
    state_dir: Path  # → /state (rw)
    home_dir: Path  # → $HOME (rw)
    run_dir: Path  # → /run/hive (rw: mcp.sock, web.sock)
    env: dict[str, str] = field(default_factory=dict)
    config_env: dict[str, str] = field(default_factory=dict)  # agent.toml [env]: inside the cage only
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


def runtime_ro_paths() -> list[Path]:
    """The host paths the harness needs to run at all, bound read-only at the same path by every
    isolated backend: the venv (`sys.prefix`, which also holds the SDK's bundled claude CLI), the
    base interpreter the venv's python symlinks into (`sys.base_prefix`), the directory the
    hyperhive package is imported from (the source tree of an editable install), and the claude
    SDK's package dir when it lives outside the venv. Parents are created by the backend."""
    paths = [Path(sys.prefix), Path(sys.base_prefix)]
    import hyperhive

    paths.append(Path(hyperhive.__file__).resolve().parent.parent)
    with contextlib.suppress(ImportError, ValueError):
        spec = find_spec("claude_agent_sdk")
        if spec is not None and spec.origin:
            paths.append(Path(spec.origin).resolve().parent)
    out: list[Path] = []
    for p in paths:
        p = p.absolute()
        if any(p == q or q in p.parents for q in out):
            continue
        out = [q for q in out if p not in q.parents]
        out.append(p)
    return [p for p in out if not any(p == u or u in p.parents for u in (Path("/usr"),))]


@dataclass
class Launch:
    """How a backend starts one cage: the host argv and env, fds the child must inherit, a hook
    run in the child before exec (as the daemon's user), and cleanup run after the cage exits."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    preexec: Callable[[], None] | None = None
    cleanup: Callable[[], None] | None = None
    ignore_sigterm: bool = False  # the host-side wrapper must not die of the stop() SIGTERM


@dataclass
class Entry:
    """How the core runs a command inside a running cage (architecture §14): `prefix` goes before the
    command (e.g. nsenter into the cage's namespaces), `env` is the cage's environment,
    `preexec` runs in the child before exec (drop supplementary groups, no new privileges, join
    the cage's cgroup). `isolated` False means the command runs on the host (process cage)."""

    prefix: list[str]
    env: dict[str, str]
    shell: list[str]  # the login shell inside the cage
    preexec: Callable[[], None] | None = None
    isolated: bool = True
    cwd: str | None = None  # host cwd of the child (the process cage: the agent's state dir)


class CageHandle:
    """A running cage: its process, its stderr tail, and a bounded stop.

    `cgroup` (when the host allowed one) holds every process of the cage: `stop()` kills what
    is left in it after SIGKILL, so nothing the cage started outlives it. `limits_status` says
    honestly which limits were applied."""

    TAIL_LINES = 40
    MAX_LINE = 4096

    def __init__(
        self,
        name: str,
        proc: SpawnedProcess,
        *,
        kind: str,
        cgroup: CageCgroup | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.proc = proc
        self.spec: CageSpec | None = None  # set by Cage.start: what `Cage.entry` enters
        self.cgroup = cgroup
        self.limits_status = cgroup.status if cgroup is not None else "no cgroup"
        self._cleanup = cleanup
        self.tail: deque[str] = deque(maxlen=self.TAIL_LINES)
        self.on_line: Callable[[str], None] | None = None  # the core keeps the whole output (harnesslog.py)
        self._reader = asyncio.get_running_loop().create_task(self._read_output(), name=f"cage-out-{name}")
        self._exit: ExitInfo | None = None
        self._reaping: asyncio.Future[ExitInfo] | None = None

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
        if self.on_line is not None:
            self.on_line(text)
        log.debug("[%s] %s", self.name, text)

    async def wait(self) -> ExitInfo:
        """Wait for the cage's process to exit; reaps it and drains its output. Callers share
        one reaping (the crash watch and `stop()` wait at once); cancelling a caller does not
        cancel it."""
        if self._exit is not None:
            return self._exit
        if self._reaping is None:
            self._reaping = asyncio.ensure_future(self._reap())
        return await asyncio.shield(self._reaping)

    async def _reap(self) -> ExitInfo:
        rc = await self._wait_exit()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), 2)
        code: int | None = rc if rc >= 0 else None
        sig: int | None = -rc if rc < 0 else None
        # bwrap and shells report a signalled child as 128+N
        if 128 < rc < 128 + 65:
            code, sig = None, rc - 128
        exit_info = ExitInfo(exit_code=code, signal=sig, last_lines=list(self.tail))
        await self._drain_cgroup()
        self._finish()
        self._exit = exit_info
        return exit_info

    async def _drain_cgroup(self) -> None:
        """Kill what is left in the cage's cgroup and give the kernel up to 2 s to release the
        exiting tasks, so the cgroup can be removed (a pid namespace dies asynchronously)."""
        if self.cgroup is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(2):
                while self.cgroup.pids():
                    if self.cgroup.kill(signal.SIGKILL):
                        log.debug("cage %s: killed processes left after it exited", self.name)
                    await asyncio.sleep(0.01)

    async def _wait_exit(self) -> int:
        """The exit status, as soon as the process exits. asyncio's `Process.wait()` also waits
        for its output pipe to close, which a process the cage left behind (a daemon, a
        container nspawn did not take down) can hold open forever: once the exit is known, kill
        the cage's cgroup, and if the pipe is still held 2 s later stop reading it."""
        waiter = asyncio.ensure_future(self.proc.wait())
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=0.25)
                if done:
                    return waiter.result()
                if self.proc.returncode is None:
                    continue
                if deadline is None:
                    deadline = loop.time() + 2
                    if self.cgroup is not None:
                        self.cgroup.kill(signal.SIGKILL)
                elif loop.time() > deadline:
                    log.warning("cage %s exited but its output stays open: closing it", self.name)
                    self.proc.close_output()
        finally:
            if not waiter.done():
                waiter.cancel()

    def _finish(self) -> None:
        """After the cage's own process exited: kill stragglers left in its cgroup (a backend
        whose container outlives it, or a child that left the process group), then clean up."""
        self.proc.close_output()  # already closed at the output's end; a leftover held it open
        if self.cgroup is not None:
            if self.cgroup.kill(signal.SIGKILL):
                log.warning("cage %s: killed processes left behind after it exited", self.name)
            self.cgroup.remove()
            self.cgroup = None
        if self._cleanup is not None:
            cleanup, self._cleanup = self._cleanup, None
            try:
                cleanup()
            except Exception:
                log.exception("cage %s: cleanup failed", self.name)

    def send_signal(self, sig: int) -> None:
        """Signal the cage's process group and, with SIGKILL, everything in its cgroup."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        if sig == signal.SIGKILL and self.cgroup is not None:
            self.cgroup.kill(signal.SIGKILL)

    def terminate(self) -> None:
        """Ask the cage's program to exit (the first step of `stop`). Backends whose host-side
        process would die of SIGTERM and take the program down without its grace override it."""
        self.send_signal(signal.SIGTERM)

    async def stop(self, grace: float = 10.0) -> ExitInfo:
        """SIGTERM the cage's process group, wait `grace`, then SIGKILL and wait again."""
        if self.proc.returncode is None:
            self.terminate()
            try:
                return await asyncio.wait_for(self.wait(), grace)
            except TimeoutError:
                self.send_signal(signal.SIGKILL)
        try:
            return await asyncio.wait_for(self.wait(), 5)
        except TimeoutError as exc:
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

    def prepare(self, spec: CageSpec) -> Launch:
        """The full launch plan; backends that need fds, a pre-exec hook or cleanup override
        this. Raises CageError when the spec cannot be honoured on this host."""
        argv, env = self.build_argv(spec)
        return Launch(argv, env)

    def handle_class(self) -> type[CageHandle]:
        return CageHandle

    def entry(self, handle: CageHandle) -> Entry:
        """How to run a command inside `handle`'s running cage, as the agent's uid, with its
        namespaces, environment and cgroup. Raises CageError when it cannot be entered."""
        raise CageError(f"{self.kind} cages cannot be entered")

    async def start(self, spec: CageSpec) -> CageHandle:
        """Start the cage. Its first process joins the cage's cgroup (limits, tracking) before
        exec; the handle's `limits_status` says what the host allowed."""
        launch = self.prepare(spec)
        cgroup = await asyncio.to_thread(place, spec.name, spec.state_dir, spec.limits)  # cgroupfs writes
        if cgroup.stale_killed:
            log.warning("cage %s: %s", spec.name, cgroup.status)

        def preexec() -> None:
            set_parent_death_signal()
            if launch.ignore_sigterm:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            cgroup.join()
            if launch.preexec is not None:
                launch.preexec()
            os.umask(0o077)  # whatever the cage creates is its own uid's alone (after the 0755 scaffold)

        try:
            proc = await spawn(list(launch.argv), env=launch.env, cwd=str(spec.state_dir), preexec=preexec,
                               pass_fds=launch.pass_fds)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            cgroup.remove()
            if launch.cleanup is not None:
                launch.cleanup()
            raise CageError(f"could not start the {self.kind} cage for {spec.name}: {exc}") from exc
        finally:
            for fd in launch.pass_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        handle = self.handle_class()(spec.name, proc, kind=self.kind, cgroup=cgroup, cleanup=launch.cleanup)
        handle.spec = spec
        return handle


def base_env(spec: CageSpec) -> dict[str, str]:
    """The environment every backend starts from: nothing of the daemon's own but PATH/LANG."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(spec.env)
    return env


_PR_SET_NO_NEW_PRIVS = 38


def entry_preexec(cgroup: CageCgroup | None) -> Callable[[], None]:
    """The child side of `Cage.entry`, before exec (as the daemon's user): die with the daemon,
    no supplementary groups (a root daemon's group 0 must not reach the cage), no new
    privileges, and into the cage's cgroup so its limits hold."""

    def preexec() -> None:
        set_parent_death_signal()
        if os.geteuid() == 0:
            os.setgroups([])
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
        if cgroup is not None:
            cgroup.join()

    return preexec


NSENTER = "nsenter"


def cage_shell() -> list[str]:
    """A login shell from the host's /usr, which every isolated cage binds read-only."""
    return ["/bin/bash", "-l"] if Path("/usr/bin/bash").exists() else ["/bin/sh", "-l"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _user_ns(pid: int | str) -> str | None:
    try:
        return str(Path(f"/proc/{pid}/ns/user").readlink())
    except OSError:
        return None


def cage_init_pid(name: str, host_pid: int) -> int:
    """The first process inside a cage started by `host_pid` (a child in its own user namespace:
    bwrap's pid 1); CageError when there is none (the cage is still starting or has gone)."""
    own = _user_ns("self")
    for child in _children(host_pid):
        ns = _user_ns(child)
        if ns is not None and ns != own:
            return child
    raise CageError(f"cage {name} has no process to enter (still starting, or stopped)")


def enter_argv(name: str, host_pid: int, uid: int, gid: int, cwd: str, target: int | None = None) -> list[str]:
    """`nsenter` into every namespace of the cage's first process (or `target`), as uid/gid
    inside it, with its root, then `env -C cwd` (the path resolves inside the cage)."""
    nsenter = shutil.which(NSENTER)
    if nsenter is None:
        raise CageError("nsenter (util-linux) is not installed: cannot enter cages")
    pid = target if target is not None else cage_init_pid(name, host_pid)
    return [nsenter, "-t", str(pid), "-U", "-m", "-p", "-i", "-u", "-n", "-C", "-r", "-w",
            "-S", str(uid), "-G", str(gid), "--", "/usr/bin/env", f"--chdir={cwd}", "--"]  # fmt: skip

"""Cgroups for cages: track every process of a cage, apply its memory/pids limits, kill it whole.

One `CageCgroup` per started cage. The cage's first process joins it in the child before exec
(`join`), so everything the cage forks is inside from the start. The core then uses it to:

- apply `Limits` (memory, pids) where the host lets us: cgroup v2 when the controllers are
  enabled for us (delegated), else the v1 files as root (hybrid hosts such as ours);
- find every process of the cage, even ones that left its process group or outlived the
  backend's own process (systemd-nspawn leaves its container running when it is SIGKILLed);
- kill what a previous daemon left behind under the same cage (`stale`).

The cgroup of a cage lives under the daemon's own cgroup (so the cage never escapes what the
daemon itself is confined to): `<mount>/<daemon's cgroup>/hyperhive/<name>-<tag>`, where `tag` is
a hash of the agent's state dir, so two hives (or two test runs) on one host never share one.

Nothing here raises for a host that cannot do cgroups: `status` says honestly what was applied
and what was not, and the cage starts anyway (an agent without a memory cap beats no agent).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CGROUP_ROOT", "CageCgroup", "Limits", "cgroup_name", "place"]

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
_PARENT = "hyperhive"


@dataclass(frozen=True)
class Limits:
    """What a cage may use; None leaves that resource uncapped."""

    memory_bytes: int | None = None
    pids: int | None = None


def cgroup_name(name: str, state_dir: Path) -> str:
    tag = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
    return f"{name}-{tag}"


@dataclass
class CageCgroup:
    """The cgroup directories one cage lives in, and what was applied to them."""

    dirs: list[Path] = field(default_factory=list)  # every dir the cage joins (v2 and/or v1)
    tracker: Path | None = None  # the dir whose cgroup.procs lists the whole cage
    status: str = "no cgroup"
    stale_killed: int = 0

    @property
    def tracked(self) -> bool:
        return self.tracker is not None

    def join(self) -> None:
        """In the child, before exec: move this process into every cgroup dir of the cage.
        Raises OSError; the caller (a preexec hook) lets it fail the start."""
        pid = str(os.getpid()).encode()
        for d in self.dirs:
            fd = os.open(d / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def pids(self) -> set[int]:
        """Every process in the cage's cgroup and its sub-cgroups (nspawn makes some)."""
        return _procs(self.tracker) if self.tracker is not None else set()

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Signal every process in the cage's cgroup; returns how many were signalled."""
        if self.tracker is None:
            return 0
        if sig == signal.SIGKILL and (self.tracker / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.tracker / "cgroup.kill").write_text("1")
        n = 0
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                n += 1
        return n

    def remove(self) -> None:
        """Remove the cage's cgroup dirs once it is empty (rmdir only; the kernel refuses while
        a process is still inside). Never raises: a leftover dir is reused by the next start."""
        for d in reversed(self.dirs):
            subdirs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for sub in [*subdirs, d]:
                try:
                    sub.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("could not remove cgroup %s: %s", sub, exc)


def _procs(d: Path) -> set[int]:
    out: set[int] = set()
    for procs in [d / "cgroup.procs", *d.rglob("*/cgroup.procs")]:
        with contextlib.suppress(OSError):
            out.update(int(p) for p in procs.read_text().split())
    return out


def _own_cgroups() -> dict[str, str]:
    """controller (or "" for v2) → this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def _v2_mount() -> Path | None:
    for candidate in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        if (candidate / "cgroup.controllers").exists():
            return candidate
    return None


def _mkdir_cgroup(base: Path, leaf: str) -> Path:
    parent = base / _PARENT
    with contextlib.suppress(FileExistsError):
        parent.mkdir()
    d = parent / leaf
    with contextlib.suppress(FileExistsError):
        d.mkdir()
    return d


def _under(mount: Path, own: str) -> Path:
    return mount / own.lstrip("/")


def _kill_stale(d: Path) -> int:
    """Kill what a previous daemon left in this cage's cgroup (never two harnesses per agent)."""
    pids = _procs(d)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if pids:
        log.warning("killed %d stale process(es) left in %s by an earlier run", len(pids), d)
    return len(pids)


def _fmt_bytes(n: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def place(name: str, state_dir: Path, limits: Limits) -> CageCgroup:
    """Create (or reuse) the cgroup dirs for one cage start and apply `limits`.

    Returns a `CageCgroup` whose `status` states what was applied. Tracking without limits
    uses a controller-less v2 dir when the unified hierarchy is writable, else the v1 pids
    controller; when neither works the cage runs untracked, and the status says so.
    """
    leaf = cgroup_name(name, state_dir)
    own = _own_cgroups()
    cg = CageCgroup()
    applied: list[str] = []
    missing: list[str] = []
    wanted = {"memory": limits.memory_bytes, "pids": limits.pids}

    # cgroup v2 (pure or the unified half of a hybrid host): tracking always, limits if delegated.
    v2 = _v2_mount()
    v2_controllers: set[str] = set()
    if v2 is not None and "" in own:
        try:
            d = _mkdir_cgroup(_under(v2, own[""]), leaf)
            enabled = set((d / "cgroup.controllers").read_text().split())
            need = {c for c, v in wanted.items() if v is not None}
            if need - enabled:
                # try to delegate them to hyperhive/ (works when our own cgroup has them enabled)
                with contextlib.suppress(OSError):
                    (d.parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in sorted(need - enabled)))
                enabled = set((d / "cgroup.controllers").read_text().split())
            cg.stale_killed += _kill_stale(d)
            cg.dirs.append(d)
            cg.tracker = d
            if limits.memory_bytes is not None and "memory" in enabled:
                (d / "memory.max").write_text(str(limits.memory_bytes))
                with contextlib.suppress(OSError):
                    (d / "memory.swap.max").write_text("0")
                v2_controllers.add("memory")
                applied.append(f"memory={_fmt_bytes(limits.memory_bytes)} (v2)")
            if limits.pids is not None and "pids" in enabled:
                (d / "pids.max").write_text(str(limits.pids))
                v2_controllers.add("pids")
                applied.append(f"pids={limits.pids} (v2)")
        except OSError as exc:
            log.debug("cgroup v2 not usable for %s: %s", name, exc)

    # cgroup v1 controllers for what v2 could not do (and tracking, if v2 was not writable).
    for controller, value in wanted.items():
        if controller in v2_controllers:
            continue
        needed_for_tracking = controller == "pids" and cg.tracker is None
        if value is None and not needed_for_tracking:
            continue
        mount = CGROUP_ROOT / controller
        if not (mount / "cgroup.procs").exists() or controller not in own:
            if value is not None:
                missing.append(f"{controller} (no v2 delegation and no v1 {controller} controller)")
            continue
        try:
            d = _mkdir_cgroup(_under(mount, own[controller]), leaf)
            if controller == "memory" and value is not None:
                (d / "memory.limit_in_bytes").write_text(str(value))
                memsw = d / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    with contextlib.suppress(OSError):
                        memsw.write_text(str(value))  # count swap too: no escape into swap
                applied.append(f"memory={_fmt_bytes(value)} (v1)")
            elif controller == "pids" and value is not None:
                (d / "pids.max").write_text(str(value))
                applied.append(f"pids={value} (v1)")
            if cg.tracker is None:
                cg.stale_killed += _kill_stale(d)
                cg.tracker = d
            cg.dirs.append(d)
        except OSError as exc:
            if value is not None:
                missing.append(f"{controller} ({type(exc).__name__}: {exc.strerror or exc})")

    parts = []
    if applied:
        parts.append("limits " + ", ".join(applied))
    if missing:
        parts.append("NOT applied: " + "; ".join(missing))
    if not applied and not missing:
        parts.append("no limits requested")
    parts.append(f"tracked in {cg.tracker}" if cg.tracker else "untracked (no writable cgroup)")
    if cg.stale_killed:
        parts.append(f"killed {cg.stale_killed} stale process(es)")
    cg.status = "; ".join(parts)
    return cg

"""A host-wide registry of the host uid ranges running hives use (issue 9).

A root hive with isolated cages runs each agent as host uid `uid_base + agent id`. Two hives on
one host with the same `uid_base` would run two agents as one uid: each could signal, ptrace and
read /proc of the other's processes. So a hive claims `uid_base+1 .. uid_base+UID_RANGE-1` in a
registry file (default `/var/lib/hyperhive/uid-ranges.json`, or `$HYPERHIVE_UID_REGISTRY`) under
an exclusive flock, and refuses to start while a live hive holds an overlapping range. A claim
names the daemon's pid and its start time, so a daemon that died (even by SIGKILL) holds
nothing; a clean shutdown removes its claim.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperhive.errors import StartupError

__all__ = ["REGISTRY_ENV", "UID_RANGE", "UidClaim", "claim_uid_range", "registry_path"]

REGISTRY_ENV = "HYPERHIVE_UID_REGISTRY"
DEFAULT_REGISTRY = Path("/var/lib/hyperhive/uid-ranges.json")
UID_RANGE = 65536  # uids a hive may hand out: agent ids 1 .. UID_RANGE-1


def registry_path() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): a pid
    reused by another process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def _alive(entry: dict[str, Any]) -> bool:
    pid = entry.get("pid")
    return isinstance(pid, int) and pid > 0 and _start_time(pid) == entry.get("started")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[list[dict[str, Any]]]:
    """The registry's entries under an exclusive lock; what the caller leaves in the list is
    written back atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            data = []
        except (OSError, ValueError) as exc:
            raise StartupError(f"the uid registry {path} is unreadable ({exc}); fix or remove it") from None
        entries = [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []
        yield entries
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(tfd, "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=1)
        tmp.replace(path)
    finally:
        os.close(fd)  # releases the flock


@dataclass
class UidClaim:
    path: Path
    state_dir: str
    pid: int

    def release(self) -> None:
        """Remove this hive's claim (a clean shutdown)."""
        with _locked(self.path) as entries:
            entries[:] = [e for e in entries if not (e.get("state_dir") == self.state_dir and e.get("pid") == self.pid)]


def claim_uid_range(state_dir: Path, uid_base: int, size: int = UID_RANGE) -> UidClaim:
    """Claim `uid_base+1 .. uid_base+size-1` for the hive at `state_dir`, or raise StartupError
    naming the live hive whose range overlaps. Blocking (a file lock): run it off the event loop."""
    path = registry_path()
    me = str(state_dir.resolve())
    first, last = uid_base + 1, uid_base + size - 1
    pid = os.getpid()
    with _locked(path) as entries:
        live = [e for e in entries if e.get("state_dir") != me and _alive(e)]
        for e in live:
            lo, hi = e.get("first"), e.get("last")
            if isinstance(lo, int) and isinstance(hi, int) and lo <= last and first <= hi:
                raise StartupError(
                    f"host uids {first}-{last} (uid_base {uid_base}) overlap {lo}-{hi}, which the running "
                    f"hive at {e.get('state_dir')} (pid {e.get('pid')}) uses; give this hive another "
                    f"uid_base in hive.toml, e.g. {hi} (registry {path})"
                )
        live.append({"state_dir": me, "first": first, "last": last, "pid": pid, "started": _start_time(pid)})
        entries[:] = live
    return UidClaim(path, me, pid)

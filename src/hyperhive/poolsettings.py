"""`[pool]` in hive.toml: how many agents stay warm, how long, how many turns run at once, and
how often the manager gets its digest of quiet system notices (issue 13). No I/O."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from hyperhive.errors import StartupError

__all__ = ["DEFAULT_WARM_MIB", "PoolSettings", "default_budget_mib", "default_turn_limit", "pool_settings"]

DEFAULT_WARM_MIB = 290
"""What one warm agent holds (its claude CLI ~210 MiB and the turn worker ~75 MiB, measured by
bench/bench_swarm.py), for the budget's arithmetic."""
_KEYS = {"budget_mib", "max_warm", "warm_idle_seconds", "digest_seconds", "max_turns", "warm_mib", "warm_on_start"}


@dataclass(frozen=True)
class PoolSettings:
    budget_mib: int | None = None  # MiB of warm agents the host affords (None: half the host's memory)
    max_warm: int | None = None  # warm agents at most (None: only the budget bounds it)
    warm_idle_seconds: float = 300.0  # an agent idle this long is cooled
    digest_seconds: float = 300.0  # the manager's digest of held notices, at most this late
    max_turns: int | None = None  # turns at once (None: from the host's cores and memory)
    warm_mib: int = DEFAULT_WARM_MIB
    warm_on_start: bool = True  # an idle harness starts its CLI before its first message (a pre-warm)

    def warm_limit(self) -> int | None:
        """How many agents may be warm at once (None: unbounded, only when the host's memory
        cannot be read)."""
        if self.max_warm == 0 or self.budget_mib == 0:
            return 0
        budget = self.budget_mib if self.budget_mib is not None else default_budget_mib()
        limits = [n for n in (self.max_warm, budget and max(1, budget // max(1, self.warm_mib))) if n]
        return min(limits) if limits else None

    def turn_limit(self) -> int:
        return self.max_turns if self.max_turns else default_turn_limit()


def default_budget_mib() -> int | None:
    """Half the host's memory (MemTotal), for warm agents when `[pool] budget_mib` is not set."""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return max(1, pages * size // (2 * 1024 * 1024))


def default_turn_limit() -> int:
    """Turns at once: about two cold CLI starts per core, bounded by memory (~300 MiB a turn)."""
    cores = os.cpu_count() or 1
    try:
        pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        by_memory = max(1, (pages * size) // (300 * 1024 * 1024))
    except (ValueError, OSError):
        by_memory = cores * 2
    return max(1, min(cores * 2, by_memory))


def _number(section: dict[str, Any], key: str, *, integer: bool, low: float) -> Any:
    value = section.get(key)
    if value is None:
        return None
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or value < low:
        kind = "an integer" if integer else "a number"
        raise StartupError(f"hive.toml: [pool] {key} must be {kind} >= {low:g}")
    return value


def pool_settings(toml: dict[str, Any]) -> PoolSettings:
    section = toml.get("pool") or {}
    if not isinstance(section, dict):
        raise StartupError("hive.toml: [pool] must be a table")
    unknown = set(section) - _KEYS
    if unknown:
        raise StartupError(f"hive.toml: [pool] has unknown keys: {', '.join(sorted(unknown))}")
    defaults = PoolSettings()
    idle = _number(section, "warm_idle_seconds", integer=False, low=0.1)
    on_start = section.get("warm_on_start", defaults.warm_on_start)
    if not isinstance(on_start, bool):
        raise StartupError("hive.toml: [pool] warm_on_start must be true or false")
    digest = _number(section, "digest_seconds", integer=False, low=0.1)
    return PoolSettings(
        budget_mib=_number(section, "budget_mib", integer=True, low=0),
        max_warm=_number(section, "max_warm", integer=True, low=0),
        warm_idle_seconds=float(idle) if idle is not None else defaults.warm_idle_seconds,
        digest_seconds=float(digest) if digest is not None else defaults.digest_seconds,
        max_turns=_number(section, "max_turns", integer=True, low=1),
        warm_mib=_number(section, "warm_mib", integer=True, low=1) or DEFAULT_WARM_MIB,
        warm_on_start=on_start,
    )

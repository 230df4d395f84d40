"""The restart policy of an agent (agent.toml `restart`, `restart_limit`, `restart_backoff`) and
the record of why it is down, which the dashboard row, `hive list` and the agent's down page show.
Pure decisions; the lifecycle acts on them."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import Any

from hyperhive.agentconfig import AgentConfig
from hyperhive.cages.base import ExitInfo
from hyperhive.names import MANAGER

__all__ = ["MAX_BACKOFF", "RESET_AFTER", "Downtime", "backoff", "describe_exit", "policy_of", "wants_restart"]

MAX_BACKOFF = 300.0
RESET_AFTER = 600.0  # seconds of running after which a crash counts as the first in a row again
TAIL_LINES = 20


def policy_of(name: str, cfg: AgentConfig | None) -> str:
    """The effective policy: the config's, else `on-failure` for the manager and `no` for others."""
    if cfg is not None and cfg.restart is not None:
        return cfg.restart
    return "on-failure" if name == MANAGER else "no"


def wants_restart(policy: str, info: ExitInfo) -> bool:
    if policy == "always":
        return True
    if policy == "on-failure":
        return info.signal is not None or info.exit_code != 0
    return False


def backoff(base: float, attempt: int) -> float:
    """Seconds before restart number `attempt` (1-based) in a row: base, 2×base, 4×base, … ≤ 5 min."""
    return float(min(MAX_BACKOFF, base * 2 ** max(0, attempt - 1)))


def describe_exit(info: ExitInfo) -> str:
    if info.signal is not None:
        try:
            sig = signal.Signals(info.signal).name
        except ValueError:
            sig = str(info.signal)
        return f"killed by signal {info.signal} ({sig})"
    if info.exit_code is None:
        return "exited (status unknown)"
    return f"exited with status {info.exit_code}"


@dataclass
class Downtime:
    """The last unexpected exit and what the core does about it."""

    exit_code: int | None
    signal: int | None
    reason: str
    last_lines: list[str]
    at: float = field(default_factory=time.time)
    policy: str = "no"
    next_restart_at: float | None = None
    gave_up: bool = False

    @classmethod
    def of(cls, info: ExitInfo, policy: str) -> Downtime:
        return cls(info.exit_code, info.signal, describe_exit(info), list(info.last_lines[-TAIL_LINES:]), policy=policy)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "reason": self.reason,
            "last_lines": self.last_lines,
            "policy": self.policy,
            "next_restart_at": self.next_restart_at,
            "gave_up": self.gave_up,
        }

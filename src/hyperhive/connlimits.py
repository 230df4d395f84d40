"""Bounds on the daemon's open connections (issue 9 item 4): a small cap per agent socket, a
bounded host.sock, a capped dashboard, one shared budget for everything an agent can open, and
a reserve of file handles no agent can reach, so the operator's host.sock always answers.

Also the log side of a flood: repeated accept / EMFILE errors are rate-limited."""

from __future__ import annotations

import errno
import logging
import resource
import time

__all__ = [
    "AGENT_SOCKET_CONNS",
    "DASHBOARD_CONNS",
    "DASHBOARD_CONNS_PER_PEER",
    "FD_RESERVE",
    "HOST_SOCKET_CONNS",
    "Budget",
    "FloodLogFilter",
    "install_flood_log_filter",
    "raise_nofile_limit",
]

log = logging.getLogger(__name__)

AGENT_SOCKET_CONNS = 16
"""Open connections one agent's mcp.sock accepts at once (its harness needs about four)."""
HOST_SOCKET_CONNS = 64
"""Open connections host.sock accepts at once; outside the shared budget, so agents cannot use them."""
DASHBOARD_CONNS = 256
"""Open TCP connections the dashboard accepts at once, all peers together."""
DASHBOARD_CONNS_PER_PEER = 128
"""Open TCP connections one peer address may hold on the dashboard."""
FD_RESERVE = 256
"""File handles kept out of the shared budget: databases, cages' pipes, git, host.sock."""
NOFILE_WANTED = 65536


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit (at most NOFILE_WANTED); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(hard, NOFILE_WANTED)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return int(soft)


class Budget:
    """Connections every agent-reachable listener (agent sockets, dashboard) draws from together:
    the soft open-file limit less the host.sock cap and FD_RESERVE."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self.used = 0

    @classmethod
    def for_this_process(cls) -> Budget:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        soft = NOFILE_WANTED if soft == resource.RLIM_INFINITY else soft
        return cls(soft - HOST_SOCKET_CONNS - FD_RESERVE)

    def take(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def give_back(self) -> None:
        self.used = max(0, self.used - 1)


_FLOOD_TEXT = ("Too many open files", "out of system resource", "No file descriptors available")
_FLOOD_ERRNOS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class FloodLogFilter(logging.Filter):
    """Lets one resource-exhaustion record (EMFILE, accept out of resources…) through per
    `interval` seconds per logger; the next one that passes says how many were held back."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    @staticmethod
    def is_flood(record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError) and exc.errno in _FLOOD_ERRNOS:
            return True
        text = record.getMessage()
        return any(t in text for t in _FLOOD_TEXT)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.is_flood(record):
            return True
        now = time.monotonic()
        last = self._last.get(record.name)
        if last is not None and now - last < self.interval:
            self._held[record.name] = self._held.get(record.name, 0) + 1
            return False
        self._last[record.name] = now
        held = self._held.pop(record.name, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this not logged since the last one)"
        return True


_FLOOD_LOGGERS = ("asyncio", "uvicorn", "uvicorn.error", "hyperhive.core.sockets")


def install_flood_log_filter(interval: float = 10.0) -> FloodLogFilter:
    """Attach one FloodLogFilter to the loggers an accept storm writes to (idempotent)."""
    flt = FloodLogFilter(interval)
    for name in _FLOOD_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, FloodLogFilter)]:
            logger.removeFilter(old)
        logger.addFilter(flt)
    return flt

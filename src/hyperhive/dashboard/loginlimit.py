"""Failed dashboard logins per client address in a sliding window (issue 9): over the limit,
`/login` answers 429 with Retry-After, even for the right token, until the window moves."""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Final

__all__ = ["LOGIN_FAILURES", "LOGIN_WINDOW", "LoginLimiter"]

LOGIN_FAILURES: Final = 10  # failed logins per client per window before 429
LOGIN_WINDOW: Final = 300.0  # seconds


class LoginLimiter:
    """Failed logins per client in a sliding window: over `limit`, the client waits (429)."""

    def __init__(self, limit: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW, *, clients: int = 1024) -> None:
        self.limit = limit
        self.window = window
        self.clients = clients
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str, now: float | None = None) -> int:
        """Seconds the client must wait before its next attempt; 0 when it may try now."""
        now = time.monotonic() if now is None else now
        times = self._recent(client, now)
        if times is None or len(times) < self.limit:
            return 0
        return max(1, math.ceil(times[0] + self.window - now))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._recent(client, now)
        if times is None:
            if len(self._failures) >= self.clients:  # bounded memory: forget the oldest client
                del self._failures[next(iter(self._failures))]
            times = self._failures[client] = deque(maxlen=self.limit)
        times.append(now)

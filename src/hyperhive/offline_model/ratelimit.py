"""The offline model's rate-limit script: a wake message `ratelimit N` gets one 429 with
`retry-after: N` on the turn's first model call; the same call made again (after the wait) is
answered as usual. Lets tests drive the gateway's rate-limited state with the real CLI."""

from __future__ import annotations

import re
import threading
from typing import Any

from hyperhive.offline_model.policy import view_turn

__all__ = ["RateLimitScript"]

_RE = re.compile(r"(?is)ratelimit\s+(\d{1,4})")


class RateLimitScript:
    def __init__(self) -> None:
        self._done: set[tuple[int, str]] = set()
        self._lock = threading.Lock()
        self.refused = 0

    def check(self, body: dict[str, Any]) -> float | None:
        """The retry-after (seconds) to refuse this request with, or None to answer it."""
        view = view_turn(body)
        if view.wake is None or view.tool_calls or not (m := _RE.fullmatch(view.wake.body.strip())):
            return None
        key = (view.wake.msg_id, view.wake.body)
        with self._lock:
            if key in self._done:
                return None
            self._done.add(key)
            self.refused += 1
        return float(m[1])

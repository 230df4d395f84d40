"""`GET /healthz` (no session): is the hive ready, and is anything wrong? Only a status and
plain reasons with counts — no agent names, paths, tokens or versions (anyone who can reach
the port can read it)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["Health"]

LOW_DISK_BYTES: Final = 200 * 1024 * 1024


@dataclass
class Health:
    """The daemon flips `ready` when startup is done (the same moment it tells systemd
    READY=1) and `stopping` when it begins to shut down."""

    services: Any = None
    notify_failing: Callable[[], list[str]] = field(default=lambda: [])
    ready: bool = False
    stopping: bool = False

    def check(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 ok or degraded (with reasons), 503 starting or stopping."""
        if self.stopping:
            return 503, {"status": "stopping", "reasons": ["the daemon is shutting down"]}
        if not self.ready or self.services is None:
            return 503, {"status": "starting", "reasons": ["the daemon is starting"]}
        reasons: list[str] = []
        crashed = sum(1 for rt in self.services.lifecycle.agents.values() if rt.state == "crashed")
        if crashed:
            reasons.append(f"{crashed} agent{'s' if crashed != 1 else ''} crashed")
        try:
            free = shutil.disk_usage(self.services.config.state_dir).free
            if free < LOW_DISK_BYTES:
                reasons.append(f"the state directory's disk has {free // (1024 * 1024)} MiB free")
        except OSError:
            reasons.append("the state directory cannot be read")
        for sink in self.notify_failing():
            reasons.append(f"push notifications ({sink}) are failing")
        return 200, {"status": "degraded" if reasons else "ok", "reasons": reasons}

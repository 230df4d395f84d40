"""The gateway as the daemon runs it: one `Gateway`, the per-agent sockets opened and closed
with the agents' own, the cage environment (the agent token, never the upstream key), and the
state the gateway reports (rate limits) shown on the agent's row."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hyperhive.config import HiveConfig, direct_mode
from hyperhive.core.gateway import Gateway, RequestUsage
from hyperhive.core.hub import Hub
from hyperhive.core.usage import PriceTable, UsageBook
from hyperhive.store.sqlite import Database

if TYPE_CHECKING:
    from hyperhive.core.lifecycle import Lifecycle

__all__ = ["GatewayService"]

log = logging.getLogger(__name__)
UsageSinkT = Callable[[RequestUsage], Awaitable[None]]
RefuserT = Callable[[str], str | None]


class GatewayService:
    def __init__(self, config: HiveConfig, lifecycle: Lifecycle, db: Database, hub: Hub) -> None:
        self.config = config
        self.lifecycle = lifecycle
        self.gateway = Gateway(config.api, on_usage=self._usage, refuse=self._refuse, on_rate=self._rate)
        self.tokens: dict[str, str] = {}
        self.usage = UsageBook(db, hub, PriceTable(config.api.prices))
        self.usage_sinks: list[UsageSinkT] = []
        self.refusers: list[RefuserT] = []
        lifecycle.gateway_env = self.env_for
        log.info("model API gateway: agents reach %s through their api.sock", config.api.upstream)

    async def open(self, name: str, run_dir: Path, uid: int | None) -> None:
        self.tokens[name] = await self.gateway.open(name, run_dir, uid)

    async def close(self, name: str) -> None:
        self.tokens.pop(name, None)
        await self.gateway.close(name)

    async def aclose(self) -> None:
        await self.gateway.aclose()

    def env_for(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """The cage's model-API environment: the agent's own token and the shim switch. An agent
        whose env already names an endpoint or credential (direct mode) is left alone."""
        token = self.tokens.get(name)
        if token is None or direct_mode(env):
            return {}
        return {"ANTHROPIC_API_KEY": token, "HYPERHIVE_GATEWAY": "1"}

    async def _usage(self, record: RequestUsage) -> None:
        await self.usage.record(record)
        for sink in self.usage_sinks:
            await sink(record)

    def _refuse(self, name: str) -> str | None:
        for refuser in self.refusers:
            reason = refuser(name)
            if reason is not None:
                return reason
        return None

    def _rate(self, name: str, until: float | None) -> None:
        rt = self.lifecycle.agents.get(name)
        if rt is None:
            return
        rt.blocked = "rate_limited" if until is not None else None
        rt.blocked_until = until
        log.info("%s: %s", name, f"rate limited for {until - time.time():.0f} s" if until else "rate limit over")
        self.lifecycle.publish_row(name)


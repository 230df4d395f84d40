"""The gateway as the daemon runs it: one `Gateway`, the per-agent sockets opened and closed
with the agents' own, the cage environment (the agent token, never the upstream key), and the
state the gateway reports (rate limits) shown on the agent's row."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperhive.config import HiveConfig, direct_mode
from hyperhive.core.budget import HIVE, Budgets
from hyperhive.core.gateway import Gateway, RequestUsage
from hyperhive.core.hub import Hub
from hyperhive.core.usage import PriceTable, UsageBook
from hyperhive.store.base import Store

if TYPE_CHECKING:
    from hyperhive.core.broker import Broker
    from hyperhive.core.lifecycle import Lifecycle
    from hyperhive.core.questions import Questions

__all__ = ["GatewayService"]

log = logging.getLogger(__name__)
UsageSinkT = Callable[[RequestUsage], Awaitable[None]]
RefuserT = Callable[[str], Awaitable[str | None]]


class GatewayService:
    def __init__(self, config: HiveConfig, lifecycle: Lifecycle, store: Store, hub: Hub, broker: Broker,
                 questions: Questions) -> None:  # fmt: skip
        self.config = config
        self.lifecycle = lifecycle
        self.hub = hub
        self.gateway = Gateway(config.api, on_usage=self._usage, refuse=self._refuse, on_rate=self._rate)
        self.tokens: dict[str, str] = {}
        self.usage = UsageBook(store, hub, PriceTable(config.api.prices))
        self.budgets = Budgets(store, hub, self.usage, lifecycle, broker, questions, config.api.budget)
        self.usage_sinks: list[UsageSinkT] = []
        self.refusers: list[RefuserT] = [self.budgets.refusal]
        self._watcher: asyncio.Task[None] | None = None
        lifecycle.gateway_env = self.env_for
        log.info("model API gateway: agents reach %s through their api.sock", config.api.upstream)

    def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name="gateway-watch")

    async def _watch(self) -> None:
        """Budget answers and turn ends, from the core's live events."""
        await self.gateway.http()  # warm: the first model call does not wait for the CA bundle
        while True:
            sub = self.hub.subscribe()
            try:
                async for event in sub:
                    try:
                        if event.kind == "question_resolved":
                            await self.budgets.on_answer(event.payload)
                        elif event.kind == "agent_changed":
                            rt = self.lifecycle.agents.get(event.payload["name"])  # the reported state, unmasked
                            if rt is not None:
                                await self.budgets.on_state(rt.name, rt.harness_state)
                    except Exception:
                        log.exception("gateway: handling %s failed", event.kind)
            finally:
                sub.close()

    async def open(self, name: str, run_dir: Path, uid: int | None) -> None:
        self.tokens[name] = await self.gateway.open(name, run_dir, uid)

    async def close(self, name: str) -> None:
        self.tokens.pop(name, None)
        await self.gateway.close(name)

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.gateway.aclose()

    async def spend_summary(self) -> dict[str, Any]:
        """Spend per agent (today, 7 days) and the hive's, each next to its budget."""
        out = await self.usage.summary()
        for name, row in out["agents"].items():
            row["budget"] = await self.budgets.status(name) if self.budgets.limit_of(name) else None
            row["paused"] = name in self.budgets.paused
        for name in self.lifecycle.agents:
            if name in out["agents"]:
                continue
            out["agents"][name] = {"today": {"usd": 0.0, "tokens": 0, "requests": 0},
                                   "week": {"usd": 0.0, "tokens": 0, "requests": 0},
                                   "budget": await self.budgets.status(name) if self.budgets.limit_of(name) else None,
                                   "paused": name in self.budgets.paused}  # fmt: skip
        out["budget"] = await self.budgets.status(HIVE) if self.budgets.hive else None
        return out

    async def hold_recv(self, name: str, wait_seconds: float) -> bool:
        """For `recv`: True if `name` is paused by a budget (after waiting up to `wait_seconds`
        for a resume); its messages stay queued."""
        held = self.budgets.held(name)
        if held is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(held.wait(), max(0.0, wait_seconds))
        return self.budgets.held(name) is not None

    def env_for(self, name: str, env: dict[str, str]) -> dict[str, str]:
        """The cage's model-API environment: the agent's own token and the shim switch. An agent
        whose env already names an endpoint or credential (direct mode) is left alone."""
        token = self.tokens.get(name)
        if token is None or direct_mode(env):
            return {}
        return {"ANTHROPIC_API_KEY": token, "HYPERHIVE_GATEWAY": "1"}

    async def _usage(self, record: RequestUsage) -> None:
        await self.usage.record(record)
        await self.budgets.after_usage(record.agent)
        for sink in self.usage_sinks:
            await sink(record)

    async def _refuse(self, name: str) -> str | None:
        for refuser in self.refusers:
            reason = await refuser(name)
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

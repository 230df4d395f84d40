"""Token and cost accounting for what crosses the gateway: one price table (overridable in
hive.toml `[prices."<model>"]`), one durable row per response, and the sums budgets and the
dashboard read. Days are calendar days in the daemon's local time zone (the hive's `TZ`)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from hyperhive.core.gateway import RequestUsage
from hyperhive.core.hub import Hub
from hyperhive.store.base import Store

__all__ = ["DEFAULT_PRICES", "Price", "PriceTable", "UsageBook", "day_start"]

DAY = 86400.0


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    def cost(self, u: RequestUsage) -> float:
        return (
            u.input_tokens * self.input
            + u.output_tokens * self.output
            + u.cache_read_tokens * self.cache_read
            + u.cache_write_tokens * self.cache_write
        ) / 1_000_000


# Public list prices (cache write = the 5-minute tier). The longest key found in the model id
# wins; "*" prices an unknown model (as a sonnet, so a budget still holds).
DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-4-5": Price(5.0, 25.0, 0.50, 6.25),
    "opus": Price(15.0, 75.0, 1.50, 18.75),
    "sonnet": Price(3.0, 15.0, 0.30, 3.75),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.10, 1.25),
    "haiku": Price(0.80, 4.0, 0.08, 1.0),
    "claude-3-haiku": Price(0.25, 1.25, 0.03, 0.30),
    "*": Price(3.0, 15.0, 0.30, 3.75),
}


class PriceTable:
    def __init__(self, overrides: dict[str, dict[str, float]] | None = None) -> None:
        self.prices = dict(DEFAULT_PRICES)
        for model, p in (overrides or {}).items():
            base = self.prices.get(model, DEFAULT_PRICES["*"])
            self.prices[model.lower()] = Price(
                input=float(p.get("input", base.input)),
                output=float(p.get("output", base.output)),
                cache_read=float(p.get("cache_read", base.cache_read)),
                cache_write=float(p.get("cache_write", base.cache_write)),
            )

    def price(self, model: str) -> Price:
        name = model.lower()
        hits = [k for k in self.prices if k != "*" and k in name]
        return self.prices[max(hits, key=len)] if hits else self.prices["*"]


def day_start(now: float | None = None) -> float:
    """Local midnight of the day `now` falls in (the budget day)."""
    t = dt.datetime.fromtimestamp(time.time() if now is None else now).astimezone()
    return t.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


class UsageBook:
    def __init__(self, store: Store, hub: Hub, prices: PriceTable) -> None:
        self.store = store
        self.hub = hub
        self.prices = prices

    async def record(self, u: RequestUsage) -> dict[str, Any]:
        now = time.time()
        cost = self.prices.price(u.model).cost(u)
        row = {
            "agent": u.agent, "ts": now, "model": u.model, "request_id": u.request_id,
            "input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
            "cache_read_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens,
            "cost_usd": cost, "status": u.status, "duration_ms": u.duration_ms,
        }  # fmt: skip
        stats = [
            (u.agent, now, "gateway_input_tokens", float(u.input_tokens + u.cache_read_tokens + u.cache_write_tokens)),
            (u.agent, now, "gateway_output_tokens", float(u.output_tokens)),
            (u.agent, now, "gateway_cost_usd", cost),
            (u.agent, now, "gateway_request_ms", float(u.duration_ms)),
        ]
        row["id"] = await self.store.record_usage(row, stats)
        self.hub.publish("usage", {"agent": u.agent, "model": u.model, "cost_usd": cost,
                                   "tokens": u.input_tokens + u.output_tokens})  # fmt: skip
        return row

    async def spend(self, agent: str, since: float) -> dict[str, Any]:
        out = await self.store.usage_sums(agent=agent, since=since)
        out["tokens"] = _tokens(out)
        return out

    async def total(self, since: float) -> dict[str, Any]:
        out = await self.store.usage_sums(since=since)
        out["tokens"] = _tokens(out)
        return out

    async def recent(self, agent: str, limit: int = 50) -> list[dict[str, Any]]:
        return await self.store.usage_recent(agent, limit)

    async def summary(self, now: float | None = None) -> dict[str, Any]:
        """Spend per agent today and over 7 days, and the hive's totals."""
        today = day_start(now)
        week = today - 6 * DAY
        day_rows = await self.store.usage_by("agent", today)
        week_rows = await self.store.usage_by("agent", week)
        agents = {
            name: {"today": _brief(day_rows.get(name)), "week": _brief(w)} for name, w in sorted(week_rows.items())
        }
        return {"agents": agents, "today": _brief(await self.total(today)), "week": _brief(await self.total(week)),
                "day_start": today}  # fmt: skip

    async def purge(self, retention_days: float) -> int:
        before = time.time() - retention_days * DAY
        return await self.store.purge_usage_and_stats(before)


def _tokens(row: dict[str, Any]) -> int:
    return int(row["input_tokens"] + row["output_tokens"] + row["cache_read_tokens"] + row["cache_write_tokens"])


def _brief(row: dict[str, Any] | None) -> dict[str, Any]:
    if not row:
        return {"usd": 0.0, "tokens": 0, "requests": 0}
    return {"usd": round(float(row["cost_usd"]), 6), "tokens": _tokens(row), "requests": int(row["requests"])}

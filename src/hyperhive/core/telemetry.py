"""Telemetry (issue 12, the seed's series): rows `(agent, ts, key, value)` in the core's store,
written at every turn end (read from the agent's event trail when its harness leaves a turn)
and by the gateway per request, kept `retention_days`. `series()` turns them into what
`hive stats`, `GET /api/stats`, the charts and `/metrics` show.

Per turn: `turn` (1), `turn_ms`, `tool_calls`, `tool:<Name>`, `exit_ok` / `exit_compact_retry`
/ `exit_failure`, `sent_<class>` and `recv_<class>` (class: peer, operator, manager, system),
`inbox_depth`, `notes_bytes`, `turn_tokens`, `turn_cost_usd`. Hive-level (agent ""):
`approvals_pending`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import stat
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from hyperhive.names import MANAGER, OPERATOR

if TYPE_CHECKING:
    from hyperhive.core.services import Services

__all__ = ["CLASSES", "Telemetry", "recipient_class"]

log = logging.getLogger(__name__)
HIVE_ROW = ""
CLASSES = ("peer", "operator", "manager", "system")
EXITS = ("ok", "compact_retry", "failure")
TURN_STATES = ("thinking", "compacting")
VACUUM_EVERY = 3600.0


def recipient_class(name: str) -> str:
    if name == OPERATOR:
        return "operator"
    if name == MANAGER:
        return "manager"
    if name == "system":
        return "system"
    return "peer"


class Telemetry:
    def __init__(self, services: Services, retention_days: float = 30.0) -> None:
        self.s = services
        self.retention_days = retention_days
        self._cursor: dict[str, int] = {}  # agent → last event id read from its trail
        self._lock = asyncio.Lock()

    # ---- writing -------------------------------------------------------------------------

    async def run(self) -> None:
        """Watch the core's live events: a harness leaving a turn → its turn's stats; an
        approval change → the queue length. Plus the hourly retention sweep."""
        vacuum = asyncio.create_task(self._vacuum(), name="stats-vacuum")
        try:
            while True:
                sub = self.s.hub.subscribe()
                try:
                    async for event in sub:
                        try:
                            await self._on(event.kind, event.payload)
                        except Exception:
                            log.exception("telemetry: %s failed", event.kind)
                finally:
                    sub.close()
        finally:
            vacuum.cancel()

    async def _on(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "agent_changed":
            name = payload.get("name", "")
            rt = self.s.lifecycle.agents.get(name)
            state = rt.harness_state if rt is not None else None
            # events queue up: by the time "thinking" is handled the agent may be idle again, so
            # any report outside a turn reads the trail for turns ended since the cursor
            if rt is not None and state not in TURN_STATES and state not in (None, "starting"):
                await self.turn_ended(name)
        elif kind in ("approval_added", "approval_resolved"):
            pending = float(len(await self.s.approvals.pending()))
            await self.s.store.stats_insert([(HIVE_ROW, time.time(), "approvals_pending", pending)])
            self.s.hub.publish("stats_written", {"agent": None})

    async def turn_ended(self, name: str) -> int:
        """Read `name`'s trail since the last turn seen and write a row set per finished turn."""
        async with self._lock:
            after = self._cursor.get(name)
            if after is None:
                last = await self.s.store.stats_last_ts(name, "turn")
                events = await asyncio.to_thread(self.s.read_agent_events, name, limit=2000)
                events = [e for e in events if e["ts"] > last]
            else:
                events = await asyncio.to_thread(self.s.read_agent_events, name, after=after, limit=2000)
            if not events:
                return 0
            rows, consumed = await self._turn_rows(name, events)
            if consumed is not None:
                self._cursor[name] = consumed
            if rows:
                await self.s.store.stats_insert(rows)
                self.s.hub.publish("stats_written", {"agent": name})
            return len(rows)

    async def _turn_rows(
        self, name: str, events: list[dict[str, Any]]
    ) -> tuple[list[tuple[str, float, str, float]], int | None]:
        rows: list[tuple[str, float, str, float]] = []
        consumed: int | None = None
        start: dict[str, Any] | None = None
        tools: Counter[str] = Counter()
        sent: Counter[str] = Counter()
        compacted = False
        for e in events:
            kind, p = e["kind"], e["payload"] if isinstance(e["payload"], dict) else {}
            if kind == "turn_start":
                start, tools, sent, compacted = e, Counter(), Counter(), False
            elif start is None:
                continue
            elif kind == "stream" and p.get("type") == "assistant":
                for block in p.get("content") or []:
                    if isinstance(block, dict) and block.get("type") == "tool_use":
                        tool = str(block.get("name") or "?")[:80]
                        tools[tool] += 1
                        if tool == "mcp__hyperhive__send":
                            to = str((block.get("input") or {}).get("to") or "")
                            sent["peer" if to == "*" else recipient_class(to)] += 1
            elif kind == "note" and "compacting the session once" in str(p.get("text", "")):
                compacted = True  # the harness's own compact-and-retry
            elif kind == "stream" and p.get("type") == "system" and p.get("subtype") == "compact_boundary":
                compacted = True  # the CLI compacted the context inside the turn
            elif kind == "turn_end":
                rows += await self._one_turn(name, start, e, p, tools, sent, compacted)
                consumed, start = e["id"], None
        return rows, consumed

    async def _one_turn(self, name: str, start: dict[str, Any], end: dict[str, Any], p: dict[str, Any], tools: Counter[str],
                  sent: Counter[str], compacted: bool) -> list[tuple[str, float, str, float]]:  # fmt: skip
        ts = float(end["ts"])
        exit_kind = "failure" if not p.get("ok") else ("compact_retry" if compacted else "ok")
        sender = str((start["payload"] or {}).get("from") or "")
        out: dict[str, float] = {
            "turn": 1.0,
            "turn_ms": float(p.get("duration_ms") or 0),
            "tool_calls": float(sum(tools.values())),
            f"exit_{exit_kind}": 1.0,
            f"recv_{recipient_class(sender)}": 1.0,
            "inbox_depth": float(self.s.broker.unread(name)),
            "notes_bytes": float(_notes_size(self.s, name)),
        }
        for tool, n in tools.items():
            out[f"tool:{tool}"] = float(n)
        for cls in CLASSES:
            out.setdefault(f"sent_{cls}", float(sent.get(cls, 0)))
        gateway = self.s.gateway
        if gateway is not None:
            spent = await self.s.store.usage_sums(agent=name, since=float(start["ts"]), until=ts + 1.0)
            out["turn_tokens"] = float(spent["input_tokens"] + spent["output_tokens"] + spent["cache_read_tokens"]
                                       + spent["cache_write_tokens"])  # fmt: skip
            out["turn_cost_usd"] = float(spent["cost_usd"])
        else:  # direct mode: what the CLI reported
            usage = p.get("usage") or {}
            out["turn_tokens"] = float(sum(v for k, v in usage.items() if k.endswith("tokens") and isinstance(v, int)))
            out["turn_cost_usd"] = float(p.get("cost_usd") or 0.0)
        return [(name, ts, k, v) for k, v in out.items()]

    async def _vacuum(self) -> None:
        while True:
            before = time.time() - self.retention_days * 86400
            with contextlib.suppress(Exception):
                await self.s.store.purge_usage_and_stats(before)
            await asyncio.sleep(VACUUM_EVERY)

    # ---- reading -------------------------------------------------------------------------

    async def series(self, agent: str | None, since: float, now: float | None = None) -> dict[str, Any]:
        """Every series for `agent` (None: the hive) since `since`."""
        now = time.time() if now is None else now
        rows = await self.s.store.stats_series(agent, since)
        hive_rows = await self.s.store.stats_series(HIVE_ROW, since) if agent is not None else []
        by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in rows + hive_rows:
            if agent is None and r["agent"] == HIVE_ROW and r["key"] != "approvals_pending":
                continue
            by_key[r["key"]].append((r["ts"], r["value"]))
        turns = by_key.get("turn", [])
        per_min: Counter[float] = Counter(math.floor(ts / 60) * 60.0 for ts, _ in turns)
        durations = sorted(v for _, v in by_key.get("turn_ms", []))
        inbox = by_key.get("inbox_depth", [])
        current_inbox = self.s.broker.unread(agent) if agent else sum(self.s.broker.unread_counts().values())
        tool_counts = {k[5:]: int(sum(v for _, v in pts)) for k, pts in by_key.items() if k.startswith("tool:")}
        last_turn = max((ts for ts, _ in turns), default=None)
        return {
            "agent": agent,
            "since": since,
            "now": now,
            "turns": len(turns),
            "turns_per_min": sorted([ts, float(n)] for ts, n in per_min.items()),
            "tool_calls_per_turn": _points(by_key.get("tool_calls")),
            "turn_ms": _points(by_key.get("turn_ms")),
            "turn_ms_p50": _pct(durations, 0.50),
            "turn_ms_p95": _pct(durations, 0.95),
            "exits": {x: int(sum(v for _, v in by_key.get(f"exit_{x}", []))) for x in EXITS},
            "inbox_depth": _points(inbox),
            "inbox_depth_current": current_inbox,
            "inbox_depth_max": max([int(v) for _, v in inbox] + [current_inbox]),
            "sent": {c: int(sum(v for _, v in by_key.get(f"sent_{c}", []))) for c in CLASSES},
            "received": {c: int(sum(v for _, v in by_key.get(f"recv_{c}", []))) for c in CLASSES},
            "sent_per_turn": _per_turn(by_key, "sent_"),
            "received_per_turn": _per_turn(by_key, "recv_"),
            "approval_queue": _points(by_key.get("approvals_pending")),
            "approval_queue_current": len(await self.s.approvals.pending()),
            "tools": dict(sorted(tool_counts.items(), key=lambda kv: -kv[1])),
            "seconds_since_last_turn": None if last_turn is None else max(0.0, now - last_turn),
            "notes_bytes": _points(by_key.get("notes_bytes")),
            "tokens_per_turn": _points(by_key.get("turn_tokens")),
            "cost_per_turn": _points(by_key.get("turn_cost_usd")),
            "gateway_cost_usd": _points(by_key.get("gateway_cost_usd")),
        }


def _points(pts: list[tuple[float, float]] | None) -> list[list[float]]:
    return [[ts, v] for ts, v in pts or []]


def _per_turn(by_key: dict[str, list[tuple[float, float]]], prefix: str) -> dict[str, list[list[float]]]:
    return {c: _points(by_key.get(prefix + c)) for c in CLASSES}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def _notes_size(s: Services, name: str) -> int:
    """The size of the agent's /state/notes.md, without following a link it planted."""
    path = s.config.paths.agent(name).state / "notes.md"
    try:
        st = path.lstat()
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0

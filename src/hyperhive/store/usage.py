"""SQL for the gateway's per-request usage and the budget grants (migration `004_usage`).

One row per model response that crossed the gateway: agent, model, the four token counts and
its price at the time. A grant is the operator's answer to an over-budget question: extra
allowance for the current budget window ("raise") or one more turn ("once").
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = [
    "add_grant",
    "grants_since",
    "insert",
    "migrate",
    "per_agent",
    "per_model",
    "purge_before",
    "recent",
    "spend",
    "spend_between",
    "total",
    "use_grant",
]


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE usage (id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, ts REAL NOT NULL, "
        "model TEXT NOT NULL, request_id TEXT NOT NULL DEFAULT '', input_tokens INTEGER NOT NULL DEFAULT 0, "
        "output_tokens INTEGER NOT NULL DEFAULT 0, cache_read_tokens INTEGER NOT NULL DEFAULT 0, "
        "cache_write_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0, "
        "status INTEGER NOT NULL DEFAULT 200, duration_ms INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute("CREATE INDEX usage_agent_ts ON usage (agent, ts)")
    conn.execute("CREATE INDEX usage_ts ON usage (ts)")
    conn.execute(
        "CREATE TABLE budget_grants (id INTEGER PRIMARY KEY AUTOINCREMENT, agent TEXT NOT NULL, "
        "granted_at REAL NOT NULL, kind TEXT NOT NULL, usd REAL NOT NULL DEFAULT 0, "
        "tokens INTEGER NOT NULL DEFAULT 0, used INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute("CREATE INDEX budget_grants_agent ON budget_grants (agent, granted_at)")


def insert(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    cur = conn.execute(
        "INSERT INTO usage (agent, ts, model, request_id, input_tokens, output_tokens, cache_read_tokens, "
        "cache_write_tokens, cost_usd, status, duration_ms) VALUES (:agent, :ts, :model, :request_id, "
        ":input_tokens, :output_tokens, :cache_read_tokens, :cache_write_tokens, :cost_usd, :status, :duration_ms)",
        row,
    )
    return int(cur.lastrowid or 0)


_SUMS = (
    "COUNT(*) AS requests, COALESCE(SUM(input_tokens), 0) AS input_tokens, "
    "COALESCE(SUM(output_tokens), 0) AS output_tokens, COALESCE(SUM(cache_read_tokens), 0) AS cache_read_tokens, "
    "COALESCE(SUM(cache_write_tokens), 0) AS cache_write_tokens, COALESCE(SUM(cost_usd), 0) AS cost_usd"
)


def spend(conn: sqlite3.Connection, agent: str, since: float) -> dict[str, Any]:
    row = conn.execute(f"SELECT {_SUMS} FROM usage WHERE agent = ? AND ts >= ?", (agent, since)).fetchone()
    return dict(row)


def total(conn: sqlite3.Connection, since: float) -> dict[str, Any]:
    return dict(conn.execute(f"SELECT {_SUMS} FROM usage WHERE ts >= ?", (since,)).fetchone())


def per_agent(conn: sqlite3.Connection, since: float) -> dict[str, dict[str, Any]]:
    rows = conn.execute(f"SELECT agent, {_SUMS} FROM usage WHERE ts >= ? GROUP BY agent", (since,)).fetchall()
    return {r["agent"]: {k: v for k, v in dict(r).items() if k != "agent"} for r in rows}


def per_model(conn: sqlite3.Connection, agent: str, since: float) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        f"SELECT model, {_SUMS} FROM usage WHERE agent = ? AND ts >= ? GROUP BY model", (agent, since)
    ).fetchall()
    return {r["model"]: {k: v for k, v in dict(r).items() if k != "model"} for r in rows}


def recent(conn: sqlite3.Connection, agent: str, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM usage WHERE agent = ? ORDER BY id DESC LIMIT ?", (agent, limit)).fetchall()
    return [dict(r) for r in rows]


def purge_before(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM usage WHERE ts < ?", (before,)).rowcount


def add_grant(conn: sqlite3.Connection, agent: str, at: float, kind: str, usd: float, tokens: int) -> int:
    cur = conn.execute(
        "INSERT INTO budget_grants (agent, granted_at, kind, usd, tokens) VALUES (?, ?, ?, ?, ?)",
        (agent, at, kind, usd, tokens),
    )
    return int(cur.lastrowid or 0)


def grants_since(conn: sqlite3.Connection, agent: str, since: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM budget_grants WHERE agent = ? AND granted_at >= ? ORDER BY id", (agent, since)
    ).fetchall()
    return [dict(r) for r in rows]


def use_grant(conn: sqlite3.Connection, grant_id: int) -> None:
    conn.execute("UPDATE budget_grants SET used = 1 WHERE id = ?", (grant_id,))


def spend_between(conn: sqlite3.Connection, agent: str, since: float, until: float) -> dict[str, Any]:
    row = conn.execute(f"SELECT {_SUMS} FROM usage WHERE agent = ? AND ts >= ? AND ts < ?", (agent, since, until))
    return dict(row.fetchone())

"""SQL for the telemetry series (migration `005_stats`): rows `(agent, ts, key, value)`, written
at every turn end and by the gateway per request, kept for a retention window."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

__all__ = ["insert_many", "last_ts", "migrate", "purge_before", "series"]


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE stats (agent TEXT NOT NULL, ts REAL NOT NULL, key TEXT NOT NULL, value REAL NOT NULL)")
    conn.execute("CREATE INDEX stats_agent_ts ON stats (agent, ts)")
    conn.execute("CREATE INDEX stats_ts ON stats (ts)")


def insert_many(conn: sqlite3.Connection, rows: Iterable[tuple[str, float, str, float]]) -> None:
    conn.executemany("INSERT INTO stats (agent, ts, key, value) VALUES (?, ?, ?, ?)", rows)


def series(conn: sqlite3.Connection, agent: str | None, since: float, limit: int = 50_000) -> list[dict[str, Any]]:
    """Rows since `since`, oldest first (`agent` None: every agent's)."""
    if agent is None:
        cur = conn.execute("SELECT agent, ts, key, value FROM stats WHERE ts >= ? ORDER BY ts LIMIT ?", (since, limit))
    else:
        cur = conn.execute(
            "SELECT agent, ts, key, value FROM stats WHERE agent = ? AND ts >= ? ORDER BY ts LIMIT ?",
            (agent, since, limit),
        )
    return [dict(r) for r in cur.fetchall()]


def purge_before(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM stats WHERE ts < ?", (before,)).rowcount


def last_ts(conn: sqlite3.Connection, agent: str, key: str) -> float:
    row = conn.execute("SELECT MAX(ts) FROM stats WHERE agent = ? AND key = ?", (agent, key)).fetchone()
    return float(row[0] or 0.0)

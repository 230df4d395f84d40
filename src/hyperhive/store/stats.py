"""The telemetry series: the SQLite form of migration `005_stats` (the operations are in
`store/sqlops.py`): rows `(agent, ts, key, value)`, written at every turn end and by the gateway
per request, kept for a retention window."""

from __future__ import annotations

import sqlite3

__all__ = ["migrate"]


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE stats (agent TEXT NOT NULL, ts REAL NOT NULL, key TEXT NOT NULL, value REAL NOT NULL)")
    conn.execute("CREATE INDEX stats_agent_ts ON stats (agent, ts)")
    conn.execute("CREATE INDEX stats_ts ON stats (ts)")

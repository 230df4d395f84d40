"""The gateway's per-request usage and the budget grants: the SQLite form of migration `004_usage`
(the operations are in `store/sqlops.py`). One row per model response that crossed the gateway:
agent, model, the four token counts and its price at the time. A grant is the operator's answer
to an over-budget question: extra allowance for the current budget window."""

from __future__ import annotations

import sqlite3

__all__ = ["migrate"]


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

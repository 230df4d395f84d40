"""The dashboard's server-side session records: the SQLite form of migration `003_sessions` (the
operations are in `store/sqlops.py`). A cookie is honoured only while its `sid` has a row with
no `revoked_at`, so a logout (or "log out everywhere") survives a daemon restart."""

from __future__ import annotations

import sqlite3

__all__ = ["migrate"]


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE web_sessions (sid TEXT PRIMARY KEY, created_at REAL NOT NULL, last_seen REAL NOT NULL, "
        "client TEXT NOT NULL DEFAULT '', user_agent TEXT NOT NULL DEFAULT '', revoked_at REAL)"
    )
    conn.execute("CREATE INDEX web_sessions_live ON web_sessions (revoked_at, created_at)")

"""SQL for the dashboard's server-side session records (migration `003_sessions`).

A row per login: a cookie is honoured only while its `sid` has a row with no `revoked_at`, so a
logout (or "log out everywhere") survives a daemon restart.
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = ["active", "insert", "migrate", "purge_expired", "revoke", "revoke_all", "touch"]


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE web_sessions (sid TEXT PRIMARY KEY, created_at REAL NOT NULL, last_seen REAL NOT NULL, "
        "client TEXT NOT NULL DEFAULT '', user_agent TEXT NOT NULL DEFAULT '', revoked_at REAL)"
    )
    conn.execute("CREATE INDEX web_sessions_live ON web_sessions (revoked_at, created_at)")


def insert(conn: sqlite3.Connection, sid: str, at: float, client: str, user_agent: str) -> None:
    conn.execute(
        "INSERT INTO web_sessions (sid, created_at, last_seen, client, user_agent) VALUES (?, ?, ?, ?, ?)",
        (sid, at, at, client, user_agent),
    )


def touch(conn: sqlite3.Connection, sid: str, at: float) -> None:
    conn.execute("UPDATE web_sessions SET last_seen = ? WHERE sid = ? AND revoked_at IS NULL", (at, sid))


def revoke(conn: sqlite3.Connection, sid: str, at: float) -> int:
    cur = conn.execute("UPDATE web_sessions SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL", (at, sid))
    return cur.rowcount


def revoke_all(conn: sqlite3.Connection, at: float) -> int:
    cur = conn.execute("UPDATE web_sessions SET revoked_at = ? WHERE revoked_at IS NULL", (at,))
    return cur.rowcount


def purge_expired(conn: sqlite3.Connection, before: float) -> None:
    """Rows created before `before` can no longer be honoured (the cookie's max age): forget them."""
    conn.execute("DELETE FROM web_sessions WHERE created_at < ?", (before,))


def active(conn: sqlite3.Connection, since: float) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT sid, created_at, last_seen, client, user_agent FROM web_sessions "
        "WHERE revoked_at IS NULL AND created_at >= ? ORDER BY created_at",
        (since,),
    ).fetchall()
    return [dict(r) for r in rows]

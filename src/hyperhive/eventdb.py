"""The schema of an agent's events db (`hyperhive-events.sqlite`, architecture §6) and every statement
run on it, in one place: the harness's Bus writes it (`harness/bus.py`), the core reads it
read-only (`store/agent_events.py`). Neither spells the table out itself (issue 10).

Rows are `(id, ts, kind, payload-json)` tuples; ids come from AUTOINCREMENT, so they keep growing
across restarts and vacuums. Everything here blocks; stdlib `sqlite3` only.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEMA",
    "Row",
    "has_events_table",
    "insert",
    "last_id",
    "last_of_kind",
    "newest",
    "open_writer",
    "vacuum",
]

Row = tuple[Any, ...]  # (id, ts, kind, payload)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
"""


def open_writer(path: Path) -> sqlite3.Connection:
    """The harness's connection: autocommit (one committed row per event), WAL, schema made."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def last_id(conn: sqlite3.Connection) -> int:
    """The newest id ever handed out (0 for a fresh db), even if vacuum deleted its row."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0


def last_of_kind(conn: sqlite3.Connection, kind: str) -> Row | None:
    found: Row | None = conn.execute(
        "SELECT id, ts, kind, payload FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (kind,)
    ).fetchone()
    return found


def insert(conn: sqlite3.Connection, ts: float, kind: str, payload_json: str) -> int:
    """Store one event (committed on return: the connection is autocommit); its id."""
    cursor = conn.execute("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)", (ts, kind, payload_json))
    return cursor.lastrowid or 0


def newest(conn: sqlite3.Connection, after: int, limit: int) -> list[Row]:
    """The newest `limit` rows with `id > after`, oldest first."""
    rows: list[Row] = conn.execute(
        "SELECT id, ts, kind, payload FROM events WHERE id > ? ORDER BY id DESC LIMIT ?", (after, limit)
    ).fetchall()
    rows.reverse()  # cheaper than a second ORDER BY in SQL
    return rows


def has_events_table(conn: sqlite3.Connection) -> bool:
    """True if `events` is a real table: a reader of a db the agent wrote must not run a view."""
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'events'").fetchone()
    return kind is not None and kind[0] == "table"


def vacuum(conn: sqlite3.Connection, cutoff: float, keep: int) -> tuple[int, int]:
    """Drop rows older than `cutoff`, then all but the newest `keep`, in one transaction:
    (expired, trimmed)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        expired = conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
        trimmed = conn.execute(
            "DELETE FROM events WHERE id < (SELECT min(id) FROM (SELECT id FROM events ORDER BY id DESC LIMIT ?))",
            (keep,),
        ).rowcount
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return expired, trimmed

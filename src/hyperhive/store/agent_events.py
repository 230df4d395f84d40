"""Reading an agent's own event trail (`events.sqlite`, written by its harness, DESIGN §6) from
the core: read-only, a real `events` table only, within a time budget. The agent writes this
file, so it may hold anything, e.g. an `events` view over an endless recursive query."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hyperhive.store.sqlite import connect

__all__ = ["EventsUnreadable", "read_events"]


class EventsUnreadable(Exception):
    """The file is not a readable events db (the reason is the message)."""


def read_events(path: Path, after: int, limit: int, budget: float) -> list[tuple[int, float, str, str]]:
    """(id, ts, kind, payload-json) rows after `after`, the newest `limit`, oldest first. Blocking."""
    deadline = time.monotonic() + budget
    try:
        conn = connect(path, readonly=True)
    except sqlite3.Error as exc:
        raise EventsUnreadable(str(exc)) from exc
    try:
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'events'").fetchone()
        if kind is None or kind[0] != "table":
            raise EventsUnreadable("no events table")
        rows = conn.execute(
            "SELECT id, ts, kind, payload FROM (SELECT * FROM events WHERE id > ? ORDER BY id DESC LIMIT ?) ORDER BY id",
            (after, limit),
        ).fetchall()
    except sqlite3.Error as exc:
        raise EventsUnreadable(str(exc)) from exc
    finally:
        conn.close()
    return [(int(r[0]), float(r[1]), str(r[2]), str(r[3])) for r in rows]

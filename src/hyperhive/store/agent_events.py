"""Reading an agent's own event trail (`events.sqlite`, written by its harness, architecture §6; the
schema and its statements live in `hyperhive.eventdb`) from the core: read-only, a real `events` table only, within a time budget. The agent writes this
file, so it may hold anything, e.g. an `events` view over an endless recursive query."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from hyperhive import eventdb
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
        if not eventdb.has_events_table(conn):
            raise EventsUnreadable("no events table")
        rows = eventdb.newest(conn, after, limit)  # the schema's one owner, shared with the harness
    except sqlite3.Error as exc:
        raise EventsUnreadable(str(exc)) from exc
    finally:
        conn.close()
    return [(int(r[0]), float(r[1]), str(r[2]), str(r[3])) for r in rows]

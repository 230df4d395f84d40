"""Delivery attempts and dead letters in the broker's `messages` table (issue 9): the SQLite form of
the "002_delivery_attempts" migration. Parking, listing, retrying and discarding are store
operations (`store/sqlops.py`: requeue_inflight, dead_letters, retry_dead, discard_dead).

A message is delivered (`delivered_at` set, `attempts` + 1) and either acknowledged or put back
by a requeue. A requeue that finds it at `max_attempts` parks it instead: `dead_at` is set and
it leaves the queue, unacknowledged, until the operator retries it (back in the queue, attempts
reset) or discards it (acknowledged, so the 30-day vacuum eventually removes it)."""

from __future__ import annotations

import sqlite3

__all__ = ["migrate"]


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE messages ADD COLUMN dead_at REAL")
    conn.execute("CREATE INDEX messages_dead ON messages (dead_at) WHERE dead_at IS NOT NULL")

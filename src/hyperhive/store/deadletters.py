"""Delivery attempts and dead letters in the broker's `messages` table (issue 9): the SQL of the
"002_delivery_attempts" migration and of parking, listing, retrying and discarding.

A message is delivered (`delivered_at` set, `attempts` + 1) and either acknowledged or put back
by a requeue. A requeue that finds it at `max_attempts` parks it instead: `dead_at` is set and
it leaves the queue, unacknowledged, until the operator retries it (back in the queue, attempts
reset) or discards it (acknowledged, so the 30-day vacuum eventually removes it)."""

from __future__ import annotations

import sqlite3

__all__ = ["discard", "list_dead", "migrate", "park_or_requeue", "retry"]


def migrate(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE messages ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE messages ADD COLUMN dead_at REAL")
    conn.execute("CREATE INDEX messages_dead ON messages (dead_at) WHERE dead_at IS NOT NULL")


def park_or_requeue(c: sqlite3.Connection, agent: str, max_attempts: int, now: float) -> tuple[int, list[sqlite3.Row]]:
    """Put `agent`'s delivered, unacknowledged rows back, parking those that have used up their
    attempts. Returns (how many were requeued, the parked rows)."""
    inflight = "recipient = ? AND delivered_at IS NOT NULL AND acked_at IS NULL AND dead_at IS NULL"
    parked = c.execute(f"SELECT * FROM messages WHERE {inflight} AND attempts >= ? ORDER BY id",
                       (agent, max_attempts)).fetchall()  # fmt: skip
    if parked:
        marks = ",".join("?" * len(parked))
        c.execute(f"UPDATE messages SET dead_at = ?, delivered_at = NULL WHERE id IN ({marks})",
                  (now, *(r["id"] for r in parked)))  # fmt: skip
        parked = c.execute(f"SELECT * FROM messages WHERE id IN ({marks}) ORDER BY id",
                           tuple(r["id"] for r in parked)).fetchall()  # fmt: skip
    requeued = c.execute(
        f"UPDATE messages SET delivered_at = NULL, redelivered = 1 WHERE {inflight}", (agent,)
    ).rowcount
    return requeued, parked


def list_dead(c: sqlite3.Connection, limit: int) -> list[sqlite3.Row]:
    """Parked messages not yet retried or discarded, oldest first."""
    sql = "SELECT * FROM messages WHERE dead_at IS NOT NULL AND acked_at IS NULL ORDER BY id LIMIT ?"
    return c.execute(sql, (limit,)).fetchall()


def _parked(c: sqlite3.Connection, message_id: int) -> sqlite3.Row | None:
    sql = "SELECT * FROM messages WHERE id = ? AND dead_at IS NOT NULL AND acked_at IS NULL"
    row: sqlite3.Row | None = c.execute(sql, (message_id,)).fetchone()
    return row


def retry(c: sqlite3.Connection, message_id: int) -> sqlite3.Row | None:
    """Back into its recipient's queue with fresh attempts; None if `message_id` is not parked."""
    if _parked(c, message_id) is None:
        return None
    c.execute("UPDATE messages SET dead_at = NULL, delivered_at = NULL, attempts = 0, redelivered = 1 WHERE id = ?",
              (message_id,))  # fmt: skip
    return _by_id(c, message_id)


def discard(c: sqlite3.Connection, message_id: int, now: float) -> sqlite3.Row | None:
    """Acknowledge a parked message without delivering it; None if `message_id` is not parked."""
    if _parked(c, message_id) is None:
        return None
    c.execute("UPDATE messages SET acked_at = ? WHERE id = ?", (now, message_id))
    return _by_id(c, message_id)


def _by_id(c: sqlite3.Connection, message_id: int) -> sqlite3.Row | None:
    row: sqlite3.Row | None = c.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    return row

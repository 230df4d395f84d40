"""The per-agent event log (architecture §6): every `LiveEvent` in SQLite, broadcast to live subscribers.

`emit()` inserts one row, commits it (so the event survives a harness crash) and hands the
event to every subscriber without waiting: each subscriber has a bounded queue, and one that
falls behind is dropped (its SSE stream ends and the browser resumes with Last-Event-ID).
`history()` reads back the newest events; ids keep increasing across restarts (AUTOINCREMENT,
so even a vacuum that empties the table never lets an id be reused).

If the database cannot be opened or written, the Bus runs in no-store mode: events still
broadcast with in-memory ids, `history()` serves a small in-memory ring, nothing is persisted,
one warning goes to the log, and `persistent` / `store_error` say so for `/api/state`.

Everything here runs on the event loop's thread: a single insert + commit is tens of
microseconds (bench/bench_bus.py), cheaper than a hop to a writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, get_args

from hyperhive import eventdb
from hyperhive.livefeed import Fanout, Subscription

__all__ = [
    "EVENTS_DB_ENV",
    "EVENTS_DB_NAME",
    "KINDS",
    "MODEL_CHANGED",
    "NOTE",
    "NOTES_COMPACTED",
    "NOTES_COMPACTION_FAILED",
    "STATE_CHANGED",
    "STREAM",
    "TURN_END",
    "TURN_START",
    "Bus",
    "EventKind",
    "LiveEvent",
    "Subscription",
    "VacuumCounts",
    "default_events_path",
]

log = logging.getLogger(__name__)

EVENTS_DB_ENV: Final = "HYPERHIVE_EVENTS_DB"
EVENTS_DB_NAME: Final = "hyperhive-events.sqlite"

TURN_START: Final = "turn_start"
"""A turn began: `{from, body, unread}`."""
STREAM: Final = "stream"
"""One Claude Agent SDK message, as a dict."""
NOTE: Final = "note"
"""A harness remark or a stderr line: `{text}`."""
TURN_END: Final = "turn_end"
"""A turn finished: `{ok, note, duration_ms, usage}`."""
STATE_CHANGED: Final = "state_changed"
"""The agent's state changed: `{state, since, ...}`."""
MODEL_CHANGED: Final = "model_changed"
"""The model changed: `{model, ...}`."""
NOTES_COMPACTED: Final = "notes_compacted"
"""/state/notes.md was rewritten shorter: `{before_bytes, after_bytes, kept}` (issue 14)."""
NOTES_COMPACTION_FAILED: Final = "notes_compaction_failed"
"""A notes compaction was rejected; the notes are unchanged: `{reason, before_bytes}`."""

EventKind = Literal[
    "turn_start", "stream", "note", "turn_end", "state_changed", "model_changed", "notes_compacted",
    "notes_compaction_failed",
]  # fmt: skip
KINDS: Final[frozenset[str]] = frozenset(get_args(EventKind))

DEFAULT_KEEP: Final = 2000
DEFAULT_MAX_AGE: Final = 7 * 86400.0
DEFAULT_SUBSCRIBER_QUEUE: Final = 1024
NO_STORE_RING: Final = 500
_decode = json.JSONDecoder().decode


def default_events_path(state_dir: Path, environ: Mapping[str, str]) -> Path:
    """`$HYPERHIVE_EVENTS_DB` if set and non-empty, else `<state_dir>/hyperhive-events.sqlite`
    (in the cage `state_dir` is `/state`; architecture §2)."""
    override = environ.get(EVENTS_DB_ENV, "").strip()
    if override:
        return Path(override)
    return state_dir / EVENTS_DB_NAME


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: int
    ts: float
    kind: str
    payload: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready dict sent to browsers and `hive events --json`."""
        return {"id": self.id, "ts": self.ts, "kind": self.kind, "payload": self.payload}


@dataclass(frozen=True, slots=True)
class VacuumCounts:
    expired: int  # stage 1: rows older than max_age
    trimmed: int  # stage 2: rows beyond the newest `keep`


class Bus:
    """The per-agent event log. Construct, `emit()`, `history()`, `subscribe()`, `close()`.

    Call it from the event loop's thread only (subscriber wake-ups are `asyncio.Event`s).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        clock: Callable[[], float] = time.time,
        keep: int = DEFAULT_KEEP,
        max_age: float = DEFAULT_MAX_AGE,
        subscriber_queue: int = DEFAULT_SUBSCRIBER_QUEUE,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.path = path
        self.keep = keep
        self.max_age = max_age
        self._clock = clock
        self._fanout: Fanout[LiveEvent] = Fanout(queue=subscriber_queue, what="live events")
        self._conn: sqlite3.Connection | None = None
        self._ring: deque[LiveEvent] = deque(maxlen=NO_STORE_RING)
        self._last: dict[str, LiveEvent] = {}
        self._last_id = 0
        self._closed = False
        self.store_error: str | None = None
        if path is None:
            self._go_storeless("no events database path was given")
        else:
            self._open(path)
        # Stored ids survive restarts, so one epoch serves them all; without a store ids begin
        # again at 1 each run, and a page holding an older id must reload (see `sse`).
        self.epoch = "stored" if self._conn is not None else secrets.token_hex(8)

    # -- storage -------------------------------------------------------------------------------

    def _open(self, path: Path) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = eventdb.open_writer(path)
            self._last_id = eventdb.last_id(conn)
            for kind in KINDS:
                found = eventdb.last_of_kind(conn, kind)
                if found is not None:
                    self._last[kind] = _row_to_event(found)
        except (sqlite3.Error, OSError, ValueError) as exc:
            if conn is not None:
                conn.close()
            self._go_storeless(f"cannot open {path}: {exc}")
            return
        self._conn = conn

    def _go_storeless(self, reason: str) -> None:
        if self._conn is not None:
            # Keep the tail we can still read, so the page does not go blank mid-run.
            with contextlib.suppress(sqlite3.Error):
                self._ring.extend(_row_to_event(row) for row in eventdb.newest(self._conn, 0, NO_STORE_RING))
            self._conn.close()
            self._conn = None
        self.store_error = reason
        log.warning(
            "events are not stored (%s): live events still work, the trail will not survive a restart",
            reason,
        )

    @property
    def persistent(self) -> bool:
        """True while events are written to SQLite (False in no-store mode)."""
        return self._conn is not None

    @property
    def last_id(self) -> int:
        """The id of the newest event emitted (0 before the first one)."""
        return self._last_id

    @property
    def subscriber_count(self) -> int:
        return self._fanout.count

    # -- events --------------------------------------------------------------------------------

    def emit(self, kind: EventKind | str, payload: Mapping[str, Any] | None = None) -> LiveEvent:
        """Store one event (one committed row) and broadcast it; never waits on a subscriber."""
        if kind not in KINDS:
            raise ValueError(f"kind: {kind!r} is not one of {', '.join(sorted(KINDS))}")
        if self._closed:
            raise RuntimeError("the events bus is closed")
        body = dict(payload) if payload is not None else {}
        ts = self._clock()
        event_id = 0
        if self._conn is not None:
            try:
                event_id = eventdb.insert(self._conn, ts, kind, json.dumps(body, separators=(",", ":"), default=str))
            except sqlite3.Error as exc:
                self._go_storeless(f"cannot write {self.path}: {exc}")
        if event_id <= self._last_id:  # no-store, or a store that lost rows: stay monotonic
            event_id = self._last_id + 1
        self._last_id = event_id
        event = LiveEvent(event_id, ts, kind, body)
        if self._conn is None:
            self._ring.append(event)
        self._last[kind] = event
        self._fanout.publish(event)
        return event

    def history(self, limit: int = DEFAULT_KEEP, after: int = 0) -> list[LiveEvent]:
        """The newest `limit` events with `id > after`, oldest first."""
        if limit <= 0:
            return []
        if self._conn is None:
            tail = [e for e in self._ring if e.id > after]
            return tail[-limit:]
        try:
            rows = eventdb.newest(self._conn, after, limit)
        except sqlite3.Error as exc:
            self._go_storeless(f"cannot read {self.path}: {exc}")
            return []
        return [_row_to_event(row) for row in rows]

    def last_of(self, kind: EventKind | str) -> LiveEvent | None:
        """The newest event of `kind` (from this run, or found in the store at start)."""
        return self._last.get(kind)

    def subscribe(self) -> Subscription[LiveEvent]:
        if self._closed:
            raise RuntimeError("the events bus is closed")
        return self._fanout.subscribe()

    # -- vacuum --------------------------------------------------------------------------------

    def vacuum(self, now: float | None = None) -> VacuumCounts:
        """Drop rows older than `max_age`, then keep only the newest `keep` (architecture §6).

        A row exactly `max_age` old is kept. No-store mode has nothing to vacuum (the ring is
        bounded already).
        """
        if self._conn is None:
            return VacuumCounts(0, 0)
        cutoff = (self._clock() if now is None else now) - self.max_age
        try:
            expired, trimmed = eventdb.vacuum(self._conn, cutoff, self.keep)
        except sqlite3.Error as exc:
            self._go_storeless(f"cannot vacuum {self.path}: {exc}")
            return VacuumCounts(0, 0)
        if expired or trimmed:
            log.info("events vacuum: %d expired, %d trimmed", expired, trimmed)
        return VacuumCounts(expired, trimmed)

    async def run_vacuum(self, interval: float = 3600.0) -> None:
        """Vacuum now, then every `interval` seconds until cancelled or the Bus closes."""
        while not self._closed:
            try:
                self.vacuum()
            except Exception:  # a top-level loop: one bad sweep must not end the next ones
                log.exception("events vacuum failed")
            await asyncio.sleep(interval)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """End every subscription and close the database; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._fanout.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Bus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _row_to_event(row: tuple[Any, ...]) -> LiveEvent:
    event_id, ts, kind, payload = row
    try:
        body = _decode(payload)
    except ValueError:
        body = {"unreadable": payload}
    if type(body) is not dict:
        body = {"value": body}
    return LiveEvent(event_id, ts, kind, body)

"""The per-agent events Bus (architecture §6): SQLite trail, vacuum, no-store mode, live subscribers."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from hyperhive.harness.bus import (
    KINDS,
    MODEL_CHANGED,
    NOTE,
    STATE_CHANGED,
    STREAM,
    TURN_END,
    TURN_START,
    Bus,
    LiveEvent,
    VacuumCounts,
    default_events_path,
)

DAY = 86400.0
WEEK = 7 * DAY
T0 = 1_700_000_000.0


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "hyperhive-events.sqlite"


@pytest.fixture
def bus(db: Path) -> Iterator[Bus]:
    with Bus(db) as b:
        yield b


def bus_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hyperhive.harness.bus" and r.levelno == logging.WARNING]


def row_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


# -- emit and history ----------------------------------------------------------------------------


def test_history_returns_emitted_events_oldest_first_with_increasing_ids(bus: Bus) -> None:
    """emit() stores each event and history() reads them back in order (architecture §6)."""
    emitted = [
        bus.emit(TURN_START, {"from": "operator", "body": "hi", "unread": 0}),
        bus.emit(STREAM, {"type": "assistant", "content": [{"type": "text", "text": "hello"}]}),
        bus.emit(NOTE, {"text": "stderr line"}),
        bus.emit(TURN_END, {"ok": True, "note": "", "duration_ms": 12, "usage": {"input_tokens": 3}}),
        bus.emit(STATE_CHANGED, {"state": "idle", "since": T0}),
        bus.emit(MODEL_CHANGED, {"model": "haiku"}),
    ]
    assert [e.id for e in emitted] == [1, 2, 3, 4, 5, 6]
    assert bus.history() == emitted
    assert bus.persistent and bus.store_error is None


def test_every_documented_kind_is_accepted_and_nothing_else(bus: Bus) -> None:
    """The kinds are architecture §6's six plus issue 14's two notes-compaction events; an unknown
    kind is refused and stores nothing."""
    assert {TURN_START, STREAM, NOTE, TURN_END, STATE_CHANGED, MODEL_CHANGED, "notes_compacted",
            "notes_compaction_failed"} == KINDS  # fmt: skip
    with pytest.raises(ValueError, match="kind: 'turn_begin'"):
        bus.emit("turn_begin", {})
    assert bus.history() == []


def test_history_is_capped_at_the_newest_2000_events(bus: Bus) -> None:
    """history() reads back the most recent 2000 events, oldest first (architecture §6)."""
    for i in range(2005):
        bus.emit(NOTE, {"text": str(i)})
    events = bus.history()
    assert len(events) == 2000
    assert [e.id for e in events] == list(range(6, 2006))
    assert [e.id for e in bus.history(limit=3)] == [2003, 2004, 2005]


def test_history_after_an_id_returns_only_newer_events(bus: Bus) -> None:
    """history(after=n) is what an SSE resume reads (architecture §6, Last-Event-ID)."""
    for i in range(10):
        bus.emit(NOTE, {"text": str(i)})
    assert [e.id for e in bus.history(after=7)] == [8, 9, 10]
    assert bus.history(after=10) == []


def test_payloads_round_trip_through_the_store(db: Path) -> None:
    """What history() returns after a restart equals what emit() returned (architecture §6)."""
    payload = {"type": "result", "usage": {"input_tokens": 10, "output_tokens": 2}, "text": "ünïcode ✓"}
    with Bus(db) as first:
        emitted = first.emit(STREAM, payload)
    with Bus(db) as second:
        assert second.history() == [emitted]


def test_a_payload_that_is_not_json_is_stored_as_text(db: Path) -> None:
    """A stray non-JSON value in a payload (a Path, say) never makes emit() fail."""
    with Bus(db) as bus:
        bus.emit(NOTE, {"text": Path("/state/notes.md")})
    with Bus(db) as again:
        assert again.history()[0].payload == {"text": "/state/notes.md"}


# -- restarts ------------------------------------------------------------------------------------


def test_the_trail_and_its_ids_survive_a_restart(db: Path) -> None:
    """A new Bus on the same file sees the old events and continues their ids (architecture §6)."""
    with Bus(db) as first:
        before = [first.emit(NOTE, {"text": str(i)}) for i in range(3)]
    with Bus(db) as second:
        assert second.history() == before
        assert second.last_id == 3
        assert second.emit(NOTE, {"text": "after"}).id == 4


def test_ids_are_never_reused_even_when_vacuum_empties_the_table(db: Path) -> None:
    """An SSE client holding an old id must never skip new events: ids keep growing (architecture §6)."""
    clock = Clock()
    with Bus(db, clock=clock) as first:
        for i in range(5):
            first.emit(NOTE, {"text": str(i)})
        clock.now += 30 * DAY
        assert first.vacuum() == VacuumCounts(expired=5, trimmed=0)
    with Bus(db, clock=clock) as second:
        assert second.history() == []
        assert second.emit(NOTE, {"text": "new"}).id == 6


def test_each_emit_is_committed_before_it_returns(db: Path) -> None:
    """An event survives a crash right after emit(): another connection already sees the row."""
    with Bus(db) as bus:
        bus.emit(NOTE, {"text": "durable"})
        assert row_count(db) == 1


def test_last_of_a_kind_is_known_during_a_run_and_after_a_restart(db: Path) -> None:
    """last_of(kind) gives the newest event of a kind, e.g. the state for a fresh page."""
    with Bus(db) as first:
        first.emit(STATE_CHANGED, {"state": "thinking", "since": T0})
        idle = first.emit(STATE_CHANGED, {"state": "idle", "since": T0 + 1})
        first.emit(NOTE, {"text": "x"})
        assert first.last_of(STATE_CHANGED) == idle
        assert first.last_of(MODEL_CHANGED) is None
    with Bus(db) as second:
        assert second.last_of(STATE_CHANGED) == idle


# -- vacuum --------------------------------------------------------------------------------------


def test_vacuum_drops_rows_older_than_seven_days_and_keeps_the_boundary(db: Path) -> None:
    """Stage 1 drops rows *older* than 7 days: a row exactly 7 days old stays (architecture §6)."""
    clock = Clock()
    with Bus(db, clock=clock) as bus:
        clock.now = T0 - WEEK - 0.001
        bus.emit(NOTE, {"text": "just outside"})
        clock.now = T0 - WEEK
        at = bus.emit(NOTE, {"text": "exactly at"})
        clock.now = T0 - WEEK + 0.001
        inside = bus.emit(NOTE, {"text": "just inside"})
        clock.now = T0
        fresh = bus.emit(NOTE, {"text": "fresh"})
        assert bus.vacuum(now=T0) == VacuumCounts(expired=1, trimmed=0)
        assert bus.history() == [at, inside, fresh]


def test_vacuum_trims_to_the_2000_newest_and_not_one_more(db: Path) -> None:
    """Stage 2 keeps the 2000 newest rows: 2000 stay whole, 2001 lose the oldest (architecture §6)."""
    with Bus(db) as bus:
        for i in range(2000):
            bus.emit(NOTE, {"text": str(i)})
        assert bus.vacuum() == VacuumCounts(expired=0, trimmed=0)
        assert row_count(db) == 2000
        bus.emit(NOTE, {"text": "2001st"})
        assert bus.vacuum() == VacuumCounts(expired=0, trimmed=1)
        assert row_count(db) == 2000
        assert bus.history()[0].id == 2


def test_vacuum_runs_age_first_so_a_quiet_agent_keeps_its_tail(db: Path) -> None:
    """Age goes first, then the count cap: old rows leave, recent ones stay under the cap (architecture §6)."""
    clock = Clock(T0 - 10 * DAY)
    with Bus(db, clock=clock, keep=5) as bus:
        for i in range(4):
            bus.emit(NOTE, {"text": f"old {i}"})
        clock.now = T0
        recent = [bus.emit(NOTE, {"text": f"new {i}"}) for i in range(7)]
        assert bus.vacuum() == VacuumCounts(expired=4, trimmed=2)
        assert bus.history() == recent[2:]


async def test_run_vacuum_sweeps_at_once_and_stops_when_cancelled(db: Path) -> None:
    """The first sweep runs immediately, not an hour later; the task is cancellable (architecture §6)."""
    swept = asyncio.Event()

    class WatchedBus(Bus):
        def vacuum(self, now: float | None = None) -> VacuumCounts:
            counts = super().vacuum(now)
            swept.set()
            return counts

    clock = Clock(T0 - 8 * DAY)
    with WatchedBus(db, clock=clock) as bus:
        bus.emit(NOTE, {"text": "stale"})
        clock.now = T0
        task = asyncio.create_task(bus.run_vacuum(interval=3600))
        async with asyncio.timeout(5):
            await swept.wait()
        assert bus.history() == []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task


def test_default_events_path_is_in_state_unless_overridden() -> None:
    """/state/hyperhive-events.sqlite, or $HYPERHIVE_EVENTS_DB when set (architecture §2, §6)."""
    state = Path("/state")
    assert default_events_path(state, {}) == Path("/state/hyperhive-events.sqlite")
    assert default_events_path(state, {"HYPERHIVE_EVENTS_DB": ""}) == Path("/state/hyperhive-events.sqlite")
    assert default_events_path(state, {"HYPERHIVE_EVENTS_DB": "/tmp/e.db"}) == Path("/tmp/e.db")


# -- no-store mode -------------------------------------------------------------------------------


def _unopenable_paths(tmp_path: Path) -> dict[str, Path]:
    """Paths that fail even for root (permission bits would not stop root)."""
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("x", encoding="utf-8")
    a_dir = tmp_path / "a-directory.sqlite"
    a_dir.mkdir()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not an SQLite database, just 100 bytes of text " * 2)
    return {
        "parent is a regular file": a_file / "events.sqlite",
        "missing /state": tmp_path / "no-such-dir" / "events.sqlite",
        "path is a directory": a_dir,
        "file is not a database": garbage,
        "inside /proc": Path("/proc/self/hyperhive-events.sqlite"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "parent is a regular file",
        "missing /state",
        "path is a directory",
        "file is not a database",
        "inside /proc",
    ],
)
async def test_an_unopenable_store_means_no_store_mode_with_live_events(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    """If the db cannot be opened the Bus still broadcasts, says so once, persists nothing (architecture §6)."""
    path = _unopenable_paths(tmp_path)[case]
    caplog.set_level(logging.WARNING, logger="hyperhive.harness.bus")
    with Bus(path) as bus:
        assert not bus.persistent
        assert bus.store_error is not None and str(path) in bus.store_error
        sub = bus.subscribe()
        first = bus.emit(NOTE, {"text": "one"})
        second = bus.emit(NOTE, {"text": "two"})
        assert (first.id, second.id) == (1, 2)
        async with asyncio.timeout(5):
            assert [await anext(sub), await anext(sub)] == [first, second]
        assert bus.history() == [first, second]
        assert bus.vacuum() == VacuumCounts(0, 0)
    assert len(bus_warnings(caplog)) == 1
    assert "not stored" in bus_warnings(caplog)[0].getMessage()


def test_no_path_means_no_store_mode(caplog: pytest.LogCaptureFixture) -> None:
    """A dev run without /state: Bus(None) works in memory and says why (architecture §6)."""
    caplog.set_level(logging.WARNING, logger="hyperhive.harness.bus")
    with Bus(None) as bus:
        assert bus.emit(NOTE, {"text": "x"}).id == 1
        assert not bus.persistent and bus.store_error == "no events database path was given"
    assert len(bus_warnings(caplog)) == 1


def test_no_store_history_is_a_small_bounded_ring() -> None:
    """Without a store the page still gets a recent tail, but memory stays bounded."""
    with Bus(None) as bus:
        for i in range(1200):
            bus.emit(NOTE, {"text": str(i)})
        tail = bus.history()
        assert 0 < len(tail) < 2000
        assert tail[-1].id == 1200
        assert [e.id for e in tail] == list(range(1201 - len(tail), 1201))


async def test_a_store_that_fails_mid_run_switches_to_no_store_once(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full disk while running: the event is still broadcast with the next id, the page keeps
    its tail, and the log says so once (architecture §6)."""
    caplog.set_level(logging.WARNING, logger="hyperhive.harness.bus")
    with Bus(db) as bus:
        stored = [bus.emit(NOTE, {"text": str(i)}) for i in range(3)]
        sub = bus.subscribe()
        # Simulate a full disk: cap the file at its current size (SQLITE_FULL on the next page).
        conn = bus._conn
        assert conn is not None
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")
        big = bus.emit(STREAM, {"blob": "x" * 100_000})
        after = bus.emit(NOTE, {"text": "still live"})
        assert [big.id, after.id] == [4, 5]
        assert not bus.persistent
        assert bus.store_error is not None and "full" in bus.store_error
        async with asyncio.timeout(5):
            assert [await anext(sub), await anext(sub)] == [big, after]
        assert bus.history() == [*stored, big, after]
    assert len(bus_warnings(caplog)) == 1
    assert row_count(db) == 3


# -- live subscribers ----------------------------------------------------------------------------


async def test_subscribers_receive_each_live_event_in_order(bus: Bus) -> None:
    """emit() broadcasts to every live subscriber (architecture §6)."""
    first, second = bus.subscribe(), bus.subscribe()
    emitted = [bus.emit(NOTE, {"text": str(i)}) for i in range(3)]
    async with asyncio.timeout(5):
        got_first = [await anext(first) for _ in range(3)]
    assert got_first == emitted
    assert second.drain() == emitted
    first.close()
    second.close()
    assert bus.subscriber_count == 0


async def test_a_waiting_subscriber_wakes_on_emit(bus: Bus) -> None:
    """A subscriber blocked in `anext` is woken by the next emit (no polling)."""
    sub = bus.subscribe()
    waiter = asyncio.create_task(anext(sub))
    await asyncio.sleep(0)  # let the waiter block (a yield, not a timed wait)
    assert not waiter.done()
    event = bus.emit(NOTE, {"text": "wake"})
    async with asyncio.timeout(5):
        assert await waiter == event
    sub.close()


async def test_a_slow_subscriber_is_dropped_without_blocking_emit(db: Path) -> None:
    """A subscriber whose queue is full is dropped; emit() never waits, others keep receiving, and
    the dropped one still yields what it had queued, then ends (architecture §6, STYLE §4)."""
    with Bus(db, subscriber_queue=3) as bus:
        slow, fast = bus.subscribe(), bus.subscribe()
        received: list[LiveEvent] = []
        emitted = []
        for i in range(10):
            emitted.append(bus.emit(NOTE, {"text": str(i)}))  # synchronous: returning proves no wait
            received.extend(fast.drain())
        assert received == emitted
        assert slow.dropped and not fast.dropped
        assert bus.subscriber_count == 1
        async with asyncio.timeout(5):
            assert [e async for e in slow] == emitted[:3]
        fast.close()


async def test_close_ends_subscriptions_and_is_idempotent(db: Path) -> None:
    """close() ends live streams (so SSE responses finish) and can be called twice."""
    bus = Bus(db)
    sub = bus.subscribe()
    waiter = asyncio.create_task(anext(sub, None))
    await asyncio.sleep(0)
    bus.close()
    bus.close()
    async with asyncio.timeout(5):
        assert await waiter is None
    assert not sub.dropped
    with pytest.raises(RuntimeError, match="closed"):
        bus.emit(NOTE, {"text": "late"})

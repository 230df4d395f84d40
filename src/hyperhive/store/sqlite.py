"""SQLite with one writer thread fed by a queue, and a read connection on the caller's thread.

Each write is a function run inside a savepoint of a `BEGIN IMMEDIATE` transaction; the writer
batches whatever is queued into one commit, and resolves each caller's future only after that
commit, so an acknowledged write is durable and a failed one leaves no half row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hyperhive.fsutil import make_private
from hyperhive.store.migrations import Migration, apply_migrations

__all__ = ["Database", "connect", "private_database"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()
MAX_BATCH = 512


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """The one connection factory: WAL, synchronous=NORMAL, busy_timeout, foreign keys."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def private_database(path: Path) -> None:
    """Create the database file 0600 (SQLite gives its -wal and -shm the same mode) and make an
    existing one, and its -wal/-shm, 0600: the broker and the event trails are nobody else's."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        make_private(f"{path}{suffix}", 0o600)


class Database:
    """`await db.write(fn)` runs fn(conn) in the writer; `db.read(fn)` runs it on the read
    connection right away (WAL readers never wait for the writer)."""

    def __init__(self, path: Path, migrations: list[Migration]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        private_database(path)
        init = connect(path)
        try:
            applied = apply_migrations(init, migrations)
        finally:
            init.close()
        if applied:  # an upgrade's schema changes, named, in the daemon's log
            log.info("%s: applied migrations %s", path.name, ", ".join(applied))
        self._reader = connect(path)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name=f"sqlite-writer-{path.name}", daemon=True)
        self._closed = False
        self.writes = 0  # writer transactions asked for (what the broker's economy is measured by)
        self._writer.start()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("database is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self.writes += 1
        self._queue.put((fn, fut, loop))
        return await fut

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._reader)

    def _write_loop(self) -> None:
        conn = connect(self.path)
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                batch = [item]
                stop_after = False
                while len(batch) < MAX_BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop_after = True
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
                if stop_after:
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        outcomes: list[tuple[Any, Any, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            outcomes = [(fut, loop, None, exc) for _fn, fut, loop in batch]
            self._resolve(outcomes)
            return
        for fn, fut, loop in batch:
            conn.execute("SAVEPOINT w")
            try:
                result = fn(conn)
            except BaseException as exc:  # a failed write must not take the batch with it
                conn.execute("ROLLBACK TO w")
                conn.execute("RELEASE w")
                outcomes.append((fut, loop, None, exc))
            else:
                conn.execute("RELEASE w")
                outcomes.append((fut, loop, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.exception("commit failed; %d writes rolled back", len(batch))
            conn.execute("ROLLBACK")
            outcomes = [(fut, loop, None, exc) for fut, loop, _, _ in outcomes]
        self._resolve(outcomes)

    @staticmethod
    def _resolve(outcomes: list[tuple[Any, Any, Any, BaseException | None]]) -> None:
        for fut, loop, result, exc in outcomes:
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                loop.call_soon_threadsafe(_settle, fut, result, exc)

    def close(self, timeout: float = 10.0) -> None:
        """Idempotent: drain queued writes, stop the writer within `timeout`, close connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._writer.join(timeout)
        self._reader.close()


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)

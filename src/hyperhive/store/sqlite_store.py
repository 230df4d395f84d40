"""The embedded default `Store`: SQLite at `state/broker.sqlite`.

Writes go through `Database` (one writer thread, batched `BEGIN IMMEDIATE`, a caller resumed only
after COMMIT). Reads run on a small pool of reader threads, each with its own WAL connection, so
the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

from hyperhive.store import sqlops
from hyperhive.store.base import StoreCheck
from hyperhive.store.migrations import BROKER_MIGRATIONS, Migration
from hyperhive.store.sqlite import Database, connect
from hyperhive.store.sqlops import Tx
from hyperhive.store.sqlstore import SqlStore

__all__ = ["SqliteStore", "SqliteTx"]

T = TypeVar("T")
READERS = 2


class SqliteTx:
    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, tuple(params)).fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, tuple(params)).rowcount


class SqliteStore(SqlStore):
    backend = "sqlite"
    recheck_interval: float | None = None

    def __init__(self, path: Path, migrations: list[Migration] | None = None, *, migrate: bool = True) -> None:
        self.path = path
        self._migrations = BROKER_MIGRATIONS if migrations is None else migrations
        self.db = Database(path, self._migrations if migrate else [])
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(READERS, thread_name_prefix=f"sqlite-read-{path.name}")
        self._closed = False

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        return await self.db.write(lambda c: fn(SqliteTx(c)))

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(SqliteTx(self._reader())))

    def read_now(self, fn: Callable[[Tx], T]) -> T:
        """A read on the caller's thread: for the CLI and tests, never the event loop."""
        return fn(SqliteTx(self._reader()))

    async def check(self) -> StoreCheck:
        def run(tx: Tx) -> StoreCheck:
            done = {r["name"] for r in tx.rows("SELECT name FROM _migrations")}
            names = [m.name for m in self._migrations]
            return StoreCheck(backend=self.backend, location=str(self.path),
                              applied=[n for n in names if n in done], missing=[n for n in names if n not in done],
                              counts=sqlops.counts(tx))  # fmt: skip

        return await self._read(run)

    async def close(self) -> None:
        # joining the writer and reader threads waits for their last statement: not on the loop
        await asyncio.to_thread(self.close_now)

    def close_now(self) -> None:
        """Idempotent: drain the writer, stop the readers."""
        if self._closed:
            return
        self._closed = True
        self.db.close()
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

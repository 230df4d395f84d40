"""The PostgreSQL `Store` (`hive serve --store postgresql://…`), on psycopg 3 and its pool.

Each operation is one transaction on a pooled connection, run on a worker thread so the event
loop never waits. Claims lock with `FOR UPDATE SKIP LOCKED`; transitions are conditional
UPDATEs; ids come from identities and the `counters` row. A committed message also sends
`NOTIFY hyperhive_wake, '<writer>:<recipient>'`: only a hint, a long-poll re-checks every
`recheck_interval` seconds whatever it hears. A store ignores its own hints (its process woke
the recipient already).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from hyperhive.errors import HiveError
from hyperhive.store import sqlops
from hyperhive.store.base import MessageRow, StoreCheck
from hyperhive.store.migrations import BROKER_MIGRATIONS, Migration
from hyperhive.store.sqlops import Tx
from hyperhive.store.sqlstore import SqlStore

__all__ = ["PostgresStore", "PgTx", "apply_pg_migrations", "redact"]

log = logging.getLogger(__name__)
T = TypeVar("T")
WAKE_CHANNEL = "hyperhive_wake"
POOL_SIZE = 8
RECHECK = 1.0
LISTEN_TIMEOUT = 10.0  # how long subscribing waits for the LISTEN before relying on re-checks
MIGRATION_LOCK = 0x68697665  # "hive": one node migrates at a time


def redact(url: str) -> str:
    """The URL without its password, for logs and `hive store check`."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparseable url)"
    info.pop("password", None)
    return "postgresql: " + " ".join(f"{k}={v}" for k, v in sorted(info.items()))


class PgTx:
    dialect: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql.replace("?", "%s"), tuple(params))
        return list(cur.fetchall()) if cur.description is not None else []

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql.replace("?", "%s"), tuple(params)).rowcount


def apply_pg_migrations(conn: psycopg.Connection[Any], migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction, under an advisory
    lock so two nodes starting together do not both apply one."""
    applied = []
    with conn.transaction():
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
    for migration in migrations:
        if not migration.postgres:
            raise HiveError(f"migration {migration.name} has no PostgreSQL form; this store cannot be upgraded")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            done = conn.execute("SELECT 1 FROM _migrations WHERE name = %s", (migration.name,)).fetchone()
            if done:
                continue
            for statement in migration.postgres.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (%s, %s)", (migration.name, time.time()))
        applied.append(migration.name)
    return applied


class PostgresStore(SqlStore):
    backend = "postgresql"
    recheck_interval: float | None = RECHECK

    def __init__(self, url: str, migrations: list[Migration] | None = None, *, migrate: bool = True) -> None:
        self.url = url
        self.location = redact(url)
        self._migrations = BROKER_MIGRATIONS if migrations is None else migrations
        self.applied: list[str] = []
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                if migrate:
                    self.applied = apply_pg_migrations(conn, self._migrations)
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split())  # libpq's message spans lines: one line here
            raise HiveError(f"cannot open the store at {self.location}: {reason}") from exc
        if self.applied:
            log.info("%s: applied migrations %s", self.location, ", ".join(self.applied))
        self._pool: ConnectionPool[psycopg.Connection[dict[str, Any]]] = ConnectionPool(
            url, min_size=1, max_size=POOL_SIZE, kwargs={"row_factory": dict_row, "autocommit": True}, open=True,
            name="hyperhive-store",
        )  # fmt: skip
        self._executor = ThreadPoolExecutor(POOL_SIZE, thread_name_prefix="pg-store")
        self._closed = False
        self._listener: threading.Thread | None = None
        self._writer_id = secrets.token_hex(6)
        self._callbacks: list[tuple[asyncio.AbstractEventLoop, Callable[[str], None]]] = []
        self._listen_conn: psycopg.Connection[Any] | None = None
        self._listening = threading.Event()

    # ---- running operations ----------------------------------------------------------------

    def run_now(self, fn: Callable[[Tx], T]) -> T:
        """A write: one transaction (BEGIN … COMMIT)."""
        with self._pool.connection() as conn, conn.transaction():
            return fn(PgTx(conn))

    def read_now(self, fn: Callable[[Tx], T]) -> T:
        """A read: each statement on its own (autocommit), one round trip, no BEGIN/COMMIT."""
        with self._pool.connection() as conn:
            return fn(PgTx(conn))

    async def _write(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run_now, fn)

    async def _read(self, fn: Callable[[Tx], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.read_now, fn)

    # ---- wake-up hints -----------------------------------------------------------------------

    def _notify(self, tx: Tx, recipients: Collection[str]) -> None:
        for recipient in set(recipients):
            tx.rows("SELECT pg_notify(?, ?)", (WAKE_CHANNEL, f"{self._writer_id}:{recipient}"))

    async def insert_messages(self, sender: str, recipients: Sequence[str], body: str, now: float, *,
                              in_reply_to: int | None = None, broadcast: bool = False,
                              settled: Collection[str] = ()) -> list[int]:  # fmt: skip
        recipients, settled = list(recipients), set(settled)

        def run(tx: Tx) -> list[int]:
            ids = sqlops.insert_messages(tx, sender, recipients, body, now, in_reply_to, broadcast, settled)
            self._notify(tx, [r for r in recipients if r not in settled])
            return ids

        return await self._write(run)

    async def requeue_inflight(self, agent: str, max_attempts: int, now: float) -> tuple[int, list[MessageRow]]:
        def run(tx: Tx) -> tuple[int, list[MessageRow]]:
            out = sqlops.requeue_inflight(tx, agent, max_attempts, now)
            if out[0]:
                self._notify(tx, [agent])
            return out

        return await self._write(run)

    async def retry_dead(self, message_id: int) -> MessageRow | None:
        def run(tx: Tx) -> MessageRow | None:
            row = sqlops.retry_dead(tx, message_id)
            if row is not None:
                self._notify(tx, [row["recipient"]])
            return row

        return await self._write(run)

    async def subscribe_wakeups(self, callback: Callable[[str], None]) -> None:
        """Call `callback(recipient)` on the caller's loop for every NOTIFY from another writer.
        Returns once the LISTEN is in effect (or its connection failed: long-polls then re-check),
        so a message committed after this call is heard."""
        loop = asyncio.get_running_loop()
        self._callbacks.append((loop, callback))
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="pg-listen", daemon=True)
            self._listener.start()
        if not await asyncio.to_thread(self._listening.wait, LISTEN_TIMEOUT):
            log.warning(
                "store wake-up listener not up after %.0fs; long-polls re-check every %.1fs", LISTEN_TIMEOUT, RECHECK
            )

    def _listen(self) -> None:
        try:
            conn = psycopg.connect(self.url, autocommit=True)
            conn.execute(f"LISTEN {WAKE_CHANNEL}")
            self._listen_conn = conn
            self._listening.set()
            if self._closed:
                conn.close()
                return
            for note in conn.notifies():
                writer, _, recipient = note.payload.partition(":")
                if writer == self._writer_id:
                    continue
                for cb_loop, cb in list(self._callbacks):
                    with contextlib.suppress(RuntimeError):  # that loop is gone
                        cb_loop.call_soon_threadsafe(cb, recipient)
        except psycopg.Error:
            if not self._closed:
                log.warning("store wake-up listener lost its connection; long-polls re-check every %.1fs", RECHECK)
        finally:
            self._listening.set()  # whoever waits for the LISTEN stops waiting: re-checks cover the rest

    # ---- admin -------------------------------------------------------------------------------

    async def check(self) -> StoreCheck:
        def run(tx: Tx) -> StoreCheck:
            done = {r["name"] for r in tx.rows("SELECT name FROM _migrations")}
            names = [m.name for m in self._migrations]
            return StoreCheck(backend=self.backend, location=self.location,
                              applied=[n for n in names if n in done], missing=[n for n in names if n not in done],
                              counts=sqlops.counts(tx))  # fmt: skip

        return await self._read(run)

    async def close(self) -> None:
        await asyncio.to_thread(self.close_now)

    def close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listen_conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._listen_conn.cancel()
            with contextlib.suppress(psycopg.Error):
                self._listen_conn.close()
        if self._listener is not None:
            self._listener.join(5)
        self._executor.shutdown(wait=True)
        self._pool.close()

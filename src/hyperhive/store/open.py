"""Open the store a hive names: SQLite at `state/broker.sqlite` (the default) or PostgreSQL
(`--store postgresql://…`, `[store] url` in hive.toml, `HYPERHIVE_STORE`)."""

from __future__ import annotations

from pathlib import Path

from hyperhive.errors import HiveError
from hyperhive.store.base import Store

__all__ = ["describe", "is_postgres", "open_store"]


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def describe(url: str | None, sqlite_path: Path) -> str:
    if is_postgres(url):
        from hyperhive.store.postgres import redact

        return redact(str(url))
    return f"sqlite: {sqlite_path}"


def open_store(url: str | None, sqlite_path: Path, *, migrate: bool = True) -> Store:
    """Open (and, unless told not to, migrate) the store. Blocking: call it off the event loop
    or before it runs."""
    if not url or url in ("sqlite", "sqlite:"):
        from hyperhive.store.sqlite_store import SqliteStore

        return SqliteStore(sqlite_path, migrate=migrate)
    if is_postgres(url):
        from hyperhive.store.postgres import PostgresStore

        return PostgresStore(url, migrate=migrate)
    raise HiveError(f"unknown store {url.split(':', 1)[0]!r}: give postgresql://… or leave it unset for SQLite")

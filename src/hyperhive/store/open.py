"""Open the store a hive names: SQLite at `state/broker.sqlite` (the default) or PostgreSQL
(`--store postgresql://…`, `[store] url` in hive.toml, `HYPERHIVE_STORE`)."""

from __future__ import annotations

from pathlib import Path

from hyperhive.errors import HiveError
from hyperhive.store.base import Store

__all__ = ["check_url", "describe", "is_postgres", "open_store"]


def is_postgres(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def check_url(url: str | None) -> None:
    """Refuse a store URL that names neither backend (unset means SQLite)."""
    if url and url not in ("sqlite", "sqlite:") and not is_postgres(url):
        raise HiveError(f"unknown store {url.split(':', 1)[0]!r}: give postgresql://… or leave it unset for SQLite")


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
    check_url(url)
    raise AssertionError("unreachable: check_url refused it")

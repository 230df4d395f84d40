"""`hive store migrate|check|copy`: the store's schema and a move from SQLite to PostgreSQL.

The store is the one `hive serve` would open: `--store`, else HYPERHIVE_STORE, else `[store] url`
in hive.toml, else SQLite at STATE/broker.sqlite. `copy` runs only with the daemon stopped, into
an empty destination, and checks every table's row count afterwards. Registered by cli.py."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import click
from click import Command

from hyperhive.cli_common import _fail, _print_json, handle_errors, json_option
from hyperhive.config import load_config
from hyperhive.errors import HiveError
from hyperhive.store import sqlops
from hyperhive.store.base import Store
from hyperhive.store.open import check_url, describe, is_postgres, open_store

__all__ = ["COMMANDS", "copy_store", "refuse_password_in_argv"]

PAGE = 1000
# what must be empty at the destination: a copy never merges two hives
HIVE_TABLES = ("messages", "agents", "approvals", "questions", "usage", "budget_grants", "stats", "web_sessions")


def refuse_password_in_argv(url: str | None) -> None:
    """A password on the command line is visible to every local user (ps): refuse it."""
    if url and is_postgres(url):
        from psycopg.conninfo import conninfo_to_dict

        try:
            has_password = "password" in conninfo_to_dict(url)
        except Exception:  # noqa: BLE001 (psycopg raises its own ProgrammingError subclasses)
            raise HiveError("--store: not a PostgreSQL URL psycopg can read") from None
        if has_password:
            raise HiveError("--store: keep the password out of the command line (visible in ps): put it in "
                            "~/.pgpass or PGPASSFILE, or the whole URL in HYPERHIVE_STORE or [store] url of hive.toml")  # fmt: skip


def _options(fn: Any) -> Any:
    fn = click.option("--store", "store_url", metavar="URL",
                      help="The store (default: HYPERHIVE_STORE, [store] url, else SQLite in the state dir).")(fn)  # fmt: skip
    return click.option("--state-dir", type=click.Path(path_type=Path), envvar="HYPERHIVE_STATE_DIR",
                        help="Durable state directory [env HYPERHIVE_STATE_DIR].")(fn)  # fmt: skip


def _resolve(state_dir: Path | None, store_url: str | None) -> tuple[str | None, Path, Path]:
    refuse_password_in_argv(store_url)
    config = load_config(state_dir=state_dir, store=store_url)
    check_url(config.store_url)
    return config.store_url, config.paths.broker_db, config.paths.host_socket


def _daemon_running(host_socket: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        try:
            s.connect(str(host_socket))
        except OSError:
            return False
    return True


@click.group("store")
def store_group() -> None:
    """The store: SQLite (default) or PostgreSQL; its migrations, a check, a copy."""


@store_group.command("migrate")
@_options
@json_option
@handle_errors
def migrate(state_dir: Path | None, store_url: str | None, as_json: bool) -> None:
    """Apply the migrations the store lacks (hive serve also does this at start)."""
    url, sqlite_path, _sock = _resolve(state_dir, store_url)

    async def run() -> dict[str, Any]:
        store = await asyncio.to_thread(open_store, url, sqlite_path)
        try:
            return dict(await store.check())
        finally:
            await store.close()

    report = asyncio.run(run())
    if as_json:
        _print_json(report)
        return
    click.echo(f"{report['location']}: {len(report['applied'])} migrations applied, none missing")


@store_group.command("check")
@_options
@json_option
@handle_errors
def check(state_dir: Path | None, store_url: str | None, as_json: bool) -> None:
    """Reach the store, list applied and missing migrations and row counts (exit 1 if any is missing)."""
    url, sqlite_path, _sock = _resolve(state_dir, store_url)
    if not is_postgres(url) and not sqlite_path.exists():
        _fail(f"no store at {sqlite_path} (hive serve creates it)")

    async def run() -> dict[str, Any]:
        store = await asyncio.to_thread(open_store, url, sqlite_path, migrate=False)
        try:
            return dict(await store.check())
        finally:
            await store.close()

    report = asyncio.run(run())
    if as_json:
        _print_json(report)
    else:
        click.echo(f"store: {report['location']}")
        click.echo(f"migrations: {len(report['applied'])} applied" +
                   (f", missing: {', '.join(report['missing'])}" if report["missing"] else ", none missing"))  # fmt: skip
        click.echo("rows: " + ", ".join(f"{t} {n}" for t, n in report["counts"].items()))
    if report["missing"]:
        _fail("the store lacks migrations: run `hive store migrate` (or start hive serve)")


async def copy_store(source: Store, dest: Store) -> dict[str, int]:
    """Copy every table, page by page, then check each count. Returns the counts."""
    before = (await dest.check())["counts"]
    busy = [t for t in HIVE_TABLES if before.get(t)]
    if busy:
        raise HiveError(f"the destination already holds a hive ({', '.join(f'{t}: {before[t]}' for t in busy)}); "
                        "copy into an empty database")  # fmt: skip
    for table in sqlops.TABLES:
        after: Any = None
        offset = 0
        while True:
            rows = await source.export_rows(table, offset if table == "stats" else after, PAGE)
            if not rows:
                break
            await dest.import_rows(table, rows)
            offset += len(rows)
            after = rows[-1][sqlops.KEYS[table]] if table != "stats" else None
    await dest.finish_import()
    want, got = (await source.check())["counts"], (await dest.check())["counts"]
    wrong = [f"{t}: {want[t]} at the source, {got.get(t)} copied" for t in want if got.get(t) != want[t]]
    if wrong:
        raise HiveError("the copy does not match: " + "; ".join(wrong))
    return want


@store_group.command("copy")
@_options
@click.option("--to", "to_url", required=True, metavar="URL", help="The destination (postgresql://…), empty.")
@json_option
@handle_errors
def copy(state_dir: Path | None, store_url: str | None, to_url: str, as_json: bool) -> None:
    """Copy this hive's store into another (the daemon stopped), counted and checked."""
    refuse_password_in_argv(to_url)
    check_url(to_url)
    url, sqlite_path, host_socket = _resolve(state_dir, store_url)
    if _daemon_running(host_socket):
        _fail(f"hive serve is running (it answers on {host_socket}): stop it first, so nothing changes mid-copy")
    if not is_postgres(url) and not sqlite_path.exists():
        _fail(f"no store at {sqlite_path}")
    if describe(url, sqlite_path) == describe(to_url, sqlite_path):
        _fail("--to names the store being copied")

    async def run() -> dict[str, int]:
        source = await asyncio.to_thread(open_store, url, sqlite_path)
        try:
            dest = await asyncio.to_thread(open_store, to_url, sqlite_path)
            try:
                return await copy_store(source, dest)
            finally:
                await dest.close()
        finally:
            await source.close()

    counts = asyncio.run(run())
    if as_json:
        _print_json({"copied": counts, "to": describe(to_url, sqlite_path)})
        return
    click.echo("copied and checked: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    click.echo(f"to run on it: `hive serve --store URL`, or set [store] url in {sqlite_path.parent / 'hive.toml'}")


COMMANDS: list[Command] = [store_group]

"""Ordered, named schema migrations, recorded in a table. Never edit a shipped one: append."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from hyperhive.store import deadletters, pg_schema, websessions
from hyperhive.store import nodes as nodes_sql
from hyperhive.store import stats as stats_sql
from hyperhive.store import usage as usage_sql

__all__ = ["BROKER_MIGRATIONS", "Migration", "apply_migrations"]


@dataclass(frozen=True)
class Migration:
    """`apply` runs on SQLite; `postgres` is the same change for PostgreSQL (store/pg_schema.py).
    A migration with no PostgreSQL form stops a PostgreSQL store from starting, by name."""

    name: str
    apply: Callable[[sqlite3.Connection], None]
    postgres: str = ""


def apply_migrations(conn: sqlite3.Connection, migrations: list[Migration]) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; return their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for migration in migrations:
        if migration.name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            migration.apply(conn)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (migration.name, time.time()))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(migration.name)
    return applied


def _run_statements(conn: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the migration's transaction first; run statement by statement.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _m001_initial(conn: sqlite3.Connection) -> None:
    _run_statements(
        conn,
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            body TEXT NOT NULL,
            sent_at REAL NOT NULL,
            in_reply_to INTEGER,
            broadcast INTEGER NOT NULL DEFAULT 0,
            delivered_at REAL,
            acked_at REAL,
            redelivered INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX messages_pending ON messages (recipient, delivered_at, id);
        CREATE INDEX messages_acked ON messages (acked_at);
        CREATE TABLE agents (
            name TEXT PRIMARY KEY,
            id INTEGER NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            desired TEXT NOT NULL DEFAULT 'running',
            uid INTEGER,
            description TEXT,
            destroyed_at REAL
        );
        CREATE TABLE approvals (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            agent TEXT NOT NULL,
            commit_ref TEXT,
            sha TEXT,
            description TEXT,
            requested_by TEXT NOT NULL,
            requested_at REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            resolved_at REAL,
            note TEXT,
            tag TEXT
        );
        CREATE INDEX approvals_status ON approvals (status);
        CREATE TABLE questions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            asker TEXT NOT NULL,
            target TEXT,
            question TEXT NOT NULL,
            options_json TEXT NOT NULL DEFAULT '[]',
            multi INTEGER NOT NULL DEFAULT 0,
            asked_at REAL NOT NULL,
            deadline_at REAL,
            answered_at REAL,
            answer TEXT,
            answerer TEXT
        );
        CREATE INDEX questions_open ON questions (answered_at);
        """,
    )


def _m011_agent_ids(conn: sqlite3.Connection) -> None:
    _run_statements(conn, pg_schema.M011)


BROKER_MIGRATIONS: list[Migration] = [Migration("001_initial", _m001_initial, pg_schema.M001)]
BROKER_MIGRATIONS.append(Migration("003_sessions", websessions.migrate, pg_schema.M003))
BROKER_MIGRATIONS.append(Migration("002_delivery_attempts", deadletters.migrate, pg_schema.M002))
BROKER_MIGRATIONS.append(Migration("004_usage", usage_sql.migrate, pg_schema.M004))
BROKER_MIGRATIONS.append(Migration("005_stats", stats_sql.migrate, pg_schema.M005))
BROKER_MIGRATIONS.append(Migration("011_agent_ids", _m011_agent_ids, pg_schema.M011))
BROKER_MIGRATIONS.append(Migration("006_nodes", nodes_sql.migrate, nodes_sql.M006_PG))

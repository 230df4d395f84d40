"""The broker's writer transactions per message (issue 13 §6): a long-poll that parks on an
empty queue takes no writer transaction, so a message costs its insert, its claim and its ack.
SQLite store (the writer counts its transactions)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hyperhive.core.broker import Broker
from hyperhive.core.hub import Hub
from hyperhive.store.sqlite_store import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "broker.sqlite")
    yield s
    await s.close()


@pytest.fixture
async def broker(store: SqliteStore) -> Broker:
    b = Broker(store, Hub(), agents=lambda: {"a", "b"})
    await b.load()
    return b


async def test_a_parked_long_poll_takes_no_writer_transaction(broker: Broker, store: SqliteStore) -> None:
    before = store.db.writes
    assert await broker.recv("a", 0.2) == [] and await broker.recv("a", 0) == []
    assert store.db.writes == before


async def test_a_message_costs_its_insert_claim_and_ack(broker: Broker, store: SqliteStore) -> None:
    before = store.db.writes
    waiter = asyncio.create_task(broker.recv("a", 170))
    await asyncio.sleep(0)  # let the waiter park (with or without it the count is the same)
    await broker.send("b", "a", "hello")
    async with asyncio.timeout(10):
        [message] = await waiter
    assert await broker.ack_turn("a") == 1
    assert store.db.writes - before == 3, "insert, claim, ack; nothing for the park"
    assert message.body == "hello"

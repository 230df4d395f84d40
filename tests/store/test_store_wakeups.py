"""Wake-ups across writers on PostgreSQL: a message committed through one store (one node) wakes
a long-poll on a broker over another store of the same database, by the NOTIFY hint; and with
no hint at all the long-poll still finds it within the store's re-check interval."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hivetest import pg_test_url
from hyperhive.core.broker import Broker
from hyperhive.core.hub import Hub
from hyperhive.store.postgres import PostgresStore

AGENTS = {"a", "b"}


@pytest.fixture
async def two_nodes() -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    url = pg_test_url()
    one, two = PostgresStore(url), PostgresStore(url)
    yield one, two
    await one.close()
    await two.close()


async def test_a_hint_from_another_writer_wakes_the_long_poll(two_nodes: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = two_nodes
    receiver = Broker(one, Hub(), agents=lambda: AGENTS)
    sender = Broker(two, Hub(), agents=lambda: AGENTS)
    await receiver.load()
    await sender.load()
    heard = asyncio.Event()
    await one.subscribe_wakeups(lambda recipient: heard.set() if recipient == "b" else None)
    waiter = asyncio.create_task(receiver.recv("b", 30))
    await asyncio.sleep(0)
    await sender.send("a", "b", "across nodes")
    async with asyncio.timeout(10):
        await heard.wait()
        (m,) = await waiter
    assert m.body == "across nodes" and receiver.unread("b") == 0


async def test_without_any_hint_the_long_poll_rechecks(two_nodes: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = two_nodes
    receiver = Broker(one, Hub(), agents=lambda: AGENTS)  # never subscribed: every hint is lost
    waiter = asyncio.create_task(receiver.recv("b", 30))
    await asyncio.sleep(0)
    await two.insert_messages("a", ["b"], "no notify heard", 1.0)
    assert one.recheck_interval is not None
    async with asyncio.timeout(one.recheck_interval * 5):
        (m,) = await waiter
    assert m.body == "no notify heard"


def test_sqlite_store_has_no_other_writer_to_hear(tmp_path: Path) -> None:
    from hyperhive.store.sqlite_store import SqliteStore

    store = SqliteStore(tmp_path / "broker.sqlite")
    try:
        assert store.recheck_interval is None
    finally:
        store.close_now()

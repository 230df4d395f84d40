"""Broker semantics (architecture §4, issue 2): peek, long-poll wake-ups, max, broadcast,
at-least-once (ack/requeue), the allow-list, the body cap and the vacuum's boundaries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hivetest import open_test_store
from hyperhive.core.broker import ACKED_RETENTION, BodyTooLarge, Broker
from hyperhive.core.hub import Hub
from hyperhive.errors import AgentNotFound, NotAllowed
from hyperhive.protocol import MAX_BODY_BYTES
from hyperhive.store.base import Store

AGENTS = {"a", "b", "c", "manager"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_test_store(tmp_path)
    yield store
    await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(db: Store, clock: Clock) -> Broker:
    allow = {"c": ["b"]}
    return Broker(db, Hub(), agents=lambda: AGENTS, allow_list=lambda n: allow.get(n, []), clock=clock)


async def test_recv_without_wait_is_a_peek_that_returns_at_once(broker: Broker) -> None:
    """recv with wait 0 returns immediately, empty when nothing is pending (architecture §3)."""
    async with asyncio.timeout(2):
        assert await broker.recv("a", 0) == []


async def test_recv_returns_pending_messages_in_order_and_marks_them_delivered(broker: Broker) -> None:
    await broker.send("b", "a", "one")
    await broker.send("b", "a", "two", in_reply_to=1)  # a follow-up to b's own message
    got = await broker.recv("a", 0, max_messages=5)
    assert [m.body for m in got] == ["one", "two"]
    assert got[1].in_reply_to == 1 and got[1].sender == "b"
    assert await broker.recv("a", 0) == []
    assert broker.unread("a") == 0


async def test_recv_max_limits_how_many_are_drained(broker: Broker) -> None:
    for i in range(5):
        await broker.send("operator", "a", f"m{i}")
    first = await broker.recv("a", 0, max_messages=2)
    assert [m.body for m in first] == ["m0", "m1"]
    assert broker.unread("a") == 3


async def test_long_poll_wakes_when_a_message_arrives(broker: Broker) -> None:
    """A waiting recv is woken by the send's in-process notification, not by the wait ending."""
    waiter = asyncio.create_task(broker.recv("a", 170))
    await asyncio.sleep(0)  # let the waiter register
    async with asyncio.timeout(5):
        await broker.send("b", "a", "wake up")
        got = await waiter
    assert [m.body for m in got] == ["wake up"]


async def test_long_poll_ignores_messages_for_someone_else_and_times_out_empty(broker: Broker) -> None:
    waiter = asyncio.create_task(broker.recv("a", 0.3))
    await broker.send("a", "b", "not for a")
    async with asyncio.timeout(5):
        assert await waiter == []
    assert broker.unread("b") == 1


async def test_two_waiters_for_one_agent_never_get_the_same_message(broker: Broker) -> None:
    w1 = asyncio.create_task(broker.recv("a", 2))  # the loser waits its whole wait: well inside the bound
    w2 = asyncio.create_task(broker.recv("a", 0.5))
    await asyncio.sleep(0)
    await broker.send("b", "a", "only once")
    async with asyncio.timeout(5):
        r1, r2 = await asyncio.gather(w1, w2)
    assert sorted(len(r) for r in (r1, r2)) == [0, 1]


async def test_broadcast_reaches_every_agent_but_the_sender_marked_as_broadcast(broker: Broker) -> None:
    ids = await broker.send("a", "*", "hello all")
    assert len(ids) == len(AGENTS) - 1
    for name in AGENTS - {"a"}:
        (m,) = await broker.recv(name, 0)
        assert m.broadcast and m.body == "hello all"
    assert await broker.recv("a", 0) == []


async def test_unacked_messages_come_back_redelivered_after_requeue(broker: Broker) -> None:
    """At-least-once: a delivered message not acknowledged returns marked redelivered."""
    await broker.send("operator", "a", "important")
    (first,) = await broker.recv("a", 0)
    assert not first.redelivered
    assert await broker.requeue_inflight("a") == 1
    (again,) = await broker.recv("a", 0)
    assert again.id == first.id and again.redelivered


async def test_acked_messages_are_not_requeued(broker: Broker) -> None:
    await broker.send("operator", "a", "done soon")
    await broker.recv("a", 0)
    assert await broker.ack_turn("a") == 1
    assert await broker.requeue_inflight("a") == 0
    assert await broker.recv("a", 0) == []


async def test_requeue_wakes_a_waiting_recv(broker: Broker) -> None:
    await broker.send("operator", "a", "x")
    await broker.recv("a", 0)
    waiter = asyncio.create_task(broker.recv("a", 170))
    await asyncio.sleep(0)
    await broker.requeue_inflight("a")
    async with asyncio.timeout(5):
        (m,) = await waiter
    assert m.redelivered


async def test_send_to_an_unknown_agent_is_refused_and_writes_nothing(broker: Broker, db: Store) -> None:
    with pytest.raises(AgentNotFound, match="no agent named 'zed'"):
        await broker.send("a", "zed", "hi")
    assert (await db.check())["counts"]["messages"] == 0


async def test_body_over_the_cap_is_refused_with_a_clear_reason(broker: Broker) -> None:
    with pytest.raises(BodyTooLarge, match="cap"):
        await broker.send("a", "b", "x" * (MAX_BODY_BYTES + 1))
    await broker.send("a", "b", "x" * MAX_BODY_BYTES)  # exactly at the cap is fine


async def test_allow_list_is_enforced_by_the_core_but_manager_is_always_reachable(broker: Broker) -> None:
    """architecture §4: allowed_recipients is enforced by the core; manager is always reachable."""
    await broker.send("c", "b", "allowed")
    with pytest.raises(NotAllowed, match="may not send to 'a'"):
        await broker.send("c", "a", "not allowed")
    await broker.send("c", "manager", "escalation")


async def test_operator_messages_are_kept_as_an_inbox_view(broker: Broker) -> None:
    await broker.send("a", "operator", "report")
    (m,) = await broker.recent("operator", 10)
    assert m.body == "report" and m.sender == "a"


async def test_vacuum_deletes_only_acked_rows_older_than_30_days(broker: Broker, clock: Clock, db: Store) -> None:
    """Acked and older than 30 days: deleted. Acked but younger, or never acked: kept."""
    await broker.send("operator", "a", "old acked")
    await broker.recv("a", 0)
    await broker.ack_turn("a")
    await broker.send("operator", "b", "old unacked")
    await broker.recv("b", 0)
    clock.now += 1
    await broker.send("operator", "c", "young acked")
    await broker.recv("c", 0)
    await broker.ack_turn("c")
    acked_at = 1_000_000.0
    # exactly at the boundary: kept (strictly older is deleted)
    assert await broker.vacuum(now=acked_at + ACKED_RETENTION) == 0
    assert await broker.vacuum(now=acked_at + ACKED_RETENTION + 0.5) == 1
    bodies = {m["body"] for m in await db.recent_messages(limit=100)}
    assert bodies == {"old unacked", "young acked"}
    assert await broker.vacuum(now=acked_at + 10 * ACKED_RETENTION) == 1
    bodies = {m["body"] for m in await db.recent_messages(limit=100)}
    assert bodies == {"old unacked"}

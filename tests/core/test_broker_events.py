"""The broker publishes every change of a queue on the hub with the server's unread count, so a
page never counts by itself (issue 10): sent, delivered (and redelivered), acknowledged,
requeued. Real broker on a real store; the hub's own subscription reads what a browser would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hivetest import open_test_store
from hyperhive.core.broker import Broker
from hyperhive.core.hub import Hub
from hyperhive.livefeed import Subscription
from hyperhive.store.base import Store


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_test_store(tmp_path)
    yield store
    await store.close()


def published(sub: Subscription[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind, e.payload) for e in sub.drain()]


async def test_ack_requeue_and_redelivery_are_events_with_the_unread_count(db: Store) -> None:
    hub = Hub()
    broker = Broker(db, hub, agents=lambda: {"a", "b"}, allow_list=lambda _n: [])
    sub = hub.subscribe()
    await broker.send("b", "a", "one")
    await broker.send("b", "a", "two")
    sent = published(sub)
    assert [(k, p["unread"]) for k, p in sent] == [("message_sent", 1), ("message_sent", 2)]

    await broker.recv("a", 0)
    [(kind, delivered)] = published(sub)
    assert kind == "message_delivered" and delivered["unread"] == 1 and delivered["redelivered"] is False

    assert await broker.requeue_inflight("a") == 1
    assert published(sub) == [("message_requeued", {"agent": "a", "count": 1, "unread": 2})]

    again = await broker.recv("a", 0, max_messages=2)
    assert [m.body for m in again] == ["one", "two"]
    redelivered = {p["id"]: p["redelivered"] for k, p in published(sub) if k == "message_delivered"}
    assert redelivered == {again[0].id: True, again[1].id: False}

    assert await broker.ack_turn("a") == 2
    assert published(sub) == [("message_acked", {"agent": "a", "count": 2, "unread": 0})]
    assert await broker.ack_turn("a") == 0
    assert published(sub) == []  # nothing acknowledged, nothing said
    sub.close()


async def test_a_message_to_the_operator_carries_its_whole_body(db: Store) -> None:
    """The dashboard's inbox shows whole messages, not the flow's preview."""
    hub = Hub()
    broker = Broker(db, hub, agents=lambda: {"a"}, allow_list=lambda _n: [])
    sub = hub.subscribe()
    body = "x" * 5000
    await broker.send("a", "operator", body)
    [(kind, payload)] = published(sub)
    assert kind == "message_sent" and payload["body"] == body and len(payload["preview"]) < len(body)
    sub.close()

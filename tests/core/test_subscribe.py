"""`subscribe` on host.sock (architecture §3): the connection becomes a live stream of the core's
events; it resumes after a seq without gaps or duplicates, filters by kind, ends cleanly when
the client leaves, and is offered only to the operator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hivetest import ask_socket, wire_agent
from hyperhive.core.daemon import Daemon
from hyperhive.protocol import MAX_LINE_BYTES

BOUND = 10


async def _open(daemon: Daemon) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(daemon.paths.host_socket), limit=MAX_LINE_BYTES + 2)


async def _line(reader: asyncio.StreamReader) -> dict[str, Any]:
    async with asyncio.timeout(BOUND):
        raw = await reader.readline()
    assert raw, "the stream closed"
    reply: dict[str, Any] = json.loads(raw)
    return reply


async def _subscribe(
    daemon: Daemon, **fields: Any
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
    reader, writer = await _open(daemon)
    writer.write(json.dumps({"cmd": "subscribe", **fields}).encode() + b"\n")
    await writer.drain()
    return reader, writer, await _line(reader)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def test_subscribe_acks_with_the_current_seq_then_streams_live_events(hive: Daemon) -> None:
    """The first line is the ack with the hub's seq; a message sent afterwards arrives as an
    `event` line carrying a higher seq."""
    reader, writer, ack = await _subscribe(hive)
    try:
        assert ack["ok"] is True and ack["subscribed"] is True
        services = hive.services
        assert services is not None
        await services.broker.send("system", "operator", "hello stream")
        line = await _line(reader)
        assert line["ok"] is True
        event = line["event"]
        assert event["kind"] == "message_sent" and event["seq"] > ack["seq"]
        assert event["data"]["body"] == "hello stream"
    finally:
        await _close(writer)


async def test_subscribe_after_a_seq_replays_the_gap_once_and_in_order(hive: Daemon) -> None:
    """A reconnecting client passes the last seq it saw and gets every later event exactly once."""
    services = hive.services
    assert services is not None
    start = services.hub.seq
    for i in range(5):
        await services.broker.send("system", "operator", f"m{i}")
    reader, writer, ack = await _subscribe(hive, after=start, kinds=["message_sent"])
    try:
        assert ack["seq"] >= start + 5
        await services.broker.send("system", "operator", "live")
        bodies: list[str] = []
        seqs: list[int] = []
        while len(bodies) < 6:
            event = (await _line(reader))["event"]
            bodies.append(event["data"]["body"])
            seqs.append(event["seq"])
        assert bodies == ["m0", "m1", "m2", "m3", "m4", "live"]
        assert seqs == sorted(set(seqs))
    finally:
        await _close(writer)


async def test_a_client_that_leaves_ends_its_subscription_and_the_daemon_serves_on(hive: Daemon) -> None:
    """Closing the connection releases the hub subscription; host.sock keeps answering."""
    services = hive.services
    assert services is not None
    before = services.hub.subscriber_count
    _reader, writer, _ack = await _subscribe(hive)
    assert services.hub.subscriber_count == before + 1
    await _close(writer)
    async with asyncio.timeout(BOUND):
        while services.hub.subscriber_count != before:
            await services.broker.send("system", "operator", "nudge")  # an event wakes the stream
            await asyncio.sleep(0.01)
    reader, writer = await _open(hive)
    try:
        writer.write(b'{"cmd": "ping"}\n')
        await writer.drain()
        assert (await _line(reader))["pong"] is True
    finally:
        await _close(writer)


async def test_subscribe_is_not_offered_on_an_agent_socket(hive: Daemon) -> None:
    """The live stream shows every agent's traffic: it is the operator's, not an agent's."""
    reply = await ask_socket(await wire_agent(hive, "spy"), {"cmd": "subscribe"})
    assert reply["ok"] is False and reply["code"] == "unknown_verb"


async def test_an_epoch_from_another_daemon_run_gets_one_reset_and_the_stream_ends(hive: Daemon) -> None:
    """Seqs begin again with every daemon run; a client resuming with another run's epoch is told
    to start over (one `reset` naming this run's epoch) instead of waiting for the seq to pass
    its old one. Its own epoch resumes as before (issue 10)."""
    services = hive.services
    assert services is not None
    await services.broker.send("system", "operator", "one")
    reader, writer, ack = await _subscribe(hive, after=0, epoch="0123456789abcdef")
    try:
        assert ack["epoch"] == services.hub.epoch != "0123456789abcdef"
        assert (await _line(reader))["event"] == {"kind": "reset", "data": {"epoch": services.hub.epoch}}
        async with asyncio.timeout(BOUND):
            assert await reader.readline() == b""  # the stream ended
    finally:
        await _close(writer)
    reader, writer, ack = await _subscribe(hive, after=0, epoch=services.hub.epoch, kinds=["message_sent"])
    try:
        assert (await _line(reader))["event"]["data"]["body"] == "one"
    finally:
        await _close(writer)


async def test_a_resume_older_than_the_ring_is_told_how_many_events_it_missed(hive: Daemon) -> None:
    """The hub keeps its newest 5,000 events; resuming after an older seq gets `missed` with the
    count first, then the events still there (issue 10)."""
    services = hive.services
    assert services is not None
    hub = services.hub
    start = hub.seq
    for i in range(5_010):
        hub.publish("agent_added", {"name": f"a{i}"})
        if i % 250 == 0:
            await asyncio.sleep(0)  # let the loop breathe: the loop watch judges every callback
    reader, writer, _ack = await _subscribe(hive, after=start + 1, epoch=hub.epoch)
    try:
        missed = (await _line(reader))["event"]
        oldest = hub.history()[0].id
        assert missed == {"kind": "missed", "data": {"after": start + 1, "next": oldest, "missed": oldest - start - 2}}
        assert (await _line(reader))["event"]["seq"] == oldest
    finally:
        await _close(writer)

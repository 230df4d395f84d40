"""SSE framing and the "history, then live" stream, against a real uvicorn on a unix socket.

ST's TestClient and httpx's ASGITransport buffer whole responses, so every stream test here goes
through uvicorn and httpx streaming (STYLE §10). architecture §6: clients resume with Last-Event-ID
without gaps or duplicates; architecture §9: the dashboard reuses the same stream over its Hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hyperhive.core.hub import Hub
from hyperhive.harness.bus import NOTE, Bus, LiveEvent, Subscription
from hyperhive.sse import (
    KEEPALIVE,
    format_comment,
    format_event,
    last_event_id,
    parse_event_id,
    sse_response,
)

# -- framing -------------------------------------------------------------------------------------


def test_an_event_is_framed_with_id_name_and_data() -> None:
    """id, event and data lines, then a blank line (the EventSource wire format)."""
    assert format_event(7, "turn_end", '{"ok":true}') == b'id: 7\nevent: turn_end\ndata: {"ok":true}\n\n'
    assert format_event(8, None, "{}") == b"id: 8\ndata: {}\n\n"


def test_multi_line_data_becomes_one_data_line_per_line() -> None:
    """A newline inside data must not end the event early."""
    assert format_event(1, None, "a\nb") == b"id: 1\ndata: a\ndata: b\n\n"
    assert format_event(None, None, "") == b"data: \n\n"


def test_an_event_name_with_a_line_break_is_refused() -> None:
    """A line break in `event:` would let text forge extra fields."""
    with pytest.raises(ValueError, match="line break"):
        format_event(1, "a\nid: 99", "{}")


def test_comments_and_keepalives_are_ignored_lines() -> None:
    """Comment lines start with a colon; EventSource ignores them."""
    assert format_comment("hi") == b": hi\n\n"
    assert KEEPALIVE.startswith(b":") and KEEPALIVE.endswith(b"\n\n")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5", 5),
        (" 42 ", 42),
        ("0", 0),
        ("", None),
        (None, None),
        ("-1", None),
        ("abc", None),
        ("1e3", None),
        ("3.0", None),
        ("9" * 19, None),
        ("1" * 18, int("1" * 18)),
    ],
)
def test_a_last_event_id_is_a_non_negative_integer_or_nothing(raw: str | None, expected: int | None) -> None:
    """Junk in Last-Event-ID means "no resume point", never an error (architecture §6)."""
    assert parse_event_id(raw) == expected


def test_the_last_event_id_header_wins_over_the_query() -> None:
    """A reconnecting EventSource sends the header; the page's first URL may carry ?last_event_id=."""
    assert last_event_id({"last-event-id": "9"}, {"last_event_id": "3"}) == 9
    assert last_event_id({}, {"last_event_id": "3"}) == 3
    assert last_event_id({"last-event-id": "junk"}, {"last_event_id": "3"}) == 3
    assert last_event_id({}, {}) is None


# -- a real server -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """uvicorn on a unix socket under a short /tmp path (sun_path is 108 bytes), bound before
    uvicorn starts so the first request never races the startup."""
    tmp = tempfile.mkdtemp(prefix="hh-sse-", dir="/tmp")
    path = str(Path(tmp) / "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(64)
    config = uvicorn.Config(app, uds=path, lifespan="off", ws="none", log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=path), base_url="http://hive", timeout=5
        ) as client:
            yield client
    finally:
        server.should_exit = True
        async with asyncio.timeout(5):
            await task
        sock.close()
        shutil.rmtree(tmp)


def app_for(source: Any, **options: Any) -> Starlette:
    async def events(request: Request) -> Response:
        return sse_response(request, source, **options)

    return Starlette(routes=[Route("/events", events)])


@dataclass
class Frame:
    id: int | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


class Reader:
    """Parses one streamed response into SSE frames; `None` at the end of the stream."""

    def __init__(self, response: httpx.Response) -> None:
        self._lines = response.aiter_lines()

    async def frame(self) -> Frame | None:
        current = Frame()
        started = False
        async for line in self._lines:
            if line == "":
                if started:
                    return current
                continue
            started = True
            if line.startswith(":"):
                current.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "id":
                current.id = int(value)
            elif name == "event":
                current.event = value
            elif name == "data":
                current.data.append(value)
        return None

    async def ids(self, count: int) -> list[int]:
        """The next `count` event ids (skipping comments); fewer if the stream ends first."""
        out: list[int] = []
        while len(out) < count:
            frame = await self.frame()
            if frame is None:
                break
            if frame.id is not None:
                out.append(frame.id)
        return out

    async def rest(self) -> list[int]:
        """Every remaining event id, until the server ends the stream."""
        out: list[int] = []
        while (frame := await self.frame()) is not None:
            if frame.id is not None:
                out.append(frame.id)
        return out

    async def aclose(self) -> None:
        await self._lines.aclose()  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def stream(
    client: httpx.AsyncClient, *, last_id: int | None = None, url: str = "/events"
) -> AsyncIterator[Reader]:
    headers = {"last-event-id": str(last_id)} if last_id is not None else {}
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Reader(response)
        try:
            yield reader
        finally:
            await reader.aclose()


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[Bus]:
    with Bus(tmp_path / "events.sqlite") as b:
        yield b


def emit(bus: Bus, n: int) -> list[int]:
    return [bus.emit(NOTE, {"text": f"n{i}"}).id for i in range(n)]


# -- history, then live --------------------------------------------------------------------------


async def test_a_new_client_gets_the_history_then_live_events(bus: Bus) -> None:
    """Without Last-Event-ID the stream replays the trail, then follows it live (architecture §6)."""
    emit(bus, 3)
    async with serve(app_for(bus)) as client, stream(client) as reader:
        async with asyncio.timeout(5):
            assert await reader.ids(3) == [1, 2, 3]
            emit(bus, 2)
            assert await reader.ids(2) == [4, 5]


async def test_the_event_data_is_the_events_json(bus: Bus) -> None:
    """Each frame's data is LiveEvent.to_json(), its id the event id."""
    event = bus.emit(NOTE, {"text": "hello"})
    async with serve(app_for(bus)) as client, stream(client) as reader:
        async with asyncio.timeout(5):
            frame = await reader.frame()
            while frame is not None and frame.id is None:
                frame = await reader.frame()
    assert frame is not None and frame.id == event.id
    assert json.loads("".join(frame.data)) == event.to_json()
    assert frame.data == [json.dumps(event.to_json(), separators=(",", ":"))]


async def test_resuming_with_last_event_id_sends_only_newer_events(bus: Bus) -> None:
    """A reconnect with Last-Event-ID: n starts at n+1 (architecture §6)."""
    emit(bus, 5)
    async with serve(app_for(bus)) as client:
        async with stream(client, last_id=3) as reader, asyncio.timeout(5):
            assert await reader.ids(2) == [4, 5]
            emit(bus, 1)
            assert await reader.ids(1) == [6]
        async with stream(client, url="/events?last_event_id=5") as reader, asyncio.timeout(5):
            emit(bus, 1)
            assert await reader.ids(2) == [6, 7]


async def test_events_emitted_while_the_stream_opens_are_sent_exactly_once(bus: Bus) -> None:
    """The race window between subscribing and reading history: an event emitted inside it is in
    both the queue and the history, and one emitted right after is only queued; each arrives once
    (architecture §6, §11 "SSE resume without gaps")."""

    class RacingSource:
        def subscribe(self) -> Subscription[LiveEvent]:
            return bus.subscribe()

        def history(self, *, after: int) -> list[LiveEvent]:
            bus.emit(NOTE, {"text": "inside the window"})
            found = bus.history(after=after)
            bus.emit(NOTE, {"text": "after the history read"})
            return found

    emit(bus, 2)
    async with serve(app_for(RacingSource())) as client, stream(client, last_id=1) as reader:
        async with asyncio.timeout(5):
            assert await reader.ids(3) == [2, 3, 4]
            emit(bus, 1)
            assert await reader.ids(1) == [5]


async def test_reconnecting_clients_see_every_event_once_while_a_producer_runs(bus: Bus) -> None:
    """A client that keeps disconnecting and resuming with Last-Event-ID, while events keep
    coming, ends up with every id exactly once and in order (architecture §6)."""
    total = 300
    async with serve(app_for(bus)) as client:

        async def produce() -> None:
            for i in range(total):
                bus.emit(NOTE, {"text": str(i)})
                if i % 7 == 0:
                    await asyncio.sleep(0)  # yield so the emits interleave with the reconnects

        seen: list[int] = []
        producer = asyncio.create_task(produce())
        async with asyncio.timeout(10):
            while len(seen) < total:
                async with stream(client, last_id=seen[-1] if seen else None) as reader:
                    seen.extend(await reader.ids(min(23, total - len(seen))))
            await producer
    assert seen == list(range(1, total + 1))


async def test_a_slow_client_is_dropped_and_resumes_from_the_history(tmp_path: Path) -> None:
    """When a client's queue overflows its stream ends after what it had queued, and the
    reconnect with Last-Event-ID fills the rest from history: nothing lost, nothing twice."""
    with Bus(tmp_path / "events.sqlite", subscriber_queue=4) as bus:
        async with serve(app_for(bus)) as client:
            async with stream(client) as reader, asyncio.timeout(5):
                assert (await reader.frame()) is not None  # the opening comment: we are subscribed
                emit(bus, 50)  # synchronously: the queue (4) overflows, the Bus drops us
                first = await reader.rest()
            assert first == [1, 2, 3, 4]
            async with stream(client, last_id=first[-1]) as reader, asyncio.timeout(5):
                assert await reader.ids(46) == list(range(5, 51))


async def test_keepalive_comments_flow_while_the_stream_is_idle(bus: Bus) -> None:
    """An idle stream gets comment keepalives (every 15 s by default; shortened here)."""
    async with serve(app_for(bus, keepalive=0.05)) as client, stream(client) as reader:
        async with asyncio.timeout(5):
            frame = await reader.frame()
            while frame is not None and "keepalive" not in frame.comments:
                frame = await reader.frame()
    assert frame is not None and frame.id is None


async def test_the_server_lets_go_of_the_subscription_when_the_client_disconnects(bus: Bus) -> None:
    """A client that goes away ends its stream (http.disconnect), freeing its subscription."""
    closed = asyncio.Event()

    class WatchedSubscription:
        def __init__(self, sub: Subscription[LiveEvent]) -> None:
            self.sub = sub
            self.dropped = False

        def __aiter__(self) -> Subscription[LiveEvent]:
            return self.sub

        def drain(self) -> list[LiveEvent]:
            return self.sub.drain()

        def close(self) -> None:
            self.sub.close()
            closed.set()

    class WatchedSource:
        def subscribe(self) -> WatchedSubscription:
            return WatchedSubscription(bus.subscribe())

        def history(self, *, after: int) -> list[LiveEvent]:
            return bus.history(after=after)

    async with serve(app_for(WatchedSource())) as client:
        async with stream(client) as reader, asyncio.timeout(5):
            assert await reader.frame() is not None
            assert bus.subscriber_count == 1
        async with asyncio.timeout(5):
            await closed.wait()
    assert bus.subscriber_count == 0


async def test_closing_the_bus_ends_open_streams(bus: Bus) -> None:
    """Bus.close() at harness shutdown finishes every SSE response, so uvicorn can stop."""
    emit(bus, 1)
    async with serve(app_for(bus)) as client, stream(client) as reader:
        async with asyncio.timeout(5):
            assert await reader.ids(1) == [1]
            bus.close()
            assert await reader.rest() == []


# -- any source: a seq-numbered hub with generator subscriptions ---------------------------------


@dataclass(frozen=True)
class SeqEvent:
    id: int
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.id, "kind": self.kind}


class GenSubscription:
    """The dashboard hub's shape: an async generator over a queue ended by a None sentinel."""

    def __init__(self, hub: MiniHub) -> None:
        self.hub = hub
        self.queue: asyncio.Queue[SeqEvent | None] = asyncio.Queue()
        self.dropped = False

    def __aiter__(self) -> AsyncIterator[SeqEvent]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[SeqEvent]:
        while (event := await self.queue.get()) is not None:
            yield event

    def drain(self) -> list[SeqEvent]:
        out = []
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event is None:
                self.dropped = True
                break
            out.append(event)
        return out

    def close(self) -> None:
        self.hub.subs.discard(self)


class MiniHub:
    """A seq-numbered in-memory source with an *async* history, like a future store-backed hub."""

    def __init__(self) -> None:
        self.seq = 0
        self.ring: deque[SeqEvent] = deque(maxlen=100)
        self.subs: set[GenSubscription] = set()

    def publish(self, kind: str) -> None:
        self.seq += 1
        event = SeqEvent(self.seq, kind)
        self.ring.append(event)
        for sub in self.subs:
            sub.queue.put_nowait(event)

    def subscribe(self) -> GenSubscription:
        sub = GenSubscription(self)
        self.subs.add(sub)
        return sub

    async def history(self, *, after: int) -> list[SeqEvent]:
        return [e for e in self.ring if e.id > after]


async def test_any_source_with_subscribe_and_history_can_be_streamed() -> None:
    """The dashboard's seq-numbered hub reuses the stream: named events, snapshot seq in the
    query, resume by header (architecture §9 "a JSON snapshot with a seq, then SSE events")."""
    hub = MiniHub()
    for kind in ("spawned", "approval", "message"):
        hub.publish(kind)
    name: Callable[[SeqEvent], str] = lambda e: e.kind  # noqa: E731
    async with serve(app_for(hub, event_name=name)) as client:
        async with stream(client, url="/events?last_event_id=1") as reader, asyncio.timeout(5):
            frames = [await reader.frame() for _ in range(3)]
            hub.publish("killed")
            frames.append(await reader.frame())
        events = [(f.id, f.event, f.data) for f in frames if f is not None and f.id is not None]
        assert events == [
            (2, "approval", ['{"seq":2,"kind":"approval"}']),
            (3, "message", ['{"seq":3,"kind":"message"}']),
            (4, "killed", ['{"seq":4,"kind":"killed"}']),
        ]
        async with stream(client, last_id=3) as reader, asyncio.timeout(5):
            assert await reader.ids(1) == [4]
            for sub in list(hub.subs):  # the hub's sentinel: this subscription is over
                sub.queue.put_nowait(None)
            assert await reader.rest() == []


# -- epochs and gaps (issue 10) --------------------------------------------------------------


async def control_frames(reader: Reader) -> list[Frame]:
    """Every frame until the stream ends."""
    out = []
    while (frame := await reader.frame()) is not None:
        out.append(frame)
    return out


async def test_a_client_from_an_earlier_daemon_run_is_told_to_reload() -> None:
    """After a restart the hub's seq begins again at 1; a client naming the old run's epoch gets
    one `reset` naming the new epoch and the stream ends, instead of silence until the new seq
    passes its Last-Event-ID (issue 10). The current epoch resumes as before."""
    before, after = Hub(), Hub()
    assert before.epoch != after.epoch
    for _ in range(3):
        after.publish("agent_added", {"name": "a"})
    async with serve(app_for(after, event_name=lambda e: e.kind)) as client:
        url = f"/events?last_event_id=40&epoch={before.epoch}"
        async with stream(client, url=url) as reader, asyncio.timeout(5):
            frames = await control_frames(reader)
        [reset] = [f for f in frames if f.event is not None]
        assert reset.event == "reset" and reset.id is None
        assert json.loads("".join(reset.data)) == {"epoch": after.epoch}
        assert not [f for f in frames if f.id is not None]
        async with stream(client, url=f"/events?last_event_id=1&epoch={after.epoch}") as reader, asyncio.timeout(5):
            assert await reader.ids(2) == [2, 3]


async def test_a_client_further_behind_than_the_history_is_told_what_it_missed(tmp_path: Path) -> None:
    """The agent page's Bus replays at most its newest 2,000 events; a client resuming from an id
    older than that gets `missed` with the count before the events it can still have (issue 10)."""
    with Bus(tmp_path / "events.sqlite") as bus:
        emit(bus, 2_100)
        async with serve(app_for(bus)) as client:
            async with stream(client, last_id=50) as reader, asyncio.timeout(10):
                first = await reader.frame()
                while first is not None and first.event is None and first.id is None:
                    first = await reader.frame()
                following = await reader.ids(1)
            assert first is not None and first.event == "missed" and first.id is None
            assert json.loads("".join(first.data)) == {"after": 50, "next": 101, "missed": 50}
            assert following == [101]
            async with stream(client, last_id=2_000) as reader, asyncio.timeout(5):
                frame = await reader.frame()
                while frame is not None and frame.id is None and frame.event is None:
                    frame = await reader.frame()
            assert frame is not None and frame.id == 2_001 and frame.event is None  # no gap: no notice

"""Server-sent events shared by the per-agent page (the Bus) and the operator dashboard (the Hub).

`SSEResponse` streams "history after the client's last id, then live" without gaps or
duplicates: it subscribes *first*, then reads history after the last id (`livefeed.replay`, the
same step `subscribe` on host.sock takes), then writes the queued live events, skipping ids it
already sent. Ids only grow, so that one comparison is the whole
dedupe. Each wake-up drains everything queued into one write (the write count is what limits
fan-out; field notes "Web"). Idle streams get a comment keepalive; the stream stops on
`http.disconnect`, or when the source drops the subscription for being slow (the browser then
reconnects with `Last-Event-ID` and resumes from history).

Any source works that has `subscribe()` (an async-iterable subscription with `drain()`,
`dropped` and `close()`), `history(after=...)` returning events with an `id` and a `to_json()`,
and an `epoch`: `harness.bus.Bus` and `core.hub.Hub` both do.

Two control events carry no `id` (so the client's Last-Event-ID stays put) (issue 10):
- `reset` `{"epoch"}`: the client named an epoch (`?epoch=`) that is not the source's, e.g. the
  daemon restarted and its seq began again at 1; the stream ends, and the client reloads its
  snapshot and reconnects with the new epoch.
- `missed` `{"after", "next", "missed"}`: the client resumes after an id the history no longer
  reaches (it fell too far behind); the events from `next` on follow, and it is told how many
  it will never see.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hyperhive.livefeed import Missed, replay

__all__ = [
    "DEFAULT_KEEPALIVE",
    "KEEPALIVE",
    "EventSource",
    "SSEEvent",
    "SSEResponse",
    "SSESubscription",
    "format_comment",
    "format_event",
    "last_event_id",
    "parse_event_id",
    "sse_response",
]

log = logging.getLogger(__name__)

DEFAULT_KEEPALIVE: Final = 15.0
KEEPALIVE: Final = b": keepalive\n\n"
_ID_RE: Final = re.compile(r"[0-9]{1,18}")  # fits a signed 64-bit SQLite integer


class SSEEvent(Protocol):
    @property
    def id(self) -> int: ...

    def to_json(self) -> Any: ...


E = TypeVar("E", bound=SSEEvent)
E_co = TypeVar("E_co", bound=SSEEvent, covariant=True)


class SSESubscription(Protocol[E_co]):
    dropped: bool

    def __aiter__(self) -> AsyncIterator[E_co]: ...

    def drain(self) -> Sequence[E_co]: ...

    def close(self) -> None: ...


class EventSource(Protocol[E_co]):
    @property
    def epoch(self) -> str: ...

    def subscribe(self) -> SSESubscription[E_co]: ...

    def history(self, *, after: int) -> Iterable[E_co] | Awaitable[Iterable[E_co]]: ...


# -- framing -------------------------------------------------------------------------------------


def format_event(id: int | None, event: str | None, data_json: str) -> bytes:
    """One SSE event: `id:`, optional `event:`, one `data:` line per line of `data_json`."""
    parts: list[str] = []
    if id is not None:
        parts.append(f"id: {int(id)}\n")
    if event is not None:
        if "\n" in event or "\r" in event:
            raise ValueError(f"event: {event[:40]!r} contains a line break")
        parts.append(f"event: {event}\n")
    for line in data_json.splitlines() or [""]:
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def format_comment(text: str = "") -> bytes:
    """A comment line (ignored by EventSource; keeps proxies and idle connections open)."""
    lines = text.splitlines() or [""]
    return ("".join(f": {line}\n" for line in lines) + "\n").encode("utf-8")


def parse_event_id(value: str | None) -> int | None:
    """A non-negative decimal id, or None for anything else (absent, empty, junk, too long)."""
    if value is None:
        return None
    value = value.strip()
    if not _ID_RE.fullmatch(value):
        return None
    return int(value)


def last_event_id(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> int | None:
    """The resume point: the `Last-Event-ID` header (what a reconnecting EventSource sends)
    wins over `?last_event_id=` (what a page that loaded a snapshot puts in its first URL)."""
    from_header = parse_event_id(headers.get("last-event-id"))
    if from_header is not None:
        return from_header
    if query is not None:
        return parse_event_id(query.get("last_event_id"))
    return None


def _default_encode(event: SSEEvent) -> str:
    return json.dumps(event.to_json(), separators=(",", ":"), default=str)


# -- the response --------------------------------------------------------------------------------


class SSEResponse(Response):
    """History after `last_id`, then live events, until the client goes or the source drops us.

    `last_id=None` replays the whole history the source returns for `after=0`; pass
    `replay=False` to start with live events only in that case.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: EventSource[E],
        *,
        last_id: int | None = None,
        keepalive: float = DEFAULT_KEEPALIVE,
        encode: Callable[[E], str] = _default_encode,
        event_name: Callable[[E], str | None] | None = None,
        replay: bool = True,
        retry_ms: int | None = None,
        headers: Mapping[str, str] | None = None,
        epoch: str | None = None,
    ) -> None:
        self.source = source
        self.epoch = epoch  # the client's: a different one from the source's means "reload"
        self.last_id = last_id
        self.keepalive = keepalive
        self.encode: Callable[[Any], str] = encode
        self.event_name: Callable[[Any], str | None] | None = event_name
        self.replay = replay
        self.retry_ms = retry_ms
        self.status_code = 200
        self.background = None
        all_headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        all_headers.update(headers or {})
        self.init_headers(all_headers)

    def _frame(self, event: Any) -> bytes:
        name = self.event_name(event) if self.event_name is not None else None
        return format_event(event.id, name, self.encode(event))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sub = self.source.subscribe()  # before the response starts: a closed source is a 500
        events = aiter(sub)
        pending: asyncio.Future[Any] | None = None
        disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            start = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            await send(start)
            # Subscribed before reading history: anything emitted from here on is queued, and
            # anything history already returned is skipped below by id.
            sent = self.last_id if self.last_id is not None else 0
            preamble = [format_comment("stream")]
            if self.retry_ms is not None:
                preamble.append(f"retry: {int(self.retry_ms)}\n\n".encode())
            if self.epoch is not None and self.epoch != self.source.epoch:
                reset = json.dumps({"epoch": self.source.epoch})
                await _write(send, b"".join([*preamble, format_event(None, "reset", reset)]))
                return
            if self.last_id is not None or self.replay:
                backlog, sent = await replay(self.source.history(after=sent), sent)
                for item in backlog:
                    if isinstance(item, Missed):
                        preamble.append(format_event(None, "missed", json.dumps(item.to_json())))
                    else:
                        preamble.append(self._frame(item))
            if not await _write(send, b"".join(preamble)):
                return
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(events))
                done, _ = await asyncio.wait(
                    (pending, disconnected), timeout=self.keepalive, return_when=asyncio.FIRST_COMPLETED
                )
                if disconnected in done:
                    return
                if not done:
                    if not await _write(send, KEEPALIVE):
                        return
                    continue
                try:
                    first = pending.result()
                except StopAsyncIteration:
                    return  # the source closed or dropped the subscription
                finally:
                    pending = None
                chunks = []
                for event in (first, *sub.drain()):
                    if event.id > sent:
                        chunks.append(self._frame(event))
                        sent = event.id
                if chunks and not await _write(send, b"".join(chunks)):
                    return
                if sub.dropped:
                    return  # queued events written; the client resumes from history
        finally:
            sub.close()
            client_gone = disconnected.done()
            tasks = [t for t in (pending, disconnected) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
            for task in tasks:
                if not task.cancelled():
                    task.exception()  # retrieved, so asyncio does not log it
            closer = getattr(events, "aclose", None)
            if closer is not None:
                await closer()
            if not client_gone:
                await _write(send, b"", more_body=False)


def sse_response(request: Request, source: EventSource[E], **options: Any) -> SSEResponse:
    """`SSEResponse` resuming from the request's `Last-Event-ID` header or `?last_event_id=`, in
    the epoch `?epoch=` names (if any)."""
    epoch = request.query_params.get("epoch") or None
    return SSEResponse(source, last_id=last_event_id(request.headers, request.query_params), epoch=epoch, **options)


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _write(send: Send, body: bytes, *, more_body: bool = True) -> bool:
    """Send one body chunk; False if the client is gone (uvicorn raises OSError with ASGI 2.4)."""
    try:
        await send({"type": "http.response.body", "body": body, "more_body": more_body})
    except OSError:
        return False
    return True

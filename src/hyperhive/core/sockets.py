"""Unix-socket servers. Identity is the socket: the handler is told who is on the other end by
which socket they connected to. Every bad line gets `ok: false` and the loop keeps reading;
an over-long line is refused and the connection closed. No verb logic here."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperhive.connlimits import AGENT_SOCKET_CONNS, Budget
from hyperhive.errors import HiveError
from hyperhive.framing import LineTooLong, encode, read_line
from hyperhive.protocol import MAX_LINE_BYTES, ErrorCode
from hyperhive.replies import encode_reply
from hyperhive.requestcodec import ProtocolFailure, decode_request, error_reply

__all__ = ["Identity", "SocketServer", "StreamReply", "Takeover", "peer_gone"]

log = logging.getLogger(__name__)
IDLE_TIMEOUT = 600.0  # a client that sends nothing for this long is closed
FIRST_LINE_TIMEOUT = 30.0  # a client that has not finished its first line by then is closed
REFUSED_LOG_INTERVAL = 10.0  # seconds between two "connection refused: at cap" log lines per socket

_PEER_GONE: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar("peer_gone", default=None)


def peer_gone() -> asyncio.Event | None:
    """While a request is handled: an event set when its client has gone (EOF or reset), so a
    long-poll can give up instead of handing messages to nobody. None outside a connection."""
    return _PEER_GONE.get()


@dataclass
class StreamReply:
    """A reply that turns the connection into a stream: `first` is sent as the reply, then one
    line `{"version": 1, "ok": true, "event": …}` per item of `events` until it ends or the
    client leaves; then `close()` runs and the connection closes."""

    first: dict[str, Any]
    events: AsyncIterator[dict[str, Any]]
    close: Callable[[], None] = lambda: None


@dataclass
class Takeover:
    """A reply after which the connection is no longer JSON lines: `first` is sent as the reply,
    then `run(reader, writer)` owns the connection until it returns (the shell's frames,
    `hyperhive.shellwire`); then the connection closes. No idle timeout applies."""

    first: dict[str, Any]
    run: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
    close: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Identity:
    kind: str  # "operator" | "agent" | "manager"
    name: str  # "operator" or the agent's name

    @property
    def is_manager(self) -> bool:
        return self.kind == "manager"


Handler = Callable[[Identity, Any], Awaitable[dict[str, Any] | StreamReply | Takeover]]


class SocketServer:
    """One listening unix socket bound to one identity."""

    def __init__(
        self,
        path: Path,
        identity: Identity,
        handler: Handler,
        verbs: frozenset[str],
        *,
        max_conns: int = AGENT_SOCKET_CONNS,
        budget: Budget | None = None,
    ) -> None:
        """`max_conns` caps this socket's open connections; `budget`, when given, is shared
        with the other agent-reachable listeners (host.sock has none: its handles are reserved)."""
        self.path = path
        self.identity = identity
        self.handler = handler
        self.verbs = verbs
        self.max_conns = max_conns
        self.budget = budget
        self.refused = 0  # connections turned away at the cap, since start
        self._refused_logged = 0.0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    async def start(self, *, mode: int = 0o600, owner: int | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)  # no window in which the socket is open to others
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path), limit=MAX_LINE_BYTES + 2)
        finally:
            os.umask(old)
        self.path.chmod(mode)
        if owner is not None:
            os.chown(self.path, owner, owner)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._conns) >= self.max_conns or (self.budget is not None and not self.budget.take()):
            await self._refuse(writer)
            return
        self._conns.add(task)
        try:
            await self._loop(reader, writer)
        except (ConnectionError, BrokenPipeError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("connection on %s failed", self.path)
        finally:
            self._conns.discard(task)
            if self.budget is not None:
                self.budget.give_back()
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _refuse(self, writer: asyncio.StreamWriter) -> None:
        """Over the cap: one `busy` line, never waited on, and the handle is freed at once."""
        self.refused += 1
        now = asyncio.get_running_loop().time()
        if now - self._refused_logged >= REFUSED_LOG_INTERVAL:
            self._refused_logged = now
            log.warning("%s: %d connection(s) refused so far: at its cap of %d open connections",
                        self.path, self.refused, self.max_conns)  # fmt: skip
        with contextlib.suppress(Exception):
            writer.write(encode(error_reply(f"too many open connections on this socket (cap {self.max_conns})",
                                            ErrorCode.BUSY)))  # fmt: skip
        transport = writer.transport
        if transport.get_write_buffer_size():
            transport.abort()  # a peer that does not read gets no more of our time
        else:
            transport.close()

    async def _loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The next line is read while the current request is handled, so a client that leaves
        # mid-request (e.g. during a long-poll recv) is noticed; pipelined lines keep their order.
        reading: asyncio.Task[bytes | None] | None = None
        served = False  # until the first line arrives, a shorter timeout applies (half-open clients)
        try:
            while True:
                if reading is None:
                    reading = asyncio.ensure_future(read_line(reader))
                try:
                    line = await asyncio.wait_for(
                        reading, IDLE_TIMEOUT if served else min(IDLE_TIMEOUT, FIRST_LINE_TIMEOUT)
                    )
                except TimeoutError:
                    return
                except LineTooLong:
                    too_long = error_reply(f"line over the {MAX_LINE_BYTES}-byte cap", ErrorCode.LINE_TOO_LONG)
                    await self._reply(writer, too_long)
                    return
                finally:
                    if reading.done():
                        reading = None
                if line is None:
                    return
                if not line.strip():
                    continue
                served = True
                reading = asyncio.ensure_future(read_line(reader))
                gone = asyncio.Event()
                reading.add_done_callback(lambda t, gone=gone: gone.set() if _left(t) else None)  # type: ignore[misc]
                token = _PEER_GONE.set(gone)
                try:
                    reply = await self._answer(line)
                finally:
                    _PEER_GONE.reset(token)
                if isinstance(reply, StreamReply):
                    reading = await self._stream(reader, writer, reply, reading)
                    return
                if isinstance(reply, Takeover):
                    # the client sends no frame before it has this reply: the read-ahead holds nothing
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await reading
                    reading = None
                    try:
                        await self._reply(writer, {"version": 1, "ok": True, **reply.first})
                        await reply.run(reader, writer)
                    finally:
                        reply.close()
                    return
                await self._reply(writer, reply)
        finally:
            if reading is not None and not reading.done():
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reading

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stream: StreamReply,
        reading: asyncio.Task[bytes | None],
    ) -> asyncio.Task[bytes | None] | None:
        """Write a stream until it ends or the client leaves (lines it sends meanwhile are
        ignored). Returns the read-ahead task still running, for the caller to cancel."""
        events = aiter(stream.events)
        try:
            await self._reply(writer, {"version": 1, "ok": True, **stream.first})
            while True:
                nxt = asyncio.ensure_future(anext(events))
                try:
                    while not nxt.done():
                        await asyncio.wait({nxt, reading}, return_when=asyncio.FIRST_COMPLETED)
                        if reading.done():
                            if reading.cancelled() or reading.exception() is not None or _left(reading):
                                return None  # the client has gone
                            reading = asyncio.ensure_future(read_line(reader))  # a stray line: ignored
                finally:
                    if not nxt.done():
                        nxt.cancel()
                        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                            await nxt
                try:
                    event = nxt.result()
                except StopAsyncIteration:
                    return reading
                await self._reply(writer, {"version": 1, "ok": True, "event": event})
        finally:
            stream.close()

    async def _answer(self, line: bytes) -> dict[str, Any] | StreamReply | Takeover:
        try:
            request = decode_request(line)
        except ProtocolFailure as exc:
            return error_reply(exc.message, exc.code)
        if request.cmd not in self.verbs:
            return error_reply(f"verb {request.cmd!r} is not available on this socket", ErrorCode.UNKNOWN_VERB)
        try:
            reply = await self.handler(self.identity, request)
            # every reply goes through its model (replies.py): a verb cannot send an unlisted field
            if isinstance(reply, StreamReply | Takeover):
                reply.first = encode_reply(request.cmd, reply.first)
                return reply
            return {"version": 1, "ok": True, **encode_reply(request.cmd, reply)}
        except HiveError as exc:
            return error_reply(exc.message, exc.code)
        except Exception:
            log.exception("verb %s from %s failed", request.cmd, self.identity.name)
            return error_reply(f"internal error handling {request.cmd!r}; see the daemon log", ErrorCode.INTERNAL)

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(encode(reply))
        await writer.drain()


def _left(task: asyncio.Task[bytes | None]) -> bool:
    """True when a read-ahead ended because the client went away (EOF or a reset)."""
    if task.cancelled():
        return False
    exc = task.exception()
    if exc is not None:
        return isinstance(exc, ConnectionError)
    return task.result() is None

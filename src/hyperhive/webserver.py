"""uvicorn embedded in our own event loop: the owner of the loop handles signals, not uvicorn;
and the listening socket is bound by us first, so a busy port is one clear error and port 0
is a real free port we can print."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Generator
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from hyperhive import connlimits
from hyperhive.connlimits import Budget
from hyperhive.errors import StartupError

__all__ = ["DashboardLimits", "EmbeddedServer", "bind_listener", "capped_http_protocol"]

log = logging.getLogger(__name__)
HEADER_TIMEOUT = 10.0  # seconds a dashboard connection may hold no request in flight


class EmbeddedServer(uvicorn.Server):
    """A uvicorn.Server that leaves signal handling to the daemon (stop it with should_exit).

    uvicorn's main loop wakes every 0.1 s to see whether it should exit; with a hundred agents'
    harnesses each serving its page that was half a core of an idle 2-core host (bench_swarm,
    100 agents). This one wakes once a second (the Date header's resolution) and at once when
    should_exit is set."""

    TICK = 1.0

    @property
    def should_exit(self) -> bool:
        return bool(self.__dict__.get("_should_exit", False))

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self.__dict__["_should_exit"] = value
        wake: asyncio.Event | None = self.__dict__.get("_wake")
        if value and wake is not None:
            wake.set()

    async def main_loop(self) -> None:
        wake = self.__dict__["_wake"] = asyncio.Event()
        if self.should_exit:
            wake.set()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000  # on_tick counts tenths of a second
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.TICK):
                    await wake.wait()
            should_exit = await self.on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_listener(host: str, port: int, *, what: str = "the dashboard") -> socket.socket:
    """A listening TCP socket on host:port (0: any free port; read it from getsockname())."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"{what} cannot listen on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: a busy port stays busy
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use: pick another with --port (--port 0 takes any free port)"
            ) from None
        raise StartupError(f"{what} cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


# ---- connection caps (issue 9 item 4) ------------------------------------------------------------


class DashboardLimits:
    """The dashboard's open TCP connections: at most `total`, at most `per_peer` from one
    address, each also drawn from the daemon's shared `budget`. A connection with no request in
    flight for `header_timeout` seconds (a half-sent request, an idle keep-alive) is closed."""

    def __init__(
        self,
        total: int | None = None,
        per_peer: int | None = None,
        budget: Budget | None = None,
        header_timeout: float | None = None,
    ) -> None:
        self.total = connlimits.DASHBOARD_CONNS if total is None else total
        self.per_peer = connlimits.DASHBOARD_CONNS_PER_PEER if per_peer is None else per_peer
        self.budget = budget
        self.header_timeout = HEADER_TIMEOUT if header_timeout is None else header_timeout
        self.refused = 0
        self._open: dict[str, set[asyncio.BaseTransport]] = {}
        self._refused_logged = 0.0

    def _prune(self) -> None:
        for peer in list(self._open):
            live = self._open[peer]
            for transport in [t for t in live if t.is_closing()]:
                live.discard(transport)
                if self.budget is not None:
                    self.budget.give_back()
            if not live:
                del self._open[peer]

    def count(self) -> int:
        self._prune()
        return sum(len(v) for v in self._open.values())

    def admit(self, peer: str, transport: asyncio.BaseTransport) -> bool:
        n = self.count()
        if (
            n >= self.total
            or len(self._open.get(peer, ())) >= self.per_peer
            or (self.budget is not None and not self.budget.take())
        ):
            self.refused += 1
            now = time.monotonic()
            if now - self._refused_logged >= 10.0:
                self._refused_logged = now
                log.warning("dashboard: %d connection(s) refused so far (open %d, cap %d, %d per peer; last from %s)",
                            self.refused, n, self.total, self.per_peer, peer)  # fmt: skip
            return False
        self._open.setdefault(peer, set()).add(transport)
        return True


def capped_http_protocol(limits: DashboardLimits) -> type[asyncio.Protocol]:
    """uvicorn's own HTTP protocol, refusing connections past `limits` at accept (the handle is
    freed at once, nothing is parsed) and closing connections that hold no request in flight."""
    base: Any = AutoHTTPProtocol

    class CappedHTTPProtocol(base):  # type: ignore[misc]
        _hh_refused = False
        _hh_idle_since: float | None = None
        _hh_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            peer = transport.get_extra_info("peername")
            host = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
            if not limits.admit(host, transport):
                self._hh_refused = True
                transport.abort()  # type: ignore[attr-defined]
                return
            self._hh_idle_since = time.monotonic()
            super().connection_made(transport)
            self._hh_arm()

        def _hh_arm(self) -> None:
            loop = asyncio.get_running_loop()
            self._hh_timer = loop.call_later(limits.header_timeout / 4, self._hh_check)

        def _hh_check(self) -> None:
            transport = self.transport
            if transport is None or transport.is_closing() or transport.get_protocol() is not self:
                return  # closed, or upgraded to a websocket (which has its own pings)
            cycle = self.cycle
            now = time.monotonic()
            if cycle is not None and not cycle.response_complete:
                self._hh_idle_since = None  # a request in flight (an event stream may last)
            elif self._hh_idle_since is None:
                self._hh_idle_since = now
            elif now - self._hh_idle_since >= limits.header_timeout:
                transport.close()
                return
            self._hh_arm()

        def data_received(self, data: bytes) -> None:
            if not self._hh_refused:
                super().data_received(data)

        def eof_received(self) -> None:
            if not self._hh_refused:
                super().eof_received()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._hh_timer is not None:
                self._hh_timer.cancel()
            if not self._hh_refused:
                super().connection_lost(exc)
            limits.count()  # gives this connection's budget back

    return CappedHTTPProtocol

"""One peer holding many connections cannot exhaust the daemon (issue 9 item 4): each agent
socket has a small cap, host.sock has its own bounded cap outside the budget agents draw from,
the dashboard caps its TCP connections, and half-open connections are closed. After every
flood the operator's host.sock and `hive list` still answer.

Driven through the real sockets of a real daemon; connections are held open by the test."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from hivetest import make_config, run_hive, start_daemon, stop_daemon, wire_agent
from hyperhive import connlimits, webserver
from hyperhive.connlimits import AGENT_SOCKET_CONNS, HOST_SOCKET_CONNS
from hyperhive.core import sockets
from hyperhive.core.daemon import Daemon
from hyperhive.protocol import ErrorCode

BOUND = 20


class Held:
    """Connections the test holds open; closed on exit."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.readers: list[asyncio.StreamReader] = []

    async def unix(self, path: Path) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_unix_connection(str(path))
        self.readers.append(reader)
        self.writers.append(writer)
        return reader

    async def tcp(self, host: str, port: int) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection(host, port)
        self.readers.append(reader)
        self.writers.append(writer)
        return reader

    async def request(self, path: Path, req: dict[str, Any]) -> dict[str, Any]:
        """A request on a new held connection (so it counts against the cap once answered)."""
        reader = await self.unix(path)
        self.writers[-1].write(json.dumps(req).encode() + b"\n")
        await self.writers[-1].drain()
        async with asyncio.timeout(BOUND):
            reply: dict[str, Any] = json.loads(await reader.readline())
        return reply

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        for w in self.writers:
            with contextlib.suppress(Exception):
                await w.wait_closed()
        self.writers.clear()
        self.readers.clear()


@pytest.fixture
async def held() -> AsyncIterator[Held]:
    h = Held()
    try:
        yield h
    finally:
        await h.close()


async def host_answers(daemon: Daemon) -> None:
    """host.sock answers a request on a fresh connection, and the `hive list` CLI works."""
    reader, writer = await asyncio.open_unix_connection(str(daemon.paths.host_socket))
    try:
        writer.write(b'{"cmd":"list"}\n')
        await writer.drain()
        async with asyncio.timeout(BOUND):
            reply = json.loads(await reader.readline())
    finally:
        writer.close()
    assert reply["ok"] is True, reply
    listed = await run_hive(daemon.paths.run_dir, "list", "--json", bound=60, ok=True)
    assert "agents" in json.loads(listed.stdout)


async def refused_busy(reader: asyncio.StreamReader) -> None:
    """The daemon answers `busy` and closes."""
    async with asyncio.timeout(BOUND):
        reply = json.loads(await reader.readline())
        assert reply["ok"] is False and reply["code"] == ErrorCode.BUSY, reply
        assert await reader.read() == b"", "the refused connection is closed"


async def test_an_agent_socket_serves_its_cap_then_refuses_busy_and_host_still_answers(
    hive: Daemon, held: Held
) -> None:
    """AGENT_SOCKET_CONNS connections are served; one more is refused with `busy` and closed;
    host.sock and `hive list` answer meanwhile; freeing one slot lets a new client in."""
    sock = await wire_agent(hive, "flood")
    for _ in range(AGENT_SOCKET_CONNS):
        assert (await held.request(sock, {"cmd": "whoami"}))["name"] == "flood"
    await refused_busy(await held.unix(sock))
    await host_answers(hive)
    held.writers[0].close()
    async with asyncio.timeout(BOUND):
        while True:  # the freed slot is taken back once the daemon has seen the close
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(b'{"cmd":"whoami"}\n')
            line = await reader.readline()
            writer.close()
            if json.loads(line)["ok"]:
                break


async def test_a_burst_of_connections_to_an_agent_socket_leaves_host_sock_answering(hive: Daemon, held: Held) -> None:
    """Many connections at once from one peer (released together by a barrier): at most the cap
    is served, every other one gets `busy`, and the operator is never starved."""
    sock = await wire_agent(hive, "flood")
    n = 300
    gate = asyncio.Event()

    async def one() -> str:
        await gate.wait()
        try:
            reader, writer = await asyncio.open_unix_connection(str(sock))
        except OSError:
            return "backlog"  # the kernel's backlog was full: refused before the daemon saw it
        held.writers.append(writer)
        try:
            writer.write(b'{"cmd":"whoami"}\n')
            await writer.drain()
            line = await reader.readline()
        except OSError:  # refused and closed before our line got there
            return "reset"
        if not line:
            return "reset"
        return "served" if json.loads(line)["ok"] else json.loads(line)["code"]

    tasks = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0)
    gate.set()
    async with asyncio.timeout(60):
        outcomes = await asyncio.gather(*tasks)
    assert 1 <= outcomes.count("served") <= AGENT_SOCKET_CONNS, outcomes
    assert set(outcomes) <= {"served", ErrorCode.BUSY, "backlog", "reset"}, set(outcomes)
    await host_answers(hive)


async def test_host_sock_has_its_own_bound(hive: Daemon, held: Held) -> None:
    """host.sock serves HOST_SOCKET_CONNS connections at once and refuses the next with `busy`."""
    for _ in range(HOST_SOCKET_CONNS):
        assert (await held.request(hive.paths.host_socket, {"cmd": "ping"}))["ok"] is True
    await refused_busy(await held.unix(hive.paths.host_socket))


async def test_a_client_that_never_finishes_its_first_line_is_closed(
    hive: Daemon, held: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A half-open client (half a line, then nothing) is closed after FIRST_LINE_TIMEOUT, while a
    client that has been served stays open (issue 9 item 4)."""
    sock = await wire_agent(hive, "flood")
    monkeypatch.setattr(sockets, "FIRST_LINE_TIMEOUT", 0.3)
    assert (await held.request(sock, {"cmd": "whoami"}))["ok"] is True
    half = await held.unix(sock)
    held.writers[-1].write(b'{"cmd":"who')
    async with asyncio.timeout(BOUND):
        assert await half.read() == b""
    held.writers[0].write(b'{"cmd":"whoami"}\n')
    async with asyncio.timeout(BOUND):
        assert json.loads(await held.readers[0].readline())["ok"] is True


async def hive_with(tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch, *, budget: int | None = None,
                    per_peer: int | None = None, header_timeout: float = 60.0) -> tuple[Daemon, asyncio.Task[None]]:  # fmt: skip
    """A daemon with tighter caps (set before it starts): a shared budget of `budget`
    connections, `per_peer` dashboard connections per address, the dashboard's header timeout."""
    if budget is not None:
        soft = connlimits.raise_nofile_limit()
        monkeypatch.setattr(connlimits, "FD_RESERVE", soft - HOST_SOCKET_CONNS - budget)
    if per_peer is not None:
        monkeypatch.setattr(connlimits, "DASHBOARD_CONNS_PER_PEER", per_peer)
    monkeypatch.setattr(webserver, "HEADER_TIMEOUT", header_timeout)
    return await start_daemon(make_config(tmp_path, short_dir))


def dashboard_addr(daemon: Daemon) -> tuple[str, int]:
    assert daemon.dashboard_url is not None
    url = urlsplit(daemon.dashboard_url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


HEALTH = b"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n"


async def closed_without_response(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(BOUND):
        try:
            return await reader.read() == b""
        except ConnectionResetError:
            return True


async def answers_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(HEALTH)
    await writer.drain()
    async with asyncio.timeout(BOUND):
        return (await reader.readline()).startswith(b"HTTP/1.1 ")


async def test_the_shared_budget_spans_agent_sockets_and_the_dashboard_but_not_host_sock(
    tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch, held: Held
) -> None:
    """With a budget of 6, three connections on each of two agent sockets use it all: a third
    agent socket and the dashboard refuse, host.sock answers (the reserve)."""
    daemon, task = await hive_with(tmp_path, short_dir, monkeypatch, budget=6)
    try:
        a, b, c = [await wire_agent(daemon, n) for n in ("a", "b", "c")]
        for sock in (a, a, a, b, b, b):
            assert (await held.request(sock, {"cmd": "whoami"}))["ok"] is True
        await refused_busy(await held.unix(c))
        reader = await held.tcp(*dashboard_addr(daemon))
        held.writers[-1].write(HEALTH)
        assert await closed_without_response(reader)
        await host_answers(daemon)
    finally:
        await held.close()
        await stop_daemon(daemon, task)


async def test_the_dashboard_caps_one_peers_connections(
    tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch, held: Held
) -> None:
    """Past the per-peer cap a new dashboard connection is closed at accept; the ones held still
    answer, and host.sock answers throughout."""
    daemon, task = await hive_with(tmp_path, short_dir, monkeypatch, per_peer=3)
    try:
        addr = dashboard_addr(daemon)
        kept = [(await held.tcp(*addr), held.writers[-1]) for _ in range(3)]
        assert await closed_without_response(await held.tcp(*addr))
        await host_answers(daemon)
        assert await answers_http(*kept[0])
    finally:
        await held.close()
        await stop_daemon(daemon, task)


async def test_the_dashboard_closes_a_request_whose_headers_never_finish(
    tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch, held: Held
) -> None:
    """A slow-loris request (half its headers, then nothing) is closed after the header timeout;
    a whole request on a new connection is answered."""
    daemon, task = await hive_with(tmp_path, short_dir, monkeypatch, header_timeout=0.5)
    try:
        addr = dashboard_addr(daemon)
        slow = await held.tcp(*addr)
        held.writers[-1].write(b"GET /login HTTP/1.1\r\nHost: loc")
        assert await closed_without_response(slow)
        fresh = await held.tcp(*addr)
        assert await answers_http(fresh, held.writers[-1])
    finally:
        await held.close()
        await stop_daemon(daemon, task)


def test_repeated_accept_errors_are_logged_once_per_interval_with_a_count() -> None:
    """An accept storm (EMFILE, "out of system resource") writes one line per interval on each
    logger the filter guards, and the next line that passes says how many were held back;
    other records pass untouched (issue 9 item 4: serve.log grew by 196 MB)."""
    flt = connlimits.install_flood_log_filter(interval=3600)
    logger = logging.getLogger("asyncio")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep()
    logger.addHandler(keep)
    try:
        for _ in range(50):
            try:
                raise OSError(errno.EMFILE, "Too many open files")
            except OSError:
                logger.error("socket.accept() out of system resource", exc_info=True)
        logger.error("an unrelated error")
        flt.interval = 0
        logger.error("socket.accept() out of system resource")
    finally:
        logger.removeHandler(keep)
        connlimits.install_flood_log_filter()
    assert seen == [
        "socket.accept() out of system resource",
        "an unrelated error",
        "socket.accept() out of system resource (49 more like this not logged since the last one)",
    ]

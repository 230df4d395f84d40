"""The in-cage loopback shim: the claude CLI speaks HTTP over TCP only, the gateway listens on
the cage's `/run/hive/api.sock`. Each TCP connection on 127.0.0.1 is piped byte for byte to a
new connection on the socket (no HTTP parsing, no buffering), so a cage with no network at all
(`network = "none"` still has loopback) reaches the model through the core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

__all__ = ["ApiShim"]

log = logging.getLogger(__name__)
CHUNK = 64 * 1024


class ApiShim:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_unix_connection(str(self.socket_path))
            except OSError as exc:
                log.warning("api shim: the gateway socket %s is unreachable: %s", self.socket_path, exc)
                body = b'{"type":"error","error":{"type":"api_error","message":"hyperhive: the gateway socket is unreachable"}}'
                writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))  # fmt: skip
                with contextlib.suppress(OSError):
                    await writer.drain()
                return
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._conns.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()

"""HiveClient: one JSON-line request/response over a hyperhive unix socket.

Used by the CLI, the harness tools, the tests and the benchmarks. Keeps one connection open and
reconnects on failure. Never touches SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hyperhive.errors import DaemonNotRunning, HiveError
from hyperhive.framing import encode
from hyperhive.wirecaps import MAX_LINE_BYTES, MAX_RECV_WAIT

__all__ = ["HiveClient", "RemoteError", "SyncHiveClient"]


class RemoteError(HiveError):
    """The daemon answered `ok: false`. `code` is the wire error code."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code or "error"


def _check(reply: dict[str, Any]) -> dict[str, Any]:
    if not reply.get("ok"):
        raise RemoteError(str(reply.get("error") or "request failed"), reply.get("code"))
    return reply


class HiveClient:
    """Async client. `await client.call("send", to="b", body="hi")` → the reply dict (ok only).

    Requests on one client are serialised; use one client per concurrent caller (a long-poll
    `recv` holds the connection for its whole wait).
    """

    def __init__(self, socket_path: str | Path, *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    str(self.socket_path), limit=MAX_LINE_BYTES + 2
                )
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonNotRunning(f"hive serve is not running (no socket at {self.socket_path})") from exc
            except PermissionError as exc:
                raise DaemonNotRunning(f"permission denied on {self.socket_path}") from exc
        return self._reader, self._writer

    async def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one request; return the reply whatever its `ok` (no raise on ok:false)."""
        wait = float(payload.get("wait_seconds") or 0)
        timeout = self.timeout + min(wait, MAX_RECV_WAIT)
        async with self._lock:
            for attempt in (1, 2):
                reader, writer = await self._connect()
                try:
                    writer.write(encode(payload))
                    await writer.drain()
                    line = await asyncio.wait_for(reader.readline(), timeout)
                    if not line:
                        raise ConnectionResetError("the daemon closed the connection")
                    reply: dict[str, Any] = json.loads(line)
                    return reply
                except (ConnectionError, BrokenPipeError, asyncio.IncompleteReadError) as exc:
                    await self.close()
                    if attempt == 2:
                        raise DaemonNotRunning(f"lost the connection to {self.socket_path}: {exc}") from exc
                except (TimeoutError, ValueError):
                    await self.close()
                    raise
        raise AssertionError("unreachable")

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send `{"cmd": cmd, **fields}` (None fields dropped); raise RemoteError on ok:false."""
        payload = {"cmd": cmd, **{k: v for k, v in fields.items() if v is not None}}
        return _check(await self.request(payload))

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    async def __aenter__(self) -> HiveClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SyncHiveClient:
    """Blocking client for the CLI: one connection per request."""

    def __init__(self, socket_path: str | Path, *, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        wait = float(payload.get("wait_seconds") or 0)
        with self._connect(self.timeout + wait) as sock:
            sock.sendall(encode(payload))
            with sock.makefile("rb") as stream:
                line = stream.readline(MAX_LINE_BYTES * 8)
        if not line:
            raise DaemonNotRunning(f"the daemon at {self.socket_path} closed the connection without answering")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stream(self, cmd: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """A streaming verb (`subscribe`, `events_follow`): the checked reply, then each `event`
        as it comes, until the daemon ends the stream."""
        payload = {"cmd": cmd, **{k: v for k, v in fields.items() if v is not None}}
        with self._connect(self.timeout) as sock:
            sock.sendall(encode(payload))
            with sock.makefile("rb") as lines:
                first = lines.readline(MAX_LINE_BYTES * 8)
                if not first:
                    raise DaemonNotRunning(f"the daemon at {self.socket_path} closed the connection without answering")
                yield _check(json.loads(first))
                sock.settimeout(None)  # a stream may be quiet for as long as nothing happens
                while line := lines.readline(MAX_LINE_BYTES * 8):
                    event = _check(json.loads(line)).get("event")
                    if isinstance(event, dict):
                        yield event

    def _connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            try:
                sock.connect(str(self.socket_path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise DaemonNotRunning(
                    f"hive serve is not running (no socket at {self.socket_path}); start it, or point at its "
                    "run dir with --run-dir or HYPERHIVE_RUN_DIR"
                ) from exc
            except PermissionError as exc:
                raise DaemonNotRunning(
                    f"permission denied on {self.socket_path}; run as the daemon's user, or point at another "
                    "run dir with --run-dir or HYPERHIVE_RUN_DIR"
                ) from exc
        except BaseException:
            sock.close()
            raise
        return sock

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        payload = {"cmd": cmd, **{k: v for k, v in fields.items() if v is not None}}
        return _check(self.request(payload))

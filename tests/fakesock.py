"""A fake core for harness tests (importable as `fakesock`): a tiny JSON-line unix socket
server that records every request and answers each with `reply(request)`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any


class FakeHive:
    """Records requests in `requests`; by default answers ok plus the fields `replies` holds for
    the request's `cmd`. Override `reply` for other answers."""

    def __init__(self, path: Path, replies: dict[str, dict[str, Any]] | None = None) -> None:
        self.path = path
        self.replies = replies or {}
        self.requests: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None

    def reply(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"version": 1, "ok": True, **self.replies.get(request["cmd"], {})}

    async def __aenter__(self) -> FakeHive:
        self._server = await asyncio.start_unix_server(self._handle, str(self.path))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                request = json.loads(line)
                self.requests.append(request)
                writer.write(json.dumps(self.reply(request)).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

"""A fake core for harness tests (importable as `fakesock`): a tiny JSON-line unix socket
server that records every request and answers each with `reply(request)`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hyperhive.replies import encode_reply


class FakeHive:
    """Records requests in `requests`; answers ok plus the fields `replies` holds for the
    request's `cmd` (or `fields(request)` returns), passed through that verb's real reply model
    (hyperhive.replies), so a fake reply cannot drift from what the core sends. A fixture the
    model refuses comes back as `ok: false, code: internal` naming the problem. Override `reply`
    for a refusal."""

    def __init__(self, path: Path, replies: dict[str, dict[str, Any]] | None = None) -> None:
        self.path = path
        self.replies = replies or {}
        self.requests: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None

    def fields(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.replies.get(request["cmd"], {})

    def reply(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return {"version": 1, "ok": True, **encode_reply(request["cmd"], self.fields(request))}
        except ValidationError as exc:
            return {"version": 1, "ok": False, "code": "internal", "error": f"fake reply for {request['cmd']}: {exc}"}

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

"""Reading a response's `usage` as it streams past the gateway, without holding it back.

SSE: `message_start` carries the model, the id, the input and cache figures; `message_delta`
carries the running output count (cumulative, so the last one wins) and may restate the input
figures. Only those two events are decoded; every other line is skipped by a substring test.
A JSON answer is kept (up to a cap) and its `usage` read at the end.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

__all__ = ["UsageParser"]

JSON_CAP = 4 * 1024 * 1024
_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
}


class UsageParser:
    def __init__(self, *, sse: bool) -> None:
        self.sse = sse
        self._pending = b""
        self._json: list[bytes] = []
        self._json_size = 0
        self._seen = False
        self._usage: dict[str, Any] = {v: 0 for v in _FIELDS.values()}

    def feed(self, chunk: bytes) -> None:
        if not self.sse:
            self._json_size += len(chunk)
            if self._json_size <= JSON_CAP:
                self._json.append(chunk)
            return
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > JSON_CAP:  # a line that never ends: stop looking at it
            self._pending = b""
        for line in lines:
            if line.startswith(b"data:") and (b'"message_start"' in line or b'"message_delta"' in line):
                self._event(line[5:])

    def _event(self, raw: bytes) -> None:
        with contextlib.suppress(ValueError):
            event = json.loads(raw)
            if not isinstance(event, dict):
                return
            if event.get("type") == "message_start" and isinstance(event.get("message"), dict):
                message = event["message"]
                self._take(message.get("usage"))
                self._usage["model"] = str(message.get("model") or "")[:100]
                self._usage["id"] = str(message.get("id") or "")[:100]
            elif event.get("type") == "message_delta":
                self._take(event.get("usage"))

    def _take(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self._seen = True
        for src, dst in _FIELDS.items():
            value = usage.get(src)
            if isinstance(value, int) and value >= 0:
                self._usage[dst] = value

    def usage(self) -> dict[str, Any] | None:
        """The figures read, or None when the answer carried no usage."""
        if not self.sse and self._json and self._json_size <= JSON_CAP:
            with contextlib.suppress(ValueError):
                body = json.loads(b"".join(self._json))
                if isinstance(body, dict):
                    self._take(body.get("usage"))
                    self._usage["model"] = str(body.get("model") or "")[:100]
                    self._usage["id"] = str(body.get("id") or "")[:100]
        if self.sse and self._pending.startswith(b"data:"):
            line, self._pending = self._pending, b""
            if b'"message_delta"' in line or b'"message_start"' in line:
                self._event(line[5:])
        return dict(self._usage) if self._seen else None

"""JSON-line framing on asyncio streams, with a hard cap on line length. Knows no verbs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hyperhive.wirecaps import MAX_LINE_BYTES

__all__ = ["LineTooLong", "encode", "read_line"]


class LineTooLong(Exception):
    """The peer sent more than the cap without a newline."""


async def read_line(reader: asyncio.StreamReader, limit: int = MAX_LINE_BYTES) -> bytes | None:
    """One line without its newline; None at a clean EOF. Raises LineTooLong past `limit`."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        line = exc.partial  # a last line without a newline still counts
    except asyncio.LimitOverrunError as exc:
        raise LineTooLong(f"line longer than {limit} bytes") from exc
    if len(line) > limit + 1:
        raise LineTooLong(f"line longer than {limit} bytes")
    return line.rstrip(b"\r\n")


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"

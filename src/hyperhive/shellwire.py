"""The byte stream of `exec` and `shell` on host.sock (architecture §14), after the JSON reply.

The client sends one request line (`{"cmd": "exec" | "shell", ...}`) and reads one reply line,
as on every socket. On `ok: true` the connection carries frames from then on, both ways, until
the core sends EXIT and closes. The client sends nothing before it has read the reply.

A frame is a 1-byte kind, a 4-byte big-endian payload length, then the payload (at most
MAX_FRAME bytes). Unknown kinds or an oversized length end the session.
"""

from __future__ import annotations

import asyncio
import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_FRAME", "ExitStatus", "Frame", "FrameError", "Kind", "encode", "exit_frame", "read_frame", "resize"]

MAX_FRAME = 64 * 1024
_HEADER = struct.Struct(">BI")
_SIZE = struct.Struct(">HH")


class Kind(enum.IntEnum):
    # client → core
    STDIN = 0x01  # bytes for the command's stdin (or the terminal)
    STDIN_EOF = 0x02  # no more stdin (exec: the command's stdin is closed)
    RESIZE = 0x03  # the terminal's size: rows, cols as two big-endian uint16
    # core → client
    STDOUT = 0x11  # the command's stdout (shell: everything the terminal shows)
    STDERR = 0x12  # exec only: the command's stderr
    EXIT = 0x13  # JSON {"exit_code": int | null, "signal": int | null}; the last frame


class FrameError(Exception):
    """The peer sent something that is not a frame."""


@dataclass(frozen=True)
class Frame:
    kind: Kind
    payload: bytes = b""


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int | None
    signal: int | None

    def status(self) -> int:
        """The shell convention: the exit code, or 128 + the signal that killed it."""
        if self.exit_code is not None:
            return self.exit_code
        return 128 + (self.signal or 0)

    def to_json(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "signal": self.signal}


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_FRAME:
        raise FrameError(f"frame payload of {len(payload)} bytes is over the {MAX_FRAME}-byte cap")
    return _HEADER.pack(kind, len(payload)) + payload


def chunks(kind: Kind, data: bytes) -> bytes:
    """`data` as as many frames of `kind` as it needs."""
    return b"".join(encode(kind, data[i : i + MAX_FRAME]) for i in range(0, len(data), MAX_FRAME))


def resize(rows: int, cols: int) -> bytes:
    return encode(Kind.RESIZE, _SIZE.pack(max(1, min(rows, 0xFFFF)), max(1, min(cols, 0xFFFF))))


def parse_resize(payload: bytes) -> tuple[int, int]:
    if len(payload) != _SIZE.size:
        raise FrameError("a resize frame carries 4 bytes")
    rows, cols = _SIZE.unpack(payload)
    return max(1, rows), max(1, cols)


def exit_frame(status: ExitStatus) -> bytes:
    return encode(Kind.EXIT, json.dumps(status.to_json()).encode())


def parse_exit(payload: bytes) -> ExitStatus:
    try:
        data = json.loads(payload)
        code, sig = data.get("exit_code"), data.get("signal")
    except (ValueError, AttributeError) as exc:
        raise FrameError(f"bad exit frame: {exc}") from None
    if not (code is None or isinstance(code, int)) or not (sig is None or isinstance(sig, int)):
        raise FrameError("bad exit frame: exit_code and signal are integers or null")
    return ExitStatus(code, sig)


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """The next frame; None at a clean EOF between frames. Raises FrameError on garbage."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError("connection closed inside a frame header") from None
    kind, size = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise FrameError(f"frame of {size} bytes is over the {MAX_FRAME}-byte cap")
    try:
        kind = Kind(kind)
    except ValueError:
        raise FrameError(f"unknown frame kind {kind:#x}") from None
    try:
        payload = await reader.readexactly(size) if size else b""
    except asyncio.IncompleteReadError:
        raise FrameError("connection closed inside a frame") from None
    return Frame(kind, payload)

"""The operator's side of `exec` and `shell` on host.sock (`hive exec`, `hive shell`, the bench):
one request line, one reply line, then `hyperhive.shellwire` frames until EXIT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import termios
import threading
import tty
from pathlib import Path
from typing import Any, BinaryIO

from hyperhive.errors import DaemonNotRunning, HiveError
from hyperhive.protocol import MAX_LINE_BYTES
from hyperhive.shellwire import ExitStatus, FrameError, Kind, chunks, encode, parse_exit, read_frame, resize

__all__ = ["open_session", "run_exec", "run_shell"]

_TERM = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")


class ShellRefused(HiveError):
    """The core answered the exec/shell request with ok: false."""


async def open_session(
    socket_path: Path, request: dict[str, Any]
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
    """Connect, send the request, read the reply; raises with the core's one-line error."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=MAX_LINE_BYTES + 2)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise DaemonNotRunning(
            f"hive serve is not running (no socket at {socket_path}); start it, or point at its run dir "
            "with --run-dir or HYPERHIVE_RUN_DIR"
        ) from exc
    writer.write(json.dumps(request).encode() + b"\n")
    await writer.drain()
    line = await reader.readline()
    if not line:
        writer.close()
        raise HiveError("the daemon closed the connection without a reply")
    reply: dict[str, Any] = json.loads(line)
    if not reply.get("ok"):
        writer.close()
        raise ShellRefused(str(reply.get("error") or "refused"))
    return reader, writer, reply


def _warn_unisolated(reply: dict[str, Any]) -> None:
    if not reply.get("isolated", True):
        sys.stderr.write(
            f"hive: warning: {reply.get('agent')} runs in a {reply.get('cage')} cage: this is NOT isolated, "
            "it runs on the host as the daemon's user\n"
        )
        sys.stderr.flush()


async def _frames_out(reader: asyncio.StreamReader, stdout: BinaryIO, stderr: BinaryIO) -> ExitStatus:
    while True:
        try:
            frame = await read_frame(reader)
        except FrameError as exc:
            raise HiveError(f"the shell stream broke: {exc}") from None
        if frame is None:
            raise HiveError("the daemon closed the connection before the command ended")
        if frame.kind == Kind.STDOUT:
            stdout.write(frame.payload)
            stdout.flush()
        elif frame.kind == Kind.STDERR:
            stderr.write(frame.payload)
            stderr.flush()
        elif frame.kind == Kind.EXIT:
            return parse_exit(frame.payload)


async def run_exec(socket_path: Path, name: str, argv: list[str]) -> int:
    """`hive exec`: stdin, stdout and stderr passed through; returns the command's status."""
    reader, writer, reply = await open_session(socket_path, {"cmd": "exec", "name": name, "argv": argv})
    _warn_unisolated(reply)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(16)

    def read_stdin() -> None:  # a thread: stdin may be a file, a pipe or a terminal
        try:
            while data := os.read(0, 65536):
                asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()
        except (OSError, RuntimeError):
            pass
        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    async def pump_stdin() -> None:
        while (data := await queue.get()) is not None:
            writer.write(chunks(Kind.STDIN, data))
            await writer.drain()
        writer.write(encode(Kind.STDIN_EOF))
        await writer.drain()

    threading.Thread(target=read_stdin, name="hive-exec-stdin", daemon=True).start()
    pump = asyncio.ensure_future(pump_stdin())
    try:
        status = await _frames_out(reader, sys.stdout.buffer, sys.stderr.buffer)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump
        writer.close()
    return status.status()


def _size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(0)
    except OSError:
        return 24, 80
    return size.lines or 24, size.columns or 80


async def run_shell(socket_path: Path, name: str) -> int:
    """`hive shell`: a raw terminal onto a login shell in the cage; returns the shell's status."""
    if not os.isatty(0):
        raise HiveError("hive shell needs a terminal on stdin (use `hive exec NAME -- CMD` for commands)")
    rows, cols = _size()
    term = os.environ.get("TERM", "")
    request = {"cmd": "shell", "name": name, "rows": rows, "cols": cols,
               "term": term if _TERM.match(term) else "xterm-256color"}  # fmt: skip
    reader, writer, reply = await open_session(socket_path, request)
    _warn_unisolated(reply)
    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(0)

    def on_stdin() -> None:
        try:
            data = os.read(0, 65536)
        except OSError:
            data = b""
        if data:
            writer.write(chunks(Kind.STDIN, data))
        else:
            loop.remove_reader(0)

    def on_resize() -> None:
        writer.write(resize(*_size()))

    tty.setraw(0)
    loop.add_reader(0, on_stdin)
    loop.add_signal_handler(signal.SIGWINCH, on_resize)
    try:
        status = await _frames_out(reader, sys.stdout.buffer, sys.stderr.buffer)
    finally:
        loop.remove_reader(0)
        loop.remove_signal_handler(signal.SIGWINCH)
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
        writer.close()
    return status.status()

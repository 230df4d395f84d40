"""`exec` and `shell` on host.sock: after the JSON reply, `hyperhive.shellwire` frames between
the operator's CLI and a session of `core.shell`. Offered on host.sock only (HOST_VERBS): no
agent or manager socket has these verbs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hyperhive.core.shell import ExecRun, PtySession, Shells
from hyperhive.core.sockets import Takeover
from hyperhive.protocol import ExecReq, ShellReq
from hyperhive.shellwire import MAX_FRAME, FrameError, Kind, chunks, encode, exit_frame, parse_resize, read_frame

__all__ = ["exec_takeover", "shell_takeover"]

log = logging.getLogger(__name__)


def _first(session: ExecRun | PtySession) -> dict[str, object]:
    return {
        "session": session.id,
        "agent": session.agent,
        "cage": session.shells.lifecycle.cage.kind,
        "isolated": session.isolated,
    }


async def exec_takeover(shells: Shells, req: ExecReq, by: str) -> Takeover:
    run = await shells.open_exec(req.name, list(req.argv), by=by)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proc = run.proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        lock = asyncio.Lock()

        async def out(stream: asyncio.StreamReader, kind: Kind) -> None:
            while data := await stream.read(MAX_FRAME):
                async with lock:
                    writer.write(encode(kind, data))
                    await writer.drain()

        async def inp() -> None:
            stdin = proc.stdin
            assert stdin is not None
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    return  # the client has gone
                if frame.kind == Kind.STDIN:
                    with contextlib.suppress(ConnectionError):
                        stdin.write(frame.payload)
                        await stdin.drain()
                elif frame.kind == Kind.STDIN_EOF:
                    stdin.close()

        async def outputs() -> None:
            assert proc.stdout is not None and proc.stderr is not None
            await asyncio.gather(out(proc.stdout, Kind.STDOUT), out(proc.stderr, Kind.STDERR))

        pumps = asyncio.ensure_future(outputs())
        client = asyncio.ensure_future(inp())
        try:
            done, _ = await asyncio.wait({pumps, client}, return_when=asyncio.FIRST_COMPLETED)
            if client in done and not pumps.done():
                run.kill()  # the client left (or sent garbage) before the command ended
                await asyncio.wait({pumps}, timeout=5)
                return
            status = await run.finish()
            async with lock:
                writer.write(exit_frame(status))
                await writer.drain()
        finally:
            run.kill()
            for task in (client, pumps):
                task.cancel()
            await asyncio.gather(client, pumps, return_exceptions=True)
            if not run.done.done():
                await run.finish()

    return Takeover(_first(run), serve, run.kill)


async def shell_takeover(shells: Shells, req: ShellReq, by: str) -> Takeover:
    session = await shells.open_pty(req.name, via="cli", by=by, rows=req.rows, cols=req.cols, term=req.term)
    viewer = session.attach()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def out() -> None:
            while (data := await viewer.queue.get()) is not None:
                writer.write(chunks(Kind.STDOUT, data))
                await writer.drain()

        async def inp() -> None:
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    return
                if frame.kind == Kind.STDIN:
                    await session.write(frame.payload)
                elif frame.kind == Kind.RESIZE:
                    session.resize(*parse_resize(frame.payload))

        pump = asyncio.ensure_future(out())
        client = asyncio.ensure_future(inp())
        try:
            done, _ = await asyncio.wait({pump, client}, return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                status = await session.done
                writer.write(exit_frame(status))
                await writer.drain()
            elif client.exception() is not None and not isinstance(client.exception(), FrameError | ConnectionError):
                log.warning("shell %d: client handler failed", session.id, exc_info=client.exception())
        finally:
            for task in (pump, client):
                task.cancel()
            await asyncio.gather(pump, client, return_exceptions=True)

    return Takeover(_first(session), serve, lambda: session.detach(viewer))

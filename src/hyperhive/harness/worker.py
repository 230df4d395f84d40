"""The turn worker (issue 13 §3): the only harness process that imports claude-agent-sdk and MCP.

`python -m hyperhive.harness.worker` runs in the agent's cage as a child of the harness. It
reads one JSON request a line on stdin and writes one JSON event a line on the stdout it was
given (its own stdout then points at stderr, so nothing else can corrupt the stream):

- `{"op": "run", "spec": {...}}` → `message` / `note` events, then `result` (with `warm_after`:
  whether the CLI is kept); one run at a time.
- `{"op": "prewarm", "spec": {...}}` → `prewarmed {pid, note}`: the CLI that spec's turn would
  start, connected with no query (warm on start); pid null (and why in note) if it could not.
- `{"op": "cancel"}` → `cancelled {stopped, how, pid}` (the CLI is this process's child).
- `{"op": "cool"}` → `cooled {was_warm}`, then the worker exits: its memory goes back.
- the `nap` tool → `call {cid, seconds}`, answered by `{"op": "reply", "cid", "text"}`.

stdin closing ends the turn in flight and the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

from hyperhive.client import HiveClient
from hyperhive.harness.tools import allowed_tool_names, build_hyperhive_server
from hyperhive.harness.turn import TurnRunner, TurnSpec
from hyperhive.harness.turnspec import spec_from_wire

log = logging.getLogger("hyperhive.harness.worker")
LINE_LIMIT = 16 * 1024 * 1024


class Worker:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.runner = TurnRunner()
        run_dir = Path(os.environ.get("HYPERHIVE_AGENT_RUN", "/run/hive"))
        self.client = HiveClient(run_dir / "mcp.sock")
        self._servers: dict[str, Any] = {}
        self._calls: dict[int, asyncio.Future[str]] = {}
        self._next_call = 0
        self._turn: asyncio.Task[None] | None = None

    def send(self, event: dict[str, Any]) -> None:
        self.out.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.out.flush()

    async def _nap(self, seconds: float) -> str:
        self._next_call += 1
        cid = self._next_call
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._calls[cid] = future
        self.send({"ev": "call", "cid": cid, "name": "nap", "seconds": seconds})
        try:
            return await future
        finally:
            self._calls.pop(cid, None)

    def _server(self, role: str) -> Any:
        if role not in self._servers:
            self._servers[role] = build_hyperhive_server(self.client, manager=role == "manager", nap=self._nap)
        return self._servers[role]

    def _spec(self, wire: dict[str, Any]) -> TurnSpec:
        spec = spec_from_wire(wire)
        if spec.hyperhive:
            spec = dataclasses.replace(spec, mcp_server=self._server(spec.hyperhive),
                                       mcp_tools=allowed_tool_names(manager=spec.hyperhive == "manager"))  # fmt: skip
        return spec

    async def _prewarm(self, wire: dict[str, Any]) -> None:
        try:
            pid, note = await self.runner.prewarm(self._spec(wire))
        except Exception as exc:  # never leave the harness waiting
            log.exception("pre-warm failed in the worker")
            pid, note = None, f"worker: {exc!r}"[:600]
        self.send({"ev": "prewarmed", "pid": pid, "note": note})

    async def _run(self, wire: dict[str, Any]) -> None:
        spec = self._spec(wire)
        try:
            result = await self.runner.run(
                spec, lambda m: self.send({"ev": "message", "data": m}), lambda t: self.send({"ev": "note", "text": t})
            )
            self.send({"ev": "result", "result": dataclasses.asdict(result), "warm_after": self.runner.warm})
        except Exception as exc:  # never leave the harness waiting for a result
            log.exception("turn failed in the worker")
            self.send({"ev": "result", "result": {"ok": False, "note": f"worker: {exc!r}"[:600]}, "warm_after": False})

    async def _cancel(self) -> None:
        stopped = await self.runner.cancel()
        stop = self.runner.last_stop
        self.send({"ev": "cancelled", "stopped": stopped, "how": stop.how if stop else None,
                   "pid": stop.pid if stop else None})  # fmt: skip

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        self.send({"ev": "ready", "pid": os.getpid()})
        tasks: set[asyncio.Task[None]] = set()
        try:
            while line := await reader.readline():
                request = json.loads(line)
                op = request.get("op")
                if op in ("run", "prewarm"):
                    work = self._run if op == "run" else self._prewarm
                    self._turn = asyncio.create_task(work(request["spec"]))
                    tasks.add(self._turn)
                    self._turn.add_done_callback(tasks.discard)
                elif op == "cancel":
                    task = asyncio.create_task(self._cancel())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif op == "reply":
                    future = self._calls.get(int(request["cid"]))
                    if future is not None and not future.done():
                        future.set_result(str(request.get("text", "")))
                elif op == "cool":
                    if self._turn is not None and not self._turn.done():
                        await self._turn
                    was = await self.runner.cool(str(request.get("why", "")))
                    self.send({"ev": "cooled", "was_warm": was})
                    return
        finally:
            if self.runner.busy:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.runner.cancel(), 15)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.runner.cool("the worker is ending"), 15)
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.client.close()


def main() -> None:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # print() or a library's stdout goes to the harness log, never into the stream
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="worker %(levelname)s %(name)s: %(message)s")
    asyncio.run(Worker(out).serve())


if __name__ == "__main__":
    main()

"""Benchmark the dashboard's SSE fan-out next to a bare Starlette SSE broadcast, same run.

    python bench/bench_dashboard_sse.py      # < 60 s; prints a table, then one JSON line

1. dashboard: a real in-process daemon (`hive serve`'s Daemon: broker on SQLite, Hub, the
   dashboard behind its auth guard on uvicorn/TCP). 20 logged-in clients hold `/api/stream`
   while the broker commits 1,000 messages/s (`services.broker.send`, one insert + commit each).
   Delay = the client's receive time − the time `send` returned (the commit; the hub publishes
   inside `send`, right after the commit).
2. bare: a minimal Starlette app (one asyncio.Queue per client, a StreamingResponse draining it
   into one write per wake-up) on uvicorn/TCP, 20 clients, 1,000 events/s; delay from publish.

Clients run in a child process (raw sockets, they only parse `id:` lines), so they do not share
the server's event loop. Both servers run in this process, one after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

CLIENTS = 20
RATE = 1000  # messages per second
SECONDS = 5.0
WARMUP = 200  # first events not measured (connections settling)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the client process ------------------------------------------------------------------------


async def _one_client(port: int, target: str, cookie: str, last: int, out: dict[int, float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    req = (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
           f"Cookie: {cookie}\r\n\r\n")  # fmt: skip
    writer.write(req.encode())
    await writer.drain()
    buf = b""
    try:
        while True:
            chunk = await reader.read(262144)
            if not chunk:
                return
            now = time.time()
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.startswith(b"id: "):
                    seq = int(line[4:])
                    out[seq] = now
                    if seq >= last:
                        return
    finally:
        writer.close()


async def _clients(port: int, target: str, cookie: str, last: int, timeout: float) -> list[dict[int, float]]:
    outs: list[dict[int, float]] = [{} for _ in range(CLIENTS)]
    tasks = [asyncio.create_task(_one_client(port, target, cookie, last, outs[i])) for i in range(CLIENTS)]
    print("ready", flush=True)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await asyncio.gather(*tasks)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return outs


def client_main(argv: list[str]) -> None:
    port, target, cookie, last, timeout = int(argv[0]), argv[1], argv[2], int(argv[3]), float(argv[4])
    outs = asyncio.run(_clients(port, target, cookie, last, timeout))
    print(json.dumps([{str(k): v for k, v in o.items()} for o in outs]), flush=True)


# -- driving -----------------------------------------------------------------------------------


async def run_clients(port: int, target: str, cookie: str, last: int) -> tuple[asyncio.subprocess.Process, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client", str(port), target, cookie, str(last), str(SECONDS + 20),
        stdout=subprocess.PIPE, limit=256 * 1024 * 1024,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    assert line.strip() == b"ready", line
    return proc, proc.stdout


async def wait_subscribers(count: Any, want: int) -> None:
    async with asyncio.timeout(20):
        while count() < want:
            await asyncio.sleep(0.01)


async def paced(n: int, publish: Any) -> dict[int, float]:
    """Publish n events at RATE/s; return seq → publish/commit time."""
    sent: dict[int, float] = {}
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        due = start + i / RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        seq = await publish(i)
        sent[seq] = time.time()
    return sent


def summarize(name: str, sent: dict[int, float], outs: list[dict[str, float]]) -> dict[str, Any]:
    measured = sorted(sent)[WARMUP:]
    delays = []
    missing = 0
    for o in outs:
        for seq in measured:
            t = o.get(str(seq))
            if t is None:
                missing += 1
            else:
                delays.append((t - sent[seq]) * 1000)
    return {
        "name": name,
        "events": len(sent),
        "clients": len(outs),
        "deliveries": len(delays),
        "missing": missing,
        "p50_ms": round(pct(delays, 0.50), 3) if delays else None,
        "p99_ms": round(pct(delays, 0.99), 3) if delays else None,
        "max_ms": round(max(delays), 3) if delays else None,
    }


async def bench_dashboard(tmp: Path) -> dict[str, Any]:
    import httpx

    from hyperhive.config import HiveConfig
    from hyperhive.core.daemon import Daemon

    state, run = tmp / "state", Path(tempfile.mkdtemp(prefix="hhb-", dir="/tmp"))
    state.mkdir()
    config = HiveConfig(state_dir=state, run_dir=run, port=0, cage="process", manager=False)  # type: ignore[call-arg]
    ready = asyncio.Event()
    daemon = Daemon(config, on_ready=lambda _d: ready.set())
    task = asyncio.create_task(daemon.serve())
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        assert daemon.uvicorn is not None and daemon.services is not None and daemon.dashboard_url
        s = daemon.services
        port = daemon.uvicorn.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as c:
            r = await c.get(daemon.dashboard_url)
            assert r.status_code == 303
            cookie = f"hh_session={c.cookies['hh_session']}"
        n = int(RATE * SECONDS)
        first = s.hub.seq
        proc, stdout = await run_clients(port, f"/api/stream?last_event_id={first}", cookie, first + n)
        await wait_subscribers(lambda: s.hub.subscriber_count, CLIENTS)

        async def publish(i: int) -> int:
            await s.broker.send("system", "operator", f"bench message {i}")
            return s.hub.seq

        sent = await paced(n, publish)
        outs = json.loads(await stdout.readline())
        await proc.wait()
        return summarize("dashboard /api/stream (broker commit → client)", sent, outs)
    finally:
        daemon.should_exit.set()
        await task
        shutil.rmtree(run, ignore_errors=True)


async def bench_bare() -> dict[str, Any]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    queues: set[asyncio.Queue[bytes]] = set()

    async def stream(request: Request) -> StreamingResponse:
        q: asyncio.Queue[bytes] = asyncio.Queue()
        queues.add(q)

        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b": stream\n\n"
                while True:
                    parts = [await q.get()]
                    while not q.empty():
                        parts.append(q.get_nowait())
                    yield b"".join(parts)
            finally:
                queues.discard(q)

        return StreamingResponse(gen(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/stream", stream)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        n = int(RATE * SECONDS)
        proc, stdout = await run_clients(port, "/stream", "x=1", n)
        await wait_subscribers(lambda: len(queues), CLIENTS)
        counter = {"seq": 0}

        async def publish(i: int) -> int:
            counter["seq"] += 1
            seq = counter["seq"]
            frame = (f"id: {seq}\nevent: message_sent\ndata: " + json.dumps(
                {"seq": seq, "kind": "message_sent", "data": {"id": seq, "preview": f"bench message {i}"}}
            ) + "\n\n").encode()  # fmt: skip
            for q in list(queues):
                q.put_nowait(frame)
            return seq

        sent = await paced(n, publish)
        outs = json.loads(await stdout.readline())
        await proc.wait()
        return summarize("bare Starlette SSE broadcast (publish → client)", sent, outs)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hh-bench-"))
    try:
        t0 = time.perf_counter()
        dash = await bench_dashboard(tmp)
        bare = await bench_bare()
        elapsed = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"SSE fan-out: {CLIENTS} clients, {RATE} msg/s for {SECONDS:.0f} s ({platform.python_version()}, "
          f"{os.cpu_count()} cpus)")  # fmt: skip
    print(f"{'':52} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'missing':>8}")
    for r in (dash, bare):
        print(f"{r['name']:52} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} {r['missing']:>8}")
    ratio50 = dash["p50_ms"] / bare["p50_ms"] if bare["p50_ms"] else None
    ratio99 = dash["p99_ms"] / bare["p99_ms"] if bare["p99_ms"] else None
    print(f"ratio dashboard/bare: p50 ×{ratio50:.2f}, p99 ×{ratio99:.2f}  ({elapsed:.1f} s)")
    print(json.dumps({"bench": "dashboard_sse", "clients": CLIENTS, "rate": RATE, "seconds": SECONDS,
                      "dashboard": dash, "bare": bare, "ratio_p50": round(ratio50 or 0, 3),
                      "ratio_p99": round(ratio99 or 0, 3)}))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
    else:
        asyncio.run(main())

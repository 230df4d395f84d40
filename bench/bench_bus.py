"""Benchmark the per-agent events Bus and its SSE stream, each next to a baseline from the same run.

    python bench/bench_bus.py            # < 60 s; prints a table, then one JSON line

1. emit() throughput vs a raw sqlite3 insert + commit loop (same pragmas, same schema).
2. history() latency (p50/p99): the full 2000-event page load and a small resume read, vs a
   raw SELECT of the same rows.
3. SSE delivery latency (p50/p99) to 10 clients at 500 events/s, through a real uvicorn on a
   unix socket (clients in a child process, so they do not share the server's loop), vs a bare
   asyncio.Queue fan-out to 10 consumers at the same rate.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAYLOAD = {"type": "assistant", "text": "the quick brown fox jumps over the lazy dog " * 4}
EMIT_N = 20_000
HISTORY_ROUNDS = 200
CLIENTS = 10
RATE = 500  # events per second
SSE_SECONDS = 4.0
T_RE = re.compile(rb'"t":([0-9.]+)')


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- 1 and 2: storage ----------------------------------------------------------------------------


def bench_emit(tmp: Path) -> dict[str, float]:
    from hyperhive.harness.bus import NOTE, Bus

    with Bus(tmp / "bus.sqlite") as bus:
        start = time.perf_counter()
        for _ in range(EMIT_N):
            bus.emit(NOTE, PAYLOAD)
        bus_s = time.perf_counter() - start
        assert bus.persistent

    conn = sqlite3.connect(tmp / "raw.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, "
        "kind TEXT NOT NULL, payload TEXT NOT NULL)"
    )
    conn.execute("CREATE INDEX events_ts ON events (ts)")
    body = json.dumps(PAYLOAD, separators=(",", ":"))
    start = time.perf_counter()
    for _ in range(EMIT_N):
        conn.execute("INSERT INTO events (ts, kind, payload) VALUES (?, ?, ?)", (time.time(), "note", body))
    raw_s = time.perf_counter() - start
    conn.close()
    return {
        "bus_per_s": EMIT_N / bus_s,
        "raw_per_s": EMIT_N / raw_s,
        "bus_us": bus_s / EMIT_N * 1e6,
        "raw_us": raw_s / EMIT_N * 1e6,
    }


def bench_history(tmp: Path) -> dict[str, float]:
    from hyperhive.harness.bus import Bus

    out: dict[str, float] = {}
    with Bus(tmp / "bus.sqlite") as bus:  # 20k rows from bench_emit
        last = bus.last_id
        for label, after in (("full", 0), ("resume", last - 10)):
            times = []
            for _ in range(HISTORY_ROUNDS):
                start = time.perf_counter()
                events = bus.history(after=after)
                times.append(time.perf_counter() - start)
            assert len(events) == (2000 if after == 0 else 10)
            out[f"{label}_p50_ms"] = pct(times, 0.50) * 1e3
            out[f"{label}_p99_ms"] = pct(times, 0.99) * 1e3
    conn = sqlite3.connect(tmp / "bus.sqlite")
    times = []
    for _ in range(HISTORY_ROUNDS):
        start = time.perf_counter()
        conn.execute("SELECT id, ts, kind, payload FROM events ORDER BY id DESC LIMIT 2000").fetchall()
        times.append(time.perf_counter() - start)
    conn.close()
    out["raw_full_p50_ms"] = pct(times, 0.50) * 1e3
    out["raw_full_p99_ms"] = pct(times, 0.99) * 1e3
    return out


# -- 3: delivery ---------------------------------------------------------------------------------


async def client_main(path: str, clients: int, events: int) -> None:
    """Child process: `clients` raw HTTP/1.1 SSE readers; prints 'ready', then all latencies."""
    ready = asyncio.Event()
    connected = 0

    async def one() -> list[float]:
        nonlocal connected
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"GET /events HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n")
        await writer.drain()
        buf = b""
        while b": stream" not in buf:  # the stream's opening comment: subscribed
            buf += await reader.read(65536)
        connected += 1
        if connected == clients:
            ready.set()
        latencies: list[float] = []
        buf = b""
        while len(latencies) < events:
            data = await reader.read(65536)
            now = time.monotonic()
            if not data:
                break
            buf += data
            *blocks, buf = buf.split(b"\n\n")
            for block in blocks:
                match = T_RE.search(block)
                if match:
                    latencies.append(now - float(match.group(1)))
        writer.close()
        await writer.wait_closed()
        return latencies

    tasks = [asyncio.create_task(one()) for _ in range(clients)]
    await ready.wait()
    print("ready", flush=True)
    results = await asyncio.gather(*tasks)
    print(json.dumps([x for r in results for x in r]), flush=True)


async def paced(count: int, step: Any) -> None:
    start = time.monotonic()
    for i in range(count):
        delay = start + i / RATE - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        step(i)


async def bench_sse(tmp: Path) -> dict[str, float]:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from hyperhive.harness.bus import NOTE, Bus
    from hyperhive.sse import sse_response

    count = int(RATE * SSE_SECONDS)
    sockdir = tempfile.mkdtemp(prefix="hh-bench-", dir="/tmp")
    path = str(Path(sockdir) / "s")
    with Bus(tmp / "sse.sqlite") as bus:

        async def events(request: Request) -> Response:
            return sse_response(request, bus)

        app = Starlette(routes=[Route("/events", events)])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
        sock.listen(128)
        config = uvicorn.Config(
            app,
            uds=path,
            lifespan="off",
            ws="none",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--clients",
            path,
            str(CLIENTS),
            str(count),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            assert child.stdout is not None
            line = await child.stdout.readline()
            assert line.strip() == b"ready", line
            text = "x" * 200
            await paced(count, lambda i: bus.emit(NOTE, {"text": text, "t": time.monotonic()}))
            rest, _ = await child.communicate()
            latencies = json.loads(rest)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
            bus.close()
            server.should_exit = True
            await serving
            sock.close()
            shutil.rmtree(sockdir)
    assert len(latencies) == CLIENTS * count, (len(latencies), CLIENTS * count)

    queues: list[asyncio.Queue[tuple[int, float]]] = [asyncio.Queue() for _ in range(CLIENTS)]
    base: list[float] = []

    async def consume(q: asyncio.Queue[tuple[int, float]]) -> None:
        for _ in range(count):
            _, t = await q.get()
            base.append(time.monotonic() - t)

    consumers = [asyncio.create_task(consume(q)) for q in queues]

    def publish(i: int) -> None:
        item = (i, time.monotonic())
        for q in queues:
            q.put_nowait(item)

    await paced(count, publish)
    await asyncio.gather(*consumers)
    return {
        "events": count,
        "deliveries": len(latencies),
        "sse_p50_ms": pct(latencies, 0.50) * 1e3,
        "sse_p99_ms": pct(latencies, 0.99) * 1e3,
        "queue_p50_ms": pct(base, 0.50) * 1e3,
        "queue_p99_ms": pct(base, 0.99) * 1e3,
    }


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="hh-bench-bus-"))
    try:
        async with asyncio.timeout(55):
            emit = bench_emit(tmp)
            hist = bench_history(tmp)
            sse = await bench_sse(tmp)
    finally:
        shutil.rmtree(tmp)

    rows = [
        (
            "emit() events/s",
            f"{emit['bus_per_s']:,.0f}",
            f"{emit['raw_per_s']:,.0f} raw insert+commit",
            f"{emit['raw_per_s'] / emit['bus_per_s']:.2f}x slower",
        ),
        ("emit() µs/event", f"{emit['bus_us']:.1f}", f"{emit['raw_us']:.1f}", ""),
        (
            "history() 2000 p50/p99 ms",
            f"{hist['full_p50_ms']:.2f} / {hist['full_p99_ms']:.2f}",
            f"{hist['raw_full_p50_ms']:.2f} / {hist['raw_full_p99_ms']:.2f} raw select",
            f"{hist['full_p50_ms'] / hist['raw_full_p50_ms']:.2f}x",
        ),
        (
            "history(after) 10 p50/p99 ms",
            f"{hist['resume_p50_ms']:.3f} / {hist['resume_p99_ms']:.3f}",
            "",
            "",
        ),
        (
            f"SSE {CLIENTS} clients @{RATE}/s p50/p99 ms",
            f"{sse['sse_p50_ms']:.2f} / {sse['sse_p99_ms']:.2f}",
            f"{sse['queue_p50_ms']:.3f} / {sse['queue_p99_ms']:.3f} asyncio.Queue",
            f"{sse['sse_p50_ms'] / sse['queue_p50_ms']:.1f}x",
        ),
    ]
    print(
        f"bench_bus on {platform.node()} ({os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version})"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("measure", "ours", "baseline (same run)", "ratio")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    result = {
        "bench": "bus",
        "emit_per_s": round(emit["bus_per_s"]),
        "raw_insert_commit_per_s": round(emit["raw_per_s"]),
        "emit_ratio_raw_over_bus": round(emit["raw_per_s"] / emit["bus_per_s"], 3),
        **{k: round(v, 4) for k, v in hist.items()},
        "history_ratio_full_p50": round(hist["full_p50_ms"] / hist["raw_full_p50_ms"], 3),
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in sse.items()},
        "sse_ratio_p50": round(sse["sse_p50_ms"] / sse["queue_p50_ms"], 2),
        "clients": CLIENTS,
        "rate": RATE,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--clients":
        asyncio.run(client_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(main())

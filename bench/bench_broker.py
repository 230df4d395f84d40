"""Broker benchmark (issue 2): durable sends/s and send→wake latency (p50/p99) with 16
concurrent clients over the REAL unix sockets of a real daemon, next to a raw SQLite
insert+commit loop (WAL, synchronous=NORMAL) measured in the same run on the same machine.

    .venv/bin/python bench/bench_broker.py [--clients 16] [--sends 500] [--rounds 200]

How the daemon is run: this script re-executes itself with `--serve` as a child process, which
runs the real `Daemon` (process cage, no manager, dashboard on port 0) on fresh /tmp dirs. For
send→wake it registers agents `r0..r15` through `lifecycle._register` and opens their sockets
with `daemon._open_agent_socket(name, None)`: real agent sockets and broker rows, but no
harnesses (nothing else reads their queues). The clients run in this (parent) process, so
client and daemon do not share an event loop or a GIL.

- sends/s: each client has one connection and sends its share to `operator` back to back; a
  send is answered only after its row is committed (the writer batches concurrent commits).
- send→wake: per pair, the receiver writes `recv(wait_seconds=30)` on its agent socket, yields
  1 ms so the long-poll is parked, then the sender writes `send` on host.sock; latency is from
  the send write to the receiver reading its reply (both clocks in this process).
- baseline: one connection, `INSERT` + `COMMIT` per row, the same messages schema, WAL,
  synchronous=NORMAL — the floor a durable per-send commit costs on this disk.

Prints a table and one JSON line. Bounded: every phase has a deadline; total well under 90 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CLIENTS = 16
PHASE_BOUND = 30.0


# ---- the daemon (child process) --------------------------------------------------------------


async def serve(root: Path, receivers: int) -> None:
    from hyperhive.config import HiveConfig
    from hyperhive.core.daemon import Daemon

    config = HiveConfig(state_dir=root / "state", run_dir=root / "run", port=0, cage="process", manager=False)

    async def ready(daemon: Daemon) -> None:
        assert daemon.services is not None
        for i in range(receivers):
            await daemon.services.lifecycle._register(f"r{i}", None)
            await daemon._open_agent_socket(f"r{i}", None)
        print("READY", flush=True)

    await Daemon(config, on_ready=ready).serve()


# ---- clients (parent process) ----------------------------------------------------------------


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Conn:
        return cls(*await asyncio.open_unix_connection(str(path), limit=4 * 1024 * 1024))

    async def write(self, obj: dict[str, Any]) -> None:
        self.writer.write(json.dumps(obj).encode() + b"\n")
        await self.writer.drain()

    async def read(self) -> dict[str, Any]:
        line = await self.reader.readline()
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"daemon refused: {reply}")
        return reply

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def bench_sends(host: Path, clients: int, per_client: int) -> float:
    conns = [await Conn.open(host) for _ in range(clients)]

    async def run(c: Conn, i: int) -> None:
        for n in range(per_client):
            await c.write({"cmd": "send", "to": "operator", "body": f"bench c{i} n{n}"})
            await c.read()

    try:
        start = time.perf_counter()
        async with asyncio.timeout(PHASE_BOUND):
            await asyncio.gather(*(run(c, i) for i, c in enumerate(conns)))
        elapsed = time.perf_counter() - start
    finally:
        for c in conns:
            await c.close()
    return clients * per_client / elapsed


async def bench_wake(root: Path, pairs: int, rounds: int) -> list[float]:
    host = root / "run" / "host.sock"
    senders = [await Conn.open(host) for _ in range(pairs)]
    receivers = [await Conn.open(root / "run" / "agents" / f"r{i}" / "mcp.sock") for i in range(pairs)]
    latencies: list[float] = []

    async def pair(i: int) -> None:
        s, r = senders[i], receivers[i]
        for n in range(rounds):
            await r.write({"cmd": "recv", "wait_seconds": 30})
            await asyncio.sleep(0.001)  # let the long-poll park (bench only; tests wait on events)
            t0 = time.perf_counter()
            await s.write({"cmd": "send", "to": f"r{i}", "body": f"wake {n}"})
            got = await r.read()
            latencies.append(time.perf_counter() - t0)
            await s.read()
            assert got["messages"] and got["messages"][0]["body"] == f"wake {n}", got

    try:
        async with asyncio.timeout(PHASE_BOUND):
            await asyncio.gather(*(pair(i) for i in range(pairs)))
    finally:
        for c in senders + receivers:
            await c.close()
    return latencies


def bench_sqlite(path: Path, rows: int) -> float:
    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, recipient TEXT NOT NULL,"
        " body TEXT NOT NULL, sent_at REAL NOT NULL, in_reply_to INTEGER, broadcast INTEGER NOT NULL DEFAULT 0,"
        " delivered_at REAL, acked_at REAL, redelivered INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute("CREATE INDEX messages_pending ON messages (recipient, delivered_at, id)")
    try:
        start = time.perf_counter()
        for n in range(rows):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO messages (sender, recipient, body, sent_at) VALUES (?, ?, ?, ?)",
                ("operator", "operator", f"raw n{n}", time.time()),
            )
            conn.execute("COMMIT")
        return rows / (time.perf_counter() - start)
    finally:
        conn.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="hhb-", dir="/tmp"))
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root), "--receivers", str(args.clients)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        if line.strip() != "READY":
            raise SystemExit(f"the daemon did not start (exit {child.poll()})")
        host = root / "run" / "host.sock"
        await bench_sends(host, args.clients, 20)  # warm-up
        sends_per_s = await bench_sends(host, args.clients, args.sends)
        lat = await bench_wake(root, args.clients, args.rounds)
        raw_per_s = bench_sqlite(root / "raw.sqlite", args.clients * args.sends)
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
        shutil.rmtree(root, ignore_errors=True)
    return {
        "bench": "broker",
        "clients": args.clients,
        "sends": args.clients * args.sends,
        "durable_sends_per_s": round(sends_per_s, 1),
        "raw_sqlite_commits_per_s": round(raw_per_s, 1),
        "sends_vs_raw_ratio": round(sends_per_s / raw_per_s, 3),
        "wake_samples": len(lat),
        "wake_p50_ms": round(pct(lat, 0.50) * 1000, 3),
        "wake_p99_ms": round(pct(lat, 0.99) * 1000, 3),
        "wake_mean_ms": round(statistics.fmean(lat) * 1000, 3),
        "raw_commit_ms": round(1000 / raw_per_s, 3),
        "wake_p50_vs_raw_commit_ratio": round(pct(lat, 0.50) * raw_per_s, 2),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--sends", type=int, default=500, help="sends per client")
    parser.add_argument("--rounds", type=int, default=200, help="send→wake rounds per pair")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--receivers", type=int, default=CLIENTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.receivers))
        return
    started = time.perf_counter()
    result = asyncio.run(main_async(args))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    rows = [
        ("durable sends/s (16 clients, real sockets)", f"{result['durable_sends_per_s']:,.0f}"),
        ("raw SQLite insert+commit/s (1 conn, WAL, NORMAL)", f"{result['raw_sqlite_commits_per_s']:,.0f}"),
        ("ratio sends/s : raw commits/s", f"{result['sends_vs_raw_ratio']:.3f}"),
        ("send→wake p50 (ms)", f"{result['wake_p50_ms']:.3f}"),
        ("send→wake p99 (ms)", f"{result['wake_p99_ms']:.3f}"),
        ("raw commit (ms)", f"{result['raw_commit_ms']:.3f}"),
        ("ratio wake p50 : raw commit", f"{result['wake_p50_vs_raw_commit_ratio']:.2f}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value:>12}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

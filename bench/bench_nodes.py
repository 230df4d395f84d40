"""Nodes benchmark (issue 11): send→wake latency p50/p99 across nodes — a send on node n1's host
socket to an agent on node n2, until that agent's parked long-poll on n2 returns it — next to the
same send→wake within n2, in one run on one PostgreSQL.

    .venv/bin/python bench/bench_nodes.py [--pairs 4] [--rounds 50]

Two real daemons in child processes (`--node n1`, `--node n2`, own state and run dirs) on a
throw-away cluster (tests/pgserver.py, fsync on), all over loopback unix sockets. The cross-node
wake is the store's NOTIFY hint (store/postgres.py); a lost hint would show as a ~1 s outlier
(the long-poll's re-check). Prints a table and one JSON line; bounded, well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from bench_broker import Conn, pct  # noqa: E402

BOUND = 60.0


async def serve(root: Path, node: str, receivers: int, store_url: str) -> None:
    from hyperhive.config import HiveConfig
    from hyperhive.core.daemon import Daemon

    config = HiveConfig(state_dir=root / "state", run_dir=root / "run", port=0, cage="process", manager=False,
                        store_url=store_url, node=node)  # fmt: skip

    async def ready(daemon: Daemon) -> None:
        for i in range(receivers):
            await daemon.services.lifecycle._register(f"r{i}", None)  # type: ignore[union-attr]
            await daemon._open_agent_socket(f"r{i}", None)
        print("READY", flush=True)

    await Daemon(config, on_ready=ready).serve()


def start(root: Path, node: str, receivers: int, url: str) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--serve", str(root), "--node", node, "--receivers", str(receivers),
            "--store", url]  # fmt: skip
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None
    if child.stdout.readline().strip() != "READY":
        raise SystemExit(f"node {node} did not start (exit {child.poll()})")
    return child


async def wake(host: Path, agents_run: Path, pairs: int, rounds: int) -> list[float]:
    senders = [await Conn.open(host) for _ in range(pairs)]
    receivers = [await Conn.open(agents_run / f"r{i}" / "mcp.sock") for i in range(pairs)]
    latencies: list[float] = []

    async def pair(i: int) -> None:
        s, r = senders[i], receivers[i]
        for n in range(rounds):
            await r.write({"cmd": "recv", "wait_seconds": 30})
            await asyncio.sleep(0.002)  # let the long-poll park (bench only)
            t0 = time.perf_counter()
            await s.write({"cmd": "send", "to": f"r{i}", "body": f"wake {n}"})
            got = await r.read()
            latencies.append(time.perf_counter() - t0)
            sent = await s.read()
            assert sent.get("ok") and got["messages"] and got["messages"][0]["body"] == f"wake {n}", (sent, got)
            await r.write({"cmd": "ack_turn"})
            await r.read()

    try:
        async with asyncio.timeout(BOUND):
            await asyncio.gather(*(pair(i) for i in range(pairs)))
    finally:
        for c in senders + receivers:
            await c.close()
    return latencies


async def until_known(host: Path, names: set[str]) -> None:
    """n1 learns n2's agents from n2's heartbeat (every 2 s)."""
    conn = await Conn.open(host)
    try:
        async with asyncio.timeout(BOUND):
            while True:
                await conn.write({"cmd": "list"})
                listed = {a["name"] for a in (await conn.read())["agents"]}
                if names <= listed:
                    return
                await asyncio.sleep(0.2)
    finally:
        await conn.close()


def summary(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(lat, 0.50) * 1000, 3), "p99_ms": round(pct(lat, 0.99) * 1000, 3),
            "max_ms": round(max(lat) * 1000, 3), "n": len(lat)}  # fmt: skip


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    from pgserver import PgCluster

    cluster = PgCluster(durable=True)
    roots = [Path(tempfile.mkdtemp(prefix=f"hhn{i}-", dir="/tmp")) for i in (1, 2)]
    children: list[subprocess.Popen[str]] = []
    try:
        url = cluster.database()
        children.append(await asyncio.to_thread(start, roots[0], "n1", 0, url))
        children.append(await asyncio.to_thread(start, roots[1], "n2", args.pairs, url))
        n1_host, n2_host = roots[0] / "run" / "host.sock", roots[1] / "run" / "host.sock"
        n2_agents = roots[1] / "run" / "agents"
        await until_known(n1_host, {f"r{i}" for i in range(args.pairs)})
        await wake(n1_host, n2_agents, args.pairs, 5)  # warm-up
        cross = await wake(n1_host, n2_agents, args.pairs, args.rounds)
        local = await wake(n2_host, n2_agents, args.pairs, args.rounds)
    finally:
        for child in children:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
            if child.stdout is not None:
                child.stdout.close()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
        cluster.stop()
    return {"bench": "nodes", "pairs": args.pairs, "rounds": args.rounds, "cpus": os.cpu_count(),
            "cross_node": summary(cross), "same_node": summary(local)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=4, help="sender/receiver pairs at once")
    parser.add_argument("--rounds", type=int, default=50, help="send→wake rounds per pair")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--node", help=argparse.SUPPRESS)
    parser.add_argument("--receivers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.node, args.receivers, args.store))
        return
    started = time.perf_counter()
    r = asyncio.run(main_async(args))
    r["wall_s"] = round(time.perf_counter() - started, 1)
    c, s = r["cross_node"], r["same_node"]
    assert isinstance(c, dict) and isinstance(s, dict)
    print(
        f"send→wake across nodes (n1 → n2)  p50 {c['p50_ms']:.2f} ms  p99 {c['p99_ms']:.2f} ms  max {c['max_ms']:.2f} ms"
    )
    print(
        f"send→wake within n2               p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  max {s['max_ms']:.2f} ms"
    )
    print(json.dumps(r))


if __name__ == "__main__":
    main()

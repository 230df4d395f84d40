"""Connection-flood benchmark (issue 9 item 4): one peer attempts N connections to an agent's
mcp.sock and to the dashboard and holds whatever is accepted; meanwhile the operator's
host.sock `list` latency (p50/p99, a fresh connection per request, as `hive list` does) and
the daemon's open file handles are measured (while the attempts go on and while the accepted
ones are held), next to a baseline taken in the same run before the flood.

    .venv/bin/python bench/bench_flood.py [--attempts 4000] [--requests 200]

How the daemon is run: this script re-executes itself with `--serve` as a child process, which
runs the real `Daemon` (process cage, no manager, dashboard on port 0 on 127.0.0.1) on fresh
/tmp dirs and wires agent `flood` (registered, its real socket open, no harness). The flood
and the operator's requests come from this (parent) process: loopback and unix sockets only.
The daemon's handles are counted in /proc/<pid>/fd.

Prints the caps in force, a table and one JSON line. Bounded: each phase has a deadline and
the child is always stopped; the whole run takes well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PHASE_BOUND = 30.0
BATCH = 200  # connection attempts in flight at once


# ---- the daemon (child process) --------------------------------------------------------------


async def serve(root: Path) -> None:
    from hyperhive.config import HiveConfig
    from hyperhive.core.daemon import Daemon

    config = HiveConfig(state_dir=root / "state", run_dir=root / "run", port=0, cage="process", manager=False)

    async def ready(daemon: Daemon) -> None:
        assert daemon.services is not None and daemon.dashboard_url is not None
        await daemon.services.lifecycle._register("flood", None)
        await daemon._open_agent_socket("flood", None)
        print("READY", daemon.dashboard_url, flush=True)

    await Daemon(config, on_ready=ready).serve()


# ---- the peer and the operator (parent process) ------------------------------------------------


def fd_count(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())


async def host_list(host: Path) -> float:
    """One `list` on a fresh host.sock connection; seconds until its reply."""
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_unix_connection(str(host), limit=8 * 1024 * 1024)
    try:
        writer.write(b'{"cmd":"list"}\n')
        await writer.drain()
        reply = json.loads(await reader.readline())
        if not reply.get("ok"):
            raise RuntimeError(f"host.sock refused list: {reply}")
        return time.perf_counter() - t0
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def latencies(host: Path, n: int) -> list[float]:
    async with asyncio.timeout(PHASE_BOUND):
        return [await host_list(host) for _ in range(n)]


class Flood:
    """Connections from one peer: attempted, and held open when the daemon accepts them."""

    def __init__(self) -> None:
        self.held: list[asyncio.StreamWriter] = []
        self._readers: list[asyncio.StreamReader] = []
        self.refused = 0  # refused by the kernel (backlog full) or closed at once by the daemon

    async def attempt(self, opener: Any) -> None:
        try:
            reader, writer = await opener()
        except OSError:
            self.refused += 1
            return
        self.held.append(writer)
        self._readers.append(reader)

    async def run(self, unix: Path, tcp: tuple[str, int], attempts: int) -> None:
        openers = [
            (lambda: asyncio.open_unix_connection(str(unix))) if i % 2 else (lambda: asyncio.open_connection(*tcp))
            for i in range(attempts)
        ]
        async with asyncio.timeout(PHASE_BOUND):
            for start in range(0, attempts, BATCH):
                await asyncio.gather(*(self.attempt(o) for o in openers[start : start + BATCH]))

    async def still_open(self) -> int:
        """How many held connections the daemon has not closed (a closed one reaches EOF at once)."""
        alive = 0
        for reader in self._readers:
            try:
                async with asyncio.timeout(0.005):
                    await reader.read()  # a refused one may carry its `busy` line, then EOF
            except TimeoutError:
                alive += 1
            except OSError:
                pass
        return alive

    async def close(self) -> None:
        for w in self.held:
            w.close()
        for w in self.held:
            with contextlib.suppress(Exception):
                await w.wait_closed()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from urllib.parse import urlsplit

    from hyperhive import connlimits

    root = Path(tempfile.mkdtemp(prefix="hhf-", dir="/tmp"))
    root.chmod(0o711)
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    flood = Flood()
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 60)
        if not line.startswith("READY "):
            raise SystemExit(f"the daemon did not start (exit {child.poll()})")
        url = urlsplit(line.split()[1])
        assert url.hostname is not None and url.port is not None
        host = root / "run" / "host.sock"
        unix = root / "run" / "agents" / "flood" / "mcp.sock"
        await latencies(host, 20)  # warm-up
        base_fds = fd_count(child.pid)
        base = await latencies(host, args.requests)

        t0 = time.perf_counter()
        attempts = asyncio.create_task(flood.run(unix, (url.hostname, url.port), args.attempts))
        active = await latencies(host, args.requests)  # while the attempts go on
        await attempts
        flood_s = time.perf_counter() - t0
        peak_fds = fd_count(child.pid)
        held = await latencies(host, args.requests)  # while the accepted ones are held
        after_fds = fd_count(child.pid)
        open_after = await flood.still_open()
    finally:
        await flood.close()
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
        "bench": "flood",
        "attempts": args.attempts,
        "caps": {
            "agent_socket": connlimits.AGENT_SOCKET_CONNS,
            "host_socket": connlimits.HOST_SOCKET_CONNS,
            "dashboard_total": connlimits.DASHBOARD_CONNS,
            "dashboard_per_peer": connlimits.DASHBOARD_CONNS_PER_PEER,
            "fd_reserve": connlimits.FD_RESERVE,
        },
        "flood_s": round(flood_s, 2),
        "connects_succeeded": len(flood.held),
        "refused_by_kernel": flood.refused,
        "still_open_after": open_after,
        "daemon_fds_baseline": base_fds,
        "daemon_fds_during_flood": peak_fds,
        "daemon_fds_after_requests": after_fds,
        "list_p50_ms_baseline": round(pct(base, 0.50) * 1000, 3),
        "list_p99_ms_baseline": round(pct(base, 0.99) * 1000, 3),
        "list_p50_ms_flood_active": round(pct(active, 0.50) * 1000, 3),
        "list_p99_ms_flood_active": round(pct(active, 0.99) * 1000, 3),
        "list_p50_ms_held": round(pct(held, 0.50) * 1000, 3),
        "list_p99_ms_held": round(pct(held, 0.99) * 1000, 3),
        "requests_per_phase": args.requests,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--attempts", type=int, default=4000, help="connections the peer attempts")
    parser.add_argument("--requests", type=int, default=200, help="host.sock list requests per phase")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    started = time.perf_counter()
    result = asyncio.run(main_async(args))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    caps = result["caps"]
    print(f"caps: {caps['agent_socket']} per agent socket, {caps['host_socket']} on host.sock (outside the "
          f"shared budget), dashboard {caps['dashboard_total']} total / {caps['dashboard_per_peer']} per peer, "
          f"{caps['fd_reserve']} handles reserved")  # fmt: skip
    rows = [
        (f"connections attempted by one peer (half mcp.sock, half dashboard) in {result['flood_s']} s",
         f"{result['attempts']:,}"),
        ("  the daemon kept open at the end", f"{result['still_open_after']:,}"),
        ("  refused by the kernel (backlog full)", f"{result['refused_by_kernel']:,}"),
        ("daemon fds: baseline / during flood", f"{result['daemon_fds_baseline']} / {result['daemon_fds_during_flood']}"),
        ("host.sock list p50 ms: baseline / during attempts / while held",
         f"{result['list_p50_ms_baseline']:.3f} / {result['list_p50_ms_flood_active']:.3f} / {result['list_p50_ms_held']:.3f}"),
        ("host.sock list p99 ms: baseline / during attempts / while held",
         f"{result['list_p99_ms_baseline']:.3f} / {result['list_p99_ms_flood_active']:.3f} / {result['list_p99_ms_held']:.3f}"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

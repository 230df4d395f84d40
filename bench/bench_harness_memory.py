"""Resident memory per agent: the harness at idle and during a turn (with its claude CLI), next
to a bare Python interpreter measured in the same run.

    python bench/bench_harness_memory.py [--agents 3] [--cage process|bwrap]

Starts a real daemon in-process on tmp dirs with the offline model (a scripted stand-in), spawns
N agents, waits until each harness reports idle, samples VmRSS from /proc (the harness process
tree: the cage's process group), then sends each a `slow 4` message and samples the peak while
the turn runs (the claude CLI is alive then). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hyperhive.config import HiveConfig
from hyperhive.core.daemon import Daemon
from hyperhive.offline_model.server import OfflineModelServer


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_pids(root: int) -> list[int]:
    """root and its descendants (via /proc/*/stat ppid links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_rss_kib(root: int) -> int:
    return sum(rss_kib(p) for p in tree_pids(root))


def bare_python_rss_kib() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        time.sleep(0.5)
        return rss_kib(proc.pid)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(5)


async def wait_for(predicate, timeout: float = 60.0, step: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(step)


async def main(agents: int, cage: str) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="hhbm-", dir="/tmp"))
    tmp.chmod(0o711)
    model = OfflineModelServer()
    await model.start()
    config = HiveConfig(
        state_dir=tmp / "s", run_dir=tmp / "r", port=0, cage=cage, manager=False,
        agent_env={"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "bench"},
    )  # fmt: skip
    ready = asyncio.Event()

    async def on_ready(_d: Daemon) -> None:
        ready.set()

    daemon = Daemon(config, on_ready=on_ready)
    task = asyncio.create_task(daemon.serve())
    try:
        await asyncio.wait_for(ready.wait(), 60)
        services = daemon.services
        assert services is not None
        names = [f"m{i}" for i in range(agents)]
        for name in names:
            await services.lifecycle.spawn(name)
        lc = services.lifecycle
        # idle: the kick turn has ended and the harness waits in recv
        await wait_for(lambda: all(lc.agents[n].harness_state == "idle" and lc.agents[n].last_turn_ms for n in names))
        pids = {n: lc.agents[n].handle.pid for n in names}  # type: ignore[union-attr]
        idle = {n: tree_rss_kib(pid) for n, pid in pids.items()}
        for name in names:
            await services.broker.send("operator", name, "slow 4")
        await wait_for(lambda: all(lc.agents[n].harness_state == "thinking" for n in names), 30, 0.02)
        peak = dict.fromkeys(names, 0)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and any(lc.agents[n].harness_state == "thinking" for n in names):
            for n, pid in pids.items():
                peak[n] = max(peak[n], tree_rss_kib(pid))
            await asyncio.sleep(0.2)
        bare = bare_python_rss_kib()
        result = {
            "agents": agents,
            "cage": cage,
            "bare_python_kib": bare,
            "idle_harness_kib_median": int(statistics.median(idle.values())),
            "turn_peak_kib_median": int(statistics.median(peak.values())),
            "idle_ratio_vs_bare_python": round(statistics.median(idle.values()) / bare, 2),
            "turn_ratio_vs_bare_python": round(statistics.median(peak.values()) / bare, 2),
        }
        print(f"{'what':<34}{'RSS MiB':>10}{'× bare python':>16}")
        print(f"{'bare python interpreter':<34}{bare / 1024:>10.1f}{1:>16.2f}")
        print(
            f"{'harness, idle (median)':<34}{result['idle_harness_kib_median'] / 1024:>10.1f}"  # type: ignore[operator]
            f"{result['idle_ratio_vs_bare_python']:>16}"
        )
        print(
            f"{'harness + claude CLI, in a turn':<34}{result['turn_peak_kib_median'] / 1024:>10.1f}"  # type: ignore[operator]
            f"{result['turn_ratio_vs_bare_python']:>16}"
        )
        print(json.dumps(result))
        return result
    finally:
        daemon.should_exit.set()
        await asyncio.wait_for(task, 60)
        await model.stop()
        subprocess.run(["rm", "-rf", str(tmp)], check=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--cage", default="process", choices=["process", "bwrap", "nspawn"])
    args = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(args.agents, args.cage))

"""Shell benchmark (issue 14 §1): the agent page's terminal through the core, next to a bare PTY
measured in the same run on the same machine.

    .venv/bin/python bench/bench_shell.py [--attaches 10] [--keys 200]

How it runs: this script re-executes itself with `--serve` as a child process, which starts the
offline model and the real `Daemon` (bwrap cages when run as root and bwrap works, else process
cages) on fresh /tmp dirs, spawns agent `bench` and waits until its harness reports in. The
parent logs in like a browser (the login URL sets the session and CSRF cookies) and talks to
the dashboard over loopback only.

- attach: POST `_shell/ticket` (session + CSRF + Origin) → websocket `_shell/ws?ticket=…` → the
  first terminal byte of a *new* login shell's prompt (the shell is ended between rounds, so
  each round enters the cage: nsenter + bash -l). Baseline: `bash -l` on a fresh local PTY,
  spawn → first output byte.
- echo: one keystroke sent on the websocket → its echo back (readline echoes it), alternating
  a letter and a backspace so the line never grows. Baseline: the same on the local PTY's
  master fd (no core, no websocket, no cage).

Prints a table and one JSON line. Bounded: every phase has a deadline; total well under 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PHASE_BOUND = 30.0
AGENT = "bench"


# ---- the daemon (child process) --------------------------------------------------------------


def _cage() -> str:
    from hyperhive.cages.bwrap import BwrapCage

    return "bwrap" if os.geteuid() == 0 and BwrapCage.available()[0] and shutil.which("nsenter") else "process"


async def serve(root: Path) -> None:
    from hyperhive.agentconfig import default_agent_toml
    from hyperhive.config import HiveConfig
    from hyperhive.core.daemon import Daemon
    from hyperhive.offline_model.server import OfflineModelServer

    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline"}
        cage = _cage()
        config = HiveConfig(state_dir=root / "state", run_dir=root / "run", port=0, cage=cage, manager=False,
                            agent_env=env)  # fmt: skip

        async def ready(daemon: Daemon) -> None:
            s = daemon.services
            assert s is not None
            s.repos.seed(AGENT, toml=default_agent_toml(AGENT))
            await s.lifecycle.spawn(AGENT)
            await s.lifecycle.wait_healthy(AGENT, 60)
            print("READY " + json.dumps({"url": daemon.dashboard_url, "cage": cage}), flush=True)

        daemon = Daemon(config, on_ready=ready)
        await daemon.serve()


# ---- the client (this process) ---------------------------------------------------------------


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "p50": round(statistics.median(values) * 1000, 3),
        "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))] * 1000, 3),
        "n": len(values),
    }


async def through_core(login_url: str, attaches: int, keys: int) -> dict[str, Any]:
    import httpx
    from websockets.asyncio.client import connect

    base = login_url.split("/login", 1)[0]
    async with httpx.AsyncClient(base_url=base, follow_redirects=False) as http:
        await http.get(login_url)
        csrf = http.cookies["hh_csrf"]
        cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        headers = {"X-CSRF-Token": csrf, "Origin": base}
        prefix = f"/agent/{AGENT}/_shell"
        ws_url = base.replace("http://", "ws://") + prefix + "/ws"
        attach: list[float] = []
        echo: list[float] = []
        for i in range(attaches):
            t0 = time.perf_counter()
            ticket = (await http.post(prefix + "/ticket", headers=headers, json={})).json()["ticket"]
            async with connect(f"{ws_url}?ticket={ticket}", additional_headers={"Cookie": cookie},
                               origin=base, compression=None) as ws:  # type: ignore[arg-type]  # fmt: skip
                async with asyncio.timeout(PHASE_BOUND):
                    while not isinstance(await ws.recv(), bytes):
                        pass
                    attach.append(time.perf_counter() - t0)
                    await _drain(ws)
                    if i == attaches - 1:
                        for k in range(keys):
                            key = b"x" if k % 2 == 0 else b"\x7f"
                            t1 = time.perf_counter()
                            await ws.send(key)
                            while not isinstance(await ws.recv(), bytes):
                                pass
                            echo.append(time.perf_counter() - t1)
                await http.post(prefix + "/end", headers=headers, json={})
                async with asyncio.timeout(PHASE_BOUND):
                    with contextlib.suppress(Exception):
                        async for _ in ws:  # until the core reports the exit and closes
                            pass
    return {"attach": _ms(attach), "echo": _ms(echo)}


async def _drain(ws: Any) -> None:
    """Read until the prompt has been quiet for 100 ms (the whole first screen)."""
    with contextlib.suppress(TimeoutError):
        while True:
            async with asyncio.timeout(0.1):
                await ws.recv()


async def _read(fd: int) -> bytes:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(fd)
    return os.read(fd, 65536)


async def bare_pty(attaches: int, keys: int) -> dict[str, Any]:
    attach: list[float] = []
    echo: list[float] = []
    for i in range(attaches):
        master, slave = os.openpty()
        os.set_blocking(master, False)
        t0 = time.perf_counter()
        proc = subprocess.Popen(["/bin/bash", "-l"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color",
                                     "HOME": tempfile.gettempdir()})  # fmt: skip
        os.close(slave)

        try:
            async with asyncio.timeout(PHASE_BOUND):
                await _read(master)
                attach.append(time.perf_counter() - t0)
                with contextlib.suppress(TimeoutError):
                    while True:
                        async with asyncio.timeout(0.1):
                            await _read(master)
                if i == attaches - 1:
                    for k in range(keys):
                        t1 = time.perf_counter()
                        os.write(master, b"x" if k % 2 == 0 else b"\x7f")
                        await _read(master)
                        echo.append(time.perf_counter() - t1)
        finally:
            proc.kill()
            proc.wait()
            os.close(master)
    return {"attach": _ms(attach), "echo": _ms(echo)}


async def run(attaches: int, keys: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="hh-bench-shell-", dir="/tmp"))
    root.chmod(0o711)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        str(root),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(90):
            while not (line := (await child.stdout.readline()).decode()).startswith("READY "):
                if not line:
                    raise SystemExit("the daemon exited before it was ready")
        info = json.loads(line[len("READY ") :])
        core = await through_core(info["url"], attaches, keys)
        bare = await bare_pty(attaches, keys)
    finally:
        child.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await child.wait()
        if child.returncode is None:
            child.kill()
        shutil.rmtree(root, ignore_errors=True)
    print(f"cage: {info['cage']}   (ms; p50 / p99)")
    print(f"{'':24} {'through the core':>20} {'bare PTY':>16} {'ratio p50':>10}")
    for what in ("attach", "echo"):
        c, b = core[what], bare[what]
        ratio = c["p50"] / b["p50"] if b["p50"] else float("nan")
        print(f"{what:24} {c['p50']:>9.2f} / {c['p99']:<8.2f} {b['p50']:>7.2f} / {b['p99']:<6.2f} {ratio:>9.1f}x")
    print(json.dumps({"bench": "shell", "cage": info["cage"], "core": core, "bare": bare}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attaches", type=int, default=10)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve))
        return
    asyncio.run(run(max(1, args.attaches), max(2, args.keys)))


if __name__ == "__main__":
    main()

"""Gateway overhead (issue 12): the same work through the core's model API gateway and straight
to the upstream, interleaved in one run on one machine.

    .venv/bin/python bench/bench_gateway.py [--turns 5] [--streams 20] [--cages 20] [--seconds 5]

Setup: the offline model (the upstream, with a key) and a real `Daemon` (process cage, no
manager) with `[api] base` = the offline model, both in this process's event loop; agents
registered without harnesses (`lifecycle._register` + `daemon._open_agent_socket`), so each has
its real api.sock and token. The gateway path is what a cage uses: TCP on loopback → the
in-cage shim (`harness/apishim.py`, here in this process) → api.sock → gateway → upstream.

- turn: the real claude CLI (`claude -p`, the SDK's bundled binary) runs one turn, once with
  ANTHROPIC_BASE_URL = the shim (key: the agent token), once with the upstream's URL (the real
  key); wall time per turn, alternating, median and p90.
- streamed bytes: a streamed `slow 1` answer (the offline model spreads its text over ~1 s)
  read with httpx: time to the first byte and to the last, through the gateway and direct.
- requests/s: `--cages` agents, each with its own socket, send non-streamed requests back to
  back for `--seconds`; the same load straight at the upstream.

Everything but the CLI shares one event loop (the upstream too), so both paths pay for it
alike; the difference is the gateway's own cost. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from hyperhive.config import ApiSettings, HiveConfig  # noqa: E402
from hyperhive.core.daemon import Daemon  # noqa: E402
from hyperhive.core.gateway import API_SOCKET  # noqa: E402
from hyperhive.harness.apishim import ApiShim  # noqa: E402
from hyperhive.harness.prompting import format_wake_prompt  # noqa: E402
from hyperhive.offline_model.server import OfflineModelServer  # noqa: E402

KEY = "sk-bench-upstream"


def claude_cli() -> str:
    import claude_agent_sdk

    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if not path.exists():
        raise SystemExit(f"no bundled claude CLI at {path}")
    return str(path)


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


async def cli_turn(cli: str, base_url: str, key: str, home: Path) -> float:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "ANTHROPIC_BASE_URL": base_url,
           "ANTHROPIC_API_KEY": key, "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}  # fmt: skip
    prompt = format_wake_prompt(1, "operator", "echo bench")
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        cli, "-p", prompt, "--output-format", "json", "--model", "sonnet", "--max-turns", "1",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(home),
    )  # fmt: skip
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0 or b"echo" not in out and b"bench" not in out:
        raise SystemExit(f"claude failed ({proc.returncode}): {err.decode()[-500:]} {out.decode()[-500:]}")
    return elapsed


async def stream_once(client: httpx.AsyncClient, key: str) -> tuple[float, float, int]:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True,
            "messages": [{"role": "user", "content": format_wake_prompt(1, "operator", "slow 1")}]}  # fmt: skip
    started = time.perf_counter()
    first = None
    size = 0
    async with client.stream("POST", "/v1/messages", json=body, headers={"x-api-key": key}) as resp:
        resp.raise_for_status()
        async for chunk in resp.aiter_raw():
            if first is None:
                first = time.perf_counter() - started
            size += len(chunk)
    return first or 0.0, time.perf_counter() - started, size


async def load(clients: list[tuple[httpx.AsyncClient, str]], seconds: float) -> float:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 20,
            "messages": [{"role": "user", "content": format_wake_prompt(1, "operator", "echo x")}]}  # fmt: skip
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient, key: str) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            r = await client.post("/v1/messages", json=body, headers={"x-api-key": key})
            r.raise_for_status()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c, k) for c, k in clients))
    return done / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    cli = claude_cli()
    root = Path(tempfile.mkdtemp(prefix="hh-bgw-", dir="/tmp"))
    try:
        async with OfflineModelServer(api_key=KEY, log_limit=50) as model:
            config = HiveConfig(state_dir=root / "state", run_dir=root / "run", port=0, cage="process", manager=False,
                                api=ApiSettings(base=model.url, key=KEY, max_concurrent=64))  # fmt: skip
            ready = asyncio.Event()
            daemon = Daemon(config, on_ready=lambda _d: ready.set())
            serve = asyncio.create_task(daemon.serve())
            await asyncio.wait_for(ready.wait(), 60)
            try:
                assert daemon.services is not None and daemon.gateway is not None
                names = [f"g{i}" for i in range(max(1, args.cages))]
                for name in names:
                    await daemon.services.lifecycle._register(name, None)
                    await daemon._open_agent_socket(name, None)
                sock = lambda n: str(daemon.paths.agent(n).run / API_SOCKET)  # noqa: E731
                token = daemon.gateway.tokens
                shim = ApiShim(Path(sock("g0")))
                await shim.start()
                home = root / "home"
                home.mkdir()
                turns: dict[str, list[float]] = {"gateway": [], "direct": []}
                await cli_turn(cli, model.url, KEY, home)  # warm the CLI's caches once
                for _ in range(args.turns):
                    turns["gateway"].append(await cli_turn(cli, shim.url, token["g0"], home))
                    turns["direct"].append(await cli_turn(cli, model.url, KEY, home))

                gw = httpx.AsyncClient(
                    transport=httpx.AsyncHTTPTransport(uds=sock("g0")), base_url="http://gw", timeout=60
                )
                direct = httpx.AsyncClient(base_url=model.url, timeout=60)
                streams: dict[str, list[tuple[float, float, int]]] = {"gateway": [], "direct": []}
                for _ in range(args.streams):
                    streams["gateway"].append(await stream_once(gw, token["g0"]))
                    streams["direct"].append(await stream_once(direct, KEY))
                await gw.aclose()

                cage_clients = [(httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=sock(n)), base_url="http://gw",
                                                   timeout=60), token[n]) for n in names]  # fmt: skip
                rps_gw = await load(cage_clients, args.seconds)
                rps_direct = await load([(direct, KEY)] * len(names), args.seconds)
                for c, _ in cage_clients:
                    await c.aclose()
                await direct.aclose()
                await shim.close()
            finally:
                daemon.should_exit.set()
                await asyncio.wait_for(serve, 60)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    result: dict[str, Any] = {"turns": args.turns, "streams": args.streams, "cages": len(names)}
    for path in ("gateway", "direct"):
        t = turns[path]
        first = [f for f, _, _ in streams[path]]
        last = [x for _, x, _ in streams[path]]
        result[path] = {
            "turn_s_median": round(statistics.median(t), 4), "turn_s_p90": round(pct(t, 0.9), 4),
            "first_byte_ms_median": round(statistics.median(first) * 1000, 2),
            "last_byte_ms_median": round(statistics.median(last) * 1000, 2),
            "stream_bytes": streams[path][0][2],
        }  # fmt: skip
    result["gateway"]["requests_per_s"] = round(rps_gw, 1)
    result["direct"]["requests_per_s"] = round(rps_direct, 1)
    g, d = result["gateway"], result["direct"]
    result["overhead"] = {
        "turn_ms_median": round((g["turn_s_median"] - d["turn_s_median"]) * 1000, 1),
        "first_byte_ms_median": round(g["first_byte_ms_median"] - d["first_byte_ms_median"], 2),
        "last_byte_ms_median": round(g["last_byte_ms_median"] - d["last_byte_ms_median"], 2),
    }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--cages", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    res = asyncio.run(main(parser.parse_args()))
    print(f"{'':24}{'gateway':>12}{'direct':>12}")
    for key in ("turn_s_median", "turn_s_p90", "first_byte_ms_median", "last_byte_ms_median", "requests_per_s"):
        print(f"{key:24}{res['gateway'][key]:>12}{res['direct'][key]:>12}")
    print("overhead:", res["overhead"])
    print(json.dumps(res))

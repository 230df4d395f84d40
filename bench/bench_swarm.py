"""A swarm on one small host (issue 13): N agents in cages on the offline model, each relaying one
message at once, three bursts; next to 2N bare `claude -p` runs against the same model, measured
in the same run.

    .venv/bin/python bench/bench_swarm.py [--agents 10] [--bursts 3] [--cage bwrap|process]

Setup: the offline model (a labelled scripted stand-in that answers in about a millisecond) and
a real `Daemon` in this process (no manager, `[pool]` defaults: every agent may stay warm).

- spawn → ready: from the first `spawn` until every harness reports idle (it takes messages).
- spawn → warm: until every agent's pre-warm is decided (warm on start, `[pool] warm_on_start`:
  an idle harness connects its claude CLI before its first message; each trail gets a `note`
  with `pool` "prewarmed", "prewarm_refused" or "prewarm_failed"); the first burst starts then.
  With `--cold-start` (warm_on_start = false) it is not measured.
- burst: the operator sends agent i "relay TOKEN to agent i+1" to all N at once; done when every
  token has been through both turns (the sender's relay turn and the receiver's turn on it) and
  every message is acknowledged. Each relay is two turns, so a burst is 2N turns.
- per-turn: `duration_ms` of every turn_end in the agents' trails, cold and warm (its `warm`:
  it reused a connected CLI), p50 / p95; and how many of the first burst's turns found a warm CLI.
- memory: VmRSS of each agent's process tree (harness, worker, claude) at ready (cold
  harnesses; the first pre-warms may have begun), when the pre-warms are decided, peak while
  the bursts run, and at idle after the last burst (warm: harness + worker + CLI), by process.
- idle CPU: cores the swarm's processes use, by role, over 10 s with no message, after the
  pre-warms (before the first burst).
- lost / duplicated: every token must start exactly one turn in its receiver's trail and none
  may be unacknowledged at the end (both must be 0).
- baseline: 2N bare `claude -p` runs (the SDK's bundled CLI) at once against the same model —
  the same number of model turns a burst needs, with none of hyperhive's work.

Prints a table and one JSON line. The machine this ran on and what else ran on it are in the
report that quotes it.
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
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from hyperhive.config import HiveConfig  # noqa: E402
from hyperhive.core.daemon import Daemon  # noqa: E402
from hyperhive.harness.prompting import format_wake_prompt  # noqa: E402
from hyperhive.offline_model.server import OfflineModelServer  # noqa: E402
from hyperhive.poolsettings import PoolSettings, default_budget_mib  # noqa: E402

BOUND = 900.0
IDLE_WINDOW = 10.0  # seconds of the idle swarm's CPU use, measured before the first burst
POLL = 0.1  # seconds between checks of whether a burst is done (its resolution)


def claude_cli() -> str:
    import claude_agent_sdk

    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if not path.exists():
        raise SystemExit(f"no bundled claude CLI at {path}")
    return str(path)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _parents() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            out.setdefault(int(fields[1]), []).append(int(entry.name))
    return out


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def tree_rss(root: int) -> dict[str, int]:
    """KiB by role in the process tree below `root`: harness, worker, claude, other."""
    parents = _parents()
    roles = {"harness": 0, "worker": 0, "claude": 0, "other": 0}
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        frontier += parents.get(pid, [])
        roles[_role(_cmd(pid))] += rss_kib(pid)
    return roles


def _role(cmd: str) -> str:
    return ("worker" if "hyperhive.harness.worker" in cmd else "harness" if "-m hyperhive.harness" in cmd
            else "claude" if "claude" in cmd and "--output-format" in cmd else "other")  # fmt: skip


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def swarm_cpu(daemon: Daemon) -> dict[str, float]:
    """CPU seconds so far of every process in the agents' trees, by role (a process that ended
    is not counted: take two readings with nothing starting or ending between them)."""
    assert daemon.services is not None
    parents = _parents()
    total = {"harness": 0.0, "worker": 0.0, "claude": 0.0, "other": 0.0}
    hz = os.sysconf("SC_CLK_TCK")
    for rt in daemon.services.lifecycle.agents.values():
        frontier = [rt.handle.pid] if rt.handle is not None else []
        while frontier:
            pid = frontier.pop()
            frontier += parents.get(pid, [])
            total[_role(_cmd(pid))] += _cpu_ticks(pid) / hz
    return total


async def idle_cpu(daemon: Daemon, seconds: float) -> dict[str, float]:
    """Cores the idle swarm uses, by role, over `seconds` with no message sent."""
    before = await asyncio.to_thread(swarm_cpu, daemon)
    await asyncio.sleep(seconds)
    after = await asyncio.to_thread(swarm_cpu, daemon)
    out = {k: round((after[k] - before[k]) / seconds, 3) for k in before}
    out["total"] = round(sum(out.values()), 3)
    return out


def swarm_rss(daemon: Daemon) -> dict[str, int]:
    assert daemon.services is not None
    total = {"harness": 0, "worker": 0, "claude": 0, "other": 0}
    for rt in daemon.services.lifecycle.agents.values():
        if rt.handle is not None:
            for k, v in tree_rss(rt.handle.pid).items():
                total[k] += v
    total["total"] = sum(total.values())
    return total


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def wait_for(what: str, check: Any, bound: float = BOUND) -> None:
    """Poll `check` in a thread: it reads every agent's trail, which on the loop would hold the
    daemon under test (at 100 agents, most of the time)."""
    deadline = time.monotonic() + bound
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(POLL)


async def baseline(model_url: str, runs: int) -> float:
    """Wall time of `runs` bare `claude -p` turns started at once against the model."""
    cli = claude_cli()
    home = Path(tempfile.mkdtemp(prefix="hh-bench-home-"))
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "ANTHROPIC_BASE_URL": model_url,
           "ANTHROPIC_API_KEY": "offline-model-stand-in", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}  # fmt: skip

    async def one(i: int) -> None:
        prompt = format_wake_prompt(i + 1, "operator", f"echo baseline-{i}")
        proc = await asyncio.create_subprocess_exec(
            cli, "-p", prompt, "--output-format", "json", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await proc.wait()

    started = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(runs)))
    shutil.rmtree(home, ignore_errors=True)
    return time.monotonic() - started


PREWARM_OUTCOMES = ("prewarmed", "prewarm_refused", "prewarm_failed")


def prewarm_outcome(events: list[dict[str, Any]]) -> str | None:
    for e in events:
        if e["kind"] == "note" and e["payload"].get("pool") in PREWARM_OUTCOMES:
            return str(e["payload"]["pool"])
    return None


async def main(
    agents: int, bursts: int, cage: str, with_baseline: bool = True, warm_on_start: bool = True
) -> dict[str, Any]:
    names = [f"s{i:03d}" for i in range(agents)]
    with tempfile.TemporaryDirectory(prefix="hh-swarm-") as tmp, tempfile.TemporaryDirectory(dir="/tmp") as run:
        async with OfflineModelServer() as model:
            env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
            if os.environ.get("PYTHONPATH"):  # the cages run the same source as this script
                env["PYTHONPATH"] = os.environ["PYTHONPATH"]
            config = HiveConfig(state_dir=Path(tmp) / "state", run_dir=Path(run), port=0, cage=cage, manager=False,
                                agent_env=env, pool=PoolSettings(warm_idle_seconds=3600.0,
                                                                 warm_on_start=warm_on_start))  # fmt: skip
            ready = asyncio.Event()

            async def on_ready(_d: Daemon) -> None:
                ready.set()

            daemon = Daemon(config, on_ready=on_ready)
            serving = asyncio.create_task(daemon.serve())
            await ready.wait()
            s = daemon.services
            assert s is not None
            try:
                started = time.monotonic()
                for n in names:
                    await s.lifecycle.spawn(n)
                await wait_for("every harness idle",
                               lambda: all(s.lifecycle.agents[n].harness_state == "idle" for n in names))  # fmt: skip
                spawn_s = time.monotonic() - started
                idle_cold = swarm_rss(daemon)
                warm_s: float | None = None
                prewarms: dict[str, int] = {}
                if warm_on_start:
                    await wait_for("every pre-warm decided",
                                   lambda: all(prewarm_outcome(s.read_agent_events(n)) for n in names))  # fmt: skip
                    warm_s = time.monotonic() - started
                    for n in names:
                        outcome = prewarm_outcome(s.read_agent_events(n)) or "none"
                        prewarms[outcome] = prewarms.get(outcome, 0) + 1
                idle_prewarmed = swarm_rss(daemon)
                idle_cores = await idle_cpu(daemon, IDLE_WINDOW)

                peak: dict[str, int] = {"total": 0}
                sampling = True

                async def sample() -> None:
                    nonlocal peak
                    while sampling:
                        now = await asyncio.to_thread(swarm_rss, daemon)
                        if now["total"] > peak["total"]:
                            peak = now
                        await asyncio.sleep(0.25)

                sampler = asyncio.create_task(sample())
                burst_s: list[float] = []
                tokens: dict[str, str] = {}
                first_burst_warm: list[bool] = []
                for b in range(bursts):
                    ends_before = {n: len(_turn_ends(s.read_agent_events(n))) for n in names}
                    sent = {f"T{b}-{i}-{uuid.uuid4().hex[:8]}": names[(i + 1) % agents] for i in range(agents)}
                    tokens.update(sent)
                    t0 = time.monotonic()
                    await asyncio.gather(*(s.broker.send("operator", names[i], f"relay {tok} to {to}")
                                           for i, (tok, to) in enumerate(sent.items())))  # fmt: skip

                    def done(sent: dict[str, str] = sent) -> bool:
                        return all(any(e["kind"] == "turn_end" and e["payload"].get("ok") for e in
                                       _after_start(s.read_agent_events(to), tok)) for tok, to in sent.items())  # fmt: skip

                    await wait_for(f"burst {b + 1}", done)
                    await wait_for("every agent idle", lambda: all(s.lifecycle.agents[n].harness_state == "idle"
                                                                    for n in names))  # fmt: skip
                    burst_s.append(time.monotonic() - t0)
                    if b == 0:
                        first_burst_warm = [bool(e.get("warm")) for n in names
                                            for e in _turn_ends(s.read_agent_events(n))[ends_before[n]:]]  # fmt: skip
                sampling = False
                await sampler
                idle_warm = swarm_rss(daemon)

                trails = {n: s.read_agent_events(n) for n in names}
                starts = [e for t in trails.values() for e in t if e["kind"] == "turn_start"]
                lost = sum(1 for tok, to in tokens.items() if not any(e["payload"]["body"] == tok
                                                                        for e in trails[to] if e["kind"] == "turn_start"))  # fmt: skip
                dup = sum(max(0, sum(1 for e in starts if e["payload"]["body"] == tok) - 1) for tok in tokens)
                unread = sum(s.lifecycle.row(n).unread for n in names)
                ends = [e["payload"] for t in trails.values() for e in t if e["kind"] == "turn_end"]
                cold = [float(e["duration_ms"]) for e in ends if not e.get("warm")]
                warm = [float(e["duration_ms"]) for e in ends if e.get("warm")]
                cooled_floor = await cooled_harness_rss(daemon, names[0])
            finally:
                daemon.should_exit.set()
                await serving
            # 2N CLIs at once: past ~50 agents that is more memory than the host has (~200 MiB
            # each), so a big swarm is judged on its own terms (lost, failed turns, peak RSS)
            base_s = await baseline(model.url, 2 * agents) if with_baseline else float("nan")
    burst_med = statistics.median(burst_s)
    failed = [e for e in ends if not e.get("ok")]
    budget_mib = config.pool.budget_mib or default_budget_mib()
    return {
        "agents": agents, "bursts": bursts, "cage": cage, "cores": os.cpu_count(),
        "warm_on_start": warm_on_start, "spawn_to_ready_s": round(spawn_s, 2),
        "spawn_to_warm_s": round(warm_s, 2) if warm_s is not None else None, "prewarms": prewarms,
        "first_burst_turns": len(first_burst_warm), "first_burst_warm_turns": sum(first_burst_warm),
        "burst_s": [round(x, 2) for x in burst_s],
        "baseline_2n_claude_p_s": round(base_s, 2), "burst_over_baseline": round(burst_med / base_s, 2),
        "first_burst_over_baseline": round(burst_s[0] / base_s, 2),
        "turn_ms_cold_p50": pct(cold, 0.5), "turn_ms_cold_p95": pct(cold, 0.95),
        "turn_ms_warm_p50": pct(warm, 0.5), "turn_ms_warm_p95": pct(warm, 0.95),
        "warm_over_cold_p50": round(pct(warm, 0.5) / pct(cold, 0.5), 2) if warm and cold else None,  # type: ignore[operator]
        "rss_idle_cold_kib": idle_cold, "rss_idle_prewarmed_kib": idle_prewarmed, "rss_peak_kib": peak,
        "rss_idle_warm_kib": idle_warm, "idle_cores": idle_cores,
        "rss_cooled_harness_kib": cooled_floor,
        "lost": lost, "duplicated": dup, "unacked_left": unread,
        "failed_turns": len(failed), "initialize_timeouts": sum("initialize" in str(e.get("note", "")).lower() for e in failed),
        "pool_budget_mib": budget_mib, "warm_limit": config.pool.warm_limit(),
    }  # fmt: skip


def _turn_ends(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["payload"] for e in events if e["kind"] == "turn_end"]


def _after_start(events: list[dict[str, Any]], token: str) -> list[dict[str, Any]]:
    """The events after the turn_start that carried `token`."""
    for i, e in enumerate(events):
        if e["kind"] == "turn_start" and e["payload"].get("body") == token:
            return events[i + 1 :]
    return []


async def cooled_harness_rss(daemon: Daemon, name: str) -> int:
    """Cool one agent through its harness (the core's own route) and measure its tree."""
    import httpx

    transport = httpx.AsyncHTTPTransport(uds=str(daemon.paths.agent(name).web_socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://agent", timeout=60) as web:
        await web.post("/_core/cool", json={"why": "bench: measure the floor"})
    assert daemon.services is not None
    rt = daemon.services.lifecycle.agents[name]
    await asyncio.sleep(0.5)  # let the exited worker's pages go (a measurement, not a test)
    return sum(tree_rss(rt.handle.pid).values()) if rt.handle is not None else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--cage", default="bwrap" if shutil.which("bwrap") else "process")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the 2N bare CLIs (too many for the host's memory)"
    )
    parser.add_argument("--cold-start", action="store_true", help="[pool] warm_on_start = false")
    args = parser.parse_args()
    out = asyncio.run(main(args.agents, args.bursts, args.cage, not args.no_baseline, not args.cold_start))
    mib = 1024
    print(f"agents {out['agents']} ({out['cage']} cages, {out['cores']} cores), bursts {out['bursts']}")
    print(f"spawn → ready            {out['spawn_to_ready_s']:>8} s   (every harness idle)")
    if out["warm_on_start"]:
        print(f"spawn → warm             {out['spawn_to_warm_s']:>8} s   (every pre-warm decided: {out['prewarms']})")
    else:
        print("spawn → warm                  -     (--cold-start: [pool] warm_on_start = false)")
    print(f"first burst found warm   {out['first_burst_warm_turns']} of {out['first_burst_turns']} turns")
    print(f"burst (2N turns)         {out['burst_s']} s")
    print(
        f"baseline 2N claude -p    {out['baseline_2n_claude_p_s']:>8} s   burst/baseline {out['burst_over_baseline']} (first: {out['first_burst_over_baseline']})"
    )
    print(f"turn cold p50/p95        {out['turn_ms_cold_p50']} / {out['turn_ms_cold_p95']} ms")
    print(f"turn warm p50/p95        {out['turn_ms_warm_p50']} / {out['turn_ms_warm_p95']} ms"
          f"   warm/cold p50 {out['warm_over_cold_p50']}")  # fmt: skip
    for key in ("rss_idle_cold_kib", "rss_idle_prewarmed_kib", "rss_peak_kib", "rss_idle_warm_kib"):
        r = out[key]
        print(f"{key[4:-4]:<24} total {r['total'] // mib} MiB (harness {r['harness'] // mib}, worker "
              f"{r['worker'] // mib}, claude {r['claude'] // mib}, other {r['other'] // mib})")  # fmt: skip
    print(f"one cooled harness       {out['rss_cooled_harness_kib'] // mib} MiB")
    c = out["idle_cores"]
    print(f"idle CPU (pre-warmed)    {c['total']} cores (harness {c['harness']}, worker {c['worker']}, "
          f"claude {c['claude']}, other {c['other']})")  # fmt: skip
    print(
        f"lost {out['lost']}  duplicated {out['duplicated']}  unacked left {out['unacked_left']}  "
        f"failed turns {out['failed_turns']} (initialize timeouts {out['initialize_timeouts']})"
    )
    print(f"pool budget              {out['pool_budget_mib']} MiB ({out['warm_limit']} warm at most)")
    print(json.dumps(out))

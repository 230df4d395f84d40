"""Start-up → exit time of `true` per cage backend, next to a bare `true` exec in the same run.

    .venv/bin/python bench/bench_cages.py [--runs N]

Bounded: stops measuring a backend after its time budget (total < 60 s). Prints a table with
p50/p99 and the ratio to the bare exec, then one JSON line. Backends that are not available
here are reported with the reason and skipped. Uses the real `Cage.start` → `wait()` path
(cgroup placement, setpriv to an unprivileged uid when root, the handle's output reader).
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

from hyperhive.cages import BACKENDS, load_backend
from hyperhive.cages.base import CageSpec

TOTAL_BUDGET = 50.0  # seconds, across all backends


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def bare(runs: int, budget: float) -> list[float]:
    out: list[float] = []
    end = time.monotonic() + budget
    while len(out) < runs and time.monotonic() < end:
        t = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("/usr/bin/true")
        await proc.wait()
        out.append(time.perf_counter() - t)
    return out


async def backend(kind: str, runs: int, budget: float, root: Path) -> tuple[list[float], str]:
    cls = load_backend(kind)
    ok, why = cls.available()
    if not ok:
        return [], why
    cage = cls()
    d = root / kind
    dirs = [d / "state", d / "home", d / "run"]
    for p in dirs:
        p.mkdir(parents=True)
    uid = None
    if cls.isolated and os.geteuid() == 0:
        uid = 61999
        for p in [d, *dirs]:
            os.chown(p, uid, uid)
    spec = CageSpec(kind, ["/usr/bin/true"], dirs[0], dirs[1], dirs[2], uid=uid, gid=uid)
    out: list[float] = []
    end = time.monotonic() + budget
    while len(out) < runs and time.monotonic() < end:
        t = time.perf_counter()
        handle = await cage.start(spec)
        info = await asyncio.wait_for(handle.wait(), 30)
        out.append(time.perf_counter() - t)
        if info.exit_code != 0:
            return out, f"`true` exited {info}"
    return out, why


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hhb-", dir="/tmp"))
    root.chmod(0o755)
    started = time.monotonic()
    results: dict[str, dict[str, object]] = {}
    try:
        kinds = ["bare", "process", "bwrap", "nspawn"]
        kinds += [k for k in BACKENDS if k not in kinds]
        share = TOTAL_BUDGET / len(kinds)
        for kind in kinds:
            if kind == "bare":
                samples, note = await bare(args.runs, share), "asyncio exec of /usr/bin/true"
            else:
                samples, note = await backend(kind, args.runs, share, root)
            if samples:
                results[kind] = {
                    "n": len(samples),
                    "p50_ms": round(statistics.median(samples) * 1000, 2),
                    "p99_ms": round(pct(samples, 0.99) * 1000, 2),
                    "note": note,
                }
            else:
                results[kind] = {"n": 0, "note": note}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = results.get("bare", {}).get("p50_ms")
    print(f"{'backend':8} {'n':>4} {'p50 ms':>9} {'p99 ms':>9} {'x bare':>7}  note")
    for kind, r in results.items():
        if not r["n"]:
            print(f"{kind:8} {0:>4} {'-':>9} {'-':>9} {'-':>7}  unavailable: {r['note']}")
            continue
        p50 = float(r["p50_ms"])  # type: ignore[arg-type]
        ratio = round(p50 / float(base), 1) if base else None  # type: ignore[arg-type]
        r["ratio_p50"] = ratio
        print(f"{kind:8} {r['n']:>4} {p50:>9.2f} {float(r['p99_ms']):>9.2f} {ratio!s:>7}  {r['note']}")  # type: ignore[arg-type]
    elapsed = round(time.monotonic() - started, 1)
    meta = {"bench": "cages_startup_true", "python": sys.version.split()[0], "elapsed_s": elapsed}
    print(json.dumps({**meta, **results}))


if __name__ == "__main__":
    asyncio.run(main())

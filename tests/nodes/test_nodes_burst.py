"""Two `hive serve` processes, as an operator runs them on two hosts (separate state and run
dirs, `--node n1` / `--node n2`, one throw-away PostgreSQL, port 0): agent b is placed on n2
from n1's CLI; n2 is SIGKILLed in the middle of a 1,000-message burst from n1 to b; after n2
restarts, every send n1 acknowledged is in b's queue exactly once, and b receives each once."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

from hivetest import pg_test_url, run_hive
from hyperhive.client import HiveClient
from hyperhive.store.open import open_store
from servekit import serving

BURST = 1000
KILL_AT = BURST // 2


def _args(root: Path, run: Path, url: str, node: str) -> list[str]:
    run.mkdir(exist_ok=True)
    run.chmod(0o711)
    return ["--state-dir", str(root / "state"), "--run-dir", str(run), "--port", "0", "--cage", "process",
            "--store", url, "--node", node]  # fmt: skip


async def _list(run: Path) -> dict[str, dict[str, object]]:
    out = await run_hive(run, "list", "--json", ok=True)
    return {a["name"]: a for a in json.loads(out.stdout)["agents"]}


async def _until_listed(run: Path, name: str, want: str, bound: float = 60) -> dict[str, Any]:
    """`hive list` on `run` until `name` is in state `want` (heartbeats come every 2 s)."""
    async with asyncio.timeout(bound):
        while True:
            row = (await _list(run)).get(name)
            if row is not None and row["state"] == want:
                return row
            await asyncio.sleep(0.5)  # polling the CLI: there is no event to wait on from outside


async def test_sigkill_of_n2_mid_burst_loses_and_doubles_nothing(tmp_path: Path, short_dir: Path) -> None:
    url = pg_test_url()
    r1, r2 = short_dir / "r1", short_dir / "r2"
    async with serving(*_args(tmp_path / "n1", r1, url, "n1")) as n1:
        async with serving(*_args(tmp_path / "n2", r2, url, "n2")) as n2:
            placed = await run_hive(r1, "spawn", "b", "--node", "n2")
            assert placed.returncode == 0, f"{placed.stderr}\n--- n1:\n{n1.stderr}\n--- n2:\n{n2.stderr}"
            assert "b: running on node n2" in placed.stdout, placed.stdout
            assert (await run_hive(r1, "stop", "b", ok=True)).stdout.strip() == "b: stopped"  # run by n2
            await _until_listed(r1, "b", "stopped")
            table = (await run_hive(r1, "list", ok=True)).stdout
            assert any(line.split()[:3] == ["b@n2", "process!", "stopped"] for line in table.splitlines()), table

            acked: dict[int, str] = {}
            async with HiveClient(r1 / "host.sock") as client:
                for i in range(BURST):
                    if i == KILL_AT:
                        n2.proc.send_signal(signal.SIGKILL)
                    body = f"burst {i}"
                    reply = await client.call("send", to="b", body=body)
                    acked[reply["id"]] = body
            assert await n2.proc.wait() == -signal.SIGKILL

        assert len(acked) == BURST
        await _until_listed(r1, "b", "unreachable")  # n1 sees n2's heartbeat stop
        async with serving(*_args(tmp_path / "n2", r2, url, "n2")):
            row = await _until_listed(r1, "b", "stopped")  # n2's first heartbeat after its restart
            assert row["node"] == "n2" and row["unread"] >= BURST, row
            store = await asyncio.to_thread(open_store, url, tmp_path / "unused.sqlite")
            try:
                received: list[tuple[int, str]] = []
                while batch := await store.claim_pending("b", 32, time.time()):  # what b's recv does
                    received += [(m["id"], m["body"]) for m in batch]
                    await store.ack("b", time.time())
            finally:
                await store.close()
        ids = [mid for mid, _ in received]
        assert len(ids) == len(set(ids)), "a message delivered twice"
        kicks = [mid for mid, body in received if mid not in acked]
        assert all('"event"' in body for mid, body in received if mid in kicks), "only system events besides the burst"
        assert sorted(m for m in ids if m in acked) == sorted(acked), "an acknowledged send was lost"
        assert [body for mid, body in received if mid in acked] == [acked[m] for m in sorted(acked)]

"""A send answered `ok` is durable (architecture §4, issue 2 "How it is verified"): `hive serve` runs
as a real subprocess, several clients fire a burst of 1,000 sends at the operator's inbox, the
daemon is SIGKILLed mid-burst and restarted on the same dirs, and every send that was answered
ok is in broker.sqlite exactly once, while no send answered ok:false left a row.

Sends go to `operator`, which needs no agent. The daemon still starts its manager (process
cage); the orphan left by the SIGKILL is killed by its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hyperhive.protocol import MAX_BODY_BYTES

HIVE = str(Path(sys.executable).parent / "hive")
CLIENTS = 8
SENDS = 1000
KILL_AFTER = 300  # answered sends before the SIGKILL
OVERSIZED_EVERY = 10  # every 10th send is over the body cap and must be refused


@dataclass
class Outcome:
    ok: dict[str, int] = field(default_factory=dict)  # body -> id
    refused: set[str] = field(default_factory=set)
    unanswered: set[str] = field(default_factory=set)


async def start_serve(state: Path, run_dir: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        HIVE, "serve", "--state-dir", str(state), "--run-dir", str(run_dir), "--port", "0", "--cage", "process",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        line = await proc.stdout.readline()
    assert line.startswith(b"login URL: "), f"hive serve did not come up: {line!r} (exit {proc.returncode})"
    return proc


async def list_pids(run_dir: Path) -> list[int]:
    proc = await asyncio.create_subprocess_exec(
        HIVE, "list", "--json", "--run-dir", str(run_dir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    async with asyncio.timeout(30):
        out, _ = await proc.communicate()
    return [a["pid"] for a in json.loads(out)["agents"] if a.get("pid")]


async def client(host: Path, index: int, outcome: Outcome, answered: list[int], kill_now: asyncio.Event) -> None:
    """One connection; sends its share one by one and records each answer."""
    reader, writer = await asyncio.open_unix_connection(str(host), limit=4 * MAX_BODY_BYTES)
    try:
        for i in range(index, SENDS, CLIENTS):
            body = f"burst c{index} n{i}"
            if i % OVERSIZED_EVERY == 0:
                body = body + " " + "x" * MAX_BODY_BYTES
            try:
                writer.write(json.dumps({"cmd": "send", "to": "operator", "body": body}).encode() + b"\n")
                await writer.drain()
                async with asyncio.timeout(30):
                    line = await reader.readline()
            except (ConnectionError, BrokenPipeError):
                line = b""
            if not line:  # the daemon died under us: this one and the rest are unanswered
                outcome.unanswered.update(f"burst c{index} n{j}" for j in range(i, SENDS, CLIENTS))
                return
            reply = json.loads(line)
            key = body[:40] if len(body) > 40 else body
            if reply["ok"]:
                outcome.ok[key] = reply["id"]
            else:
                outcome.refused.add(key)
            answered[0] += 1
            if answered[0] >= KILL_AFTER:
                kill_now.set()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def killpg(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)


async def test_every_send_answered_ok_survives_a_sigkill_exactly_once(tmp_path: Path, short_dir: Path) -> None:
    """SIGKILL during a 1,000-send burst from several clients: after a restart every ok send is
    stored once, no refused send is stored (architecture §4 "acknowledged only after commit", issue 2)."""
    state, run_dir = tmp_path / "state", short_dir / "run"
    host = run_dir / "host.sock"
    proc = await start_serve(state, run_dir)
    orphans = await list_pids(run_dir)  # the manager's harness, which a SIGKILL leaves behind
    outcome, answered, kill_now = Outcome(), [0], asyncio.Event()
    try:
        clients = [asyncio.create_task(client(host, i, outcome, answered, kill_now)) for i in range(CLIENTS)]
        async with asyncio.timeout(120):
            done_or_kill = asyncio.create_task(kill_now.wait())
            await asyncio.wait([done_or_kill, *clients], return_when=asyncio.FIRST_COMPLETED)
            assert kill_now.is_set(), "the burst ended before the kill point"
            proc.kill()  # SIGKILL, mid-burst
            await proc.wait()
            await asyncio.gather(*clients)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in orphans:
            killpg(pid)
    assert outcome.unanswered, "the kill landed after the burst; nothing was in flight"
    assert len(outcome.ok) >= KILL_AFTER * 0.8

    proc = await start_serve(state, run_dir)  # recovery on the same dirs
    try:
        assert await list_pids(run_dir) is not None
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            assert await proc.wait() == 0

    with contextlib.closing(sqlite3.connect(f"file:{state / 'broker.sqlite'}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT id, substr(body, 1, 40) FROM messages WHERE body LIKE 'burst %'").fetchall()
    stored = Counter(body for _id, body in rows)
    ids = {body: mid for mid, body in rows}
    missing = [b for b in outcome.ok if stored[b] == 0]
    assert not missing, f"{len(missing)} sends answered ok were lost, e.g. {missing[:3]}"
    assert all(stored[b] == 1 for b in outcome.ok), "a send answered ok is stored more than once"
    assert all(ids[b] == mid for b, mid in outcome.ok.items()), "a stored row has another id than the reply said"
    assert not [b for b in outcome.refused if stored[b]], "a send answered ok:false left a row"
    assert all(n == 1 for n in stored.values()), "no send is stored twice, answered or not"

"""`hive demo` (as `make demo` runs it) stops cleanly on Ctrl-C: the daemon, not the offline
model's web server, handles SIGINT, so the graceful path runs and every cage stops; a restart on
the same state does not send the kickoff message again (issue 15)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from servekit import HIVE, serving


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _cage_pids(run: Path, names: set[str]) -> list[int]:
    """The pids of the named agents once all of them run (bounded by the caller)."""
    while True:
        proc = await asyncio.create_subprocess_exec(HIVE, "list", "--json", "--run-dir", str(run),
                                                    stdout=asyncio.subprocess.PIPE)  # fmt: skip
        out, _ = await proc.communicate()
        agents = {a["name"]: a for a in json.loads(out)["agents"]}
        if names <= set(agents) and all(agents[n]["pid"] for n in names):
            return [agents[n]["pid"] for n in names]
        await asyncio.sleep(0.2)  # no event stream on the CLI's side: a bounded re-ask


async def test_sigint_takes_the_graceful_path_and_the_kickoff_is_sent_once(tmp_path: Path, short_dir: Path) -> None:
    run = short_dir / "run"
    args = ["--state-dir", str(tmp_path / "state"), "--run-dir", str(run), "--port", "0", "--cage", "process"]
    async with serving(*args, verb="demo") as demo:
        await demo.wait_for_stderr("sent 'relay hello")
        async with asyncio.timeout(60):
            pids = await _cage_pids(run, {"alice", "bob"})
        assert await demo.stop(signal.SIGINT) == 0, demo.stderr
    log = demo.stderr
    assert "signal 2: shutting down" in log and "hive serve stopped" in log, log
    assert "second signal" not in log and "Traceback" not in log, log
    assert "agent alice: running" in log and "agent bob: running" in log, log  # one INFO line per event
    stopped = next(line for line in demo.err_lines if "agents stopped: " in line)
    assert {"alice", "bob", "manager"} <= set(stopped.split("agents stopped: ", 1)[1].split(", ")), stopped
    for pid in pids:
        async with asyncio.timeout(10):
            while _alive(pid):
                await asyncio.sleep(0.05)  # a reaped pid has no event to wait on
    assert not (run / "host.sock").exists()

    async with serving(*args, verb="demo") as again:
        await again.wait_for_stderr("demo kickoff already sent")
        assert await again.stop(signal.SIGINT) == 0, again.stderr
    assert "sent 'relay hello" not in again.stderr


async def test_the_standalone_offline_model_stops_on_sigint() -> None:
    """`python -m hyperhive.offline_model`: its own handler gets Ctrl-C, not uvicorn's."""
    import sys

    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "hyperhive.offline_model",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while "export ANTHROPIC_BASE_URL=" not in (await proc.stdout.readline()).decode():
            pass
    proc.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        _, err = await proc.communicate()
    assert proc.returncode == 0 and b"Traceback" not in err, err.decode()

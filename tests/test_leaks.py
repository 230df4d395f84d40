"""Nothing leaks across daemon runs (issue 10, STYLE §11): file descriptors, threads and child
processes come back to a baseline measured in the same run, after the daemon is started, used
and stopped several times, in-process and as a real `hive serve` process."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

from hivetest import ask_socket, make_config, start_daemon, stop_daemon, wire_agent
from hyperhive.core.daemon import Daemon
from servekit import serving

CYCLES = 4
BOUND = 10


def _fds() -> list[str]:
    return sorted(p.name for p in Path("/proc/self/fd").iterdir())


def _threads() -> list[str]:
    """Our threads, without the loop's default executor (a bounded pool the loop owns, which
    grows to its cap on demand) and the test's loop watchdog (joined: it ends on its own)."""
    for t in threading.enumerate():
        if t.name == "loopwatch":
            t.join(BOUND)
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a live process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[1]), fields[19]


def _descendants(root: int) -> dict[int, str]:
    """Every live process under `root` (pid → start time, so a reused pid is not mistaken)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = st
    out: dict[int, str] = {}
    for pid, (ppid, start) in parents.items():
        seen = set()
        while ppid not in (0, 1) and ppid not in seen:
            if ppid == root:
                out[pid] = start
                break
            seen.add(ppid)
            ppid = parents.get(ppid, (0, ""))[0]
    return out


async def _use(daemon: Daemon, name: str) -> None:
    """A little of everything that opens something: sockets, a stream, an agent socket."""
    host = daemon.paths.host_socket
    assert (await ask_socket(host, {"cmd": "ping"}))["pong"] is True
    sock = await wire_agent(daemon, name)
    assert (await ask_socket(sock, {"cmd": "send", "to": "operator", "body": "hello"}))["ok"]
    assert (await ask_socket(host, {"cmd": "inbox"}))["ok"]
    reader, writer = await asyncio.open_unix_connection(str(host))
    writer.write(b'{"cmd": "subscribe"}\n')
    await writer.drain()
    async with asyncio.timeout(BOUND):
        assert json.loads(await reader.readline())["subscribed"] is True
    writer.close()
    await writer.wait_closed()


async def _cycle(tmp_path: Path, run: Path, i: int) -> None:
    daemon, task = await start_daemon(make_config(tmp_path / f"hive{i}", run / f"r{i}"))
    try:
        await _use(daemon, f"leak{i}")
    finally:
        await stop_daemon(daemon, task)


async def test_an_in_process_daemon_run_many_times_leaks_no_fds_threads_or_children(
    tmp_path: Path, short_dir: Path
) -> None:
    """Baseline after one warm-up run (imports, the loop's executor); after CYCLES more runs the
    test process holds no more descriptors or threads than that, and has no children left."""
    await _cycle(tmp_path, short_dir, 0)
    fds, threads = len(_fds()), _threads()
    assert _descendants(os.getpid()) == {}
    for i in range(1, CYCLES + 1):
        await _cycle(tmp_path, short_dir, i)
    assert len(_fds()) <= fds, f"{len(_fds()) - fds} descriptors leaked over {CYCLES} runs"
    assert _threads() == threads
    assert _descendants(os.getpid()) == {}


async def _manager_running(host: Path) -> None:
    """Wait on the core's own event stream (replayed from the start) for the manager to run."""
    reader, writer = await asyncio.open_unix_connection(str(host), limit=1 << 21)
    try:
        writer.write(b'{"cmd": "subscribe", "after": 0, "kinds": ["agent_changed"]}\n')
        await writer.drain()
        async with asyncio.timeout(90):
            assert json.loads(await reader.readline())["subscribed"] is True
            while True:
                data = json.loads(await reader.readline())["event"]["data"]
                if data["name"] == "manager" and data["state"] == "running":
                    return
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_real_hive_serve_started_and_stopped_leaves_no_process_behind(tmp_path: Path, short_dir: Path) -> None:
    """`hive serve` with its manager (a real harness in a process cage): while it runs it has
    children; after SIGTERM every one of them is gone, each time, and our own fds are back."""
    fds = len(_fds())
    for i in range(2):
        args = ["--state-dir", str(tmp_path / f"s{i}"), "--run-dir", str(short_dir / f"r{i}"), "--port", "0",
                "--cage", "process"]  # fmt: skip
        async with serving(*args) as served:
            await _manager_running(short_dir / f"r{i}" / "host.sock")
            kids = _descendants(served.proc.pid)
            assert kids, "the running manager's cage is a child of the daemon"
        assert served.proc.returncode is not None
        left = {p: s for p, s in kids.items() if (st := _stat(p)) is not None and st[1] == s}
        assert left == {}, f"processes of the stopped daemon still alive: {left}"
    assert len(_fds()) <= fds

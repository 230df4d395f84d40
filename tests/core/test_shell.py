"""The operator's shell into a cage (issue 14 §1, architecture §14), end to end: the real `hive` CLI
against the real daemon, real bwrap cages as root with per-agent host uids, the real harness
talking to the offline model. `hive shell` is driven under a real PTY (the `pty` module).

Prerequisite-free checks (the verbs' absence on agent sockets, the one-line errors) use the
process-cage daemon and need no harness."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import (
    HiveRig,
    ask_socket,
    make_config,
    require,
    require_sdk,
    require_tool,
    run_hive,
    start_daemon,
    stop_daemon,
    wire_agent,
)
from hyperhive.agentconfig import default_agent_toml
from hyperhive.core.daemon import Daemon
from hyperhive.offline_model.server import OfflineModelServer

CAGE_UID = "1000"  # uid inside a bwrap cage; the host uid is the agent's own (uid_base + id)


def _prerequisites() -> None:
    require_tool("bwrap")
    require_tool("nsenter")
    from hyperhive.cages.bwrap import BwrapCage

    ok, why = BwrapCage.available()
    require(ok, f"bwrap does not work here: {why}")
    require(os.geteuid() == 0, "the per-agent host uid needs a root daemon")
    require_sdk()


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer | None = None
    UNTIL_BOUND = 90.0
    RECHECK = 0.2

    async def spawn(self, name: str) -> None:
        await self.s.repos.seed(name, toml=default_agent_toml(name))
        await self.s.lifecycle.spawn(name)
        await self.s.lifecycle.wait_healthy(name)

    def trail_notes(self, name: str, event: str) -> list[dict[str, Any]]:
        return [
            e["payload"]
            for e in self.s.read_agent_events(name)
            if e["kind"] == "note" and e["payload"].get("event") == event
        ]


async def _rig(tmp_path: Path, run_dir: Path, cage: str) -> AsyncIterator[Rig]:
    async with OfflineModelServer() as model:
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
        config = make_config(tmp_path, run_dir, cage=cage, agent_env=env)
        daemon, task = await start_daemon(config)
        try:
            rig = Rig(daemon, model)
            await rig.spawn("a")
            yield rig
        finally:
            await stop_daemon(daemon, task)


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    """A real daemon with a bwrap cage for agent `a` (root: `a` is its own host uid)."""
    _prerequisites()
    async for r in _rig(tmp_path, short_dir, "bwrap"):
        yield r


@pytest.mark.cage
async def test_exec_enters_an_nspawn_cage_as_the_agents_uid(tmp_path: Path, short_dir: Path) -> None:
    """nspawn maps the cage's root to the agent's host uid: uid 0 inside, its files the agent's."""
    _prerequisites()
    require_tool("systemd-nspawn")
    from hyperhive.cages.nspawn import NspawnCage

    ok, why = NspawnCage.available()
    require(ok, f"nspawn does not work here: {why}")
    async for rig in _rig(tmp_path, short_dir, "nspawn"):
        done = await rig.hive("exec", "a", "--", "sh", "-c", "id -u; pwd; touch /state/from-nspawn; exit 5")
        assert (done.returncode, done.stdout) == (5, "0\n/state\n"), done
        probe = rig.daemon.paths.agent("a").state / "from-nspawn"
        assert probe.stat().st_uid == rig.s.lifecycle.get("a").uid
        broker = await rig.hive("exec", "a", "--", "cat", str(rig.daemon.paths.broker_db))
        assert broker.returncode != 0 and "No such file" in broker.stderr


async def test_a_process_cage_says_its_shell_is_not_isolated(tmp_path: Path, short_dir: Path) -> None:
    require_sdk()
    async for rig in _rig(tmp_path, short_dir, "process"):
        state = rig.daemon.paths.agent("a").state
        done = await rig.hive("exec", "a", "--", "sh", "-c", "pwd; exit 4")
        assert (done.returncode, done.stdout) == (4, f"{state}\n"), done
        assert "NOT isolated" in done.stderr and "on the host" in done.stderr


@pytest.mark.cage
async def test_exec_prints_the_agents_uid_and_exits_with_the_commands_status(rig: Rig) -> None:
    sub = rig.s.hub.subscribe()
    done = await rig.hive("exec", "a", "--", "sh", "-c", "id -u; echo err >&2; touch /state/from-exec; exit 7")
    assert done.returncode == 7, done
    assert done.stdout == CAGE_UID + "\n"
    assert done.stderr == "err\n"
    # uid 1000 inside is the agent's own host uid outside
    probe = rig.daemon.paths.agent("a").state / "from-exec"
    assert probe.stat().st_uid == rig.s.lifecycle.get("a").uid
    # recorded on the hub (the dashboard's live stream) and in the agent's trail
    kinds = [(e.kind, e.payload.get("exit_code")) for e in sub.drain() if e.kind.startswith("shell_")]
    sub.close()
    assert kinds == [("shell_started", None), ("shell_ended", 7)]
    ended = await rig.until("the exec in a's trail", lambda: rig.trail_notes("a", "shell_ended"))
    assert ended[-1]["exit_code"] == 7 and ended[-1]["kind"] == "exec" and "operator" in ended[-1]["by"]
    assert rig.trail_notes("a", "shell_started")


@pytest.mark.cage
async def test_exec_passes_stdin_through_and_sees_only_the_cage(rig: Rig) -> None:
    env = {**os.environ, "HYPERHIVE_RUN_DIR": str(rig.daemon.paths.run_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hyperhive", "exec", "a", "--", "sh", "-c", "tr a-z A-Z; pwd",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate(b"hello cage\n")
    assert (proc.returncode, out) == (0, b"HELLO CAGE\n/state\n"), err
    broker_db = rig.daemon.paths.broker_db
    assert broker_db.exists() or rig.daemon.config.store_url is not None  # the file of a SQLite store
    done = await rig.hive("exec", "a", "--", "cat", str(broker_db))
    assert done.returncode != 0 and done.stdout == ""
    assert "No such file" in done.stderr


@pytest.mark.cage
async def test_hive_shell_under_a_real_pty_runs_a_command_and_exits_with_its_status(rig: Rig) -> None:
    master, slave = os.openpty()
    _set_size(master, 30, 100)
    env = {**os.environ, "HYPERHIVE_RUN_DIR": str(rig.daemon.paths.run_dir), "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperhive", "shell", "a"], stdin=slave, stdout=slave, stderr=slave,
        env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    try:
        await asyncio.to_thread(_converse, master, b"", b"a:/state$ ", 60)  # the login shell's prompt
        seen = await asyncio.to_thread(_converse, master, b"echo ready-$((6*7))\r", b"ready-42", 60)
        assert b"ready-42" in seen
        seen = await asyncio.to_thread(_converse, master, b"stty size\r", b"30 100", 30)
        _set_size(master, 40, 120)  # the terminal is resized: hive shell hears SIGWINCH
        proc.send_signal(signal.SIGWINCH)
        seen = await asyncio.to_thread(_converse, master, b"stty size\r", b"40 120", 30)
        seen += await asyncio.to_thread(_converse, master, b"id -u; exit 3\r", None, 60)
        rc = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        os.close(master)
    assert rc == 3, seen
    assert CAGE_UID.encode() in seen


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _converse(master: int, send: bytes, expect: bytes | None, bound: float) -> bytes:
    """Write `send` to the terminal, then read until `expect` shows (or, with None, until the
    terminal closes); bounded by `bound` seconds."""
    os.write(master, send)
    seen = b""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if not ready:
            continue
        try:
            data = os.read(master, 65536)
        except OSError:
            return seen  # the other side has gone (EIO)
        if not data:
            return seen
        seen += data
        if expect is not None and expect in seen:
            return seen
    raise AssertionError(f"timed out; the terminal showed {seen!r}")


# ---- without a cage: the verbs' reach and their errors ---------------------------------------


async def test_exec_and_shell_do_not_exist_on_an_agent_socket(hive: Daemon) -> None:
    """Neither an agent nor the manager can ask for a shell, into another cage or its own."""
    for sock in (await wire_agent(hive, "a"), await wire_agent(hive, "manager")):
        for target in ("a", "manager"):
            for request in ({"cmd": "exec", "name": target, "argv": ["id"]}, {"cmd": "shell", "name": target}):
                reply = await ask_socket(sock, request)
                assert (reply["ok"], reply["code"]) == (False, "unknown_verb"), (sock, reply)


async def test_unknown_stopped_and_bad_names_are_one_line_errors(hive: Daemon) -> None:
    await wire_agent(hive, "a")  # registered, never started
    run = hive.paths.run_dir
    cases = {
        ("exec", "ghost", "--", "true"): "no agent named 'ghost'",
        ("exec", "a", "--", "true"): "'a' is stopped",
        ("exec", "Bad_Name", "--", "true"): "not a valid agent name",
        ("shell", "ghost"): "",  # no terminal on stdin: refused before asking the core
    }
    for args, expect in cases.items():
        done = await run_hive(run, *args)
        assert done.returncode != 0, (args, done)
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("hive: "), (args, done.stderr)
        assert expect in lines[0], (args, lines)


@pytest.mark.cage
async def test_the_dashboard_shell_outlives_a_closed_tab_and_ends_when_idle(rig: Rig) -> None:
    """Closing the page's websocket keeps the shell (a new viewer gets the same session and its
    recent screen); with no viewer for `idle_seconds` it is hung up and recorded as ended."""
    import httpx
    from websockets.asyncio.client import connect

    shells = rig.s.shells
    assert shells is not None and rig.daemon.dashboard_url is not None
    base = rig.daemon.dashboard_url.split("/login", 1)[0]
    ws_url = base.replace("http://", "ws://") + "/agent/a/_shell/ws"

    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        await http.get(rig.daemon.dashboard_url)
        cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        headers = {"X-CSRF-Token": http.cookies["hh_csrf"], "Origin": base}

        async def attach() -> Any:
            ticket = (await http.post("/agent/a/_shell/ticket", headers=headers, json={})).json()["ticket"]
            return connect(f"{ws_url}?ticket={ticket}", additional_headers={"Cookie": cookie}, origin=base)  # type: ignore[arg-type]

        async def read_until(ws: Any, marker: bytes) -> tuple[dict[str, Any], bytes]:
            hello: dict[str, Any] = {}
            seen = b""
            async with asyncio.timeout(30):
                while marker not in seen:
                    message = await ws.recv()
                    if isinstance(message, str):
                        hello = hello or json.loads(message)
                    else:
                        seen += message
            return hello, seen

        async with await attach() as ws:
            first, _ = await read_until(ws, b"a:/state$ ")
            await ws.send(b"echo kept-$((3*4))\r")
            await read_until(ws, b"kept-12")
        async with await attach() as ws:  # the tab was closed; a new one gets the same shell
            again, _replayed = await read_until(ws, b"kept-12")  # the recent screen comes first
            assert again["session"] == first["session"]
            shells.idle_seconds = 0.2
        ended = await rig.until(
            "the idle dashboard shell to end",
            lambda: [
                e for e in rig.s.hub.history() if e.kind == "shell_ended" and e.payload["session"] == first["session"]
            ],
        )
        assert ended[0].payload["via"] == "dashboard"
        assert shells.web.get("a") is None


@pytest.mark.cage
async def test_logging_out_everywhere_cuts_an_open_terminal(rig: Rig) -> None:
    import httpx
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    assert rig.daemon.dashboard_url is not None
    base = rig.daemon.dashboard_url.split("/login", 1)[0]
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        await http.get(rig.daemon.dashboard_url)
        cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        headers = {"X-CSRF-Token": http.cookies["hh_csrf"], "Origin": base}
        ticket = (await http.post("/agent/a/_shell/ticket", headers=headers, json={})).json()["ticket"]
        url = base.replace("http://", "ws://") + f"/agent/a/_shell/ws?ticket={ticket}"
        async with connect(url, additional_headers={"Cookie": cookie}, origin=base) as ws:  # type: ignore[arg-type]
            assert json.loads(await ws.recv())["type"] == "hello"
            await rig.hive("sessions", "--revoke-all", ok=True)
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
            assert ws.close_code == 4401


@pytest.mark.cage
async def test_exec_carries_megabytes_both_ways(rig: Rig) -> None:
    out = await rig.hive("exec", "a", "--", "head", "-c", "3000000", "/dev/zero")
    assert (out.returncode, len(out.stdout)) == (0, 3_000_000)
    env = {**os.environ, "HYPERHIVE_RUN_DIR": str(rig.daemon.paths.run_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hyperhive", "exec", "a", "--", "wc", "-c",
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(60):
        counted, err = await proc.communicate(os.urandom(2_500_000))
    assert (proc.returncode, counted.strip()) == (0, b"2500000"), err


@pytest.mark.cage
async def test_garbage_after_the_reply_ends_the_command_and_the_daemon_keeps_answering(rig: Rig) -> None:
    from hyperhive.shellwire import Kind, encode

    sub = rig.s.hub.subscribe()
    reader, writer = await asyncio.open_unix_connection(str(rig.daemon.paths.host_socket))
    try:
        writer.write(json.dumps({"cmd": "exec", "name": "a", "argv": ["sleep", "300"]}).encode() + b"\n")
        await writer.drain()
        reply = json.loads(await reader.readline())
        assert reply["ok"] and reply["isolated"] is True
        writer.write(encode(Kind.STDIN, b"fine") + b"\x7f\x00\x00\x00\x01!")  # an unknown frame kind
        await writer.drain()
        async with asyncio.timeout(30):
            assert await reader.read() == b""  # the core closed the connection
    finally:
        writer.close()
    async with asyncio.timeout(30):
        async for event in sub:
            if event.kind == "shell_ended" and event.payload["session"] == reply["session"]:
                break
    sub.close()
    assert event.payload["signal"] == signal.SIGKILL  # the command did not outlive its client
    assert (await ask_socket(rig.daemon.paths.host_socket, {"cmd": "ping"}))["ok"]


@pytest.mark.cage
async def test_stopping_the_agent_ends_its_shells(rig: Rig) -> None:
    sub = rig.s.hub.subscribe()
    env = {**os.environ, "HYPERHIVE_RUN_DIR": str(rig.daemon.paths.run_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hyperhive", "exec", "a", "--", "sleep", "300",
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(30):
        async for event in sub:
            if event.kind == "shell_started":
                break
    sub.close()
    await rig.hive("stop", "a", ok=True)
    async with asyncio.timeout(30):
        await proc.communicate()
    assert proc.returncode != 0
    after = await rig.hive("exec", "a", "--", "true")
    assert after.returncode != 0 and "'a' is stopped" in after.stderr

"""The `hive` command line as a contract (architecture §12, STYLE §9, issue 2): click's CliRunner
against a real in-process daemon, and the same contract end to end as subprocesses.

The in-process daemon shares the test's event loop, so every CliRunner call (a blocking socket
client) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hivetest import ask_socket, wire_agent
from hyperhive.cli import main
from hyperhive.core.daemon import Daemon
from hyperhive.protocol import MAX_BODY_BYTES

VENV_BIN = Path(sys.executable).parent
HIVE = str(VENV_BIN / "hive")


async def hive_cli(daemon: Daemon | Path, *args: str, input: str | None = None) -> Result:
    run_dir = daemon if isinstance(daemon, Path) else daemon.paths.run_dir
    runner = CliRunner()
    async with asyncio.timeout(90):
        argv = [args[0], "--run-dir", str(run_dir), *args[1:]]  # before any "--"
        return await asyncio.to_thread(runner.invoke, main, argv, input=input)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr or result.output}"
    return result.stdout


def failed(result: Result) -> str:
    """A failure: non-zero exit, nothing on stdout, one line `hive: …` on stderr."""
    assert result.exit_code != 0, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hive: "), result.stderr
    return lines[0]


async def agents(daemon: Daemon) -> dict[str, dict[str, Any]]:
    doc = json.loads(ok(await hive_cli(daemon, "list", "--json")))
    return {a["name"]: a for a in doc["agents"]}


# ---- client verbs against a real daemon ------------------------------------------------------


async def test_list_json_is_exactly_one_json_document(hive: Daemon) -> None:
    """`list --json` prints one JSON document with the agents and the cage (architecture §12)."""
    doc = json.loads(ok(await hive_cli(hive, "list", "--json")))
    assert doc["agents"] == [] and doc["cage"] == "process"


async def test_dashboard_url_prints_the_login_url_again_and_only_to_the_operator(hive: Daemon) -> None:
    """`hive dashboard-url` prints the login URL `hive serve` printed (issue 6); the token it
    carries is never handed out on an agent's socket (ping there has no dashboard_url)."""
    url = ok(await hive_cli(hive, "dashboard-url")).strip()
    assert url == hive.dashboard_url and "/login?token=" in url
    reply = await ask_socket(await wire_agent(hive, "peek"), {"cmd": "ping"})
    assert reply["ok"] is True and "dashboard_url" not in reply


async def test_send_then_inbox_json_shows_the_message(hive: Daemon) -> None:
    """The operator's send lands in the inbox, newest first, as one JSON document (architecture §12)."""
    assert ok(await hive_cli(hive, "send", "operator", "first note")).startswith("sent #")
    sent = json.loads(ok(await hive_cli(hive, "send", "operator", "second note", "--json")))
    inbox = json.loads(ok(await hive_cli(hive, "inbox", "--json")))
    assert [m["body"] for m in inbox["messages"]] == ["second note", "first note"]
    assert inbox["messages"][0]["id"] == sent["id"] and inbox["messages"][0]["sender"] == "operator"
    assert "second note" in ok(await hive_cli(hive, "inbox"))


async def test_send_body_dash_reads_stdin(hive: Daemon) -> None:
    """`send TO -` takes the body from stdin, verbatim (architecture §12)."""
    body = "line one\nline two ✓\n"
    ok(await hive_cli(hive, "send", "operator", "-", input=body))
    inbox = json.loads(ok(await hive_cli(hive, "inbox", "--json")))
    assert inbox["messages"][0]["body"] == body


async def test_a_body_over_the_cap_is_a_one_line_error(hive: Daemon) -> None:
    """An oversized body is refused with a one-line reason and non-zero exit (architecture §4, §12)."""
    line = failed(await hive_cli(hive, "send", "operator", "-", input="x" * (MAX_BODY_BYTES + 1)))
    assert "byte cap" in line
    assert json.loads(ok(await hive_cli(hive, "inbox", "--json")))["messages"] == []


@pytest.mark.parametrize("name", ["..", "a/b", "-x", "a" * 500, "ünï", "Alice"])
async def test_a_bad_name_is_a_one_line_error(hive: Daemon, name: str) -> None:
    """A hostile name never reaches the daemon's paths: one line on stderr, exit 1 (architecture §2, §12)."""
    before = sorted(p.name for p in hive.paths.agents_root.iterdir())
    for args in (["spawn", "--", name], ["destroy", "--purge", "--", name], ["send", "--", name, "hi"]):
        line = failed(await hive_cli(hive, *args))
        assert "not a valid agent name" in line and len(line) < 200
    assert sorted(p.name for p in hive.paths.agents_root.iterdir()) == before


async def test_spawning_the_manager_is_refused(hive: Daemon) -> None:
    """`manager` is reserved: the core makes it (architecture §2)."""
    assert "reserved" in failed(await hive_cli(hive, "spawn", "manager"))


async def test_client_verbs_without_a_daemon_say_hive_serve_is_not_running(short_dir: Path) -> None:
    """No socket: exit non-zero, "hive serve is not running (no socket at …)" (architecture §12, issue 2)."""
    for args in (["list"], ["list", "--json"], ["inbox", "--json"], ["send", "operator", "hi"], ["spawn", "a"]):
        line = failed(await hive_cli(short_dir, *args))
        assert line == (f"hive: hive serve is not running (no socket at {short_dir / 'host.sock'}); start it, or "
                        "point at its run dir with --run-dir or HYPERHIVE_RUN_DIR")  # fmt: skip


async def _wait_state(daemon: Daemon, name: str, state: str) -> dict[str, Any]:
    """Poll `hive list --json` (bounded) until `name` reaches `state`."""
    async with asyncio.timeout(30):
        while True:
            row = (await agents(daemon)).get(name)
            if row is not None and row["state"] == state:
                return row
            await asyncio.sleep(0.1)


async def test_lifecycle_verbs_drive_a_real_agent_and_exit_zero(hive: Daemon) -> None:
    """spawn, stop, start, restart, destroy and destroy --purge each exit 0 and `list` follows;
    destroy keeps state unless --purge (architecture §12, issue 2)."""
    assert ok(await hive_cli(hive, "spawn", "a")) == "a: running\n"
    row = await _wait_state(hive, "a", "running")
    assert row["pid"] and row["cage"] == "process"
    assert "already exists" in failed(await hive_cli(hive, "spawn", "a"))
    assert ok(await hive_cli(hive, "stop", "a")) == "a: stopped\n"
    assert (await agents(hive))["a"]["pid"] is None
    assert ok(await hive_cli(hive, "start", "a")) == "a: running\n"
    assert "already running" in failed(await hive_cli(hive, "start", "a"))
    first_pid = (await _wait_state(hive, "a", "running"))["pid"]
    assert ok(await hive_cli(hive, "restart", "a")) == "a: running\n"
    assert (await _wait_state(hive, "a", "running"))["pid"] != first_pid
    state = hive.paths.agent("a").state
    assert ok(await hive_cli(hive, "destroy", "a")) == "a: destroyed (state kept)\n"
    assert "a" not in await agents(hive) and state.exists()
    assert "no agent named 'a'" in failed(await hive_cli(hive, "start", "a"))
    ok(await hive_cli(hive, "spawn", "a"))  # re-created on its kept state
    assert ok(await hive_cli(hive, "destroy", "a", "--purge", "--yes")) == "a: destroyed and purged\n"
    assert "a" not in await agents(hive) and not state.exists()


@pytest.mark.parametrize("verb", ["start", "stop", "restart", "destroy"])
async def test_lifecycle_verbs_on_an_unknown_agent_fail_with_one_line(hive: Daemon, verb: str) -> None:
    """A verb on an agent that does not exist exits 1 with the reason (architecture §12)."""
    assert "no agent named 'ghost'" in failed(await hive_cli(hive, verb, "ghost"))


# ---- as subprocesses -------------------------------------------------------------------------


async def run(*argv: str, input: bytes | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate(input)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_the_installed_hive_script_and_python_m_hyperhive_speak_the_contract(hive: Daemon) -> None:
    """`.venv/bin/hive` and `python -m hyperhive` work as a user runs them, finding the daemon
    through --run-dir or HYPERHIVE_RUN_DIR (architecture §12)."""
    run_dir = str(hive.paths.run_dir)
    code, out, err = await run(HIVE, "send", "operator", "-", "--run-dir", run_dir, input=b"piped body")
    assert code == 0 and out.startswith("sent #"), err
    code, out, err = await run(sys.executable, "-m", "hyperhive", "inbox", "--json", env={"HYPERHIVE_RUN_DIR": run_dir})
    assert code == 0, err
    assert json.loads(out)["messages"][0]["body"] == "piped body"
    code, out, err = await run(HIVE, "list", "--json", "--run-dir", run_dir)
    assert code == 0 and json.loads(out)["cage"] == "process"
    code, out, err = await run(HIVE, "spawn", "a/b", "--run-dir", run_dir)
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and "not a valid agent name" in err


async def test_the_subprocess_cli_without_a_daemon_fails_with_one_line(short_dir: Path) -> None:
    """As a real process: exit 1, one line on stderr naming the missing socket (architecture §12)."""
    code, out, err = await run(HIVE, "inbox", "--json", "--run-dir", str(short_dir))
    assert code == 1 and out == ""
    assert err.startswith(f"hive: hive serve is not running (no socket at {short_dir / 'host.sock'}); ")
    assert len(err.splitlines()) == 1 and "--run-dir" in err


def test_hive_serve_prints_the_login_url_and_stops_cleanly_on_sigterm(tmp_path: Path, short_dir: Path) -> None:
    """`hive serve` on tmp dirs answers on host.sock, prints the login URL, and on SIGTERM stops
    its agents, removes its sockets and exits 0 (architecture §9, §12, STYLE §4)."""
    state, run_dir = tmp_path / "state", short_dir / "run"
    proc = subprocess.Popen(
        [HIVE, "serve", "--state-dir", str(state), "--run-dir", str(run_dir), "--port", "0", "--cage", "process"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until ready; the Popen timeout below bounds the test
        assert proc.stderr is not None
        assert line.startswith("login URL: http://127.0.0.1:"), line + (proc.stderr.read() if proc.poll() else "")
        assert "token=" in line or "/login" in line, line
        host = run_dir / "host.sock"
        assert host.exists() and (host.stat().st_mode & 0o777) == 0o600
        listing = subprocess.run([HIVE, "list", "--json", "--run-dir", str(run_dir)], capture_output=True, text=True,
                                 timeout=30)  # fmt: skip
        assert listing.returncode == 0, listing.stderr
        pids = [a["pid"] for a in json.loads(listing.stdout)["agents"] if a["pid"]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
        assert not host.exists(), "host.sock is removed on exit"
        assert not list(run_dir.rglob("*.sock")), "agent sockets are removed on exit"
        for pid in pids:  # the manager's harness (if the daemon started it) is gone too
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(pid), f"agent process {pid} outlived hive serve"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (reaped by nobody yet) counts as gone
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").split(") ")[1].split()[0] != "Z"
    except OSError:
        return False

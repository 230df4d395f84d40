"""Running a hive every day (issue 15): `hive serve` binds where it is told (port 0 = any free
port, a busy port is one line), tells systemd when it is ready (NOTIFY_SOCKET), answers /healthz
without a session, logs quietly (text or JSON), keeps its log for `hive logs`, and refuses an
agent env file others can read. All against the real daemon as a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from hivetest import until
from hyperhive.core.daemon import Daemon
from servekit import HIVE, serving


def _args(tmp_path: Path, run: Path, *extra: str) -> list[str]:
    return ["--state-dir", str(tmp_path / "state"), "--run-dir", str(run), "--port", "0", "--cage", "process", *extra]


async def test_two_hives_on_port_0_come_up_on_different_ports(tmp_path: Path, short_dir: Path) -> None:
    """`--port 0` is a free port, and the printed login URL names it (it used to become 7000)."""
    async with (
        serving(*_args(tmp_path / "a", short_dir / "a")) as one,
        serving(*_args(tmp_path / "b", short_dir / "b")) as two,
    ):
        assert one.port != two.port and 0 not in (one.port, two.port) and 7000 not in (one.port, two.port)
        async with httpx.AsyncClient(timeout=10) as client:
            for served in (one, two):
                response = await client.get(served.base + "/healthz")
                assert response.status_code == 200 and response.json()["status"] in ("ok", "degraded")


async def test_a_busy_port_is_one_line_on_stderr_and_a_nonzero_exit(tmp_path: Path, short_dir: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            HIVE, "serve", "--state-dir", str(tmp_path / "state"), "--run-dir", str(short_dir), "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    lines = err.decode().splitlines()
    assert proc.returncode not in (0, None)
    assert len(lines) == 1, lines
    assert f"port {port}" in lines[0] and "already in use" in lines[0] and "Traceback" not in lines[0]
    assert out == b""


async def test_the_daemon_tells_systemd_it_is_ready_and_then_that_it_stops(tmp_path: Path, short_dir: Path) -> None:
    """Type=notify: READY=1 on $NOTIFY_SOCKET once the dashboard answers; STOPPING=1 on SIGTERM."""
    address = short_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(address))
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        async with serving(*_args(tmp_path, short_dir / "run"), env={"NOTIFY_SOCKET": str(address)}) as served:
            async with asyncio.timeout(30):
                ready = (await loop.sock_recv(listener, 4096)).decode()
            assert "READY=1" in ready.splitlines(), ready
            assert f"STATUS=serving the dashboard on {served.base}/" in ready.splitlines()
            async with httpx.AsyncClient(timeout=10) as client:
                assert (await client.get(served.base + "/healthz")).json() == {"status": "ok", "reasons": []}
            assert await served.stop() == 0
            async with asyncio.timeout(30):
                stopping = (await loop.sock_recv(listener, 4096)).decode()
            assert stopping == "STOPPING=1"


async def test_logs_are_quiet_at_info_json_on_request_and_kept_for_hive_logs(tmp_path: Path, short_dir: Path) -> None:
    """No per-request lines from uvicorn or httpx at INFO; `--log-format json` is one object per
    line; `hive logs` prints the daemon's log and `--follow` streams what comes next."""
    state = tmp_path / "state"
    async with serving(*_args(tmp_path, short_dir / "run", "--log-format", "json")) as served:
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(3):
                await client.get(served.base + "/healthz")
        follower = await asyncio.create_subprocess_exec(
            HIVE, "logs", "--follow", "-n", "1", "--state-dir", str(state), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert follower.stdout is not None
            async with asyncio.timeout(30):
                first = json.loads(await follower.stdout.readline())
            assert first["logger"].startswith("hyperhive")
            assert await served.stop() == 0
            async with asyncio.timeout(30):
                while "hive serve stopped" not in (line := (await follower.stdout.readline()).decode()):
                    assert line, "hive logs --follow ended early"
        finally:
            follower.kill()
            await follower.wait()
    records = [json.loads(line) for line in served.err_lines]  # every stderr line is one JSON object
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert any(r["msg"].startswith("hyperhive is up") for r in records)
    assert not [r for r in records if r["logger"].startswith(("uvicorn", "httpx", "httpcore"))], records
    assert not [line for line in served.err_lines if "/healthz" in line]
    shown = subprocess.run([HIVE, "logs", "--state-dir", str(state)], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "hive serve ready" in shown.stdout
    assert (state / "logs" / "hive.log").stat().st_mode & 0o777 == 0o600


async def test_an_agent_env_file_must_be_private(tmp_path: Path, short_dir: Path) -> None:
    env_file = tmp_path / "agent.env"
    env_file.write_text("ANTHROPIC_API_KEY=sk-do-not-leak\n")
    env_file.chmod(0o644)
    proc = await asyncio.create_subprocess_exec(
        HIVE, "serve", *_args(tmp_path, short_dir), "--agent-env-file", str(env_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await proc.communicate()
    assert proc.returncode not in (0, None)
    assert err.decode().splitlines() == [f"hive: {env_file}: the agent env file must be private (chmod 600 {env_file})"]
    assert "sk-do-not-leak" not in err.decode()


async def test_agent_env_file_values_reach_the_cage_and_no_process_argv(tmp_path: Path, short_dir: Path) -> None:
    """Values from --agent-env-file are in the agent's environment, never on any argv."""
    secret = "sk-argv-canary-" + os.urandom(6).hex()
    env_file = tmp_path / "agent.env"
    env_file.write_text(f"# the upstream key\nHYPERHIVE_TEST_SECRET='{secret}'\n")
    env_file.chmod(0o600)
    run = short_dir / "run"
    flag = ("--agent-env", "DEMO_TOKEN=on-the-command-line-on-purpose")
    async with serving(*_args(tmp_path, run, "--agent-env-file", str(env_file), *flag)) as served:
        warning = await served.wait_for_stderr("--agent-env DEMO_TOKEN puts its value on this command line")
        assert "on-purpose" not in warning and "--agent-env-file" in warning
        spawn = subprocess.run([HIVE, "spawn", "envy", "--run-dir", str(run)], capture_output=True, text=True,
                               timeout=60)  # fmt: skip
        assert spawn.returncode == 0, spawn.stderr
        listing = json.loads(subprocess.run([HIVE, "list", "--json", "--run-dir", str(run)], capture_output=True,
                                            text=True, timeout=30, check=True).stdout)  # fmt: skip
        pid = next(a["pid"] for a in listing["agents"] if a["name"] == "envy")
        assert pid, listing
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"HYPERHIVE_TEST_SECRET={secret}".encode() in environ
        for proc_dir in Path("/proc").iterdir():
            if proc_dir.name.isdigit():
                try:
                    argv = (proc_dir / "cmdline").read_bytes()
                except OSError:
                    continue
                assert secret.encode() not in argv, f"pid {proc_dir.name} has the secret on its argv"
        assert secret not in served.stderr


async def test_healthz_needs_no_session_and_names_nothing(hive: Daemon) -> None:
    """/healthz answers anyone with a status and plain reasons: no agent names, paths or tokens."""
    assert hive.services is not None and hive.dashboard_url
    base = hive.dashboard_url.split("/login?", 1)[0]
    await hive.services.lifecycle.spawn("secret-name", "crashes for the test")
    pid = hive.services.lifecycle.row("secret-name").pid
    assert pid
    os.killpg(pid, signal.SIGKILL)
    await until(hive.services.hub, "the agent to be crashed",
                lambda: hive.services.lifecycle.row("secret-name").state == "crashed" if hive.services else False,
                60, explain=lambda: str(hive.services.lifecycle.row("secret-name") if hive.services else None))  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(base + "/healthz", headers={"host": "198.51.100.7"})
        assert response.status_code == 200
        assert response.json() == {"status": "degraded", "reasons": ["1 agent crashed"]}
        text = response.text
        for secret in ("secret-name", str(hive.paths.state_dir), hive.dashboard_url.split("token=")[1]):
            assert secret not in text
        assert (await client.post(base + "/healthz")).status_code == 405
        assert (await client.get(base + "/api/state")).status_code == 401  # everything else still needs a session


async def test_under_the_journal_lines_carry_priorities_and_no_login_token(tmp_path: Path, short_dir: Path) -> None:
    """As systemd runs it (stderr is the journal, JOURNAL_STREAM names it; readiness on
    NOTIFY_SOCKET): `<N>` priority prefixes instead of timestamps, and no login token, since the
    journal is readable by more than the operator."""
    address = short_dir / "notify"
    err_path = tmp_path / "journal"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener, err_path.open("wb") as err:
        listener.bind(str(address))
        st = os.fstat(err.fileno())
        env = {**os.environ, "NOTIFY_SOCKET": str(address), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        proc = await asyncio.create_subprocess_exec(
            HIVE, "serve", *_args(tmp_path, short_dir / "run"), stdout=err, stderr=err, env=env,
        )  # fmt: skip
        try:
            async with asyncio.timeout(60):
                ready = (await asyncio.get_running_loop().sock_recv(listener, 4096)).decode()
            assert "READY=1" in ready.splitlines()
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(90):
                assert await proc.wait() == 0
    lines = err_path.read_text().splitlines()
    token = (tmp_path / "state" / "dashboard-token").read_text().strip()
    assert token and not [line for line in lines if token in line]
    assert "<6>hyperhive.core.daemon: hive serve ready" in "\n".join(lines)
    logged = [line for line in lines if line.startswith("<")]
    assert logged and all(line[1].isdigit() and line[2] == ">" for line in logged)
    assert any("hive dashboard-url --run-dir" in line for line in lines)

"""The systemd unit (issue 15): `systemd-analyze verify` accepts what `hive service install`
writes and what contrib/ ships; secrets travel as credentials (LoadCredential=), the command
line names only their path; a credential file others can read is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hivetest import require_tool
from hyperhive.servicefile import CONTRIB_SPEC, render_unit
from servekit import HIVE

ROOT = Path(__file__).resolve().parent.parent


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze")
    return subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, timeout=60, cwd=unit.parent)


def install(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HIVE, "service", "install", *args], capture_output=True, text=True, timeout=60,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"})  # fmt: skip


def secret_file(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_contrib_unit_is_the_rendering_and_systemd_accepts_it(tmp_path: Path) -> None:
    shipped = (ROOT / "contrib" / "hyperhive.service").read_text()
    assert shipped == render_unit(CONTRIB_SPEC), (
        "regenerate: python -m hyperhive.servicefile > contrib/hyperhive.service"
    )
    for line in ("Type=notify", "Restart=on-failure", "LoadCredential=api-key:/etc/hyperhive/api-key",
                 "StateDirectory=hyperhive", "RuntimeDirectory=hyperhive"):  # fmt: skip
        assert line in shipped.splitlines()
    unit = tmp_path / "hyperhive.service"
    unit.write_text(shipped.replace(CONTRIB_SPEC.hive, HIVE))  # verify checks the program exists
    result = verify(unit)
    assert result.returncode == 0, result.stderr


def test_service_install_user_writes_a_unit_systemd_accepts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = secret_file(tmp_path, "api-key", "sk-unit-canary\n")
    env = secret_file(tmp_path, "agent.env", "HTTPS_PROXY=http://proxy.invalid:3128\n")
    state, run = tmp_path / "state", tmp_path / "run"
    result = install(home, "--user", "--state-dir", str(state), "--run-dir", str(run), "--port", "0",
                     "--api-key-file", str(key), "--agent-env-file", str(env))  # fmt: skip
    assert result.returncode == 0, result.stderr
    unit = home / ".config" / "systemd" / "user" / "hyperhive.service"
    assert result.stdout.splitlines()[0] == f"wrote {unit}"
    assert "systemctl --user daemon-reload" in result.stdout
    text = unit.read_text()
    assert "sk-unit-canary" not in text and "proxy.invalid" not in text
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith(f"ExecStart={HIVE} serve --state-dir {state} --run-dir {run} ")
    assert "--api-key-file ${CREDENTIALS_DIRECTORY}/api-key" in exec_start
    assert "--agent-env-file ${CREDENTIALS_DIRECTORY}/agent-env" in exec_start
    assert f"LoadCredential=api-key:{key}" in text.splitlines()
    assert "WantedBy=default.target" in text.splitlines()
    result = verify(unit)
    assert result.returncode == 0, result.stderr
    again = install(home, "--user", "--state-dir", str(state), "--run-dir", str(run))
    assert again.returncode == 0 and again.stdout.startswith(f"replaced {unit}")


def test_service_install_refuses_a_readable_credential_and_prints_without_writing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = secret_file(tmp_path, "api-key", "sk-unit-canary\n", mode=0o644)
    result = install(home, "--user", "--api-key-file", str(key))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"hive: the API key file {key} must be private (chmod 600 {key})\n"
    result = install(home, "--user", "--print")
    assert result.returncode == 0 and result.stdout.startswith("# hyperhive: the core daemon")
    assert "Type=notify" in result.stdout and not (home / ".config").exists()

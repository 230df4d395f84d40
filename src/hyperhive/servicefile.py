"""The systemd unit for `hive serve` (`hive service install`, and contrib/hyperhive.service,
which is this rendering with the defaults). The unit waits for READY=1 (core/sdnotify.py),
restarts on failure, owns the state and run dirs, and hands the secrets over as credentials
(LoadCredential=): the command line names only their paths, never their contents."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["CONTRIB_SPEC", "UNIT_NAME", "ServiceSpec", "render_unit", "unit_path"]

UNIT_NAME: Final = "hyperhive.service"
SYSTEM_UNIT_DIR: Final = Path("/etc/systemd/system")
SYSTEM_STATE: Final = Path("/var/lib/hyperhive")
SYSTEM_RUN: Final = Path("/run/hyperhive")
SYSTEM_CREDENTIALS: Final = Path("/etc/hyperhive")


@dataclass(frozen=True)
class ServiceSpec:
    hive: str  # the absolute path of the `hive` program
    state_dir: Path = SYSTEM_STATE
    run_dir: Path = SYSTEM_RUN
    host: str = "127.0.0.1"
    port: int = 7000
    user: bool = False  # a --user unit (the per-user service manager)
    api_key_file: Path | None = None  # loaded as the `api-key` credential
    agent_env_file: Path | None = None  # loaded as the `agent-env` credential
    log_level: str = "info"


def unit_path(user: bool, home: Path | None = None) -> Path:
    if not user:
        return SYSTEM_UNIT_DIR / UNIT_NAME
    return (home or Path.home()) / ".config" / "systemd" / "user" / UNIT_NAME


def _arg(value: str) -> str:
    # systemd's ExecStart= quoting is close to the shell's for plain words; % and $ are special
    return shlex.quote(value).replace("%", "%%").replace("$", "$$")


def render_unit(spec: ServiceSpec) -> str:
    argv = [spec.hive, "serve", "--state-dir", str(spec.state_dir), "--run-dir", str(spec.run_dir),
            "--host", spec.host, "--port", str(spec.port), "--log-level", spec.log_level]  # fmt: skip
    exec_start = " ".join(_arg(a) for a in argv)
    credentials: list[str] = []
    if spec.api_key_file is not None:
        credentials.append(f"LoadCredential=api-key:{spec.api_key_file}")
        exec_start += " --api-key-file ${CREDENTIALS_DIRECTORY}/api-key"
    if spec.agent_env_file is not None:
        credentials.append(f"LoadCredential=agent-env:{spec.agent_env_file}")
        exec_start += " --agent-env-file ${CREDENTIALS_DIRECTORY}/agent-env"
    dirs: list[str] = []
    # systemd creates (and on stop removes) the standard dirs; other paths are the operator's
    if not spec.user and spec.state_dir == SYSTEM_STATE:
        dirs += ["StateDirectory=hyperhive", "StateDirectoryMode=0700"]
    if not spec.user and spec.run_dir == SYSTEM_RUN:
        dirs += ["RuntimeDirectory=hyperhive", "RuntimeDirectoryMode=0711"]
    lines = [
        "# hyperhive: the core daemon (hive serve). Written by `hive service install`; see docs/operations.md in the hyperhive source.",
        "[Unit]",
        "Description=hyperhive: a swarm of Claude Code agents",
        *([] if spec.user else ["Wants=network-online.target", "After=network-online.target"]),
        # a crash loop gives up after 5 starts in 10 minutes (systemctl reset-failed to retry)
        "StartLimitIntervalSec=10min",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        *dirs,
        *credentials,
        "Environment=PYTHONUNBUFFERED=1",
        "Restart=on-failure",
        "RestartSec=5s",
        # exit status 3: startup refused (a config error, the port in use): a restart would not help
        "RestartPreventExitStatus=3",
        "TimeoutStartSec=120s",
        # SIGTERM to the daemon alone: it stops every cage itself (bounded), then the rest is killed
        "KillMode=mixed",
        "TimeoutStopSec=90s",
        # the cages' cgroups live below the daemon's own (cages/limits.py)
        "Delegate=yes",
        "",
        "[Install]",
        f"WantedBy={'default.target' if spec.user else 'multi-user.target'}",
        "",
    ]
    return "\n".join(lines)


# contrib/hyperhive.service is exactly this rendering (a test checks):
#   python -m hyperhive.servicefile > contrib/hyperhive.service
CONTRIB_SPEC: Final = ServiceSpec(hive="/usr/local/bin/hive", api_key_file=SYSTEM_CREDENTIALS / "api-key")

if __name__ == "__main__":
    print(render_unit(CONTRIB_SPEC), end="")

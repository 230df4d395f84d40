"""State and run directories and every per-agent path, built from validated names only.

Nothing here creates files. Every per-agent path goes through `HivePaths.agent()`, which
validates the name, so a hostile name (`..`, `a/b`) never reaches the filesystem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hyperhive.names import validate_agent_name

__all__ = ["AgentPaths", "HivePaths", "default_run_dir", "default_state_dir"]


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/hyperhive")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hyperhive"


def default_run_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/hyperhive")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "hyperhive"
    return Path("/tmp") / f"hyperhive-{os.geteuid()}"


@dataclass(frozen=True)
class AgentPaths:
    """Where one agent's things live on the host (architecture §2)."""

    name: str
    root: Path  # state/agents/<name>
    state: Path  # → cage /state
    home: Path  # → cage $HOME
    config: Path  # the proposed config repo (manager-writable): state/proposed/<name>/config
    applied: Path  # the applied config repo (core only)
    run: Path  # → cage /run/hive
    socket: Path  # run/agents/<name>/mcp.sock
    web_socket: Path  # run/agents/<name>/web.sock

    @property
    def events_db(self) -> Path:
        return self.state / "hyperhive-events.sqlite"


@dataclass(frozen=True)
class HivePaths:
    state_dir: Path
    run_dir: Path

    @property
    def broker_db(self) -> Path:
        return self.state_dir / "broker.sqlite"

    @property
    def hive_toml(self) -> Path:
        return self.state_dir / "hive.toml"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "dashboard-token"

    @property
    def session_secret_file(self) -> Path:
        return self.state_dir / "session-secret"

    @property
    def host_socket(self) -> Path:
        return self.run_dir / "host.sock"

    @property
    def agents_root(self) -> Path:
        return self.state_dir / "agents"

    @property
    def proposed_root(self) -> Path:
        """Every proposed config repo lives below here, so one bind shows the manager all of them
        (and none of the agents' state), including repos created after the manager started."""
        return self.state_dir / "proposed"

    @property
    def applied_root(self) -> Path:
        return self.state_dir / "applied"

    @property
    def agents_run_root(self) -> Path:
        return self.run_dir / "agents"

    def agent(self, name: str) -> AgentPaths:
        name = validate_agent_name(name)
        root = self.agents_root / name
        run = self.agents_run_root / name
        return AgentPaths(
            name=name,
            root=root,
            state=root / "state",
            home=root / "home",
            config=self.proposed_root / name / "config",
            applied=self.applied_root / name,
            run=run,
            socket=run / "mcp.sock",
            web_socket=run / "web.sock",
        )

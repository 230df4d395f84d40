"""HiveConfig: the daemon's settings, built once (flags > environment > hive.toml > defaults)
and passed down. Nothing below cli.py reads os.environ for these."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hyperhive.errors import StartupError
from hyperhive.paths import HivePaths, default_run_dir, default_state_dir

__all__ = ["ENV_VARS", "HiveConfig", "load_config", "parse_env_pairs"]

# Every environment variable hyperhive reads, with what it does (docs are checked against this).
ENV_VARS: dict[str, str] = {
    "HYPERHIVE_STATE_DIR": "durable state directory (same as --state-dir)",
    "HYPERHIVE_RUN_DIR": "socket directory (same as --run-dir)",
    "HYPERHIVE_HOST": "dashboard bind address (same as --host)",
    "HYPERHIVE_PORT": "dashboard port (same as --port)",
    "HYPERHIVE_CAGE": "cage backend: auto, bwrap, nspawn or process (same as --cage)",
    "HYPERHIVE_EVENTS_DB": "in a cage: the events database path (default /state/hyperhive-events.sqlite)",
    "HYPERHIVE_MODEL_FILE": "in a cage: the model override file (default /state/hyperhive-model)",
    "HYPERHIVE_LOGIN_CMD": "in a cage: the login command the login panel runs (default: claude's own)",
    "HYPERHIVE_AGENT_STATE": "in a cage: where /state is (set by the cage backend)",
    "HYPERHIVE_AGENT_RUN": "in a cage: where /run/hive is (set by the cage backend)",
}

MANAGER_CAGE_DIRS = ("/agents", "/applied")


def parse_env_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise StartupError(f"--agent-env wants KEY=VALUE, got {pair[:60]!r}")
        out[key] = value
    return out


@dataclass(frozen=True)
class HiveConfig:
    state_dir: Path
    run_dir: Path
    host: str = "127.0.0.1"
    port: int = 7000
    cage: str = "auto"
    agent_env: dict[str, str] = field(default_factory=dict)
    uid_base: int = 200_000  # per-agent host uid = uid_base + agent id (isolated cages, as root)
    stop_grace: float = 10.0
    manager: bool = True  # ensure the manager agent exists and runs
    offline_model: bool = False  # demo: agents talk to the labelled stand-in model

    @property
    def paths(self) -> HivePaths:
        return HivePaths(self.state_dir, self.run_dir)

    def with_overrides(self, **changes: Any) -> HiveConfig:
        return replace(self, **changes)


def _read_hive_toml(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "hive.toml"
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StartupError(f"{path}: {exc}") from exc


def load_config(
    *,
    state_dir: Path | None = None,
    run_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    cage: str | None = None,
    agent_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HiveConfig:
    env = os.environ if environ is None else environ
    sd = Path(state_dir or env.get("HYPERHIVE_STATE_DIR") or default_state_dir()).expanduser().absolute()
    rd = Path(run_dir or env.get("HYPERHIVE_RUN_DIR") or default_run_dir()).expanduser().absolute()
    toml = _read_hive_toml(sd)
    merged_env = {str(k): str(v) for k, v in (toml.get("agent_env") or {}).items()}
    merged_env.update(agent_env or {})
    try:
        port_value = int(port or env.get("HYPERHIVE_PORT") or toml.get("port") or 7000)
    except ValueError as exc:
        raise StartupError(f"port: {exc}") from exc
    return HiveConfig(
        state_dir=sd,
        run_dir=rd,
        host=host or env.get("HYPERHIVE_HOST") or toml.get("host") or "127.0.0.1",
        port=port_value,
        cage=cage or env.get("HYPERHIVE_CAGE") or toml.get("cage") or "auto",
        agent_env=merged_env,
        uid_base=int(toml.get("uid_base", 200_000)),
    )

"""What an agent's cage gets (its `CageSpec`): the harness command, its dirs, the environment,
the manager's binds of the config repos, and the limits and network its agent.toml asks for.
Policy only; starting the cage is the lifecycle's, through `Cage`."""

from __future__ import annotations

import sys
from collections.abc import Mapping

from hyperhive.agentconfig import AgentConfig
from hyperhive.cages.base import Bind, CageSpec, Limits
from hyperhive.names import MANAGER
from hyperhive.paths import HivePaths

__all__ = ["agent_spec"]


def agent_spec(paths: HivePaths, name: str, uid: int | None, cfg: AgentConfig, env: Mapping[str, str]) -> CageSpec:
    """The cage of agent `name` running as `uid` on config `cfg`, with the harness env `env`."""
    ap = paths.agent(name)
    binds: list[Bind] = []
    if name == MANAGER:
        binds.append(Bind(paths.proposed_root, "/agents", writable=True, env="HYPERHIVE_AGENTS_DIR"))
        binds.append(Bind(paths.applied_root, "/applied", writable=False, env="HYPERHIVE_APPLIED_DIR"))
    limits = Limits(memory_bytes=cfg.limits.memory, pids=cfg.limits.pids) if cfg.limits else Limits()
    return CageSpec(
        name=name,
        argv=[sys.executable, "-m", "hyperhive.harness"],  # not the CLI: see harness/__main__.py
        state_dir=ap.state,
        home_dir=ap.home,
        run_dir=ap.run,
        env=dict(env),
        config_env=dict(cfg.env),  # agent.toml [env]: reaches only the claude CLI in the cage
        binds=binds,
        uid=uid,
        gid=uid,
        network=cfg.network,
        limits=limits,
    )

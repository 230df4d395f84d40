"""Who the hive's agents are: each live agent's runtime record, the applied config it was last
started on (held in memory, so nothing on the send path or a page render runs git), and the
agents destroyed without purge whose state is kept. The broker asks it for names and
allow-lists; the lifecycle changes it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from hyperhive.agentconfig import AgentConfig
from hyperhive.cages.base import CageHandle, ExitInfo
from hyperhive.core.configrepo import ConfigRepos
from hyperhive.core.restarts import Downtime
from hyperhive.errors import AgentNotFound, HiveError
from hyperhive.names import MANAGER, validate_agent_name

__all__ = ["AgentRuntime", "Registry"]

log = logging.getLogger(__name__)


@dataclass
class AgentRuntime:
    name: str
    id: int
    uid: int | None
    state: str = "stopped"  # running | stopped | crashed | starting | stopping
    state_since: float = field(default_factory=time.time)
    handle: CageHandle | None = None
    watcher: asyncio.Task[None] | None = None
    expected_exit: bool = False
    harness_state: str | None = None
    harness_since: float | None = None
    model: str | None = None
    last_turn_ms: int | None = None
    last_exit: ExitInfo | None = None
    crash_restarts: int = 0  # restarts in a row by the restart policy (core/restarts.py)
    started_at: float = 0.0
    down: Downtime | None = None  # the last unexpected exit: why, when, what the policy does
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set when the harness first reports in
    blocked: str | None = None  # set by the gateway: rate_limited | over_budget (shown as the state)
    blocked_until: float | None = None
    warm: bool = False  # the harness keeps its claude CLI between turns (core/pool.py)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_since = time.time()


class Registry:
    def __init__(self, repos: ConfigRepos) -> None:
        self.repos = repos
        self.agents: dict[str, AgentRuntime] = {}
        self.configs: dict[str, AgentConfig] = {}
        self.kept: dict[str, float] = {}  # destroyed without purge: name -> destroyed_at
        self.kept_sizes: dict[str, int] = {}  # measured once (off the loop): a kept tree no longer changes
        self.remote_names: Callable[[], Iterable[str]] = lambda: ()  # other nodes' agents (core/nodes.py)

    def names(self) -> list[str]:
        return sorted(self.agents)

    def hive_names(self) -> list[str]:
        """Every node's agents: a send reaches an agent on any node."""
        return self.names() + list(self.remote_names())

    def get(self, name: str) -> AgentRuntime:
        name = validate_agent_name(name)
        runtime = self.agents.get(name)
        if runtime is None:
            raise AgentNotFound(f"no agent named {name!r}")
        return runtime

    def agent_config(self, name: str) -> AgentConfig:
        """The applied config the agent was last started on, from memory: nothing on the send path
        or a page render touches git. `refresh_config` reloads it (every start, so every deploy)."""
        cfg = self.configs.get(name)
        if cfg is None:
            raise HiveError(f"{name}'s applied config is not loaded (it could not be read at its last start)")
        return cfg

    def config_or_none(self, name: str) -> AgentConfig | None:
        return self.configs.get(name)

    async def refresh_config(self, name: str) -> AgentConfig:
        """Read the agent's applied config from git (off the loop) into memory."""
        self.configs.pop(name, None)
        cfg = await self.repos.applied_config(name)
        self.configs[name] = cfg
        return cfg

    def allow_list(self, name: str) -> list[str]:
        cfg = self.configs.get(name)
        if cfg is None:  # fail closed: a config that cannot be read reaches the manager only
            log.warning("%s: config unreadable; its allow-list is the manager only", name)
            return [MANAGER]
        return list(cfg.allowed_recipients)

    def add(self, runtime: AgentRuntime) -> None:
        self.kept.pop(runtime.name, None)
        self.agents[runtime.name] = runtime

    def remove(self, name: str) -> None:
        self.agents.pop(name, None)
        self.configs.pop(name, None)

"""The core's services wired together: what the verbs and the dashboard call. Holds no policy
of its own beyond composing the parts; the daemon builds one at startup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hyperhive.agentconfig import AgentConfig
from hyperhive.config import HiveConfig
from hyperhive.core.approvals import Approvals
from hyperhive.core.broker import Broker
from hyperhive.core.configrepo import ConfigRepos
from hyperhive.core.hub import Hub
from hyperhive.core.lifecycle import Lifecycle
from hyperhive.core.questions import Questions
from hyperhive.core.shell import Shells
from hyperhive.errors import AgentNotFound, HiveError
from hyperhive.store.agent_events import EventsUnreadable, read_events
from hyperhive.store.base import Store

if TYPE_CHECKING:
    from hyperhive.core.gateway_wiring import GatewayService
    from hyperhive.core.telemetry import Telemetry

__all__ = ["Services"]

INSTRUCTIONS_CAP = 64 * 1024
EVENTS_READ_BUDGET = 2.0  # seconds: reading an agent's events db never holds the core longer


@dataclass
class Services:
    config: HiveConfig
    store: Store
    hub: Hub
    broker: Broker
    lifecycle: Lifecycle
    repos: ConfigRepos
    approvals: Approvals
    questions: Questions
    cage_reason: str
    dashboard_url: str | None = None
    gateway: GatewayService | None = None  # the model API gateway, when the core is the agents' door
    telemetry: Telemetry | None = None  # the stats series (core/telemetry.py)
    shells: Shells | None = None  # the operator's shells into cages (core.shell), set by the daemon

    async def read_instructions(self, name: str, cfg: AgentConfig) -> str:
        if not cfg.instructions:
            return ""
        try:
            text = await self.repos.read_file_at(name, "current", cfg.instructions)
        except HiveError:
            return ""
        return text[:INSTRUCTIONS_CAP]

    def read_agent_events(self, name: str, *, after: int = 0, limit: int = 2000) -> list[dict[str, Any]]:
        """Read an agent's event trail from its events db, read-only (the harness writes it)."""
        path = self.config.paths.agent(name).events_db
        if path.is_symlink() or not path.is_file():
            if name not in self.lifecycle.agents:
                raise AgentNotFound(f"no agent named {name!r}")
            return []
        # The agent writes this file: only a real table is read, within a budget (store/agent_events.py).
        try:
            rows = read_events(path, after, limit, EVENTS_READ_BUDGET)
        except EventsUnreadable as exc:
            raise HiveError(f"could not read {name}'s events: {exc}") from exc
        import json

        try:
            return [{"id": r[0], "ts": r[1], "kind": r[2], "payload": json.loads(r[3])} for r in rows]
        except (TypeError, ValueError) as exc:
            raise HiveError(f"could not read {name}'s events: a malformed row ({exc})") from exc

    async def open_threads(self, name: str, *, whole_hive: bool) -> dict[str, Any]:
        return {
            "asked": await self.questions.open_asked_by(None if whole_hive else name),
            "owed": await self.questions.open_owed_by(name),
            "approvals": await self.approvals.pending() if whole_hive else [],
        }

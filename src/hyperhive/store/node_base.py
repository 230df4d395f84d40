"""The store operations several nodes (`hive serve --node NAME` on one PostgreSQL) share:
node heartbeats, which node runs which agent, the core-to-core requests, and the relayed live
events. `Store` (store/base.py) includes this protocol; `store/nodes.py` implements it for both
backends (on SQLite there is only ever one node)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol, TypedDict

__all__ = ["NodeEvent", "NodeRequest", "NodeRow", "NodeStore"]


class NodeRow(TypedDict):
    name: str
    dashboard_url: str | None
    started_at: float
    heartbeat_at: float
    rows: list[dict[str, Any]]  # its agents' rows (protocol.AgentRow) at its last heartbeat
    approving: list[int]  # approvals it is deploying right now (a starting node leaves them be)


class NodeRequest(TypedDict):
    id: int
    node: str
    request: dict[str, Any]  # a host verb request as a client sends it
    caller: str  # who asked: "operator" or the manager
    created_at: float
    done_at: float | None
    reply: dict[str, Any] | None  # the reply line the node produced ({"ok": …})


class NodeEvent(TypedDict):
    id: int
    node: str
    ts: float
    kind: str
    payload: dict[str, Any]


class NodeStore(Protocol):
    async def node_heartbeat(self, name: str, dashboard_url: str | None, rows: list[dict[str, Any]],
                             now: float, approving: Collection[int] = ()) -> None:  # fmt: skip
        """Insert or refresh this node's row (heartbeat_at = now)."""
        ...

    async def nodes(self) -> list[NodeRow]: ...

    async def agent_nodes(self, *, include_destroyed: bool = False) -> dict[str, str | None]:
        """Every live (not destroyed) agent's node, and with `include_destroyed` the kept ones'
        too; None: recorded before nodes existed."""
        ...

    async def set_agent_node(self, name: str, node: str, *, only_from: str | None = None,
                             claim_unset: bool = False) -> bool:  # fmt: skip
        """Record that `node` runs agent `name`. With `only_from`, only if it ran there; with
        `claim_unset`, also if it had no node. True if the row changed: of two racing claims
        one wins."""
        ...

    async def adopt_agents(self, node: str, *, all_agents: bool) -> int:
        """Give `node` every agent with no node (`all_agents`: every agent, one-node stores)."""
        ...

    async def node_request(self, node: str, request: dict[str, Any], caller: str, now: float) -> int: ...

    async def node_requests_open(self, node: str) -> list[NodeRequest]: ...

    async def node_request_done(self, rid: int, reply: dict[str, Any], now: float) -> bool:
        """Record the reply once; False if it was already answered."""
        ...

    async def node_request_get(self, rid: int) -> NodeRequest | None: ...

    async def node_events_insert(self, node: str, events: list[tuple[float, str, dict[str, Any]]]) -> int:
        """Append this node's live events (ts, kind, payload); returns the last id."""
        ...

    async def node_events_after(self, after: int, exclude_node: str, limit: int = 1000) -> list[NodeEvent]: ...

    async def node_events_last_id(self) -> int: ...

    async def node_housekeeping(self, events_before: float, requests_before: float) -> int:
        """Delete relayed events and answered requests older than the cutoffs."""
        ...

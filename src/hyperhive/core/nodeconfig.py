"""The manager's config proposals for an agent of another node (docs/nodes.md "Config deploys").

Proposed repos live with the manager, applied repos with the agent:

- the manager's node seeds a proposed repo (and its own applied copy, the base of diffs) for every
  agent of another node from that agent's applied `agent.toml` and instructions, fetched through a
  `config_show` request; the manager edits and proposes as for any agent (`proposal/<id>`);
- an `approve` of such a proposal runs on the agent's node. Before it deploys, that node fetches the
  proposed tree (agent.toml and the instructions file it names, at `proposal/<id>`) from the
  manager's node through the store, commits it on its own applied main as `proposal/<id>`, and then
  deploys exactly as on one host (`approved/<id>`, `deployed/<id>` or `failed/<id>`).

Between nodes the tree travels in request rows; the commits differ in sha (each node commits it on
its own history), the tags are the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hyperhive.agentconfig import AGENT_TOML, parse_agent_toml
from hyperhive.core.sockets import Identity
from hyperhive.errors import HiveError, NotFound
from hyperhive.names import MANAGER, OPERATOR

if TYPE_CHECKING:
    from hyperhive.core.nodes import Nodes

__all__ = ["CONFIG_FILES", "NodeConfigs"]

log = logging.getLogger(__name__)
CONFIG_FILES = "_config_files"  # an internal node request: the proposed tree of one approval
OPERATOR_ID = Identity("operator", OPERATOR)


class NodeConfigs:
    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.lifecycle = nodes.lifecycle
        self.repos = nodes.lifecycle.repos
        self._failed: set[str] = set()  # remote agents whose proposed repo could not be seeded (logged once)

    async def seed_proposed(self) -> None:
        """On the manager's node: a proposed repo for each agent of another node that has none."""
        try:
            await self._seed_proposed()
        except Exception:
            log.exception("seeding proposed repos for other nodes' agents failed; retrying at the next heartbeat")

    async def _seed_proposed(self) -> None:
        if MANAGER not in self.lifecycle.agents:
            return
        seeded = False
        for name, node in sorted(self.nodes.remote.items()):
            if name == MANAGER or node is None or not self.nodes.alive(node) or await self.repos.has_proposed(name):
                continue
            try:
                shown = await self.nodes.forward(node, {"cmd": "config_show", "name": name}, OPERATOR_ID)
                if await self.repos.has_applied(name):  # an older copy: the manager's repo follows it
                    await self.repos.init_proposed(name, None)
                else:
                    await self.repos.seed(name, None, toml=shown["agent_toml"])
                seeded = True
                log.info("proposed config repo for %s (node %s) seeded for the manager", name, node)
            except HiveError as exc:
                if name not in self._failed:
                    self._failed.add(name)
                    log.warning("cannot seed a proposed repo for %s of node %s: %s", name, node, exc.message)
        if seeded:  # the manager's uid owns the proposed repos it edits
            await self.lifecycle._grant_manager_repos()  # off the loop (agentfs in a thread)

    async def files(self, agent: str, aid: int) -> dict[str, str]:
        """On the node that holds `proposal/<aid>`: the proposed agent.toml, and the instructions
        file it names if the proposal changed it (this node's copy was seeded with the template's)."""
        ref = f"proposal/{int(aid)}"
        if ref not in await self.repos.tags(agent):
            raise NotFound(f"no {ref} for {agent!r} on node {self.nodes.name}")
        toml = await self.repos.read_file_at(agent, ref, AGENT_TOML)
        out = {AGENT_TOML: toml}
        path = parse_agent_toml(toml).instructions
        base = await self.repos.applied_sha(agent)
        if path is not None:
            text = await self.repos.read_file_at(agent, ref, path)
            try:
                before = await self.repos.read_file_at(agent, base, path) if base else None
            except HiveError:
                before = None
            if text != before:
                out[path] = text
        return out

    async def route_approve(self, who: Identity, req: Any) -> dict[str, Any] | None:
        """`approve` of a proposal for an agent of another node runs there; on the agent's own node,
        a proposal made on the manager's node is brought over first. None: approve here."""
        a = await self.nodes.store.get_approval(req.id)
        if a is None or a["kind"] != "apply_commit" or a["status"] != "pending":
            return None  # approvals.approve says why not
        owner = (await self.nodes.store.agent_nodes()).get(a["agent"])
        if owner is not None and owner != self.nodes.name:
            return await self.nodes.forward(owner, req.model_dump(exclude_none=True), who)
        ref = f"proposal/{a['id']}"
        if a["agent"] not in self.lifecycle.agents or ref in await self.repos.tags(a["agent"]):
            return None
        proposer = self.nodes.remote.get(MANAGER)
        if proposer is None:
            return None
        files = await self.nodes.forward(proposer, {"cmd": CONFIG_FILES, "agent": a["agent"], "id": a["id"]}, who)
        base = await self.repos.applied_sha(a["agent"])
        if base is None:
            raise NotFound(f"{a['agent']!r} has no applied config on node {self.nodes.name}")
        await self.repos.commit_operator_edit(a["agent"], files["files"], base, a["id"])
        log.info("approval #%d: the proposed tree of %s came from node %s", a["id"], a["agent"], proposer)
        return None

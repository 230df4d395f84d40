"""The operator's direct view and edit of an agent's config (`hive config show|edit`).

An edit is validated here first (one clear sentence for a bad agent.toml), then goes through
`Approvals.apply_operator_edit`: the same commit validation, deploy, health check and rollback
as an approved commit of the manager's, tagged `operator/<id>` in the applied repo.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from hyperhive.agentconfig import AGENT_TOML, parse_agent_toml
from hyperhive.errors import AgentNotFound, Conflict
from hyperhive.names import OPERATOR

if TYPE_CHECKING:
    from hyperhive.core.services import Services

__all__ = ["apply", "show"]


async def show(s: Services, name: str) -> dict[str, Any]:
    """agent.toml as applied main has it, with main's sha (the base of an edit)."""
    s.lifecycle.get(name)
    sha = await asyncio.to_thread(s.repos.applied_sha, name)
    if sha is None:
        raise AgentNotFound(f"{name!r} has no applied config yet")
    text = await asyncio.to_thread(s.repos.read_file_at, name, sha, AGENT_TOML)
    return {"name": name, "sha": sha, "agent_toml": text, "tags": await asyncio.to_thread(s.repos.tags, name)}


async def apply(s: Services, name: str, agent_toml: str, base_sha: str) -> dict[str, Any]:
    """Validate, commit, deploy; returns the resolved approval (status deployed or failed)."""
    s.lifecycle.get(name)
    parse_agent_toml(agent_toml)
    current = await show(s, name)
    if current["sha"] == base_sha and current["agent_toml"] == agent_toml:
        raise Conflict(f"{name}'s agent.toml is unchanged; nothing to apply")
    return await s.approvals.apply_operator_edit(name, {AGENT_TOML: agent_toml}, base_sha, requested_by=OPERATOR)

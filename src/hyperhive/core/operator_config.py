"""The operator's direct view and edit of an agent's config (`hive config show|edit`).

An edit is validated here first (one clear sentence for a bad agent.toml), then goes through
`Approvals.apply_operator_edit`: the same commit validation, deploy, health check and rollback
as an approved commit of the manager's, tagged `operator/<id>` in the applied repo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hyperhive.agentconfig import AGENT_TOML, ConfigInvalid, parse_agent_toml
from hyperhive.errors import AgentNotFound, Conflict, HiveError
from hyperhive.names import OPERATOR

if TYPE_CHECKING:
    from hyperhive.core.services import Services

__all__ = ["apply", "show"]


async def show(s: Services, name: str) -> dict[str, Any]:
    """agent.toml and the instructions file it names, as applied main has them, with main's sha
    (the base of an edit)."""
    s.lifecycle.get(name)
    sha = await s.repos.applied_sha(name)
    if sha is None:
        raise AgentNotFound(f"{name!r} has no applied config yet")
    text = await s.repos.read_file_at(name, sha, AGENT_TOML)
    path = text_of = None
    try:
        path = parse_agent_toml(text).instructions
        if path is not None:
            text_of = await s.repos.read_file_at(name, sha, path)
    except HiveError:
        path = text_of = None  # unreadable instructions: agent.toml alone can still be edited
    tags = await s.repos.tags(name)
    return {"name": name, "sha": sha, "agent_toml": text, "instructions_path": path, "instructions": text_of,
            "tags": tags}  # fmt: skip


async def apply(
    s: Services, name: str, agent_toml: str, base_sha: str, instructions: str | None = None
) -> dict[str, Any]:
    """Validate, commit, deploy; returns the resolved approval (status deployed or failed)."""
    s.lifecycle.get(name)
    cfg = parse_agent_toml(agent_toml)
    files = {AGENT_TOML: agent_toml}
    if instructions is not None:
        if cfg.instructions is None:
            raise ConfigInvalid("agent.toml: `instructions`: names no file, so the instructions text has nowhere to go")
        files[cfg.instructions] = instructions
    current = await show(s, name)
    unchanged = current["agent_toml"] == agent_toml and (
        instructions is None
        or (current["instructions_path"] == cfg.instructions and current["instructions"] == instructions)
    )
    if current["sha"] == base_sha and unchanged:
        raise Conflict(f"{name}'s config is unchanged; nothing to apply")
    return await s.approvals.apply_operator_edit(name, files, base_sha, requested_by=OPERATOR)

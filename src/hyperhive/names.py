"""The agent-name rule: the gate every name passes before it reaches a path or a socket."""

from __future__ import annotations

import re

from hyperhive.errors import InvalidName

__all__ = [
    "AGENT_NAME_RE",
    "BROADCAST",
    "MANAGER",
    "OPERATOR",
    "RESERVED",
    "SYSTEM",
    "is_agent_name",
    "validate_agent_name",
    "validate_recipient",
]

AGENT_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,30}")
MANAGER = "manager"
OPERATOR = "operator"
SYSTEM = "system"
BROADCAST = "*"
RESERVED = frozenset({MANAGER, OPERATOR, SYSTEM, BROADCAST})


def _shown(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 60 else text[:57] + "..."


def is_agent_name(name: object) -> bool:
    """True for a syntactically valid agent name (the manager's included)."""
    return isinstance(name, str) and AGENT_NAME_RE.fullmatch(name) is not None


def validate_agent_name(name: object, *, allow_manager: bool = True) -> str:
    """Return `name` if it may name an agent's directory and socket, else raise InvalidName.

    `manager` names the manager agent; `operator`, `system` and `*` never name an agent.
    Spawning a new agent passes allow_manager=False: the manager exists once, made by the core.
    """
    if not is_agent_name(name):
        raise InvalidName(f"{_shown(name)} is not a valid agent name (want ^[a-z][a-z0-9-]{{0,30}}$)")
    assert isinstance(name, str)
    if name in RESERVED and not (allow_manager and name == MANAGER):
        raise InvalidName(f"{name!r} is a reserved name")
    return name


def validate_recipient(name: object) -> str:
    """A message recipient: an agent name, `manager`, `operator` or `*`."""
    if name in (OPERATOR, BROADCAST, MANAGER):
        assert isinstance(name, str)
        return name
    return validate_agent_name(name)

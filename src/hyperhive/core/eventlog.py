"""One INFO line per thing that happened in the hive (an agent started, stopped or was created,
an approval was requested or resolved, a question was asked or answered), read from the hub,
so `journalctl -u hyperhive` / `hive logs` tell the day's story without debug noise. Message
and question texts are not logged (they may hold anything)."""

from __future__ import annotations

import logging
from typing import Any

from hyperhive.core.hub import Hub, HubEvent
from hyperhive.names import OPERATOR

__all__ = ["describe", "log_events"]

log = logging.getLogger("hyperhive.events")

# not the passing starting/stopping; a crash has its own warning with the exit status (lifecycle)
LOGGED_STATES = frozenset({"running", "stopped"})


def describe(event: HubEvent, last_state: dict[str, str]) -> str | None:
    p: dict[str, Any] = event.payload
    kind = event.kind
    if kind == "agent_changed":
        name, state = p.get("name"), p.get("state")
        if not isinstance(name, str) or not isinstance(state, str) or last_state.get(name) == state:
            return None
        last_state[name] = state
        return f"agent {name}: {state}" if state in LOGGED_STATES else None
    if kind == "agent_added":
        return f"agent {p.get('name')}: created"
    if kind == "agent_removed":
        last_state.pop(str(p.get("name")), None)
        return f"agent {p.get('name')}: destroyed ({'purged' if p.get('purged') else 'state kept'})"
    if kind == "approval_added":
        return f"approval #{p.get('id')}: {p.get('kind')} {p.get('agent')} requested by {p.get('requested_by')}"
    if kind == "approval_resolved":
        return f"approval #{p.get('id')} ({p.get('kind')} {p.get('agent')}): {p.get('status')}"
    if kind == "question_added":
        target = p.get("target")
        return (
            f"question #{p.get('id')}: {p.get('asker')} asks {'the operator' if target in (None, OPERATOR) else target}"
        )
    if kind == "question_resolved":
        return f"question #{p.get('id')}: resolved by {p.get('answerer')}"
    return None


async def log_events(hub: Hub) -> None:
    """Until cancelled; a subscriber that fell behind resubscribes (a few lines may be missed)."""
    last_state: dict[str, str] = {}
    while True:
        sub = hub.subscribe()
        try:
            async for event in sub:
                if "_node" in event.payload:  # another node's event (core/nodes.py): that node logs it
                    continue
                line = describe(event, last_state)
                if line is not None:
                    log.info("%s", line)
        finally:
            sub.close()

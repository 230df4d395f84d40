"""The core's live events, typed: `HubKind` names every kind the Hub carries and `PAYLOADS[kind]`
is the model of its payload (the `data` of an SSE event and of a `subscribe` line). No I/O.

Payloads allow extra fields: a node relaying another node's event adds `_node`, and a row may
grow a field before the browser reads it. The fields named here are what clients rely on.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationError

from hyperhive.replies import AgentRow, Approval, KeptState, Question

__all__ = ["HUB_KINDS", "PAYLOADS", "HubKind", "check_event"]

log = logging.getLogger(__name__)

HubKind = Literal[
    "agent_changed", "agent_added", "agent_removed", "container_crash",
    "message_sent", "message_delivered", "message_acked", "message_requeued", "dead_letter", "dead_letter_resolved",
    "approval_added", "approval_resolving", "approval_resolved",
    "question_added", "question_resolved",
    "usage", "budget", "stats_written", "shell_started", "shell_ended",
]  # fmt: skip
HUB_KINDS: frozenset[str] = frozenset(get_args(HubKind))


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class AgentChanged(AgentRow):
    """An agent's row after any change (the same row `list` returns)."""

    model_config = ConfigDict(extra="allow")


class AgentAdded(_Payload):
    name: str


class AgentRemoved(_Payload):
    name: str
    purged: bool
    kept: KeptState | None = None  # what stays on disk when not purged


class ContainerCrash(_Payload):
    agent: str
    exit_code: int | None
    signal: int | None
    last_lines: list[str]


class MessageSent(_Payload):
    id: int
    sender: str
    recipient: str
    preview: str
    body: str | None  # whole only for the operator's inbox
    in_reply_to: int | None
    broadcast: bool
    ts: float
    unread: int


class MessageDelivered(_Payload):
    id: int
    recipient: str
    sender: str
    unread: int
    redelivered: bool = False  # delivered before, requeued since (its turn did not finish)


class MessageAcked(_Payload):
    """The agent's turn finished: its delivered messages are acknowledged."""

    agent: str
    count: int
    unread: int


class MessageRequeued(_Payload):
    """Delivered but unacknowledged messages went back to the agent's queue (their turn failed)."""

    agent: str
    count: int
    unread: int


class DeadLetter(_Payload):
    id: int
    sender: str
    recipient: str
    attempts: int
    preview: str
    ts: float | None
    unread: int


class DeadLetterResolved(_Payload):
    id: int
    action: Literal["retried", "discarded"]
    recipient: str
    unread: int | None = None


class ApprovalResolving(_Payload):
    id: int


class Usage(_Payload):
    agent: str
    model: str | None
    cost_usd: float | None
    tokens: int


class Budget(_Payload):
    agent: str
    paused: bool


class StatsWritten(_Payload):
    agent: str | None


class ShellStarted(_Payload):
    agent: str
    session: int
    kind: str
    via: str
    by: str
    command: str
    isolated: bool
    started_at: float


class ShellEnded(ShellStarted):
    ended_at: float
    duration_ms: int


PAYLOADS: dict[str, type[BaseModel]] = {
    "agent_changed": AgentChanged,
    "agent_added": AgentAdded,
    "agent_removed": AgentRemoved,
    "container_crash": ContainerCrash,
    "message_sent": MessageSent,
    "message_delivered": MessageDelivered,
    "message_acked": MessageAcked,
    "message_requeued": MessageRequeued,
    "dead_letter": DeadLetter,
    "dead_letter_resolved": DeadLetterResolved,
    "approval_added": Approval,
    "approval_resolving": ApprovalResolving,
    "approval_resolved": Approval,
    "question_added": Question,
    "question_resolved": Question,
    "usage": Usage,
    "budget": Budget,
    "stats_written": StatsWritten,
    "shell_started": ShellStarted,
    "shell_ended": ShellEnded,
}
assert set(PAYLOADS) == HUB_KINDS, sorted(set(PAYLOADS) ^ HUB_KINDS)


def check_event(kind: str, payload: dict[str, Any]) -> bool:
    """True when `payload` fits `kind`'s model. A mismatch is logged as an error, never raised:
    the change it reports has already been committed, and the stream must go on."""
    model = PAYLOADS.get(kind)
    if model is None:
        log.error("hub event kind %r is not in hubevents.HubKind", kind)
        return False
    try:
        model.model_validate(payload)
    except ValidationError as exc:
        log.error("hub event %s does not match its payload model: %s", kind, exc)
        return False
    return True

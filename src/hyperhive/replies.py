"""Every verb's reply, typed: `REPLIES[cmd]` is the model of what an `ok: true` reply carries
besides `version` and `ok` (requests are in protocol.py). No I/O.

The socket layer passes each verb's result through its model (`encode_reply`), so a verb cannot
send a field its model does not name, and tests/fakesock.py's FakeHive answers through the
same models, so a fake cannot drift from the core. Domain rows that several modules build
(approvals, questions, kept state) allow extra fields; the replies around them do not.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["REPLIES", "AgentRow", "Approval", "Message", "Question", "encode_reply"]


class Message(BaseModel):
    """A broker message as delivered to a recipient."""

    id: int
    sender: str
    recipient: str
    body: str
    sent_at: float
    in_reply_to: int | None = None
    broadcast: bool = False
    redelivered: bool = False
    delivered_at: float | None = None
    acked_at: float | None = None
    attempts: int = 0  # deliveries so far (a requeue after the last allowed one parks it)
    dead_at: float | None = None  # parked as a dead letter (issue 9)


AgentRunState = Literal["running", "stopped", "crashed", "starting", "stopping", "unreachable"]


class AgentRow(BaseModel):
    name: str
    cage: str
    state: AgentRunState
    harness_state: str | None = None
    model: str | None = None
    pid: int | None = None
    uid: int | None = None
    unread: int = 0
    last_turn_ms: int | None = None
    state_since: float | None = None
    isolated: bool = True
    limits: str | None = None  # what the cage's memory/pids limits came to on this host
    restarts: int = 0  # restarts in a row by its restart policy
    down: dict[str, Any] | None = None  # the last unexpected exit (core/restarts.py Downtime.to_json)
    blocked_until: float | None = None  # the gateway's rate_limited state ends then (epoch seconds)
    warm: bool = False  # its claude CLI is kept between turns (core/pool.py)
    queued_since: float | None = None  # its next turn waits for a slot since (core/scheduler.py)
    node: str | None = None  # set for an agent of another node (core/nodes.py)
    node_url: str | None = None  # that node's dashboard (its agent page is there)


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow")


class Approval(_Row):
    """An approval request as the core reports it (store/base.py ApprovalRow)."""

    id: int
    kind: str
    agent: str
    status: str
    commit_ref: str | None = None
    sha: str | None = None
    description: str | None = None
    requested_by: str | None = None
    requested_at: float | None = None
    resolved_at: float | None = None
    note: str | None = None
    tag: str | None = None


class Question(_Row):
    """A question as the core reports it (store/base.py QuestionRow; `target` is `operator` for
    the human)."""

    id: int
    asker: str
    target: str
    question: str
    options: list[str] = []
    multi: bool = False
    asked_at: float | None = None
    deadline_at: float | None = None
    answered_at: float | None = None
    answer: str | None = None
    answerer: str | None = None


class KeptState(_Row):
    name: str
    destroyed_at: float | None = None
    size_bytes: int = 0
    has_credentials: bool = False


class WebSession(_Row):
    id: str
    created_at: float
    last_seen: float
    client: str
    user_agent: str


# ---- replies, one per verb ---------------------------------------------------------------


class PingReply(_Reply):
    pong: bool
    as_: str = Field(alias="as")  # who the socket says the caller is
    hyperhive: str
    dashboard_url: str | None = None  # operator only
    state_dir: str | None = None  # operator only


class SendReply(_Reply):
    id: int | None
    ids: list[int]
    recipients: int


class AnswerReply(_Reply):
    question: Question


class ListReply(_Reply):
    agents: list[AgentRow]
    cage: str
    cage_reason: str | None = None


class AgentReply(_Reply):
    """start, stop, kill, restart, update: the agent's row after the change."""

    agent: AgentRow


class SpawnReply(AgentReply):
    revived: bool


class DestroyReply(_Reply):
    destroyed: str
    purged: bool


class ApprovalReply(_Reply):
    """revive, config_apply, approve, deny, request_spawn, request_init_config,
    request_apply_commit."""

    approval: Approval


class KeptReply(_Reply):
    kept: list[KeptState]


class PurgeReply(_Reply):
    purged: str


class ConfigShowReply(_Reply):
    name: str
    sha: str
    agent_toml: str
    instructions_path: str | None = None
    instructions: str | None = None
    tags: list[str] = []


class SessionsReply(_Reply):
    sessions: list[WebSession]
    revoked: int | None = None
    key_rotated: bool | None = None


class InboxReply(_Reply):
    messages: list[Message]


class PendingReply(_Reply):
    """The pending approvals, or with `diff_id` the diff of one."""

    approvals: list[Approval] | None = None
    diff: str | None = None


class QuestionsReply(_Reply):
    questions: list[Question]


class QuestionReply(_Reply):
    """cancel_question."""

    question: Question


class DeadLettersReply(_Reply):
    dead_letters: list[Message]
    max_attempts: int


class MessageReply(_Reply):
    """retry_dead, discard_dead."""

    message: Message


class EventsReply(_Reply):
    """An agent's event trail: `{id, ts, kind, payload}` rows (harness/bus.py owns the kinds)."""

    events: list[dict[str, Any]]


class EventsFollowReply(_Reply):
    """The first line of an `events_follow` stream; each later line carries one agent `event`."""

    following: str  # the agent's name
    after: int


class SubscribeReply(_Reply):
    """The first line of a `subscribe` stream; each later line carries one `event`."""

    subscribed: bool
    seq: int
    epoch: str  # this daemon run's: pass it back with `after` when resuming


class TakeoverReply(_Reply):
    """exec and shell: the first line, before the shellwire frames."""

    session: int
    agent: str
    cage: str
    isolated: bool


class StatsReply(_Reply):
    """The telemetry series (core/telemetry.py `series`; docs/operations.md lists the keys)."""

    stats: dict[str, Any]


class NodeInfo(_Reply):
    name: str
    dashboard_url: str | None
    alive: bool
    agents: int
    here: bool


class NodesReply(_Reply):
    """The hive's nodes (core/nodes.py); `multi` false: a one-node hive on SQLite."""

    node: str
    nodes: list[NodeInfo]
    multi: bool


class ManagerClaimReply(_Reply):
    manager: str  # the node it runs on now
    moved: bool
    from_: str | None = Field(default=None, alias="from")


class RecvReply(_Reply):
    messages: list[Message]
    unread: int
    paused: str | None = None  # "over budget": recv held the agent (core/budget.py)


class AckTurnReply(_Reply):
    acked: int


class RequeueReply(_Reply):
    requeued: int


class StatusReply(_Reply):
    unread: int


class WhoamiReply(_Reply):
    name: str
    role: str
    cage: str
    hyperhive: str


class AgentConfigReply(_Reply):
    config: dict[str, Any]  # agentconfig.AgentConfig as JSON
    instructions_text: str | None = None


class RecentReply(_Reply):
    messages: list[Message]


class EmptyReply(_Reply):
    """report_state: nothing but ok."""


class TurnAdmitReply(_Reply):
    admitted: bool  # false: the wait ended first; ask again
    refused: str | None = None  # a pre-warm the warm pool has no room for: stay cold (why)


class AskReply(_Reply):
    id: int
    question: Question


class OpenThreadsReply(_Reply):
    asked: list[Question]
    owed: list[Question]
    approvals: list[Approval]


REPLIES: dict[str, type[BaseModel]] = {
    "ping": PingReply,
    "send": SendReply,
    "answer": AnswerReply,
    "list": ListReply,
    "spawn": SpawnReply,
    "start": AgentReply,
    "stop": AgentReply,
    "kill": AgentReply,
    "restart": AgentReply,
    "update": AgentReply,
    "destroy": DestroyReply,
    "revive": ApprovalReply,
    "kept": KeptReply,
    "purge": PurgeReply,
    "config_show": ConfigShowReply,
    "config_apply": ApprovalReply,
    "sessions": SessionsReply,
    "inbox": InboxReply,
    "pending": PendingReply,
    "approve": ApprovalReply,
    "deny": ApprovalReply,
    "questions": QuestionsReply,
    "cancel_question": QuestionReply,
    "dead_letters": DeadLettersReply,
    "retry_dead": MessageReply,
    "discard_dead": MessageReply,
    "events": EventsReply,
    "events_follow": EventsFollowReply,
    "subscribe": SubscribeReply,
    "exec": TakeoverReply,
    "shell": TakeoverReply,
    "request_spawn": ApprovalReply,
    "stats": StatsReply,
    "recv": RecvReply,
    "ack_turn": AckTurnReply,
    "requeue_inflight": RequeueReply,
    "status": StatusReply,
    "whoami": WhoamiReply,
    "agent_config": AgentConfigReply,
    "recent": RecentReply,
    "report_state": EmptyReply,
    "turn_admit": TurnAdmitReply,
    "turn_release": EmptyReply,
    "ask": AskReply,
    "open_threads": OpenThreadsReply,
    "request_init_config": ApprovalReply,
    "request_apply_commit": ApprovalReply,
    "nodes": NodesReply,
    "manager_claim": ManagerClaimReply,
}
# tests/test_replies.py checks that every verb of protocol.VERBS has its model here


def encode_reply(cmd: str, fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` checked against `cmd`'s reply model, as the JSON the socket sends (the keys the
    verb set, no defaults added). Raises pydantic.ValidationError when the verb drifted. A verb
    without a model yet (tests/test_replies.py fails for it) passes through unchecked."""
    if cmd not in REPLIES:
        return fields
    model = REPLIES[cmd].model_validate(fields)
    out: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
    return out

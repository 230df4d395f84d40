"""The socket wire protocol: every request and reply, the version, error codes and caps.

One JSON object per line, UTF-8. Requests carry `{"cmd": "<verb>", ...}`; replies carry
`{"version": 1, "ok": true|false, "error"?, "code"?, ...}`. Requests are strict (unknown
verbs and unknown fields are refused); this module does no I/O. Decoding a line is `requestcodec.py`; reply shapes are `replies.py`. The version, caps and harness states live in `wirecaps.py` (no
pydantic, so a waiting harness can import them) and are re-exported here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from pydantic_core import PydanticCustomError

from hyperhive.errors import ErrorCode, InvalidName
from hyperhive.names import validate_agent_name, validate_recipient
from hyperhive.wirecaps import (
    HARNESS_STATES,
    MAX_BODY_BYTES,
    MAX_LINE_BYTES,
    MAX_NAP_SECONDS,
    MAX_QUESTION_TTL,
    MAX_RECV,
    MAX_RECV_WAIT,
    MAX_TEXT,
    PROTOCOL_VERSION,
    HarnessState,
)

__all__ = [
    "HARNESS_STATES",
    "MAX_BODY_BYTES",
    "MAX_LINE_BYTES",
    "MAX_NAP_SECONDS",
    "MAX_QUESTION_TTL",
    "MAX_RECV",
    "MAX_RECV_WAIT",
    "MAX_TEXT",
    "PROTOCOL_VERSION",
    "ErrorCode",
    "HarnessState",
    "REQUEST_ADAPTER",
    "Request",
]


class _Req(BaseModel):
    # strict: a wrong-typed field ("1" for an int, "yes" for a bool) is refused, not coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _agent_name(value: str) -> str:
    try:
        return validate_agent_name(value)
    except InvalidName as exc:  # the error's type carries the wire code (see _code)
        raise PydanticCustomError(ErrorCode.INVALID_NAME, exc.message) from None


def _body(value: str) -> str:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_BODY_BYTES:
        raise PydanticCustomError(
            ErrorCode.TOO_LARGE, f"body is {size} bytes, over the {MAX_BODY_BYTES}-byte cap; pass a /state path"
        )
    return value


# no max_length: the name rule (31 characters) refuses long names with code invalid_name
AgentName = str
Text = Annotated[str, Field(max_length=MAX_TEXT)]


class _Named(_Req):
    name: AgentName

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        return _agent_name(v)


# ---- verbs shared by several sockets ------------------------------------------------------


class SendReq(_Req):
    cmd: Literal["send"]
    to: str
    body: str
    in_reply_to: int | None = Field(default=None, ge=1)

    @field_validator("to")
    @classmethod
    def _check_to(cls, v: str) -> str:
        try:
            return validate_recipient(v)
        except InvalidName as exc:
            raise PydanticCustomError(ErrorCode.INVALID_NAME, exc.message) from None

    @field_validator("body")
    @classmethod
    def _check_body(cls, v: str) -> str:
        return _body(v)


class ListReq(_Req):
    cmd: Literal["list"]


class StartReq(_Named):
    cmd: Literal["start"]


class StopReq(_Named):
    cmd: Literal["stop"]


class RestartReq(_Named):
    cmd: Literal["restart"]


class AnswerReq(_Req):
    cmd: Literal["answer"]
    id: int = Field(ge=1)
    answer: Text


class RequestSpawnReq(_Named):
    cmd: Literal["request_spawn"]
    description: Text | None = None


# ---- host (operator) verbs ----------------------------------------------------------------


class SpawnReq(_Named):
    cmd: Literal["spawn"]
    node: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] | None = None  # default: this node
    wait: bool = False  # answer once the harness has reported in, not when the cage has started

    @field_validator("name")
    @classmethod
    def _not_manager(cls, v: str) -> str:
        if v == "manager":
            raise PydanticCustomError(ErrorCode.INVALID_NAME, "'manager' is a reserved name")
        return v


class DestroyReq(_Named):
    cmd: Literal["destroy"]
    purge: bool = False


class InboxReq(_Req):
    cmd: Literal["inbox"]
    limit: int = Field(default=50, ge=1, le=1000)


class PendingReq(_Req):
    cmd: Literal["pending"]
    diff_id: int | None = Field(default=None, ge=1)


class ApproveReq(_Req):
    cmd: Literal["approve"]
    id: int = Field(ge=1)


class DenyReq(_Req):
    cmd: Literal["deny"]
    id: int = Field(ge=1)
    note: Text | None = None


class QuestionsReq(_Req):
    cmd: Literal["questions"]


class CancelQuestionReq(_Req):
    cmd: Literal["cancel_question"]
    id: int = Field(ge=1)


class DeadLettersReq(_Req):
    """Messages parked after failing every delivery attempt, oldest first."""

    cmd: Literal["dead_letters"]
    limit: int = Field(default=200, ge=1, le=1000)


class RetryDeadReq(_Req):
    """Put a dead letter back into its recipient's queue with fresh attempts."""

    cmd: Literal["retry_dead"]
    id: int = Field(ge=1)


class DiscardDeadReq(_Req):
    """Acknowledge a dead letter without delivering it."""

    cmd: Literal["discard_dead"]
    id: int = Field(ge=1)


class EventsReq(_Named):
    cmd: Literal["events"]
    after: int = Field(default=0, ge=0)
    limit: int = Field(default=2000, ge=1, le=2000)


class EventsFollowReq(_Named):
    """Turn the connection into the agent's live trail after `after` (relayed by the core from
    the agent's page): one `event` line each, a `waiting` event while the agent is down."""

    cmd: Literal["events_follow"]
    after: int = Field(default=0, ge=0)


class RevivReq(_Named):
    cmd: Literal["revive"]


class KeptReq(_Req):
    """The kept state of agents destroyed without purge."""

    cmd: Literal["kept"]


class PurgeReq(_Named):
    """Delete the kept state of an agent destroyed earlier without purge (no undo)."""

    cmd: Literal["purge"]


class ConfigShowReq(_Named):
    """An agent's applied config: agent.toml and the applied sha."""

    cmd: Literal["config_show"]


class ConfigApplyReq(_Named):
    """The operator's own edit of agent.toml: validated and deployed like an approved commit,
    tagged operator/<id>. `base_sha` is the applied sha the edit started from."""

    cmd: Literal["config_apply"]
    agent_toml: Annotated[str, Field(max_length=64 * 1024)]
    base_sha: Annotated[str, Field(min_length=40, max_length=40, pattern="^[0-9a-f]{40}$")]
    instructions: Annotated[str, Field(max_length=1024 * 1024)] | None = None
    """The new text of the file the new agent.toml's `instructions` names (omitted: unchanged)."""


class SubscribeReq(_Req):
    """Turn the connection into a live stream of the core's events (agents, messages,
    approvals, questions): one `event` line each. Omit `after` for live events only; pass the
    last seq seen to replay everything after it first, and the reply's `epoch` with it: seqs
    begin again with each daemon run, so another run's epoch gets one `reset` event."""

    cmd: Literal["subscribe"]
    after: int | None = Field(default=None, ge=0)
    epoch: str | None = Field(default=None, max_length=64)
    kinds: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=32)] | None = None


class ExecReq(_Named):
    """Run `argv` inside the agent's cage as its uid (host.sock only, architecture §14). After the
    reply the connection carries `hyperhive.shellwire` frames: stdin in; stdout, stderr and
    the exit status out."""

    cmd: Literal["exec"]
    argv: Annotated[list[Annotated[str, Field(min_length=1, max_length=8192)]], Field(min_length=1, max_length=256)]

    @field_validator("argv")
    @classmethod
    def _no_nul(cls, v: list[str]) -> list[str]:
        if any("\x00" in a for a in v):
            raise ValueError("an argument holds a NUL byte")
        return v


class ShellReq(_Named):
    """An interactive login shell on a PTY inside the agent's cage (host.sock only). After the
    reply the connection carries `hyperhive.shellwire` frames: keystrokes and resizes in; the
    terminal's output and the exit status out."""

    cmd: Literal["shell"]
    rows: int = Field(default=24, ge=1, le=1000)
    cols: int = Field(default=80, ge=1, le=1000)
    term: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9._+-]+$")] = "xterm-256color"


class PingReq(_Req):
    cmd: Literal["ping"]


class NodesReq(_Req):
    cmd: Literal["nodes"]


class ManagerClaimReq(_Req):
    cmd: Literal["manager_claim"]
    force: bool = False


# ---- agent verbs --------------------------------------------------------------------------


class RecvReq(_Req):
    cmd: Literal["recv"]
    wait_seconds: float = Field(default=0, ge=0, le=MAX_RECV_WAIT)
    max: int = Field(default=1, ge=1, le=MAX_RECV)


class AckTurnReq(_Req):
    cmd: Literal["ack_turn"]


class RequeueInflightReq(_Req):
    cmd: Literal["requeue_inflight"]


class StatusReq(_Req):
    cmd: Literal["status"]


class WhoamiReq(_Req):
    cmd: Literal["whoami"]


class AgentConfigReq(_Req):
    cmd: Literal["agent_config"]


class RecentReq(_Req):
    cmd: Literal["recent"]
    limit: int = Field(default=20, ge=1, le=200)


class ReportStateReq(_Req):
    """The harness tells the core its turn state (drives badges and login events)."""

    cmd: Literal["report_state"]
    state: HarnessState
    model: Annotated[str, Field(max_length=200)] | None = None
    last_turn_ms: int | None = Field(default=None, ge=0)
    warm: bool | None = None  # its claude CLI is kept between turns (issue 13)


class TurnAdmitReq(_Req):
    """Before a turn: wait for a slot of the core's burst scheduler (core/scheduler.py)."""

    cmd: Literal["turn_admit"]
    sent_at: float = Field(ge=0)  # the message the turn is for (oldest first)
    warm: bool = False  # the agent's claude CLI is already up (a cheaper turn)
    wait_seconds: float = Field(default=MAX_RECV_WAIT, ge=0, le=MAX_RECV_WAIT)
    # an idle harness starting its CLI before any message (warm on start): admitted after every
    # waiting turn, refused when the warm pool is full
    prewarm: bool = False


class TurnReleaseReq(_Req):
    cmd: Literal["turn_release"]
    prewarm: bool = False  # free the slot only if it is still the pre-warm's (not a turn's since)


class AskReq(_Req):
    cmd: Literal["ask"]
    question: Text
    options: Annotated[list[Annotated[str, Field(max_length=500)]], Field(max_length=20)] = []
    multi: bool = False
    ttl_seconds: int | None = Field(default=None, ge=1)  # capped at MAX_QUESTION_TTL by the core
    to: AgentName | None = None

    @field_validator("to")
    @classmethod
    def _check_to(cls, v: str | None) -> str | None:
        if v is None or v == "operator":
            return None
        return _agent_name(v)


class OpenThreadsReq(_Req):
    cmd: Literal["open_threads"]


# ---- manager verbs ------------------------------------------------------------------------


class RequestInitConfigReq(_Named):
    cmd: Literal["request_init_config"]
    description: Text | None = None


class RequestApplyCommitReq(_Req):
    cmd: Literal["request_apply_commit"]
    agent: AgentName
    commit_ref: Annotated[str, Field(max_length=64)]
    description: Text | None = None

    @field_validator("agent")
    @classmethod
    def _check_agent(cls, v: str) -> str:
        return _agent_name(v)


class KillReq(_Named):
    cmd: Literal["kill"]


class UpdateReq(_Named):
    cmd: Literal["update"]


class StatsReq(_Req):
    """The telemetry series of one agent (or, without `agent`, the hive) since `since`."""

    cmd: Literal["stats"]
    agent: Annotated[str, Field(max_length=64)] | None = None
    since: Annotated[float, Field(ge=0)] | None = None


class SessionsReq(_Req):
    """The operator's dashboard sessions: list; `revoke` one by its short id; `revoke_all` logs
    out everywhere and rotates the signing key."""

    cmd: Literal["sessions"]
    revoke: Annotated[str, Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    revoke_all: bool = False


Request = Annotated[
    SendReq
    | ListReq
    | StartReq
    | StopReq
    | RestartReq
    | AnswerReq
    | RequestSpawnReq
    | SpawnReq
    | DestroyReq
    | InboxReq
    | PendingReq
    | ApproveReq
    | DenyReq
    | QuestionsReq
    | CancelQuestionReq
    | DeadLettersReq
    | RetryDeadReq
    | DiscardDeadReq
    | EventsReq
    | EventsFollowReq
    | RevivReq
    | KeptReq
    | PurgeReq
    | ConfigShowReq
    | ConfigApplyReq
    | PingReq
    | SubscribeReq
    | ExecReq
    | ShellReq
    | RecvReq
    | AckTurnReq
    | RequeueInflightReq
    | StatusReq
    | WhoamiReq
    | AgentConfigReq
    | RecentReq
    | ReportStateReq
    | TurnAdmitReq
    | TurnReleaseReq
    | AskReq
    | OpenThreadsReq
    | RequestInitConfigReq
    | RequestApplyCommitReq
    | KillReq
    | UpdateReq
    | SessionsReq
    | StatsReq
    | NodesReq
    | ManagerClaimReq,
    Field(discriminator="cmd"),
]

REQUEST_ADAPTER = TypeAdapter(Request)
VERBS: frozenset[str] = frozenset(
    m.model_fields["cmd"].annotation.__args__[0]
    for m in Request.__origin__.__args__  # type: ignore[attr-defined]
)

"""The `Store` protocol: the durable operations the core needs, as async domain calls with typed
rows. Nothing here is SQL-shaped; the SQLite backend (`store/sqlite_store.py`, the embedded
default) and the PostgreSQL backend (`store/postgres.py`) implement it, and `tests/store/` holds
both to the same contracts.

Every operation is correct with several writers at once: a claim hands a message to one
receiver only, a transition happens once, ids come from the store's own counters.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Literal, Protocol, TypedDict

from hyperhive.store.node_base import NodeStore

__all__ = [
    "AgentRecord",
    "ApprovalKind",
    "ApprovalRow",
    "ApprovalStatus",
    "Desired",
    "MessageRow",
    "QuestionRow",
    "SessionRow",
    "Store",
    "StoreCheck",
]

ApprovalStatus = Literal["proposing", "pending", "approving", "denying", "approved", "denied", "deployed", "failed"]
ApprovalKind = Literal["spawn", "init_config", "apply_commit"]
Desired = Literal["running", "stopped"]


class MessageRow(TypedDict):
    id: int
    sender: str
    recipient: str
    body: str
    sent_at: float
    in_reply_to: int | None
    broadcast: bool
    delivered_at: float | None
    acked_at: float | None
    redelivered: bool
    attempts: int
    dead_at: float | None


class AgentRecord(TypedDict):
    name: str
    id: int
    created_at: float
    desired: str  # a Desired; kept wide because a stop may record any reason the lifecycle names
    uid: int | None
    description: str | None
    destroyed_at: float | None


class ApprovalRow(TypedDict):
    id: int
    kind: ApprovalKind
    agent: str
    commit_ref: str | None
    sha: str | None
    description: str | None
    requested_by: str
    requested_at: float
    status: ApprovalStatus
    resolved_at: float | None
    note: str | None
    tag: str | None


class QuestionRow(TypedDict):
    id: int
    asker: str
    target: str | None  # None: the operator
    question: str
    options: list[str]
    multi: bool
    asked_at: float
    deadline_at: float | None
    answered_at: float | None
    answer: str | None
    answerer: str | None


class SessionRow(TypedDict):
    sid: str
    created_at: float
    last_seen: float
    client: str
    user_agent: str


class StoreCheck(TypedDict):
    backend: str
    location: str
    applied: list[str]
    missing: list[str]
    counts: dict[str, int]


class Store(NodeStore, Protocol):
    """What the core keeps durably. Every method commits before it returns."""

    backend: str
    # A long-poll re-checks the queue at least this often (seconds): a wake-up that comes from
    # another writer (another node) is only a hint. None: every writer is in this process.
    recheck_interval: float | None

    async def close(self) -> None: ...

    async def check(self) -> StoreCheck:
        """Which migrations are applied or missing, and how many rows each table holds."""
        ...

    async def subscribe_wakeups(self, callback: Callable[[str], None]) -> None:
        """Call `callback(recipient)` on the running loop when another writer (another node)
        commits a message for `recipient`. A hint only: it may be late, doubled or lost; but one
        for a commit made after this returns is not lost while the store's connection holds."""
        ...

    # ---- messages ------------------------------------------------------------------------

    async def insert_messages(
        self,
        sender: str,
        recipients: Sequence[str],
        body: str,
        now: float,
        *,
        in_reply_to: int | None = None,
        broadcast: bool = False,
        settled: Collection[str] = (),
    ) -> list[int]:
        """One row per recipient, ids in the same order. A recipient in `settled` (the
        operator's inbox, a view rather than a queue) is delivered and acknowledged on arrival."""
        ...

    async def claim_pending(self, agent: str, limit: int, now: float) -> list[MessageRow]:
        """Up to `limit` of `agent`'s pending messages, oldest first, marked delivered (attempts + 1).
        Two concurrent claims never return the same row."""
        ...

    async def ack(self, agent: str, now: float) -> int:
        """Acknowledge every delivered, unacknowledged message of `agent`."""
        ...

    async def requeue_inflight(self, agent: str, max_attempts: int, now: float) -> tuple[int, list[MessageRow]]:
        """Put delivered, unacknowledged rows back (redelivered); those at `max_attempts` are
        parked as dead letters instead. Returns (requeued count, parked rows)."""
        ...

    async def unread(self, agent: str) -> int: ...

    async def unread_counts(self) -> dict[str, int]: ...

    async def get_message(self, message_id: int) -> MessageRow | None: ...

    async def recent_messages(
        self, *, recipient: str | None = None, involving: str | None = None, limit: int = 50
    ) -> list[MessageRow]:
        """Newest first."""
        ...

    async def vacuum_messages(self, acked_before: float) -> int:
        """Delete acknowledged rows acknowledged before the cutoff; never an unacknowledged one."""
        ...

    async def dead_letters(self, limit: int) -> list[MessageRow]: ...

    async def retry_dead(self, message_id: int) -> MessageRow | None: ...

    async def discard_dead(self, message_id: int, now: float) -> MessageRow | None: ...

    # ---- agents ----------------------------------------------------------------------------

    async def register_agent(
        self, name: str, description: str | None, now: float, *, uid_base: int | None = None
    ) -> AgentRecord:
        """Create the agent with a fresh id (never reused) and uid = uid_base + id, or bring a
        destroyed-but-kept one back (same id). Idempotent for a live agent."""
        ...

    async def agents(self, *, destroyed: bool | None = None) -> list[AgentRecord]:
        """Every agent; `destroyed` True/False keeps only kept-state / live ones."""
        ...

    async def get_agent(self, name: str) -> AgentRecord | None: ...

    async def set_desired(self, name: str, desired: str) -> None: ...

    async def mark_destroyed(self, name: str, now: float) -> None: ...

    async def delete_agent(self, name: str) -> bool: ...

    # ---- approvals -------------------------------------------------------------------------

    async def insert_approval(
        self,
        kind: ApprovalKind,
        agent: str,
        description: str | None,
        requested_by: str,
        now: float,
        *,
        status: ApprovalStatus = "pending",
        commit_ref: str | None = None,
    ) -> ApprovalRow: ...

    async def insert_approval_once(
        self, kind: ApprovalKind, agent: str, description: str | None, requested_by: str, now: float
    ) -> tuple[ApprovalRow, bool]:
        """A pending request, unless one of `kind` for `agent` is already pending or approving:
        then (that one, False). One step: two racing requests make one row."""
        ...

    async def get_approval(self, aid: int) -> ApprovalRow | None: ...

    async def approvals(
        self, *, statuses: Collection[ApprovalStatus] | None = None, limit: int = 0
    ) -> list[ApprovalRow]:
        """With `statuses`: those, oldest first. Without: the newest `limit` (0: all), newest first."""
        ...

    async def transition_approval(
        self, aid: int, from_statuses: Collection[ApprovalStatus], to: ApprovalStatus, **fields: Any
    ) -> ApprovalRow | None:
        """One atomic step: set `to` (and `fields`: sha, tag, commit_ref, note, resolved_at) only
        if the status is one of `from_statuses`. None if it was not (or no such approval): of
        two racing transitions exactly one wins."""
        ...

    # ---- questions -------------------------------------------------------------------------

    async def insert_question(
        self,
        asker: str,
        target: str | None,
        question: str,
        options: list[str],
        multi: bool,
        now: float,
        deadline_at: float | None,
    ) -> QuestionRow: ...

    async def get_question(self, qid: int) -> QuestionRow | None: ...

    async def open_questions(self) -> list[QuestionRow]: ...

    async def resolve_question(self, qid: int, answer: str, answerer: str, now: float) -> QuestionRow | None:
        """Answer an open question; None if it is already resolved (or unknown): one answer wins."""
        ...

    async def due_questions(self, now: float) -> list[int]: ...

    async def next_question_deadline(self) -> float | None: ...

    # ---- dashboard sessions ------------------------------------------------------------------

    async def session_create(
        self, sid: str, now: float, client: str, user_agent: str, *, forget_before: float
    ) -> None: ...

    async def session_touch(self, sid: str, now: float) -> None: ...

    async def session_revoke(self, sid: str, now: float) -> int: ...

    async def session_revoke_all(self, now: float) -> int: ...

    async def sessions_active(self, since: float) -> list[SessionRow]: ...

    # ---- usage, budget grants, stats ---------------------------------------------------------

    async def record_usage(self, row: dict[str, Any], stats: Iterable[tuple[str, float, str, float]] = ()) -> int: ...

    async def usage_sums(
        self, *, agent: str | None = None, since: float = 0.0, until: float | None = None
    ) -> dict[str, Any]: ...

    async def usage_by(
        self, field: Literal["agent", "model"], since: float, *, agent: str | None = None
    ) -> dict[str, dict[str, Any]]: ...

    async def usage_recent(self, agent: str, limit: int) -> list[dict[str, Any]]: ...

    async def add_grant(self, agent: str, at: float, kind: str, usd: float, tokens: int) -> int: ...

    async def grants_since(self, agent: str, since: float) -> list[dict[str, Any]]: ...

    async def use_grant(self, grant_id: int) -> None: ...

    async def stats_insert(self, rows: Iterable[tuple[str, float, str, float]]) -> None: ...

    async def stats_series(self, agent: str | None, since: float, limit: int = 50_000) -> list[dict[str, Any]]: ...

    async def stats_last_ts(self, agent: str, key: str) -> float: ...

    async def purge_usage_and_stats(self, before: float) -> int: ...

    # ---- copy (`hive store copy`, the daemon stopped) -----------------------------------------

    async def export_rows(self, table: str, after: Any, limit: int) -> list[dict[str, Any]]:
        """One page of `table` as stored, after the key `after` (None: the first page)."""
        ...

    async def import_rows(self, table: str, rows: list[dict[str, Any]]) -> int:
        """Rows exactly as exported, ids included (a counter row replaces the one there)."""
        ...

    async def finish_import(self) -> None:
        """After an import: new ids continue past the imported ones."""
        ...

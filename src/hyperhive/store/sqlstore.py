"""`SqlStore`: the `Store` protocol on top of `store/sqlops.py`, for any backend that can run a
function in a write transaction (`_write`) or a read one (`_read`) without blocking the loop."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Literal, TypeVar

from hyperhive.store import sqlops as ops
from hyperhive.store.base import (
    AgentRecord,
    ApprovalKind,
    ApprovalRow,
    ApprovalStatus,
    MessageRow,
    QuestionRow,
    SessionRow,
    StoreCheck,
)
from hyperhive.store.nodes import NodeOps
from hyperhive.store.sqlops import Tx

__all__ = ["SqlStore"]

T = TypeVar("T")


class SqlStore(NodeOps):
    backend: str = ""
    recheck_interval: float | None = None

    @abstractmethod
    async def _write(self, fn: Callable[[Tx], T]) -> T: ...

    @abstractmethod
    async def _read(self, fn: Callable[[Tx], T]) -> T: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def check(self) -> StoreCheck: ...

    async def subscribe_wakeups(self, callback: Callable[[str], None]) -> None:
        """Every writer is in this process: the broker's own wake-ups are enough."""

    # ---- messages ------------------------------------------------------------------------

    async def insert_messages(self, sender: str, recipients: Sequence[str], body: str, now: float, *,
                              in_reply_to: int | None = None, broadcast: bool = False,
                              settled: Collection[str] = ()) -> list[int]:  # fmt: skip
        recipients, settled = list(recipients), set(settled)
        return await self._write(
            lambda tx: ops.insert_messages(tx, sender, recipients, body, now, in_reply_to, broadcast, settled)
        )

    async def claim_pending(self, agent: str, limit: int, now: float) -> list[MessageRow]:
        return await self._write(lambda tx: ops.claim_pending(tx, agent, limit, now))

    async def ack(self, agent: str, now: float) -> int:
        return await self._write(lambda tx: ops.ack(tx, agent, now))

    async def requeue_inflight(self, agent: str, max_attempts: int, now: float) -> tuple[int, list[MessageRow]]:
        return await self._write(lambda tx: ops.requeue_inflight(tx, agent, max_attempts, now))

    async def unread(self, agent: str) -> int:
        return await self._read(lambda tx: ops.unread(tx, agent))

    async def unread_counts(self) -> dict[str, int]:
        return await self._read(ops.unread_counts)

    async def get_message(self, message_id: int) -> MessageRow | None:
        return await self._read(lambda tx: ops.get_message(tx, message_id))

    async def recent_messages(self, *, recipient: str | None = None, involving: str | None = None,
                              limit: int = 50) -> list[MessageRow]:  # fmt: skip
        return await self._read(lambda tx: ops.recent_messages(tx, recipient, involving, limit))

    async def vacuum_messages(self, acked_before: float) -> int:
        return await self._write(lambda tx: ops.vacuum_messages(tx, acked_before))

    async def dead_letters(self, limit: int) -> list[MessageRow]:
        return await self._read(lambda tx: ops.dead_letters(tx, limit))

    async def retry_dead(self, message_id: int) -> MessageRow | None:
        return await self._write(lambda tx: ops.retry_dead(tx, message_id))

    async def discard_dead(self, message_id: int, now: float) -> MessageRow | None:
        return await self._write(lambda tx: ops.discard_dead(tx, message_id, now))

    # ---- agents ----------------------------------------------------------------------------

    async def register_agent(self, name: str, description: str | None, now: float, *,
                             uid_base: int | None = None) -> AgentRecord:  # fmt: skip
        return await self._write(lambda tx: ops.register_agent(tx, name, description, now, uid_base))

    async def agents(self, *, destroyed: bool | None = None) -> list[AgentRecord]:
        return await self._read(lambda tx: ops.agents(tx, destroyed))

    async def get_agent(self, name: str) -> AgentRecord | None:
        return await self._read(lambda tx: ops.get_agent(tx, name))

    async def set_desired(self, name: str, desired: str) -> None:
        await self._write(lambda tx: ops.set_desired(tx, name, desired))

    async def mark_destroyed(self, name: str, now: float) -> None:
        await self._write(lambda tx: ops.mark_destroyed(tx, name, now))

    async def delete_agent(self, name: str) -> bool:
        return await self._write(lambda tx: ops.delete_agent(tx, name))

    # ---- approvals -------------------------------------------------------------------------

    async def insert_approval(self, kind: ApprovalKind, agent: str, description: str | None, requested_by: str,
                              now: float, *, status: ApprovalStatus = "pending",
                              commit_ref: str | None = None) -> ApprovalRow:  # fmt: skip
        return await self._write(
            lambda tx: ops.insert_approval(tx, kind, agent, description, requested_by, now, status, commit_ref)
        )

    async def insert_approval_once(self, kind: ApprovalKind, agent: str, description: str | None,
                                   requested_by: str, now: float) -> tuple[ApprovalRow, bool]:  # fmt: skip
        return await self._write(lambda tx: ops.insert_approval_once(tx, kind, agent, description, requested_by, now))

    async def get_approval(self, aid: int) -> ApprovalRow | None:
        return await self._read(lambda tx: ops.get_approval(tx, aid))

    async def approvals(self, *, statuses: Collection[ApprovalStatus] | None = None,
                        limit: int = 0) -> list[ApprovalRow]:  # fmt: skip
        st = None if statuses is None else list(statuses)
        return await self._read(lambda tx: ops.approvals(tx, st, limit))

    async def transition_approval(self, aid: int, from_statuses: Collection[ApprovalStatus], to: ApprovalStatus,
                                  **fields: Any) -> ApprovalRow | None:  # fmt: skip
        st = list(from_statuses)
        return await self._write(lambda tx: ops.transition_approval(tx, aid, st, to, fields))

    # ---- questions -------------------------------------------------------------------------

    async def insert_question(self, asker: str, target: str | None, question: str, options: list[str], multi: bool,
                              now: float, deadline_at: float | None) -> QuestionRow:  # fmt: skip
        return await self._write(
            lambda tx: ops.insert_question(tx, asker, target, question, options, multi, now, deadline_at)
        )

    async def get_question(self, qid: int) -> QuestionRow | None:
        return await self._read(lambda tx: ops.get_question(tx, qid))

    async def open_questions(self) -> list[QuestionRow]:
        return await self._read(ops.open_questions)

    async def resolve_question(self, qid: int, answer: str, answerer: str, now: float) -> QuestionRow | None:
        return await self._write(lambda tx: ops.resolve_question(tx, qid, answer, answerer, now))

    async def due_questions(self, now: float) -> list[int]:
        return await self._read(lambda tx: ops.due_questions(tx, now))

    async def next_question_deadline(self) -> float | None:
        return await self._read(ops.next_question_deadline)

    # ---- dashboard sessions ------------------------------------------------------------------

    async def session_create(self, sid: str, now: float, client: str, user_agent: str, *,
                             forget_before: float) -> None:  # fmt: skip
        await self._write(lambda tx: ops.session_create(tx, sid, now, client, user_agent, forget_before))

    async def session_touch(self, sid: str, now: float) -> None:
        await self._write(lambda tx: ops.session_touch(tx, sid, now))

    async def session_revoke(self, sid: str, now: float) -> int:
        return await self._write(lambda tx: ops.session_revoke(tx, sid, now))

    async def session_revoke_all(self, now: float) -> int:
        return await self._write(lambda tx: ops.session_revoke_all(tx, now))

    async def sessions_active(self, since: float) -> list[SessionRow]:
        return await self._read(lambda tx: ops.sessions_active(tx, since))

    # ---- usage, budget grants, stats ---------------------------------------------------------

    async def record_usage(self, row: dict[str, Any], stats: Iterable[tuple[str, float, str, float]] = ()) -> int:
        stats = list(stats)
        return await self._write(lambda tx: ops.record_usage(tx, row, stats))

    async def usage_sums(self, *, agent: str | None = None, since: float = 0.0,
                         until: float | None = None) -> dict[str, Any]:  # fmt: skip
        return await self._read(lambda tx: ops.usage_sums(tx, agent, since, until))

    async def usage_by(self, field: Literal["agent", "model"], since: float, *,
                       agent: str | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
        return await self._read(lambda tx: ops.usage_by(tx, field, since, agent))

    async def usage_recent(self, agent: str, limit: int) -> list[dict[str, Any]]:
        return await self._read(lambda tx: ops.usage_recent(tx, agent, limit))

    async def add_grant(self, agent: str, at: float, kind: str, usd: float, tokens: int) -> int:
        return await self._write(lambda tx: ops.add_grant(tx, agent, at, kind, usd, tokens))

    async def grants_since(self, agent: str, since: float) -> list[dict[str, Any]]:
        return await self._read(lambda tx: ops.grants_since(tx, agent, since))

    async def use_grant(self, grant_id: int) -> None:
        await self._write(lambda tx: ops.use_grant(tx, grant_id))

    async def stats_insert(self, rows: Iterable[tuple[str, float, str, float]]) -> None:
        rows = list(rows)
        await self._write(lambda tx: ops.stats_insert(tx, rows))

    async def stats_series(self, agent: str | None, since: float, limit: int = 50_000) -> list[dict[str, Any]]:
        return await self._read(lambda tx: ops.stats_series(tx, agent, since, limit))

    async def stats_last_ts(self, agent: str, key: str) -> float:
        return await self._read(lambda tx: ops.stats_last_ts(tx, agent, key))

    async def purge_usage_and_stats(self, before: float) -> int:
        return await self._write(lambda tx: ops.purge_usage_and_stats(tx, before))

    # ---- copy ----------------------------------------------------------------------------------

    async def export_rows(self, table: str, after: Any, limit: int) -> list[dict[str, Any]]:
        return await self._read(lambda tx: ops.export_rows(tx, table, after, limit))

    async def import_rows(self, table: str, rows: list[dict[str, Any]]) -> int:
        return await self._write(lambda tx: ops.import_rows(tx, table, rows))

    async def finish_import(self) -> None:
        await self._write(ops.finish_import)

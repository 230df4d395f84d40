"""Questions: an agent asks the operator (or a peer) without blocking; the answer arrives in the
asker's inbox as `question_answered`. TTL watchdog (`[expired]`), operator cancel
(`[cancelled]`); only the declared target (or the operator, overriding) may answer. No answer is
ever invented."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any, cast

from hyperhive.core.broker import Broker
from hyperhive.core.hub import Hub
from hyperhive.errors import AgentNotFound, Conflict, NotAllowed
from hyperhive.names import OPERATOR
from hyperhive.protocol import MAX_QUESTION_TTL
from hyperhive.store.sqlite import Database

__all__ = ["CANCELLED", "EXPIRED", "Questions"]

log = logging.getLogger(__name__)
EXPIRED = "[expired]"
CANCELLED = "[cancelled]"
WATCHDOG = "ttl-watchdog"


def _row(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "asker": row["asker"],
        "target": row["target"] or OPERATOR,
        "question": row["question"],
        "options": json.loads(row["options_json"]),
        "multi": bool(row["multi"]),
        "asked_at": row["asked_at"],
        "deadline_at": row["deadline_at"],
        "answered_at": row["answered_at"],
        "answer": row["answer"],
        "answerer": row["answerer"],
    }


class Questions:
    def __init__(self, db: Database, broker: Broker, hub: Hub, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.broker = broker
        self.hub = hub
        self.clock = clock
        self._changed = asyncio.Event()

    def get(self, qid: int) -> dict[str, Any]:
        row = self.db.read(lambda c: c.execute("SELECT * FROM questions WHERE id = ?", (qid,)).fetchone())
        if row is None:
            raise AgentNotFound(f"no question #{qid}")
        return _row(row)

    def pending(self) -> list[dict[str, Any]]:
        rows = self.db.read(
            lambda c: c.execute("SELECT * FROM questions WHERE answered_at IS NULL ORDER BY id").fetchall()
        )
        return [_row(r) for r in rows]

    def open_asked_by(self, asker: str | None) -> list[dict[str, Any]]:
        return [q for q in self.pending() if asker is None or q["asker"] == asker]

    def open_owed_by(self, name: str) -> list[dict[str, Any]]:
        return [q for q in self.pending() if q["target"] == name]

    async def ask(
        self,
        asker: str,
        question: str,
        *,
        options: list[str] | None = None,
        multi: bool = False,
        ttl_seconds: int | None = None,
        to: str | None = None,
    ) -> dict[str, Any]:
        if to is not None:  # a peer question carries the asker's text to another agent
            self.broker.check_route(asker, to)
        now = self.clock()
        deadline = now + min(ttl_seconds, MAX_QUESTION_TTL) if ttl_seconds else None
        opts = json.dumps(list(options or []))
        qid = await self.db.write(
            lambda c: (
                c.execute(
                    "INSERT INTO questions (asker, target, question, options_json, multi, asked_at, deadline_at)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (asker, to, question, opts, int(multi), now, deadline),
                ).lastrowid
            )
        )
        assert qid is not None
        q = self.get(qid)
        self.hub.publish("question_added", q)
        if to is not None:
            await self.broker.system_event(
                to, "question_asked", id=qid, asker=asker, question=question, options=q["options"], multi=multi
            )
        self._changed.set()
        return q

    async def _resolve(
        self, qid: int, answer: str, answerer: str, *, check: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        now = self.clock()

        def update(c: sqlite3.Connection) -> sqlite3.Row:
            row = c.execute("SELECT * FROM questions WHERE id = ?", (qid,)).fetchone()
            if row is None:
                raise AgentNotFound(f"no question #{qid}")
            if row["answered_at"] is not None:
                raise Conflict(f"question #{qid} is already resolved ({row['answer']!r} by {row['answerer']})")
            check(_row(row))
            c.execute(
                "UPDATE questions SET answered_at = ?, answer = ?, answerer = ? WHERE id = ?",
                (now, answer, answerer, qid),
            )
            return cast(sqlite3.Row, c.execute("SELECT * FROM questions WHERE id = ?", (qid,)).fetchone())

        q = _row(await self.db.write(update))
        self.hub.publish("question_resolved", q)
        await self.broker.system_event(
            q["asker"], "question_answered", id=qid, question=q["question"], answer=answer, answerer=answerer
        )
        self._changed.set()
        return q

    async def answer(self, qid: int, answer: str, *, answerer: str, as_operator: bool) -> dict[str, Any]:
        """The operator answers operator questions and may override peer ones; a peer question is
        answered only by its declared target."""

        def check(q: dict[str, Any]) -> None:
            if as_operator:
                return
            if q["target"] != answerer:
                raise NotAllowed(f"question #{qid} was asked of {q['target']}, not of {answerer}")

        if not as_operator:  # the answer is the answerer's text, carried to the asker
            asked = self.get(qid)
            if asked["target"] == answerer:
                self.broker.check_route(answerer, asked["asker"])
        return await self._resolve(qid, answer, OPERATOR if as_operator else answerer, check=check)

    async def cancel(self, qid: int) -> dict[str, Any]:
        return await self._resolve(qid, CANCELLED, OPERATOR, check=lambda q: None)

    async def expire_due(self, now: float | None = None) -> list[int]:
        """Resolve every question past its deadline with `[expired]`; return their ids."""
        now = self.clock() if now is None else now
        due = self.db.read(
            lambda c: c.execute(
                "SELECT id FROM questions WHERE answered_at IS NULL AND deadline_at IS NOT NULL AND deadline_at <= ?",
                (now,),
            ).fetchall()
        )
        expired = []
        for (qid,) in due:
            with contextlib.suppress(Conflict):
                await self._resolve(qid, EXPIRED, WATCHDOG, check=lambda q: None)
                expired.append(qid)
        return expired

    def _next_deadline(self) -> float | None:
        row = self.db.read(
            lambda c: c.execute(
                "SELECT MIN(deadline_at) FROM questions WHERE answered_at IS NULL AND deadline_at IS NOT NULL"
            ).fetchone()
        )
        return row[0] if row and row[0] is not None else None

    async def run_watchdog(self) -> None:
        """Sleep until the next deadline (or a change), then expire what is due."""
        while True:
            self._changed.clear()
            try:
                await self.expire_due()
            except Exception:
                log.exception("question watchdog failed")
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock()) + 0.05
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

"""Questions: an agent asks the operator (or a peer) without blocking; the answer arrives in the
asker's inbox as `question_answered`. TTL watchdog (`[expired]`), operator cancel
(`[cancelled]`); only the declared target (or the operator, overriding) may answer. No answer is
ever invented."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from hyperhive.core.broker import Broker
from hyperhive.core.hub import Hub
from hyperhive.errors import Conflict, NotAllowed, NotFound
from hyperhive.names import OPERATOR
from hyperhive.protocol import MAX_QUESTION_TTL
from hyperhive.store.base import QuestionRow, Store

__all__ = ["CANCELLED", "EXPIRED", "Questions"]

log = logging.getLogger(__name__)
EXPIRED = "[expired]"
CANCELLED = "[cancelled]"
WATCHDOG = "ttl-watchdog"


def _row(row: QuestionRow) -> dict[str, Any]:
    return {**row, "target": row["target"] or OPERATOR}


class Questions:
    def __init__(self, store: Store, broker: Broker, hub: Hub, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.broker = broker
        self.hub = hub
        self.clock = clock
        self._changed = asyncio.Event()

    def poke(self) -> None:
        """Another node asked or resolved a question (core/nodes.py): the watchdog re-reads the
        next deadline, so a question outlives the node it was asked on."""
        self._changed.set()

    async def get(self, qid: int) -> dict[str, Any]:
        row = await self.store.get_question(qid)
        if row is None:
            raise NotFound(f"no question #{qid}")
        return _row(row)

    async def pending(self) -> list[dict[str, Any]]:
        return [_row(r) for r in await self.store.open_questions()]

    async def open_asked_by(self, asker: str | None) -> list[dict[str, Any]]:
        return [q for q in await self.pending() if asker is None or q["asker"] == asker]

    async def open_owed_by(self, name: str) -> list[dict[str, Any]]:
        return [q for q in await self.pending() if q["target"] == name]

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
        q = _row(await self.store.insert_question(asker, to, question, list(options or []), multi, now, deadline))
        qid = q["id"]
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
        current = await self.get(qid)
        resolved = None
        if current["answered_at"] is None:
            check(current)  # who may answer never changes, so checking before the update is safe
            resolved = await self.store.resolve_question(qid, answer, answerer, now)  # one answer wins
        if resolved is None:
            current = await self.get(qid)
            raise Conflict(f"question #{qid} is already resolved ({current['answer']!r} by {current['answerer']})")
        q = _row(resolved)
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
            asked = await self.get(qid)
            if asked["target"] == answerer:
                self.broker.check_route(answerer, asked["asker"])
        return await self._resolve(qid, answer, OPERATOR if as_operator else answerer, check=check)

    async def cancel(self, qid: int) -> dict[str, Any]:
        return await self._resolve(qid, CANCELLED, OPERATOR, check=lambda q: None)

    async def expire_due(self, now: float | None = None) -> list[int]:
        """Resolve every question past its deadline with `[expired]`; return their ids."""
        now = self.clock() if now is None else now
        expired = []
        for qid in await self.store.due_questions(now):
            with contextlib.suppress(Conflict):
                await self._resolve(qid, EXPIRED, WATCHDOG, check=lambda q: None)
                expired.append(qid)
        return expired

    async def _next_deadline(self) -> float | None:
        return await self.store.next_question_deadline()

    async def run_watchdog(self) -> None:
        """Sleep until the next deadline (or a change), then expire what is due."""
        while True:
            self._changed.clear()
            try:
                await self.expire_due()
            except Exception:
                log.exception("question watchdog failed")
            deadline = await self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock()) + 0.05
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

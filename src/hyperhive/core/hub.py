"""The core's live event stream: every change the dashboard shows, numbered by `seq`.

Publishing never waits: each subscriber has a bounded queue, and one that falls behind is
dropped (its stream ends; the client reconnects with Last-Event-ID and resumes from the ring).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from hyperhive.hubevents import check_event

__all__ = ["Hub", "HubEvent", "Subscription"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubEvent:
    id: int  # the seq
    ts: float
    kind: str
    payload: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.id, "ts": self.ts, "kind": self.kind, "data": self.payload}


@dataclass(eq=False)
class Subscription:
    hub: Hub
    queue: asyncio.Queue[HubEvent | None] = field(default_factory=lambda: asyncio.Queue(maxsize=4096))
    dropped: bool = False

    def __aiter__(self) -> AsyncIterator[HubEvent]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[HubEvent]:
        while True:
            event = await self.queue.get()
            if event is None:
                return
            yield event

    def drain(self) -> list[HubEvent]:
        """Everything queued right now, without waiting (for one write per wake-up)."""
        out = []
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event is None:
                self.dropped = True
                break
            out.append(event)
        return out

    def close(self) -> None:
        self.hub._subs.discard(self)


class Hub:
    def __init__(self, ring: int = 5000) -> None:
        self.seq = 0
        # seq starts again at 1 with every daemon run: the epoch tells a client that its
        # Last-Event-ID belongs to an earlier run, so it reloads the snapshot (issue 10)
        self.epoch = secrets.token_hex(8)
        self._ring: deque[HubEvent] = deque(maxlen=ring)
        self._subs: set[Subscription] = set()

    def publish(self, kind: str, payload: dict[str, Any]) -> HubEvent:
        """`kind` is a hubevents.HubKind and `payload` fits its model (a mismatch is logged)."""
        check_event(kind, payload)
        self.seq += 1
        event = HubEvent(self.seq, time.time(), kind, payload)
        self._ring.append(event)
        for sub in list(self._subs):
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("dropping a slow live subscriber at seq %d", event.id)
                self._subs.discard(sub)
                sub.dropped = True
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(None)
        return event

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subs.add(sub)
        return sub

    def history(self, after: int = 0, limit: int = 5000) -> list[HubEvent]:
        events = [e for e in self._ring if e.id > after]
        return events[-limit:]

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

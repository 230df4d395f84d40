"""The core's live event stream: every change the dashboard shows, numbered by `seq`.

Publishing never waits (`livefeed.Fanout`, shared with the agents' Bus): each subscriber has a
bounded queue, and one that falls behind is dropped (its stream ends; the client reconnects with
Last-Event-ID and resumes from the ring).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from hyperhive.hubevents import check_event
from hyperhive.livefeed import Fanout, Subscription

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


class Hub:
    def __init__(self, ring: int = 5000) -> None:
        self.seq = 0
        # seq starts again at 1 with every daemon run: the epoch tells a client that its
        # Last-Event-ID belongs to an earlier run, so it reloads the snapshot (issue 10)
        self.epoch = secrets.token_hex(8)
        self._ring: deque[HubEvent] = deque(maxlen=ring)
        self._fanout: Fanout[HubEvent] = Fanout(queue=4096, what="live")

    def publish(self, kind: str, payload: dict[str, Any]) -> HubEvent:
        """`kind` is a hubevents.HubKind and `payload` fits its model (a mismatch is logged)."""
        check_event(kind, payload)
        self.seq += 1
        event = HubEvent(self.seq, time.time(), kind, payload)
        self._ring.append(event)
        self._fanout.publish(event)
        return event

    def subscribe(self) -> Subscription[HubEvent]:
        return self._fanout.subscribe()

    def history(self, after: int = 0, limit: int = 5000) -> list[HubEvent]:
        events = [e for e in self._ring if e.id > after]
        return events[-limit:]

    @property
    def subscriber_count(self) -> int:
        return self._fanout.count

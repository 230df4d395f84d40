"""The one subscription primitive of every live stream: the core's hub and an agent's Bus.

A `Fanout` hands each published event to every `Subscription` without waiting: each has a
bounded queue, and one that is full is dropped (`dropped` becomes true) instead of slowing the
publisher. The events already queued are still delivered, then iteration ends, so a stream
writes what it had and the client resumes from history (`sse`, the `subscribe` verb).

`replay` is the resume step both the SSE streams and `subscribe` on host.sock use: subscribe
first, then read history after the client's last id, so an event published in between is in
both and is sent once; a history that no longer reaches back to the client's id says how many
it missed.

Call everything from the event loop's thread (wake-ups are `asyncio.Event`s).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Fanout", "Missed", "Numbered", "Subscription", "replay"]

log = logging.getLogger(__name__)


class Numbered(Protocol):
    @property
    def id(self) -> int: ...


E = TypeVar("E", bound=Numbered)


class Subscription(Generic[E]):
    """One live subscriber: `async for event in sub`, or `await sub.next()` and `drain()` the rest."""

    __slots__ = ("_fanout", "_items", "_maxsize", "_wakeup", "closed", "dropped")

    def __init__(self, fanout: Fanout[E], maxsize: int) -> None:
        self._fanout = fanout
        self._items: deque[E] = deque()
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self.dropped = False
        self.closed = False

    def _offer(self, event: E) -> bool:
        """False when the queue is full (the fanout then drops this subscriber)."""
        if len(self._items) >= self._maxsize:
            return False
        self._items.append(event)
        self._wakeup.set()
        return True

    def _end(self, *, dropped: bool) -> None:
        self.dropped = self.dropped or dropped
        self.closed = True
        self._wakeup.set()

    def __aiter__(self) -> Subscription[E]:
        return self

    async def __anext__(self) -> E:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event

    async def next(self) -> E | None:
        """The next event; None once the subscription ended (closed, dropped, source closed)."""
        while not self._items:
            if self.closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()

    def drain(self) -> list[E]:
        """Everything queued right now, without waiting (one write per wake-up)."""
        out = list(self._items)
        self._items.clear()
        return out

    def close(self) -> None:
        """Stop receiving; idempotent. A pending `next()` ends after the queued events."""
        self._fanout._subs.discard(self)
        self._end(dropped=False)


class Fanout(Generic[E]):
    """The subscribers of one source. `what` names the source in the drop warning."""

    def __init__(self, *, queue: int, what: str) -> None:
        self.queue = queue
        self.what = what
        self._subs: set[Subscription[E]] = set()

    def subscribe(self) -> Subscription[E]:
        sub = Subscription(self, self.queue)
        self._subs.add(sub)
        return sub

    def publish(self, event: E) -> None:
        """Hand `event` to every subscriber; a full one is dropped, never waited for."""
        slow = [sub for sub in self._subs if not sub._offer(event)]
        for sub in slow:
            log.warning("dropping a slow %s subscriber at %d", self.what, event.id)
            self._subs.discard(sub)
            sub._end(dropped=True)

    def close(self) -> None:
        """End every subscription (they deliver what they hold, then stop)."""
        for sub in list(self._subs):
            sub._end(dropped=False)
        self._subs.clear()

    @property
    def count(self) -> int:
        return len(self._subs)


@dataclass(frozen=True)
class Missed:
    """The history no longer reaches back: ids after `after` and before `next` are gone."""

    after: int
    next: int

    @property
    def count(self) -> int:
        return self.next - self.after - 1

    def to_json(self) -> dict[str, Any]:
        return {"after": self.after, "next": self.next, "missed": self.count}


async def replay(found: Iterable[E] | Awaitable[Iterable[E]], after: int) -> tuple[list[E | Missed], int]:
    """`found` (a source's `history(after=after)`, read after subscribing) with a `Missed` first
    if it does not reach back to `after`, and the newest id it holds: skip live events with ids
    at or below it."""
    if inspect.isawaitable(found):
        found = await found
    out: list[E | Missed] = []
    sent = after
    for event in found:
        if event.id > sent:
            if sent > 0 and event.id > sent + 1:
                out.append(Missed(sent, event.id))
            out.append(event)
            sent = event.id
    return out, sent

"""The message broker: recipients, broadcast, the send allow-list, body cap, at-least-once
delivery (recv → ack_turn / requeue_inflight), long-poll wake-ups and the vacuum.

The store (store/base.py) keeps the rows; the broker composes its operations and owns the
wake-ups: in-process for this node, and a store's hint (another node's NOTIFY) on top, with a
long-poll re-checking every `store.recheck_interval` seconds so a lost hint costs latency only.
Unread counts are kept here per recipient, refreshed from the store after every change, so the
synchronous views (the agents list) never read the store on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from hyperhive.core.hub import Hub
from hyperhive.errors import AgentNotFound, ErrorCode, HiveError, NotAllowed, NotFound
from hyperhive.names import BROADCAST, MANAGER, OPERATOR, SYSTEM
from hyperhive.protocol import MAX_BODY_BYTES, MAX_RECV, MAX_RECV_WAIT
from hyperhive.replies import Message
from hyperhive.store.base import MessageRow, Store

__all__ = ["Broker", "BodyTooLarge"]

log = logging.getLogger(__name__)
ACKED_RETENTION = 30 * 86400
DEFAULT_MAX_ATTEMPTS = 3
BODY_PREVIEW = 200


class BodyTooLarge(HiveError):
    code = ErrorCode.TOO_LARGE


class UnknownReply(HiveError):
    code = ErrorCode.UNKNOWN_REPLY


def _row_to_message(row: MessageRow) -> Message:
    return Message(
        id=row["id"],
        sender=row["sender"],
        recipient=row["recipient"],
        body=row["body"],
        sent_at=row["sent_at"],
        in_reply_to=row["in_reply_to"],
        broadcast=bool(row["broadcast"]),
        redelivered=bool(row["redelivered"]),
        delivered_at=row["delivered_at"],
        acked_at=row["acked_at"],
        attempts=row["attempts"],
        dead_at=row["dead_at"],
    )


class Broker:
    """`agents()` returns the names of existing agents (the lifecycle's registry);
    `allow_list(name)` returns an agent's allowed recipients ([] = anyone); a message requeued
    after `max_attempts` deliveries is parked as a dead letter."""

    def __init__(
        self,
        store: Store,
        hub: Hub,
        *,
        agents: Callable[[], Iterable[str]],
        allow_list: Callable[[str], list[str]] | None = None,
        clock: Callable[[], float] = time.time,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self.store = store
        self.max_attempts = max(1, max_attempts)
        self.hub = hub
        self._agents = agents
        self._allow_list = allow_list or (lambda _name: [])
        self._clock = clock
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._unread: dict[str, int] = {}
        self._unread_seq: dict[str, int] = {}
        self._seq = itertools.count(1)

    async def load(self) -> None:
        """At start: the unread counts, and the store's wake-up hints from other writers."""
        self._unread = dict(await self.store.unread_counts())
        await self.store.subscribe_wakeups(self._hinted)

    def _hinted(self, recipient: str) -> None:
        if recipient.startswith("#"):  # a hint for core/nodes.py (requests, relayed events), not a queue
            return
        self._wake(recipient)
        task = asyncio.ensure_future(self._refresh_unread([recipient]))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _refresh_unread(self, agents: Iterable[str]) -> None:
        """Re-read the unread counts of `agents`; a read that started later always wins."""
        for agent in set(agents):
            seq = next(self._seq)
            count = await self.store.unread(agent)
            if seq > self._unread_seq.get(agent, 0):
                self._unread_seq[agent] = seq
                if count:
                    self._unread[agent] = count
                else:
                    self._unread.pop(agent, None)

    # ---- sending -----------------------------------------------------------------------

    def check_route(self, sender: str, to: str) -> None:
        """The one allow-list check for every path that carries an agent's text to someone
        (send, broadcast, ask, answer): raises NotAllowed unless `sender` may reach `to`."""
        if sender in (OPERATOR, SYSTEM, MANAGER):
            return
        allowed = self._allow_list(sender)
        if allowed and to != MANAGER and to not in allowed:
            raise NotAllowed(
                f"{sender} may not send to {to!r}: allowed recipients are {', '.join(sorted(allowed))} "
                "(manager is always reachable; ask the manager to change your config)"
            )

    def _check_send(self, sender: str, to: str, body: str) -> list[str]:
        size = len(body.encode("utf-8", "surrogatepass"))
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge(f"body is {size} bytes, over the {MAX_BODY_BYTES}-byte cap; pass a /state path")
        agents = set(self._agents())
        self.check_route(sender, to)
        if to == BROADCAST:
            return sorted(agents - {sender})
        if to == OPERATOR:
            return [OPERATOR]
        if to not in agents:
            raise AgentNotFound(f"no agent named {to!r}")
        return [to]

    async def send(self, sender: str, to: str, body: str, in_reply_to: int | None = None) -> list[int]:
        """Commit the message (one row per recipient for a broadcast) and wake the recipients.
        Returns the row ids; returns only after the commit."""
        recipients = self._check_send(sender, to, body)
        if in_reply_to is not None:
            await self._check_reply(sender, in_reply_to)
        now = self._clock()
        broadcast = to == BROADCAST
        # the operator's inbox is a view, not a queue: it is delivered and acknowledged on arrival
        ids = await self.store.insert_messages(sender, recipients, body, now, in_reply_to=in_reply_to,
                                               broadcast=broadcast, settled=(OPERATOR,))  # fmt: skip
        await self._refresh_unread(r for r in recipients if r != OPERATOR)
        for recipient, mid in zip(recipients, ids, strict=True):
            self._wake(recipient)
            self.hub.publish(
                "message_sent",
                {"id": mid, "sender": sender, "recipient": recipient, "preview": body[:BODY_PREVIEW],
                 # the operator's inbox shows whole messages; the flow only previews
                 "body": body if recipient == OPERATOR else None,
                 "in_reply_to": in_reply_to, "broadcast": broadcast, "ts": now,
                 "unread": 0 if recipient == OPERATOR else self.unread(recipient)},
            )  # fmt: skip
        return ids

    async def _check_reply(self, sender: str, in_reply_to: int) -> None:
        """A reply names a message addressed to its sender (or sent by it); anything else would
        let a sender probe for, or thread under, other agents' messages."""
        m = await self.get(in_reply_to)
        if m is None or sender not in (m.sender, m.recipient):
            raise UnknownReply(f"in_reply_to #{in_reply_to}: no message to or from {sender} has that id")

    def _wake(self, recipient: str) -> None:
        for event in self._waiters.get(recipient, ()):
            event.set()

    # ---- receiving ---------------------------------------------------------------------

    async def recv(
        self, agent: str, wait_seconds: float = 0, max_messages: int = 1, *, abandon: asyncio.Event | None = None
    ) -> list[Message]:
        """Pending messages for `agent`, marked delivered. With wait_seconds > 0, long-poll until
        one arrives or the wait ends; 0 is a peek that returns at once. When `abandon` is set (the
        caller has gone) the long-poll ends empty without taking anything off the queue."""
        wait_seconds = min(max(wait_seconds, 0.0), MAX_RECV_WAIT)
        max_messages = min(max(max_messages, 1), MAX_RECV)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        rows: list[MessageRow] = []
        while True:
            event = asyncio.Event()
            # register before looking, so a send committed in between still wakes us
            self._waiters[agent].add(event)
            try:
                if abandon is not None and abandon.is_set():
                    rows = []
                    break
                if self.store.recheck_interval is None and not self._unread.get(agent):
                    # nothing pending (the count is re-read after every commit, before the wake):
                    # park without a writer transaction (issue 13)
                    rows = []
                else:
                    rows = await self.store.claim_pending(agent, max_messages, self._clock())
                if rows or wait_seconds <= 0:
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if self.store.recheck_interval is not None:  # another node's send is only hinted
                    remaining = min(remaining, self.store.recheck_interval)
                await _wait_any(event, abandon, remaining)
            finally:
                waiters = self._waiters.get(agent)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[agent]
        messages = [_row_to_message(r) for r in rows]
        if messages:
            await self._refresh_unread([agent])
        unread = self.unread(agent) if messages else 0
        for m in messages:
            self.hub.publish(
                "message_delivered",
                {"id": m.id, "recipient": agent, "sender": m.sender, "unread": unread, "redelivered": m.redelivered},
            )
        return messages

    async def ack_turn(self, agent: str) -> int:
        """Acknowledge every delivered, unacknowledged message of `agent`."""
        count = await self.store.ack(agent, self._clock())
        if count:
            self.hub.publish("message_acked", {"agent": agent, "count": count, "unread": self.unread(agent)})
        return count

    async def requeue_inflight(self, agent: str) -> int:
        """Put delivered-but-unacknowledged rows back; their next delivery says redelivered. A
        row already delivered `max_attempts` times is parked as a dead letter instead, and the
        operator and the manager are told."""
        now = self._clock()
        count, parked = await self.store.requeue_inflight(agent, self.max_attempts, now)
        if count:
            await self._refresh_unread([agent])
            self._wake(agent)
            self.hub.publish("message_requeued", {"agent": agent, "count": count, "unread": self.unread(agent)})
        for row in parked:
            await self._announce_dead(_row_to_message(row))
        return count

    async def _announce_dead(self, m: Message) -> None:
        log.warning("message #%d %s -> %s parked as a dead letter after %d failed deliveries",
                    m.id, m.sender, m.recipient, m.attempts)  # fmt: skip
        fields = {"id": m.id, "sender": m.sender, "recipient": m.recipient, "attempts": m.attempts,
                  "preview": m.body[:BODY_PREVIEW]}  # fmt: skip
        self.hub.publish("dead_letter", {**fields, "ts": m.dead_at, "unread": self.unread(m.recipient)})
        await self.system_event(OPERATOR, "dead_letter", **fields)
        if m.recipient != MANAGER:  # a manager whose turns fail would only pile up more of these
            await self.system_event(MANAGER, "dead_letter", **fields)

    # ---- dead letters --------------------------------------------------------------------

    async def dead_letters(self, limit: int = 200) -> list[Message]:
        """Parked messages waiting for the operator, oldest first."""
        return [_row_to_message(r) for r in await self.store.dead_letters(limit)]

    async def retry_dead(self, message_id: int) -> Message:
        """Put a dead letter back into its recipient's queue with fresh attempts."""
        row = await self.store.retry_dead(message_id)
        if row is None:
            raise NotFound(f"no dead letter #{message_id}")
        await self._refresh_unread([row["recipient"]])
        self._wake(row["recipient"])
        self.hub.publish("dead_letter_resolved", {"id": message_id, "action": "retried", "recipient": row["recipient"],
                                                  "unread": self.unread(row["recipient"])})  # fmt: skip
        return _row_to_message(row)

    async def discard_dead(self, message_id: int) -> Message:
        """Acknowledge a dead letter without delivering it (kept until the vacuum, never lost silently)."""
        now = self._clock()
        row = await self.store.discard_dead(message_id, now)
        if row is None:
            raise NotFound(f"no dead letter #{message_id}")
        log.info("dead letter #%d for %s discarded by the operator", message_id, row["recipient"])
        self.hub.publish(
            "dead_letter_resolved", {"id": message_id, "action": "discarded", "recipient": row["recipient"]}
        )
        return _row_to_message(row)

    def unread(self, agent: str) -> int:
        """Pending (not yet delivered, not parked) messages of `agent`, from the broker's counts."""
        return self._unread.get(agent, 0)

    def unread_counts(self) -> dict[str, int]:
        return dict(self._unread)

    async def recent(
        self, recipient: str | None = None, limit: int = 50, *, involving: str | None = None
    ) -> list[Message]:
        """Newest first. `recipient` filters by recipient; `involving` by sender or recipient."""
        rows = await self.store.recent_messages(recipient=recipient, involving=involving, limit=limit)
        return [_row_to_message(r) for r in rows]

    async def get(self, message_id: int) -> Message | None:
        row = await self.store.get_message(message_id)
        return _row_to_message(row) if row else None

    # ---- retention ---------------------------------------------------------------------

    async def vacuum(self, now: float | None = None) -> int:
        """Delete acknowledged rows older than 30 days; never an unacknowledged one."""
        cutoff = (self._clock() if now is None else now) - ACKED_RETENTION
        return await self.store.vacuum_messages(cutoff)

    async def run_vacuum(self, interval: float = 3600) -> None:
        """Hourly, with an immediate first sweep."""
        while True:
            try:
                removed = await self.vacuum()
                if removed:
                    log.info("broker vacuum removed %d acknowledged messages", removed)
            except Exception:
                log.exception("broker vacuum failed")
            await asyncio.sleep(interval)

    async def system_event(self, to: str, event: str, **fields: Any) -> None:
        """A helper event from `system` (JSON body with an `event` field)."""
        import json

        body = json.dumps({"event": event, **fields}, ensure_ascii=False)
        if len(body.encode()) > MAX_BODY_BYTES:
            body = json.dumps({"event": event, "note": "event truncated: fields too large"})
        try:
            await self.send(SYSTEM, to, body)
        except AgentNotFound:
            log.info("system event %s for %s dropped: no such agent", event, to)


async def _wait_any(event: asyncio.Event, other: asyncio.Event | None, timeout: float) -> None:
    """Wait until `event` or `other` is set, or `timeout` seconds pass."""
    waits = [asyncio.ensure_future(event.wait())]
    if other is not None:
        waits.append(asyncio.ensure_future(other.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)

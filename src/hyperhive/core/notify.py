"""Push notifications (`[notify]` in hive.toml): a JSON webhook and an ntfy-compatible topic
hear about what waits for the operator — a new approval, a question to the operator, an agent
crash, a budget stop — with a link to the dashboard. Never a token, never an action: acting
takes the dashboard's session.

Reading the hub never waits on the network: events go to a bounded queue that one sender
task drains (a full queue drops the newest, logged once). Each sink is rate-limited; a failing
sink is logged once, then quietly until it works again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from hyperhive.config import NotifySettings
from hyperhive.core.hub import Hub, HubEvent
from hyperhive.names import OPERATOR

__all__ = ["Notification", "Notifier", "notification_for"]

log = logging.getLogger(__name__)

QUEUE_SIZE: Final = 100
TEXT_LIMIT: Final = 300
SEND_TIMEOUT: Final = 10.0
RATE_PER_MINUTE: Final = 20  # per sink; a crash loop must not flood a phone
FAILURE_QUIET: Final = 300.0  # seconds between two "still failing" log lines


@dataclass(frozen=True)
class Notification:
    event: str  # approval | question | crash | budget_stop
    title: str  # fixed words and validated agent names only (it travels in an HTTP header)
    message: str
    agent: str | None
    id: int | None
    ts: float

    def body(self, link: str) -> dict[str, Any]:
        return {"event": self.event, "title": self.title, "message": self.message, "agent": self.agent,
                "id": self.id, "ts": self.ts, "link": link}  # fmt: skip


def _clip(text: Any) -> str:
    s = str(text or "").strip()
    return s if len(s) <= TEXT_LIMIT else s[: TEXT_LIMIT - 1] + "…"


def notification_for(event: HubEvent) -> Notification | None:
    """What the operator hears about a hub event (None: nothing)."""
    p = event.payload
    if event.kind == "approval_added":
        what = str(p.get("kind", "request")).replace("_", " ")
        desc = f": {_clip(p.get('description'))}" if p.get("description") else ""
        return Notification("approval", f"hyperhive: approval #{p.get('id')} waits",
                            f"{p.get('requested_by')} asks to {what} {p.get('agent')}{desc}", p.get("agent"),
                            p.get("id"), event.ts)  # fmt: skip
    if event.kind == "question_added" and p.get("target") in (None, OPERATOR):
        return Notification("question", f"hyperhive: {p.get('asker')} asks you",
                            _clip(p.get("question")), p.get("asker"), p.get("id"), event.ts)  # fmt: skip
    if event.kind == "container_crash":
        how = f"signal {p['signal']}" if p.get("signal") else f"exit status {p.get('exit_code')}"
        return Notification("crash", f"hyperhive: {p.get('agent')} crashed", f"{p.get('agent')} exited ({how})",
                            p.get("agent"), None, event.ts)  # fmt: skip
    if event.kind == "budget" and p.get("paused"):  # core/budget.py paused an agent ("*": the whole hive)
        who = "every agent" if p.get("agent") == "*" else p.get("agent")
        return Notification("budget_stop", f"hyperhive: {who} paused by its budget",
                            f"{who} is over budget: its messages wait until you decide", p.get("agent"), None,
                            event.ts)  # fmt: skip
    return None


class _Sink:
    """One destination: its rate limit and its failure state."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.sent: list[float] = []
        self.failing_since: float | None = None
        self.last_failure_log = 0.0
        self.rate_logged = False

    def allow(self, now: float) -> bool:
        self.sent = [t for t in self.sent if now - t < 60]
        if len(self.sent) >= RATE_PER_MINUTE:
            if not self.rate_logged:
                log.warning("notify %s: over %d a minute, dropping until it calms down", self.name, RATE_PER_MINUTE)
                self.rate_logged = True
            return False
        self.rate_logged = False
        self.sent.append(now)
        return True

    def failed(self, why: str, now: float) -> None:
        if self.failing_since is None or now - self.last_failure_log >= FAILURE_QUIET:
            log.warning("notify %s: delivery failed (%s); further failures are logged every %.0f s",
                        self.name, why, FAILURE_QUIET)  # fmt: skip
            self.last_failure_log = now
        if self.failing_since is None:
            self.failing_since = now

    def worked(self) -> None:
        if self.failing_since is not None:
            log.info("notify %s: delivering again", self.name)
        self.failing_since = None


class Notifier:
    def __init__(self, settings: NotifySettings, hub: Hub, link: Callable[[], str | None]) -> None:
        self.settings = settings
        self.hub = hub
        self._link = link
        self.queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.sinks: list[_Sink] = []
        if settings.webhook_url:
            self.sinks.append(_Sink("webhook", settings.webhook_url))
        if settings.ntfy_url:
            self.sinks.append(_Sink("ntfy", settings.ntfy_url))
        self._full_logged = False

    @property
    def failing(self) -> list[str]:
        """The sinks whose last delivery failed (for /healthz)."""
        return [s.name for s in self.sinks if s.failing_since is not None]

    def link(self) -> str:
        return self.settings.link or self._link() or ""

    def offer(self, note: Notification) -> None:
        """Queue a notification; never waits (a full queue drops it)."""
        try:
            self.queue.put_nowait(note)
            self._full_logged = False
        except asyncio.QueueFull:
            if not self._full_logged:
                log.warning("notify: %d notifications are waiting; dropping new ones", QUEUE_SIZE)
                self._full_logged = True

    async def run(self) -> None:
        """Listen to the hub and deliver, until cancelled."""
        sender = asyncio.create_task(self._send_loop(), name="notify-send")
        try:
            while True:
                sub = self.hub.subscribe()
                try:
                    async for event in sub:
                        note = notification_for(event)
                        if note is not None:
                            self.offer(note)
                finally:
                    sub.close()
                log.warning("notify: fell behind the live events; resubscribing")
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_loop(self) -> None:
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT, follow_redirects=False) as client:
            while True:
                note = await self.queue.get()
                for sink in self.sinks:
                    if sink.allow(time.monotonic()):
                        await self._deliver(client, sink, note)

    async def _deliver(self, client: httpx.AsyncClient, sink: _Sink, note: Notification) -> None:
        link = self.link()
        try:
            if sink.name == "ntfy":
                headers = {"Title": note.title, "Tags": note.event}
                if link:
                    headers["Click"] = link
                if self.settings.ntfy_token:
                    headers["Authorization"] = f"Bearer {self.settings.ntfy_token}"
                response = await client.post(sink.url, content=note.message.encode(), headers=headers)
            else:
                response = await client.post(sink.url, json=note.body(link))
        except (httpx.HTTPError, OSError, UnicodeError) as exc:
            sink.failed(type(exc).__name__, time.monotonic())  # not str(exc): it may name the secret URL
            return
        if response.status_code >= 300:
            sink.failed(f"HTTP {response.status_code}", time.monotonic())
        else:
            sink.worked()

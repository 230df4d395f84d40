"""System events that need no decision do not start a turn of their own (issue 13).

A kick after spawn/start/restart and the lifecycle notices `spawned`, `killed`, `logged_in`
are *held*: acknowledged at once (they are persisted here first, so a harness restart does not
lose them) and put in front of the agent's next real message. The manager also gets the held
notices as one digest turn when nothing else woke it for `digest_seconds`. Everything else
(`container_crash`, `approval_resolved`, `dead_letter`, questions, any peer or operator
message) starts a turn at once, with whatever is held folded in front.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hyperhive.names import SYSTEM

__all__ = ["DEFAULT_DIGEST_SECONDS", "QUIET_EVENTS", "Held", "HeldEvents", "quiet_event"]

QUIET_EVENTS = frozenset({"kick", "spawned", "killed", "logged_in"})
DEFAULT_DIGEST_SECONDS = 300.0
MAX_HELD = 200  # a manager that never wakes keeps the newest notices, not an unbounded list


def quiet_event(message: dict[str, Any]) -> str | None:
    """The event name when `message` is a system notice that needs no turn of its own."""
    if message.get("sender") != SYSTEM:
        return None
    try:
        body = json.loads(message.get("body") or "")
    except ValueError:
        return None
    event = body.get("event") if isinstance(body, dict) else None
    return event if event in QUIET_EVENTS else None


@dataclass(frozen=True)
class Held:
    id: int
    event: str
    text: str
    at: float

    def line(self) -> str:
        return " ".join(self.text.split())  # one line each in the prompt


def _text_of(event: str, body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if event == "kick" and isinstance(data, dict) and isinstance(data.get("note"), str):
        return f"kick: {data['note']}"
    return f"system event: {body}"


class HeldEvents:
    """The held notices, in arrival order, persisted to `path` (a failed write keeps them in
    memory and is reported by `add`'s return value)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[Held] = []
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            self.items = [Held(int(h["id"]), str(h["event"]), str(h["text"]), float(h["at"])) for h in raw]
        except (OSError, ValueError, TypeError, KeyError):
            self.items = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, message: dict[str, Any], event: str) -> str | None:
        """Hold one notice; a newer kick replaces an older one. Returns a warning on a failed write."""
        if event == "kick":
            self.items = [h for h in self.items if h.event != "kick"]
        self.items.append(Held(int(message["id"]), event, _text_of(event, str(message.get("body", ""))), time.time()))
        del self.items[:-MAX_HELD]
        return self._save()

    def clear(self) -> str | None:
        self.items = []
        return self._save()

    def preface(self) -> list[str]:
        return [h.line() for h in self.items]

    def first_at(self) -> float | None:
        return self.items[0].at if self.items else None

    def digest_body(self) -> str:
        lines = [f"digest: {len(self.items)} system notice(s) that needed no turn of their own:"]
        return "\n".join(lines + [f"- {h.line()}" for h in self.items])

    def _save(self) -> str | None:
        try:
            if not self.items:
                self.path.unlink(missing_ok=True)
                return None
            tmp = self.path.with_name(self.path.name + ".tmp")
            data = json.dumps([h.__dict__ for h in self.items], ensure_ascii=False)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
            tmp.replace(self.path)
        except OSError as exc:
            return f"could not persist held system notices to {self.path}: {exc}"
        return None

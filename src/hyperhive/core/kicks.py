"""The kick: the system message an agent finds first after every start, telling it why it runs
and where its durable notes are."""

from __future__ import annotations

import time

from hyperhive.cages.base import CAGE_STATE

__all__ = ["kick_note"]


def kick_note(reason: str, now: float | None = None) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    return (
        f"you were {reason} at {when}. your durable notes are at {CAGE_STATE}/notes.md "
        "(read them if you have lost context); your previous session was resumed if it existed. "
        "wait for work with recv(wait_seconds=180)."
    )

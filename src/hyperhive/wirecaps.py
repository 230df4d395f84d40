"""The wire protocol's version, caps and harness states: what both ends need without the typed
requests (`protocol.py`, which re-exports all of these). Kept apart so a waiting harness imports
these numbers and not pydantic (issue 13: an idle agent costs close to the interpreter's floor)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "HARNESS_STATES",
    "MAX_BODY_BYTES",
    "MAX_LINE_BYTES",
    "MAX_NAP_SECONDS",
    "MAX_QUESTION_TTL",
    "MAX_RECV",
    "MAX_RECV_WAIT",
    "MAX_TEXT",
    "PROTOCOL_VERSION",
    "OVER_BUDGET_MARK",
    "HarnessState",
]

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 1024 * 1024
"""A request line longer than this is refused and the connection closed."""
MAX_BODY_BYTES = 64 * 1024
"""A message body over this many UTF-8 bytes is refused; pass larger things as /state paths."""
MAX_RECV_WAIT = 180
MAX_RECV = 32
MAX_QUESTION_TTL = 6 * 3600
MAX_NAP_SECONDS = 6 * 3600
MAX_TEXT = 16 * 1024
"""Cap on short free-text fields (descriptions, notes, questions, answers)."""

OVER_BUDGET_MARK = "[over budget]"
"""Begins the gateway's refusal of a model call over a budget (core/budget.py). The claude CLI
reports that 403 as "Failed to authenticate": the harness reads this mark so a refused turn is
queued again for after the budget's resume, not taken for a logged-out CLI."""

HarnessState = Literal["starting", "idle", "thinking", "compacting", "napping", "needs_login"]
HARNESS_STATES: tuple[str, ...] = get_args(HarnessState)
"""Every state a harness reports (harness/loop.py sets only these)."""

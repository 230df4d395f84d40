"""What may reach git: approval ids, commit shas, tag names, annotation text. Checked before any
git call, so git never sees a branch name, an option or a revision expression from a client."""

from __future__ import annotations

import re

from hyperhive.errors import ErrorCode, HiveError

__all__ = ["HEX_RE", "STAGES", "TAG_RE", "InvalidRef", "RefNotFound", "approval_id", "commit_ref", "note"]

MAX_NOTE_CHARS = 8 * 1024
STAGES = ("proposal", "approved", "deployed", "failed", "denied")
HEX_RE = re.compile(r"[0-9a-fA-F]{7,40}")
TAG_RE = re.compile(r"(proposal|approved|deployed|failed|denied)/(0|[1-9][0-9]{0,17})")


class InvalidRef(HiveError):
    """A commit ref, approval id or path that is refused before it reaches git."""

    code = ErrorCode.BAD_REQUEST


class RefNotFound(HiveError):
    """A well-formed ref, tag or file that does not exist in the repo."""

    code = ErrorCode.NOT_FOUND


def approval_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 10**18:
        raise InvalidRef(f"approval id {str(value)[:30]!r} must be a positive integer")
    return value


def commit_ref(value: object) -> str:
    if not isinstance(value, str) or not HEX_RE.fullmatch(value):
        shown = repr(value)[:60]
        raise InvalidRef(f"commit_ref {shown} must be a commit sha of 7-40 hex digits (not a branch or tag name)")
    return value.lower()


def note(text: str | None, default: str) -> bytes:
    """A tag annotation: no NULs, never empty, capped."""
    text = (text or "").replace("\x00", "").strip() or default
    if len(text) > MAX_NOTE_CHARS:
        text = text[:MAX_NOTE_CHARS] + "\n[truncated]"
    return (text + "\n").encode("utf-8", "replace")

"""The HiveError root and its subclasses; callers branch on the class and fields, not on text."""

from __future__ import annotations

__all__ = [
    "AgentNotFound",
    "CageError",
    "Conflict",
    "DaemonNotRunning",
    "HiveError",
    "InvalidName",
    "NotAllowed",
    "ProtocolError",
    "StartupError",
]


class HiveError(Exception):
    """Root of every error hyperhive raises on purpose. `code` is the wire error code."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidName(HiveError):
    code = "invalid_name"


class ProtocolError(HiveError):
    """A request that is not valid on the wire: bad JSON, unknown verb, wrong field."""

    code = "bad_request"


class NotAllowed(HiveError):
    """The caller's identity (its socket) does not grant this."""

    code = "forbidden"


class AgentNotFound(HiveError):
    code = "not_found"


class Conflict(HiveError):
    """The request is well-formed but the current state refuses it (already resolved, exists…)."""

    code = "conflict"


class CageError(HiveError):
    """A sandbox could not be built or started."""

    code = "cage_error"


class DaemonNotRunning(HiveError):
    code = "not_running"


class StartupError(HiveError):
    code = "startup"

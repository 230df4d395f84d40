"""The error codes and the HiveError root with its subclasses; callers branch on the class and
its `code`, never on the message text."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AgentNotFound",
    "CageError",
    "Conflict",
    "DaemonNotRunning",
    "ErrorCode",
    "HiveError",
    "InvalidName",
    "NotAllowed",
    "NotFound",
    "ProtocolError",
    "StartupError",
]


class ErrorCode(StrEnum):
    """Every code an `ok: false` reply (or an error raised in this package) carries in `code`.
    This is the one list: tests/test_error_codes.py checks the source sends no other, and
    docs/protocol.md documents each."""

    BAD_JSON = "bad_json"
    """The line is not a JSON object."""
    BAD_REQUEST = "bad_request"
    """A field is missing, of the wrong type, or not allowed."""
    UNKNOWN_VERB = "unknown_verb"
    """`cmd` names no verb, or none this socket offers."""
    LINE_TOO_LONG = "line_too_long"
    """The line exceeded MAX_LINE_BYTES; the connection is closed after this reply."""
    INVALID_NAME = "invalid_name"
    """An agent name does not match the name rule or is reserved."""
    TOO_LARGE = "too_large"
    """A body exceeded MAX_BODY_BYTES."""
    FORBIDDEN = "forbidden"
    """The caller's socket does not grant this (allow-list, manager-only, self-target, unsafe path)."""
    NOT_FOUND = "not_found"
    """No such agent, approval, question, dead letter or kept state."""
    CONFLICT = "conflict"
    """The current state refuses the request (already exists, already resolved)."""
    INTERNAL = "internal"
    """The daemon failed; the request may be retried."""
    UNKNOWN_REPLY = "unknown_reply"
    """`in_reply_to` names no message addressed to the sender (or sent by it)."""
    DUPLICATE_KEY = "duplicate_key"
    """A JSON object in the request names the same key twice."""
    BUSY = "busy"
    """The socket already holds its cap of open connections; this one is closed after the reply."""
    CONFIG_INVALID = "config_invalid"
    """An agent.toml (or the file it names) does not pass validation."""
    GIT_ERROR = "git_error"
    """A git command on a config repo failed."""
    CAGE_ERROR = "cage_error"
    """A sandbox could not be built, started or entered."""
    NODE_UNREACHABLE = "node_unreachable"
    """The agent's node (another `hive serve --node`) has no recent heartbeat, or did not answer."""
    NOT_RUNNING = "not_running"
    """Client side: no daemon answers on the socket."""
    STARTUP = "startup"
    """Client side: the daemon refused to start (bad config, socket in use)."""
    ERROR = "error"
    """A failure with no more specific code (the HiveError root: an unreadable events db, a
    store that cannot be opened; the CLI's own refusals)."""


class HiveError(Exception):
    """Root of every error hyperhive raises on purpose. `code` is the wire error code."""

    code: str = ErrorCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidName(HiveError):
    code = ErrorCode.INVALID_NAME


class ProtocolError(HiveError):
    """A request that is not valid on the wire: bad JSON, unknown verb, wrong field."""

    code = ErrorCode.BAD_REQUEST


class NotAllowed(HiveError):
    """The caller's identity (its socket) does not grant this."""

    code = ErrorCode.FORBIDDEN


class NotFound(HiveError):
    """No such approval, question, dead letter or kept state (an agent: AgentNotFound)."""

    code = ErrorCode.NOT_FOUND


class AgentNotFound(NotFound):
    """No agent by that name."""


class Conflict(HiveError):
    """The request is well-formed but the current state refuses it (already resolved, exists…)."""

    code = ErrorCode.CONFLICT


class CageError(HiveError):
    """A sandbox could not be built or started."""

    code = ErrorCode.CAGE_ERROR


class DaemonNotRunning(HiveError):
    code = ErrorCode.NOT_RUNNING


class StartupError(HiveError):
    code = ErrorCode.STARTUP

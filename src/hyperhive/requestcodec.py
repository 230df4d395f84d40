"""Decoding one request line into its typed model (`protocol.Request`), and the error reply:
strict JSON (no duplicate keys, no lone surrogates), the verb checked first, a validation failure
mapped to its wire code. No I/O."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hyperhive.errors import ErrorCode, ProtocolError
from hyperhive.protocol import PROTOCOL_VERSION, REQUEST_ADAPTER, VERBS

__all__ = ["ProtocolFailure", "decode_request", "error_reply"]


class ProtocolFailure(ProtocolError):
    """A request that failed to decode; `code` is one of ErrorCode."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.endswith("Req")))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"`{loc}`: {msg}" if loc else msg)
    return "; ".join(parts)


def _code(exc: ValidationError) -> ErrorCode:
    """The wire code of a failed validation, from the error types our validators raise."""
    types = {err["type"] for err in exc.errors(include_url=False)[:3]}
    if ErrorCode.TOO_LARGE in types:
        return ErrorCode.TOO_LARGE
    if ErrorCode.INVALID_NAME in types:
        return ErrorCode.INVALID_NAME
    return ErrorCode.BAD_REQUEST


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys; a request must not be read two ways."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def decode_request(line: bytes | str) -> Any:
    """Decode one request line into its typed model, or raise ProtocolFailure."""
    import json

    try:
        data = json.loads(line, object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as exc:
        raise ProtocolFailure(f"key {exc.key[:40]!r} appears twice in one object", ErrorCode.DUPLICATE_KEY) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolFailure(f"the line is not valid JSON ({exc.__class__.__name__})", ErrorCode.BAD_JSON) from None
    except RecursionError:  # deeply nested arrays/objects inside the line cap
        raise ProtocolFailure("the line is not valid JSON (nested too deeply)", ErrorCode.BAD_JSON) from None
    if not isinstance(data, dict):
        raise ProtocolFailure("a request must be a JSON object", ErrorCode.BAD_JSON)
    if (b"\\u" if isinstance(line, bytes) else "\\u") in line:  # type: ignore[operator]
        try:  # a lone surrogate escape ("\\ud800") decodes, but no store or socket can encode it
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolFailure(
                "a string holds a lone surrogate escape; send valid Unicode", ErrorCode.BAD_REQUEST
            ) from None
    cmd = data.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolFailure("`cmd`: missing or not a string", ErrorCode.BAD_REQUEST)
    if cmd not in VERBS:
        raise ProtocolFailure(f"unknown verb {cmd[:40]!r}", ErrorCode.UNKNOWN_VERB)
    try:
        return REQUEST_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ProtocolFailure(_describe(exc), _code(exc)) from None


def error_reply(message: str, code: str) -> dict[str, Any]:
    return {"version": PROTOCOL_VERSION, "ok": False, "error": message, "code": code}

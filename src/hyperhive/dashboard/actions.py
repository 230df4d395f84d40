"""The dashboard's actions (`POST /api/...`): each one is the operator's host verb, run through
the same `Verbs` and validated by the same protocol model as on host.sock, so a form post and
`hive` get one cap, one error code and one code path (issue 10).

Actions take JSON or an urlencoded form and answer JSON: `{ok: true, …}` or `{ok: false, error}`
with a 4xx chosen from the error's code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hyperhive.core.sockets import Identity
from hyperhive.core.verbs import Verbs
from hyperhive.errors import ErrorCode, HiveError, NotAllowed, NotFound, ProtocolError
from hyperhive.names import OPERATOR
from hyperhive.requestcodec import decode_request

__all__ = ["NO_STORE", "STATUS_FOR_CODE", "action", "action_routes", "err", "ok", "operator_verb"]

log = logging.getLogger(__name__)

NO_STORE: Final = {"cache-control": "no-store"}
STATUS_FOR_CODE: Final[dict[str, int]] = {
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.INVALID_NAME: 400,
    ErrorCode.BAD_REQUEST: 400,
    ErrorCode.BAD_JSON: 400,
    ErrorCode.DUPLICATE_KEY: 400,
    ErrorCode.UNKNOWN_REPLY: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.CAGE_ERROR: 502,
}
AGENT_ACTIONS: Final = {"start": {}, "stop": {}, "restart": {}, "destroy": {}, "purge": {"purge": True}}
KEPT_ACTIONS: Final = frozenset({"revive", "purge"})
OPERATOR_ID: Final = Identity("operator", OPERATOR)

Handler = Callable[[Request], Awaitable[Response]]


def err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status, headers=NO_STORE)


def ok(**fields: Any) -> JSONResponse:
    return JSONResponse({"ok": True, **fields}, headers=NO_STORE)


def action(fn: Handler) -> Handler:
    """Map HiveError subclasses to their status; anything else is a logged 500 in JSON."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except HiveError as exc:
            return err(STATUS_FOR_CODE.get(exc.code, 400), exc.message)
        except HTTPException as exc:  # the body cap (413) raised from the guard's receive
            return err(exc.status_code, str(exc.detail))
        except Exception as exc:  # noqa: BLE001 — the operator gets a message, the log the trace
            log.exception("dashboard action %s failed", request.url.path)
            return err(500, f"internal error: {type(exc).__name__}")

    return wrapped


async def fields_of(request: Request) -> dict[str, Any]:
    """The action's arguments: a JSON object or an urlencoded form (the guard capped the body)."""
    raw = await request.body()
    if not raw:
        return {}
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ProtocolError(f"body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ProtocolError("body must be a JSON object")
        return data
    if ctype.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[-1] for k, v in form.items()}
    raise ProtocolError("send application/json or application/x-www-form-urlencoded")


def _optional(value: Any) -> Any:
    """A form's empty field is an omitted one."""
    return None if value == "" else value


def _int_or_none(value: Any, key: str) -> int | None:
    """A form sends numbers as text; JSON as numbers. Either becomes an int here."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ProtocolError(f"field {key!r} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"field {key!r} must be an integer") from None


async def operator_verb(verbs: Verbs, request: dict[str, Any]) -> dict[str, Any]:
    """Run one host verb as the operator: decoded and validated exactly as a host.sock line."""
    decoded = decode_request(json.dumps({k: v for k, v in request.items() if v is not None}))
    reply = await verbs.handle(OPERATOR_ID, decoded)
    return reply


def action_routes(services: Any) -> list[Route]:
    verbs = Verbs(services)

    async def call(**request: Any) -> dict[str, Any]:
        return await operator_verb(verbs, request)

    @action
    async def agent_action(request: Request) -> Response:
        name = request.path_params["name"]
        verb = request.path_params["action"]
        if verb not in AGENT_ACTIONS:
            raise NotFound(f"no action {verb!r}")
        cmd = "destroy" if verb == "purge" else verb
        await call(cmd=cmd, name=name, **AGENT_ACTIONS[verb])
        return ok(agent=name, action=verb)

    @action
    async def kept_action(request: Request) -> Response:
        name = request.path_params["name"]
        verb = request.path_params["action"]
        if verb not in KEPT_ACTIONS:
            raise NotFound(f"no action {verb!r}")
        if name == "manager":
            raise ProtocolError("'manager' is a reserved name")
        reply = await call(cmd=verb, name=name)
        return ok(agent=name, action=verb, **({"approval": reply["approval"]} if verb == "revive" else {}))

    @action
    async def approve(request: Request) -> Response:
        return ok(**await call(cmd="approve", id=request.path_params["id"]))

    @action
    async def deny(request: Request) -> Response:
        fields = await fields_of(request)
        return ok(**await call(cmd="deny", id=request.path_params["id"], note=_optional(fields.get("note"))))

    @action
    async def request_spawn(request: Request) -> Response:
        fields = await fields_of(request)
        return ok(
            **await call(cmd="request_spawn", name=fields.get("name"), description=_optional(fields.get("description")))
        )

    @action
    async def answer(request: Request) -> Response:
        fields = await fields_of(request)
        reply = await call(cmd="answer", id=request.path_params["id"], answer=_optional(fields.get("answer")))
        return ok(question=reply["question"])

    @action
    async def cancel(request: Request) -> Response:
        return ok(**await call(cmd="cancel_question", id=request.path_params["id"]))

    @action
    async def dead_letter(request: Request) -> Response:
        verb = {"retry": "retry_dead", "discard": "discard_dead"}.get(request.path_params["action"])
        if verb is None:
            return err(404, "no such action: retry or discard")
        return ok(**await call(cmd=verb, id=request.path_params["id"]))

    @action
    async def send(request: Request) -> Response:
        fields = await fields_of(request)
        to = fields.get("to")
        if not isinstance(to, str) or not to:
            raise ProtocolError("missing field 'to'")
        to = to.strip().removeprefix("@")
        if to == OPERATOR:
            raise ProtocolError("the operator cannot message the operator")
        bound = request.scope.get("hh_page_agent")
        if bound is not None and to != bound:  # the page of /agent/<bound>/ talks to <bound> only
            raise NotAllowed(f"a message from {bound}'s page goes to {bound} only")
        in_reply_to = _int_or_none(fields.get("in_reply_to"), "in_reply_to")
        reply = await call(cmd="send", to=to, body=_optional(fields.get("body")), in_reply_to=in_reply_to)
        return ok(ids=reply["ids"], to=to)

    return [
        Route("/api/agents/{name}/{action}", agent_action, methods=["POST"]),
        Route("/api/kept/{name}/{action}", kept_action, methods=["POST"]),
        Route("/api/approvals/{id:int}/approve", approve, methods=["POST"]),
        Route("/api/approvals/{id:int}/deny", deny, methods=["POST"]),
        Route("/api/request-spawn", request_spawn, methods=["POST"]),
        Route("/api/questions/{id:int}/answer", answer, methods=["POST"]),
        Route("/api/questions/{id:int}/cancel", cancel, methods=["POST"]),
        Route("/api/send", send, methods=["POST"]),
        Route("/api/dead-letters/{id:int}/{action}", dead_letter, methods=["POST"]),
    ]

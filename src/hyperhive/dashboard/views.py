"""Dashboard routes: the page shell, login/logout, the snapshot, the live stream and the actions.

Every route runs behind `auth.Guard` (session, Host, CSRF, body cap). Actions take JSON or an
urlencoded form and answer JSON: `{ok: true, …}` or `{ok: false, error}` with a 4xx. Names from
the request are validated before they reach the core; K3PT ST4T3 names must also be in the
database's kept list, never a path.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from hyperhive.dashboard.auth import Auth, clear_cookies, page, session_cookies
from hyperhive.dashboard.downpage import read_log_tail
from hyperhive.errors import AgentNotFound, HiveError, NotAllowed, ProtocolError
from hyperhive.names import OPERATOR, validate_agent_name, validate_recipient
from hyperhive.sse import sse_response

__all__ = ["routes"]

log = logging.getLogger(__name__)

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
INBOX_LIMIT: Final = 50
FLOW_LIMIT: Final = 200
PREVIEW: Final = 200
STATUS_FOR_CODE: Final = {
    "not_found": 404,
    "conflict": 409,
    "forbidden": 403,
    "invalid_name": 400,
    "bad_request": 400,
    "too_large": 413,
    "cage_error": 502,
}
AGENT_ACTIONS: Final = frozenset({"start", "stop", "restart", "destroy", "purge"})
KEPT_ACTIONS: Final = frozenset({"revive", "purge"})
NO_STORE: Final = {"cache-control": "no-store"}


def _err(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status, headers=NO_STORE)


def _ok(**fields: Any) -> JSONResponse:
    return JSONResponse({"ok": True, **fields}, headers=NO_STORE)


async def _fields(request: Request) -> dict[str, Any]:
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


def _text(fields: dict[str, Any], key: str, *, required: bool = True, limit: int = 64 * 1024) -> str | None:
    value = fields.get(key)
    if value is None or value == "":
        if required:
            raise ProtocolError(f"missing field {key!r}")
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"field {key!r} must be a string")
    if len(value) > limit:
        raise ProtocolError(f"field {key!r} is over {limit} characters")
    return value


def _int_or_none(value: Any, key: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ProtocolError(f"field {key!r} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ProtocolError(f"field {key!r} must be an integer") from None


Handler = Callable[[Request], Awaitable[Response]]


def action(fn: Handler) -> Handler:
    """Map HiveError subclasses to their status; anything else is a logged 500 in JSON."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except HiveError as exc:
            return _err(STATUS_FOR_CODE.get(exc.code, 400), exc.message)
        except HTTPException as exc:  # the body cap (413) raised from the guard's receive
            return _err(exc.status_code, str(exc.detail))
        except Exception as exc:  # noqa: BLE001 — the operator gets a message, the log the trace
            log.exception("dashboard action %s failed", request.url.path)
            return _err(500, f"internal error: {type(exc).__name__}")

    return wrapped


def _message(m: Any) -> dict[str, Any]:
    d: dict[str, Any] = m.model_dump()
    return d


def _flow_row(m: Any) -> dict[str, Any]:
    return {
        "id": m.id,
        "sender": m.sender,
        "recipient": m.recipient,
        "preview": m.body[:PREVIEW],
        "in_reply_to": m.in_reply_to,
        "broadcast": m.broadcast,
        "ts": m.sent_at,
        "delivered_at": m.delivered_at,
    }


def routes(services: Any, auth: Auth) -> list[Route]:
    s = services

    # ---- pages ---------------------------------------------------------------------------

    async def index(request: Request) -> Response:
        # the CSRF token rides in the page itself (hh_csrf is HttpOnly): agent pages cannot read it
        text = await asyncio.to_thread((TEMPLATES / "index.html").read_text, encoding="utf-8")
        csrf = html.escape(str(request.scope["hh_session"]["csrf"]))
        text = text.replace("<head>", f'<head>\n<meta name="hh-csrf" content="{csrf}">', 1)
        return Response(text, media_type="text/html; charset=utf-8", headers=NO_STORE)

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def login(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is None and request.scope.get("hh_session") is not None:
            return RedirectResponse("/", status_code=303)
        if token is None:
            body = page("L0G1N", "open the login url printed by `hive serve` (or run `hive dashboard-url`).")
            return Response(body, status_code=401, media_type="text/html; charset=utf-8", headers=NO_STORE)
        client = request.client.host if request.client else "?"
        wait = auth.limiter.retry_after(client)
        if wait:
            body = page("SL0W D0WN", f"too many failed logins from {client}. try again in {wait} s.")
            headers = {**NO_STORE, "retry-after": str(wait)}
            return Response(body, status_code=429, media_type="text/html; charset=utf-8", headers=headers)
        if not auth.check_token(token):
            auth.limiter.failed(client)
            body = page("L0G1N", "that login link is not valid. run `hive dashboard-url` for the current one.")
            return Response(body, status_code=403, media_type="text/html; charset=utf-8", headers=NO_STORE)
        value, csrf = await auth.new_session(client, request.headers.get("user-agent", ""))
        response = RedirectResponse("/", status_code=303, headers=NO_STORE)
        response.raw_headers.extend(session_cookies(value, csrf))
        return response

    async def logout(request: Request) -> Response:
        session = request.scope.get("hh_session")
        if session is not None:
            await auth.revoke(session["sid"])
        response = _ok(logged_out=True)
        response.raw_headers.extend(clear_cookies())
        return response

    # ---- snapshot and stream -------------------------------------------------------------

    @action
    async def api_state(request: Request) -> Response:
        seq = s.hub.seq  # first: anything published after this is replayed by the stream
        rows = [r.model_dump() for r in s.lifecycle.rows()]
        kept = s.lifecycle.kept_state()
        approvals = s.approvals.pending()
        questions = s.questions.pending()
        inbox = [_message(m) for m in s.broker.recent(recipient=OPERATOR, limit=INBOX_LIMIT)]
        flow = [_flow_row(m) for m in reversed(s.broker.recent(limit=FLOW_LIMIT))]
        dead = [_message(m) for m in s.broker.dead_letters()]
        for a in approvals:
            try:
                a["diff"] = await s.approvals.diff(a["id"])
            except HiveError as exc:
                a["diff"] = ""
                a["diff_error"] = exc.message
        up = sum(1 for r in rows if r["state"] == "running")
        return _ok(
            seq=seq,
            epoch=s.hub.epoch,  # a stream in another epoch is told to reload this snapshot
            agents=rows,
            manager="manager" in s.lifecycle.agents,
            kept=kept,
            approvals=approvals,
            questions=questions,
            inbox=inbox,
            flow=flow,
            dead_letters=dead,
            spend=s.gateway.spend_summary() if s.gateway is not None else None,
            cage=s.lifecycle.cage.kind,
            cage_reason=s.cage_reason,
            isolated=bool(s.lifecycle.cage.isolated),
            counts={
                "agents_up": up,
                "agents_down": len(rows) - up,
                "approvals": len(approvals),
                "questions": len(questions),
                "kept": len(kept),
                "dead_letters": len(dead),
            },
        )

    @action
    async def api_spend(request: Request) -> Response:
        return _ok(spend=s.gateway.spend_summary() if s.gateway is not None else None)

    async def api_stream(request: Request) -> Response:
        return sse_response(request, s.hub, event_name=lambda e: e.kind, replay=False, retry_ms=1000)

    @action
    async def api_approval_diff(request: Request) -> Response:
        aid = int(request.path_params["id"])
        s.approvals.get(aid)
        return _ok(id=aid, diff=await s.approvals.diff(aid))

    # ---- actions -------------------------------------------------------------------------

    @action
    async def agent_log(request: Request) -> Response:
        """The tail of the agent's harness log as plain text (the row's "log" button)."""
        name = validate_agent_name(request.path_params["name"])
        s.lifecycle.get(name)
        text = await asyncio.to_thread(read_log_tail, s, name)
        return Response(text, media_type="text/plain; charset=utf-8", headers=NO_STORE)

    @action
    async def agent_action(request: Request) -> Response:
        name = validate_agent_name(request.path_params["name"])
        verb = request.path_params["action"]
        if verb not in AGENT_ACTIONS:
            raise AgentNotFound(f"no action {verb!r}")
        s.lifecycle.get(name)
        if verb == "start":
            await s.lifecycle.start(name, reason="started by the operator")
        elif verb == "stop":
            await s.lifecycle.stop(name)
        elif verb == "restart":
            await s.lifecycle.restart(name, reason="restarted by the operator")
        elif verb == "destroy":
            await s.lifecycle.destroy(name)
        else:
            await s.lifecycle.destroy(name, purge=True)
        return _ok(agent=name, action=verb)

    @action
    async def kept_action(request: Request) -> Response:
        name = validate_agent_name(request.path_params["name"], allow_manager=False)
        verb = request.path_params["action"]
        if verb not in KEPT_ACTIONS:
            raise AgentNotFound(f"no action {verb!r}")
        kept = {k["name"]: k for k in s.lifecycle.kept_state()}
        if name not in kept:
            raise AgentNotFound(f"no kept state for {name!r}")
        if verb == "purge":
            await s.lifecycle.purge_kept(name)
            return _ok(agent=name, action=verb)
        approval = await s.approvals.request_spawn(
            name, f"revive {name} from its kept state (config and credentials reused)", requested_by=OPERATOR
        )
        return _ok(agent=name, action=verb, approval=approval)

    @action
    async def approve(request: Request) -> Response:
        result = await s.approvals.approve(int(request.path_params["id"]))
        return _ok(approval=result)

    @action
    async def deny(request: Request) -> Response:
        fields = await _fields(request)
        note = _text(fields, "note", required=False, limit=4096)
        result = await s.approvals.deny(int(request.path_params["id"]), note)
        return _ok(approval=result)

    @action
    async def request_spawn(request: Request) -> Response:
        fields = await _fields(request)
        name = _text(fields, "name")
        description = _text(fields, "description", required=False, limit=8192)
        result = await s.approvals.request_spawn(name, description, requested_by=OPERATOR)
        return _ok(approval=result)

    @action
    async def answer(request: Request) -> Response:
        fields = await _fields(request)
        text = _text(fields, "answer")
        assert text is not None
        result = await s.questions.answer(int(request.path_params["id"]), text, answerer=OPERATOR, as_operator=True)
        return _ok(question=result)

    @action
    async def cancel(request: Request) -> Response:
        result = await s.questions.cancel(int(request.path_params["id"]))
        return _ok(question=result)

    @action
    async def dead_letter(request: Request) -> Response:
        mid = int(request.path_params["id"])
        if request.path_params["action"] == "retry":
            return _ok(message=_message(await s.broker.retry_dead(mid)))
        if request.path_params["action"] == "discard":
            return _ok(message=_message(await s.broker.discard_dead(mid)))
        return _err(404, "no such action: retry or discard")

    @action
    async def send(request: Request) -> Response:
        fields = await _fields(request)
        to = fields.get("to")
        if not isinstance(to, str) or not to:
            raise ProtocolError("missing field 'to'")
        to = to.strip().removeprefix("@")
        to = validate_recipient(to)
        if to == OPERATOR:
            raise ProtocolError("the operator cannot message the operator")
        bound = request.scope.get("hh_page_agent")
        if bound is not None and to != bound:  # the page of /agent/<bound>/ talks to <bound> only
            raise NotAllowed(f"a message from {bound}'s page goes to {bound} only")
        body = _text(fields, "body", limit=1024 * 1024)
        assert body is not None
        in_reply_to = _int_or_none(fields.get("in_reply_to"), "in_reply_to")
        ids = await s.broker.send(OPERATOR, to, body, in_reply_to)
        return _ok(ids=ids, to=to)

    return [
        Route("/", index, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/login", login, methods=["GET"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/state", api_state, methods=["GET"]),
        Route("/api/spend", api_spend, methods=["GET"]),
        Route("/api/stream", api_stream, methods=["GET"]),
        Route("/api/approvals/{id:int}/diff", api_approval_diff, methods=["GET"]),
        Route("/api/agents/{name}/log", agent_log, methods=["GET"]),
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

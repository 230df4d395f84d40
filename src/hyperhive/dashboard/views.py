"""Dashboard routes: the page shell, login/logout, the snapshot, the live stream and the actions.

Every route runs behind `auth.Guard` (session, Host, CSRF, body cap). The actions (`POST
/api/...`) are the operator's host verbs, run through `Verbs` by dashboard/actions.py; names
from the request are validated before they reach the core.
"""

from __future__ import annotations

import asyncio
import html
import logging
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from hyperhive.dashboard.actions import NO_STORE, action, action_routes
from hyperhive.dashboard.actions import ok as _ok
from hyperhive.dashboard.auth import Auth, clear_cookies, page, session_cookies
from hyperhive.dashboard.downpage import read_log_tail
from hyperhive.errors import HiveError
from hyperhive.names import OPERATOR, validate_agent_name
from hyperhive.sse import sse_response

__all__ = ["routes"]

log = logging.getLogger(__name__)

TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
INBOX_LIMIT: Final = 50
FLOW_LIMIT: Final = 200
PREVIEW: Final = 200


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
        approvals = await s.approvals.pending()
        questions = await s.questions.pending()
        inbox = [_message(m) for m in await s.broker.recent(recipient=OPERATOR, limit=INBOX_LIMIT)]
        flow = [_flow_row(m) for m in reversed(await s.broker.recent(limit=FLOW_LIMIT))]
        dead = [_message(m) for m in await s.broker.dead_letters()]
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
            spend=await s.gateway.spend_summary() if s.gateway is not None else None,
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
        return _ok(spend=await s.gateway.spend_summary() if s.gateway is not None else None)

    async def api_stream(request: Request) -> Response:
        return sse_response(request, s.hub, event_name=lambda e: e.kind, replay=False, retry_ms=1000)

    @action
    async def api_approval_diff(request: Request) -> Response:
        aid = int(request.path_params["id"])
        await s.approvals.get(aid)
        return _ok(id=aid, diff=await s.approvals.diff(aid))

    # ---- actions -------------------------------------------------------------------------

    @action
    async def agent_log(request: Request) -> Response:
        """The tail of the agent's harness log as plain text (the row's "log" button)."""
        name = validate_agent_name(request.path_params["name"])
        s.lifecycle.get(name)
        text = await asyncio.to_thread(read_log_tail, s, name)
        return Response(text, media_type="text/plain; charset=utf-8", headers=NO_STORE)

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
        *action_routes(s),
    ]

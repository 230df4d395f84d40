"""Dashboard routes for the operator's sessions: list them, log out everywhere (issue 9, item 5).

Behind the guard like every route (session + CSRF); a page token from an agent page is refused
here by the guard (only `/api/send` takes one).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hyperhive.core.websessions import public_rows
from hyperhive.dashboard.auth import Auth, clear_cookies

__all__ = ["session_routes"]


def session_routes(auth: Auth) -> list[Route]:
    no_store = {"cache-control": "no-store"}

    async def list_sessions(request: Request) -> Response:
        current = request.scope["hh_session"]["sid"]
        rows = await auth.sessions.active()
        shown = [{**row, "current": r["sid"] == current} for row, r in zip(public_rows(rows), rows, strict=True)]
        return JSONResponse({"ok": True, "sessions": shown}, headers=no_store)

    async def revoke_all(request: Request) -> Response:
        count = await auth.sessions.revoke_all()
        response = JSONResponse({"ok": True, "revoked": count}, headers=no_store)
        response.raw_headers.extend(clear_cookies())
        return response

    return [
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions/revoke-all", revoke_all, methods=["POST"]),
    ]

"""The operator's dashboard: one authenticated origin for the hive (architecture §9, issue 6).

`create_app(services)` → the ASGI app `hive serve` runs under uvicorn:

    Guard (Host, session, CSRF, Origin, body cap, security headers)
      ├─ /agent/<name>/…  → AgentProxy (the agent's harness on its web.sock)
      └─ Starlette: /, /login, /logout, /api/*, /static/*
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from hyperhive.core.websessions import sessions_of
from hyperhive.dashboard.auth import Auth, Guard
from hyperhive.dashboard.auth import login_url as _login_url
from hyperhive.dashboard.proxy import PREFIX, AgentProxy
from hyperhive.dashboard.sessionviews import session_routes
from hyperhive.dashboard.stats import MetricsBearer, stats_routes
from hyperhive.dashboard.views import routes

__all__ = ["create_app", "login_url"]

STATIC: Final = Path(__file__).resolve().parent / "static"


class _Dispatch:
    """`/agent/…` to the proxy before Starlette's router (which would decode and re-route)."""

    def __init__(self, app: ASGIApp, proxy: AgentProxy) -> None:
        self.app = app
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("path", "").startswith(PREFIX):
            await self.proxy(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"ok": False, "error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class _Healthz:
    """`GET /healthz` before the guard: no session, no Host check (a monitor may use an IP), and
    an answer that names nothing (core/health.py)."""

    def __init__(self, app: ASGIApp, health: Any) -> None:
        self.app = app
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == "/healthz":
            if scope.get("method") not in ("GET", "HEAD"):
                response: Response = JSONResponse({"ok": False, "error": "GET /healthz"}, status_code=405)
            else:
                status, body = self.health.check()
                response = JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(services: Any, *, health: Any = None) -> ASGIApp:
    paths = services.config.paths
    auth = Auth(paths.token_file, sessions_of(services), services.config.host)
    app = Starlette(
        routes=[
            *routes(services, auth),
            *session_routes(auth),
            *stats_routes(services),
            Mount("/static", app=StaticFiles(directory=str(STATIC)), name="static"),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.services = services
    app.state.auth = auth
    guarded = MetricsBearer(Guard(_Dispatch(app, AgentProxy(services)), auth), services)
    return guarded if health is None else _Healthz(guarded, health)


def login_url(services: Any, host: str, port: int) -> str:
    """`http://HOST:PORT/login?token=…` (the token file is created on first use)."""
    return _login_url(services, host, port)

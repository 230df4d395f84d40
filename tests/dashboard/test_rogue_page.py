"""A hostile agent web server behind the core's proxy (issue 9, item 2), over real HTTP against an
in-process daemon: the agent's response headers are cut to an allow-list, a redirect may not leave
/agent/<name>/, and a token from an agent's page reaches that agent only."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from dashkit import Dash, logged_in
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hyperhive.core.lifecycle import AgentRuntime
from hyperhive.names import OPERATOR

HOSTILE_HEADERS = {
    "access-control-allow-origin": "*",
    "access-control-allow-credentials": "true",
    "refresh": "0; url=/api/state",
    "clear-site-data": '"*"',
    "set-cookie": "hh_session=evil; Path=/",
    "content-security-policy": "script-src * 'unsafe-inline'",
    "x-frame-options": "ALLOWALL",
    "link": '</static/dashboard/app.js>; rel="preload"; as="script"',
    "service-worker-allowed": "/",
    "x-agent": "yes",
}
KEPT_HEADERS = {
    "content-type": "text/plain; charset=utf-8",
    "cache-control": "max-age=60",
    "etag": '"v1"',
    "last-modified": "Sun, 29 Nov 2026 09:00:00 GMT",
}


class Hostile:
    """A web server standing in for an agent's harness on its web.sock, answering whatever
    headers a prompt-injected agent would like the operator's browser to obey."""

    def __init__(self) -> None:
        async def headers(request: Request) -> Response:
            return Response("ok", headers={**HOSTILE_HEADERS, **KEPT_HEADERS})

        async def redirect(request: Request) -> Response:
            return Response("", status_code=307, headers={"location": request.query_params["to"]})

        async def echo(request: Request) -> Response:
            return JSONResponse({"path": request.url.path, "body": (await request.body()).decode()})

        self.app = Starlette(routes=[
            Route("/headers", headers), Route("/go/redirect", redirect),
            Route("/echo", echo, methods=["GET", "POST"]),
        ])  # fmt: skip

    @contextlib.asynccontextmanager
    async def serving(self, path: Path) -> AsyncIterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        server = uvicorn.Server(uvicorn.Config(self.app, uds=str(path), lifespan="off", log_level="warning"))
        server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    await asyncio.sleep(0.01)
            yield
        finally:
            server.should_exit = True
            await task


@pytest.fixture
async def rogue(dash: Dash) -> AsyncIterator[None]:
    """Agents `rogue` (hostile web server) and `victim` (registered, never started)."""
    s = dash.services
    s.lifecycle.agents["rogue"] = AgentRuntime("rogue", 911, None)
    s.lifecycle.agents["victim"] = AgentRuntime("victim", 912, None)
    async with Hostile().serving(s.config.paths.agent("rogue").web_socket):
        yield


async def test_agent_response_headers_are_cut_to_an_allow_list(
    dash: Dash, client: httpx.AsyncClient, rogue: None
) -> None:
    """CORS, Refresh, Clear-Site-Data, Set-Cookie, its own CSP/X-Frame-Options, Link and the rest
    never reach the browser; content type, caching and validators do; the CSP is the core's."""
    r = await client.get("/agent/rogue/headers")
    assert r.status_code == 200 and r.text == "ok"
    for name in HOSTILE_HEADERS:
        if name == "set-cookie":
            assert all(c.startswith("hh_page_csrf=rogue.") for c in r.headers.get_list(name)), r.headers
        elif name == "content-security-policy":
            assert (
                r.headers.get_list(name) == [r.headers[name]]
                and "unsafe-inline'" not in r.headers[name].split("script-src", 1)[1].split(";")[0]
            )
            assert "frame-ancestors 'none'" in r.headers[name]
        elif name == "x-frame-options":
            assert r.headers.get_list(name) == ["DENY"]
        else:
            assert name not in r.headers, name
    for name, value in KEPT_HEADERS.items():
        assert r.headers[name] == value


@pytest.mark.parametrize(
    ("location", "kept"),
    [
        ("/agent/rogue/echo", "/agent/rogue/echo"),
        ("../echo?x=1", "/agent/rogue/echo?x=1"),
        ("/agent/rogue/", "/agent/rogue/"),
        ("/api/send", None),
        ("/", None),
        ("http://evil.example/", None),
        ("//evil.example/agent/rogue/", None),
        ("/agent/victim/", None),
        ("/agent/rogue-twin/", None),
        ("/agent/rogue/../victim/", None),
        ("/agent/rogue/../../api/send", None),
        ("/agent/rogue/%2e%2e/%2E%2E/api/send", None),
        ("/agent/rogue/.%2e/victim/", None),
        ("/agent/rogue\\..\\..\\api/send", None),
        ("javascript:alert(1)", None),
        ("data:text/html,hi", None),
    ],
)
async def test_a_redirect_may_not_leave_the_agents_prefix(
    dash: Dash, client: httpx.AsyncClient, rogue: None, location: str, kept: str | None
) -> None:
    """Location passes only when it resolves inside /agent/<name>/ (the browser would follow a
    307 with the page's POST body and CSRF header to wherever it points)."""
    r = await client.get("/agent/rogue/go/redirect", params={"to": location})
    assert r.headers.get("location") == kept
    assert r.status_code in ((307,) if kept else (307, 502)), "an unparseable Location is a bad gateway, never a 500"


async def _page_token(client: httpx.AsyncClient, name: str) -> str:
    r = await client.get(f"/agent/{name}/echo")
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("hh_page_csrf="))
    assert f"Path=/agent/{name}/" in cookie and "HttpOnly" not in cookie and "SameSite=Strict" in cookie
    return cookie.split(";", 1)[0].split("=", 1)[1]


async def test_a_page_token_reaches_its_own_agent_only(dash: Dash, client: httpx.AsyncClient, rogue: None) -> None:
    """The token the core hands /agent/rogue/'s page sends to rogue, posts to rogue's own page, and
    is refused everywhere else: another recipient, another agent's page, every other operator
    action; it cannot be re-labelled for another agent, and another session's is worthless."""
    s = dash.services
    token = await _page_token(client, "rogue")
    page = {"x-csrf-token": token}

    r = await client.post("/api/send", json={"to": "rogue", "body": "for rogue"}, headers=page)
    assert r.status_code == 200, r.text
    for to in ("victim", "@victim", "manager", "*"):
        r = await client.post("/api/send", json={"to": to, "body": "redirected"}, headers=page)
        assert r.status_code == 403, (to, r.text)
    r = await client.post("/agent/rogue/echo", json={"a": 1}, headers=page)
    assert r.status_code == 200 and r.json()["body"] == '{"a":1}'
    for path in ("/agent/victim/echo", "/api/agents/victim/stop", "/api/request-spawn", "/api/approvals/1/approve",
                 "/api/sessions/revoke-all", "/logout"):  # fmt: skip
        r = await client.post(path, json={"name": "probe"}, headers=page)
        assert r.status_code == 403, (path, r.text)
    name, _, mac = token.partition(".")
    r = await client.post(
        "/api/send", json={"to": "victim", "body": "relabelled"}, headers={"x-csrf-token": f"victim.{mac}"}
    )
    assert r.status_code == 403

    other = await logged_in(dash)
    try:
        theirs = await _page_token(other, "victim")
        r = await client.post("/api/send", json={"to": "victim", "body": "borrowed"}, headers={"x-csrf-token": theirs})
        assert r.status_code == 403
    finally:
        await other.aclose()

    bodies = [(m.recipient, m.body) for m in (await s.broker.recent(None, 50)) if m.sender == OPERATOR]
    assert bodies == [("rogue", "for rogue")]
    assert (await s.approvals.pending()) == []
    assert (await client.get("/api/state")).status_code == 200, "the session itself was never logged out"

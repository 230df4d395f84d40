"""Dashboard access control over real HTTP against an in-process daemon (issue 6 "Access",
architecture §9): token login, session cookie, CSRF on every POST, Host / Origin checks, body cap,
security headers."""

from __future__ import annotations

import asyncio
import stat

import httpx
import pytest
import websockets
from dashkit import Dash, logged_in, raw_request

PAGES_AND_APIS = ["/", "/api/state", "/api/approvals/1/diff", "/agent/bob/", "/agent/bob/api/state"]


def _cookie_attrs(response: httpx.Response, name: str) -> list[str]:
    for value in response.headers.get_list("set-cookie"):
        if value.startswith(name + "="):
            return [p.strip().lower() for p in value.split(";")]
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.get_list('set-cookie')}")


async def test_unauthenticated_pages_apis_and_streams_are_refused(dash: Dash, anon: httpx.AsyncClient) -> None:
    """Every page, API and SSE stream needs the session: 401 (JSON for APIs, a page for HTML). Issue 6."""
    for path in PAGES_AND_APIS:
        r = await anon.get(path)
        assert r.status_code == 401, path
        assert r.json()["ok"] is False
    r = await anon.get("/", headers={"accept": "text/html"})
    assert r.status_code == 401
    assert "hive dashboard-url" in r.text
    async with anon.stream("GET", "/api/stream", headers={"accept": "text/event-stream"}) as r:
        assert r.status_code == 401
    r = await anon.post("/api/send", json={"to": "manager", "body": "hi"})
    assert r.status_code == 401


async def test_login_sets_an_httponly_strict_session_and_csrf_cookie(dash: Dash, anon: httpx.AsyncClient) -> None:
    """The login link exchanges the token for a signed session cookie and a CSRF cookie (both
    HttpOnly, SameSite=Strict), then redirects to /; the dashboard page carries the CSRF token in
    a <meta>, so no script on an agent page (same origin) can read it. Issue 6 "Access", issue 9."""
    r = await anon.get(dash.login_url)
    assert r.status_code == 303
    assert r.headers["location"] == "/"
    session = _cookie_attrs(r, "hh_session")
    assert "httponly" in session and "samesite=strict" in session and "path=/" in session
    csrf = _cookie_attrs(r, "hh_csrf")
    assert "samesite=strict" in csrf and "httponly" in csrf
    r = await anon.get("/api/state")
    assert r.status_code == 200 and r.json()["ok"] is True
    r = await anon.get("/", headers={"accept": "text/html"})
    assert r.status_code == 200 and "C0NTAINERS" in r.text
    assert f'<meta name="hh-csrf" content="{anon.cookies["hh_csrf"]}">' in r.text


async def test_a_wrong_or_missing_token_gets_no_session(dash: Dash, anon: httpx.AsyncClient) -> None:
    """A bad token is refused and sets no cookie. Issue 6 "Access"."""
    for url in (f"{dash.base}/login?token=nope", f"{dash.base}/login?token={dash.token[:-1]}", f"{dash.base}/login"):
        r = await anon.get(url)
        assert r.status_code in (401, 403), url
        assert not r.headers.get_list("set-cookie")
    assert (await anon.get("/api/state")).status_code == 401


async def test_token_and_session_secret_are_0600_files_in_the_state_dir(dash: Dash) -> None:
    """The token is created at first start as a 0600 file; the login URL carries it. architecture §9."""
    paths = dash.services.config.paths
    for path in (paths.token_file, paths.session_secret_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert paths.token_file.read_text().strip() == dash.token
    assert dash.login_url == f"http://127.0.0.1:{dash.port}/login?token={dash.token}"


async def test_a_tampered_session_cookie_is_refused(dash: Dash) -> None:
    """The session cookie is signed: changing one character of it loses the session."""
    c = await logged_in(dash)
    try:
        value = c.cookies["hh_session"]
        forged = value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]
        c.cookies.set("hh_session", forged, domain="127.0.0.1")
        assert (await c.get("/api/state")).status_code == 401
    finally:
        await c.aclose()


async def test_post_without_or_with_a_wrong_csrf_token_is_refused(dash: Dash) -> None:
    """Every POST needs the session's CSRF token in X-CSRF-Token (or a `csrf` form field). Issue 6."""
    c = await logged_in(dash)
    other = await logged_in(dash)
    try:
        good = c.headers.pop("x-csrf-token")
        body = {"name": "csrf-probe", "description": "x"}
        r = await c.post("/api/request-spawn", json=body)
        assert r.status_code == 403 and "csrf" in r.json()["error"]
        r = await c.post("/api/request-spawn", json=body, headers={"x-csrf-token": "x" * 43})
        assert r.status_code == 403
        r = await c.post("/api/request-spawn", json=body, headers={"x-csrf-token": other.cookies["hh_csrf"]})
        assert r.status_code == 403, "another session's token must not work"
        r = await c.post("/api/request-spawn", data={"name": "csrf-probe", "csrf": "wrong"})
        assert r.status_code == 403
        assert (await dash.services.approvals.pending()) == []
        r = await c.post("/api/request-spawn", data={"name": "csrf-probe", "description": "x", "csrf": good})
        assert r.status_code == 200, r.text
        r = await c.post("/logout")
        assert r.status_code == 403, "logout is a POST too"
    finally:
        await c.aclose()
        await other.aclose()


async def test_cross_origin_and_cross_site_posts_are_refused(client: httpx.AsyncClient, dash: Dash) -> None:
    """A forged Origin or Sec-Fetch-Site: cross-site is refused even with a valid token. Issue 6."""
    body = {"name": "origin-probe"}
    for headers in ({"origin": "http://evil.example"}, {"origin": f"http://127.0.0.1:{dash.port + 1}"},
                    {"origin": "null"}, {"sec-fetch-site": "cross-site"}, {"sec-fetch-site": "same-site"}):  # fmt: skip
        r = await client.post("/api/request-spawn", json=body, headers=headers)
        assert r.status_code == 403, headers
    assert (await dash.services.approvals.pending()) == []
    r = await client.post(
        "/api/request-spawn", json=body, headers={"origin": dash.base, "sec-fetch-site": "same-origin"}
    )
    assert r.status_code == 200, r.text


async def test_a_foreign_host_header_is_refused(dash: Dash) -> None:
    """DNS rebinding: only 127.0.0.1 / localhost / the configured host are served."""
    c = await logged_in(dash)
    try:
        for host in ("evil.example", "127.0.0.1.evil.example", f"evil.example:{dash.port}", "localhost.:1", ""):
            r = await c.get("/api/state", headers={"host": host})
            assert r.status_code == 400, host
        for host in (f"localhost:{dash.port}", f"127.0.0.1:{dash.port}", "127.0.0.1"):
            r = await c.get("/api/state", headers={"host": host})
            assert r.status_code == 200, host
        status, _ = await raw_request(dash.port, "GET", f"/login?token={dash.token}", {"Host": "evil.example"})
        assert status == 400, "not even the login answers a foreign host"
        status, _ = await raw_request(
            dash.port, "GET", "/api/state", {"Host": f"127.0.0.1:{dash.port}", "host": "evil.example"}
        )
        assert status == 400, "two Host headers are refused"
    finally:
        await c.aclose()


async def test_an_oversized_body_gets_413(client: httpx.AsyncClient, dash: Dash) -> None:
    """Request bodies are capped (1 MiB): a larger one is refused with 413, declared or chunked."""
    big = b"x" * (1024 * 1024 + 1)
    r = await client.post("/api/send", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413

    async def chunks():  # no Content-Length: the cap is enforced while reading
        for _ in range(17):
            yield b"y" * 65536

    r = await client.post("/api/send", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = await client.post("/api/request-spawn", json={"name": "after-big"})
    assert r.status_code == 200, "the daemon still serves a good request"


async def test_security_headers_are_on_every_answer(client: httpx.AsyncClient, anon: httpx.AsyncClient) -> None:
    """CSP without inline scripts, no framing, nosniff, no referrer: on pages, APIs, static and errors."""
    for c, path in ((client, "/"), (client, "/api/state"), (client, "/static/common/live.js"), (anon, "/api/state"),
                    (anon, "/login?token=bad")):  # fmt: skip
        r = await c.get(path)
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"


async def test_logout_ends_the_session(dash: Dash) -> None:
    """POST /logout clears the cookies and revokes the session: the old cookie stops working."""
    c = await logged_in(dash)
    try:
        old = c.cookies["hh_session"]
        r = await c.post("/logout")
        assert r.status_code == 200
        assert "max-age=0" in _cookie_attrs(r, "hh_session")
        c.cookies.set("hh_session", old, domain="127.0.0.1")
        assert (await c.get("/api/state")).status_code == 401
    finally:
        await c.aclose()


async def test_websockets_to_agents_need_the_session(dash: Dash) -> None:
    """The proxied /agent/<name>/ websockets are behind the session like everything else."""
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with asyncio.timeout(5):
            async with websockets.connect(f"ws://127.0.0.1:{dash.port}/agent/bob/ws"):
                pass

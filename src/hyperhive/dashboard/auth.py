"""Dashboard access: the login token, the signed session cookie, CSRF, and the guard middleware.

- A random token is created at first start (0600 file `paths.token_file`); `login_url()` puts it
  in `/login?token=…`. `/login` compares it with `secrets.compare_digest`, sets a signed session
  cookie (`hh_session`, HttpOnly, SameSite=Strict; key in the 0600 `paths.session_secret_file`)
  and the CSRF cookie (`hh_csrf`, also HttpOnly: the dashboard page carries the token in a
  <meta>), then redirects to `/`. The session is a server-side record (sessions.py), so a logout
  survives a restart; failed logins per client are bounded (`LoginLimiter`, 429).
- Agent pages get a page token instead (`hh_page_csrf`, Path=/agent/<name>/, an HMAC of the
  session's token and the routed name): the guard accepts it only for that agent's proxy and
  `POST /api/send` (whose handler then insists on `to` = that agent), so nothing an agent serves
  can point the operator's session at another agent or another action.
- `Guard` is a pure ASGI middleware (it never buffers a streamed response, so SSE and proxied
  streams pass through): Host check (DNS rebinding), session on everything but `/login` and
  `/static/`, Origin / Sec-Fetch-Site and the double-submit CSRF token on every unsafe method
  (proxied agent POSTs included), a body cap (413), and the security headers on every answer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import json
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, urlencode

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hyperhive.core.websessions import SESSION_MAX_AGE
from hyperhive.dashboard.loginlimit import LOGIN_FAILURES, LoginLimiter
from hyperhive.fsutil import read_or_create_secret

if TYPE_CHECKING:
    from hyperhive.core.websessions import WebSessions

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "LOGIN_FAILURES",
    "MAX_BODY",
    "PAGE_CSRF_COOKIE",
    "SESSION_COOKIE",
    "Auth",
    "Guard",
    "LoginLimiter",
    "csp_for",
    "login_url",
    "page_token",
    "read_or_create_secret",
]

SESSION_COOKIE: Final = "hh_session"
CSRF_COOKIE: Final = "hh_csrf"
CSRF_HEADER: Final = "x-csrf-token"
CSRF_FIELD: Final = "csrf"
PAGE_CSRF_COOKIE: Final = "hh_page_csrf"
MAX_BODY: Final = 1024 * 1024
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOCAL_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS: Final = frozenset({"0.0.0.0", "::", ""})
PUBLIC_PREFIXES: Final = ("/static/",)
PUBLIC_PATHS: Final = frozenset({"/login", "/favicon.ico"})
PAGE_PATHS: Final = frozenset({"/api/send"})  # core endpoints an agent page may POST to (its own agent only)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def login_url(services: Any, host: str, port: int) -> str:
    token = read_or_create_secret(services.config.paths.token_file)
    shown = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"http://{_url_host(shown)}:{port}/login?{urlencode({'token': token})}"


def csp_for(script_src: str = "'self'") -> str:
    return (
        f"default-src 'self'; script-src {script_src}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
_OVERRIDDEN: Final = frozenset({b"content-security-policy", b"set-cookie"} | {k for k, _ in SECURITY_HEADERS})


def page_token(csrf: str, name: str) -> str:
    """The CSRF token of `name`'s proxied page: it binds every POST made with it to `name`."""
    mac = hmac.new(csrf.encode(), f"agent-page:{name}".encode(), hashlib.sha256).digest()
    return f"{name}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


class Auth:
    """The token, the server-side sessions, the login limiter and the host check for one daemon."""

    def __init__(self, token_file: Path, sessions: WebSessions, configured_host: str) -> None:
        self.token = read_or_create_secret(token_file)
        self.sessions = sessions
        self.limiter = LoginLimiter()
        hosts = set(LOCAL_HOSTS)
        if configured_host not in WILDCARD_HOSTS:
            hosts.add(configured_host.strip("[]").lower())
        self.allowed_hosts = frozenset(hosts)

    def check_token(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        return secrets.compare_digest(candidate.encode("utf-8", "surrogateescape"), self.token.encode())

    async def new_session(self, client: str, user_agent: str) -> tuple[str, str]:
        """(signed session cookie value, csrf token); the server-side record is written first."""
        return await self.sessions.create(client, user_agent)

    def session(self, value: str | None) -> dict[str, Any] | None:
        return self.sessions.load(value)

    async def revoke(self, sid: str) -> None:
        await self.sessions.revoke(sid)

    @staticmethod
    def page_agent(session: dict[str, Any], token: str) -> str | None:
        """The agent whose page token `token` is, for this session; None if it is not one."""
        name = token.partition(".")[0]
        if not name or not secrets.compare_digest(token.encode(), page_token(str(session["csrf"]), name).encode()):
            return None
        return name

    def host_ok(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        host = host_header.strip().lower()
        if host.startswith("["):
            end = host.find("]")
            if end < 0:
                return False
            name, rest = host[1:end], host[end + 1 :]
            if rest and not (rest.startswith(":") and rest[1:].isdigit()):
                return False
        else:
            name, _, port = host.partition(":")
            if port and not port.isdigit():
                return False
        return name in self.allowed_hosts


# ---- helpers on raw ASGI scopes ----------------------------------------------------------------


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def cookies(scope: Scope) -> dict[str, str]:
    raw = "; ".join(v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"cookie")
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(raw)
    return {k: m.value for k, m in jar.items()}


def _cookie_header(name: str, value: str, *, http_only: bool, max_age: int | None, path: str = "/") -> bytes:
    parts = [f"{name}={value}", f"Path={path}", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts).encode("latin-1")


def session_cookies(value: str, csrf: str) -> list[tuple[bytes, bytes]]:
    # hh_csrf is HttpOnly: the dashboard page gets its token in a <meta> of the page itself, so
    # no script running on a proxied agent page (same origin, other path) can read it
    return [
        (b"set-cookie", _cookie_header(SESSION_COOKIE, value, http_only=True, max_age=SESSION_MAX_AGE)),
        (b"set-cookie", _cookie_header(CSRF_COOKIE, csrf, http_only=True, max_age=SESSION_MAX_AGE)),
    ]


def page_cookie(session: dict[str, Any], name: str) -> tuple[bytes, bytes]:
    """The readable page token of `name`, scoped to `/agent/<name>/` (the path the core routed)."""
    value = page_token(str(session["csrf"]), name)
    path = f"/agent/{name}/"
    return b"set-cookie", _cookie_header(PAGE_CSRF_COOKIE, value, http_only=False, max_age=SESSION_MAX_AGE, path=path)


def clear_cookies() -> list[tuple[bytes, bytes]]:
    return [
        (b"set-cookie", _cookie_header(SESSION_COOKIE, "", http_only=True, max_age=0)),
        (b"set-cookie", _cookie_header(CSRF_COOKIE, "", http_only=True, max_age=0)),
    ]


def wants_html(scope: Scope) -> bool:
    accept = header(scope, b"accept") or ""
    return scope.get("method") == "GET" and "text/html" in accept


def page(title: str, text: str) -> bytes:
    """A tiny self-contained page in the house style (no scripts)."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · hyperhive</title>"
        '<link rel="stylesheet" href="/static/common/hive.css"></head><body><main class="hh-main">'
        f'<section class="hh-section"><h2>◆ {html.escape(title)} ◆</h2>'
        f'<div class="body"><p>{html.escape(text)}</p></div></section></main></body></html>'
    ).encode()


class _TooLarge(HTTPException):
    """Raised from the capped `receive`: a route reading the body answers 413 through
    Starlette's HTTPException handling; raised before any route, the guard answers it."""

    def __init__(self) -> None:
        super().__init__(413, "request body over the size cap")


async def send_simple(
    send: Send, status: int, body: bytes, *, content_type: bytes, extra: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def refuse(scope: Scope, send: Send, status: int, message: str) -> None:
    """An error as JSON for API/SSE callers, as a small page for a browser asking for HTML."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + status})
        return
    if wants_html(scope):
        title = {401: "L0G1N R3QU1R3D", 403: "F0RB1DD3N", 404: "N0T F0UND", 413: "T00 L4RG3"}.get(status, "3RR0R")
        if status == 401:
            message = (
                "no session. open the login url printed by `hive serve` (or run `hive dashboard-url`) in this browser."
            )
        await send_simple(send, status, page(title, message), content_type=b"text/html; charset=utf-8")
    else:
        body = json.dumps({"ok": False, "error": message}).encode()
        await send_simple(send, status, body, content_type=b"application/json")


class Guard:
    """The checks every request passes before it reaches a route or the agent proxy."""

    def __init__(self, app: ASGIApp, auth: Auth, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.auth = auth
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        send = self._with_headers(scope, send)
        hosts = [v for k, v in scope.get("headers", ()) if k == b"host"]
        if len(hosts) != 1 or not self.auth.host_ok(hosts[0].decode("latin-1")):
            await refuse(scope, send, 400 if scope["type"] == "http" else 403, "bad host header")
            return
        origin = header(scope, b"origin")
        own_origin = f"http://{header(scope, b'host')}"
        if scope["type"] == "websocket":
            session = self.auth.session(cookies(scope).get(SESSION_COOKIE))
            if session is None:
                await refuse(scope, send, 401, "no session")
                return
            if origin is not None and origin != own_origin:
                await refuse(scope, send, 403, "cross-origin websocket refused")
                return
            scope["hh_session"] = session
            await self.app(scope, receive, send)
            return

        method = scope.get("method", "GET")
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        session = self.auth.session(cookies(scope).get(SESSION_COOKIE))
        if session is None and not public:
            await refuse(scope, send, 401, "no session: log in with the url from `hive dashboard-url`")
            return
        scope["hh_session"] = session
        if session is not None:
            self.auth.sessions.seen(session["sid"])

        length = header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                await refuse(scope, send, 400, "bad content-length")
                return
            if int(length) > self.max_body:
                await refuse(scope, send, 413, f"request body over the {self.max_body}-byte cap")
                return

        if method in UNSAFE_METHODS:
            if origin is not None and origin != own_origin:
                await refuse(scope, send, 403, "cross-origin request refused")
                return
            site = header(scope, b"sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                await refuse(scope, send, 403, f"cross-site request refused (sec-fetch-site: {site})")
                return
            if session is None:
                await refuse(scope, send, 401, "no session")
                return
            token = header(scope, CSRF_HEADER.encode())
            replay: list[Message] | None = None
            if token is None and (header(scope, b"content-type") or "").startswith("application/x-www-form-urlencoded"):
                try:
                    body, replay = await self._read_body(receive)
                except _TooLarge:
                    await refuse(scope, send, 413, f"request body over the {self.max_body}-byte cap")
                    return
                values = parse_qs(body.decode("utf-8", "replace")).get(CSRF_FIELD)
                token = values[0] if values else None
            if not token or not secrets.compare_digest(token.encode(), str(session["csrf"]).encode()):
                bound = self.auth.page_agent(session, token) if token else None
                if bound is None:
                    why = "missing or bad csrf token (send the session's csrf token as X-CSRF-Token)"
                    await refuse(scope, send, 403, why)
                    return
                # a token from /agent/<bound>/'s page: its own proxy, or /api/send to <bound> only
                if not (path.startswith(f"/agent/{bound}/") or path in PAGE_PATHS):
                    await refuse(scope, send, 403, f"a request from {bound}'s page may only reach {bound}")
                    return
                scope["hh_page_agent"] = bound
            if replay is not None:
                receive = _replayer(replay, receive)

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, self._capped(receive), tracking_send)
        except _TooLarge:
            if not started:
                await refuse(scope, send, 413, f"request body over the {self.max_body}-byte cap")

    async def _read_body(self, receive: Receive) -> tuple[bytes, list[Message]]:
        chunks: list[bytes] = []
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), messages

    def _capped(self, receive: Receive) -> Receive:
        seen = 0
        cap = self.max_body

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise _TooLarge
            return message

        return capped

    def _with_headers(self, scope: Scope, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                proxied = scope.get("hh_proxied")
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in _OVERRIDDEN or (k.lower() == b"set-cookie" and not proxied)
                ]
                headers.extend(SECURITY_HEADERS)
                headers.append((b"content-security-policy", scope.get("hh_csp", csp_for()).encode("latin-1")))
                agent = scope.get("hh_agent")
                session = scope.get("hh_session")
                if proxied and agent and session is not None:
                    headers.append(page_cookie(session, agent))
                message = {**message, "headers": headers}
            await send(message)

        return wrapped


def _replayer(messages: list[Message], receive: Receive) -> Receive:
    queue = list(messages)

    async def replay() -> Message:
        if queue:
            return queue.pop(0)
        return await receive()

    return replay

"""`/agent/<name>/…` → that agent's harness web app on its unix socket (`web.sock`).

Runs behind `auth.Guard`, so the session, the Host check and CSRF on unsafe methods are already
enforced. The name is validated (`validate_agent_name`, then it must be a live agent) before any
path is built; the socket path comes from `HivePaths.agent(name)`, never from the request.

- HTTP, any method: the request body (capped by the guard) is forwarded whole; the response is
  streamed chunk by chunk as it arrives (SSE is never buffered) until either side goes away.
- WebSockets: `websockets`' client on the unix socket, frames pumped both ways.
- The dashboard cookies and the CSRF header are stripped before forwarding; the agent's response
  headers pass an allow-list (`RESPONSE_ALLOW`; Set-Cookie, CORS, Refresh, Clear-Site-Data, its
  own CSP… are dropped) and Location only when it stays inside /agent/<name>/.
- Responses get a CSP whose `script-src` allows only the core's `/static/common/`,
  `/static/vendor/` and `/agent/<name>/static/`, which the core serves itself from the harness package (never from the
  agent), so a cage that replaces its web server cannot run script on the dashboard origin.
- Agent down (no socket, refused, reset): 502 with the core's down page (downpage.py: why, start, log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import httpx
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send
from websockets.asyncio.client import unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from hyperhive.dashboard.auth import CSRF_COOKIE, SESSION_COOKIE, csp_for, header, page, send_simple
from hyperhive.dashboard.downpage import DownPage
from hyperhive.dashboard.shellweb import ShellWeb
from hyperhive.errors import InvalidName
from hyperhive.names import validate_agent_name
from hyperhive.udshttp import uds_transport

__all__ = ["AgentProxy", "HARNESS_STATIC"]

log = logging.getLogger(__name__)

PREFIX: Final = "/agent/"
HARNESS_STATIC: Final = Path(__file__).resolve().parent.parent / "harness" / "static"
HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer",
     b"transfer-encoding", b"upgrade", b"host", b"content-length", b"x-csrf-token", b"x-forwarded-prefix",
     b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto"}
)  # fmt: skip
# The only agent response headers that reach the operator's browser; everything else (Set-Cookie,
# Access-Control-*, Refresh, Clear-Site-Data, its own CSP, Link, Service-Worker-Allowed…) is
# dropped. Location passes only when it stays inside the agent's own /agent/<name>/.
RESPONSE_ALLOW: Final = frozenset(
    {b"content-type", b"content-length", b"content-encoding", b"content-language", b"content-range",
     b"accept-ranges", b"cache-control", b"etag", b"last-modified", b"expires", b"vary", b"retry-after",
     b"x-accel-buffering"}
)  # fmt: skip
_LOCATION_OK: Final = re.compile(r"[A-Za-z0-9/._~!$&'()*+,;=:@?#%-]*")
WS_MAX: Final = 4 * 1024 * 1024


def _strip_cookies(value: str) -> str:
    kept = []
    for part in value.split(";"):
        name = part.split("=", 1)[0].strip()
        if name and name not in (SESSION_COOKIE, CSRF_COOKIE):
            kept.append(part.strip())
    return "; ".join(kept)


def _forward_headers(scope: Scope, prefix: str) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for k, v in scope.get("headers", ()):
        k = k.lower()
        if k in HOP_BY_HOP or k.startswith(b"sec-websocket-"):
            continue
        if k == b"cookie":
            v = _strip_cookies(v.decode("latin-1")).encode("latin-1")
            if not v:
                continue
        out.append((k, v))
    out.append((b"x-forwarded-prefix", prefix.encode()))
    return out


def _safe_location(value: str, request_path: str, prefix: str) -> bytes | None:
    """`value` as a same-origin path when it resolves inside `prefix`/, else None (dropped).
    Backslashes, control characters and encoded dots are refused outright: browsers read
    them as separators or `..`, which would let a redirect leave the prefix."""
    if not _LOCATION_OK.fullmatch(value) or "%2e" in value.lower() or value.startswith("//"):
        return None
    base = "http://core" + request_path
    target = urlsplit(urljoin(base, value))
    if target.scheme != "http" or target.netloc != "core":
        return None
    if not (target.path + "/").startswith(prefix + "/"):
        return None
    out = (
        target.path + (f"?{target.query}" if target.query else "") + (f"#{target.fragment}" if target.fragment else "")
    )
    return out.encode("latin-1")


def _response_headers(raw: list[tuple[bytes, bytes]], request_path: str, prefix: str) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for k, v in raw:
        k = k.lower()
        if k in RESPONSE_ALLOW:
            out.append((k, v))
        elif k == b"location":
            location = _safe_location(v.decode("latin-1"), request_path, prefix)
            if location is not None:
                out.append((k, location))
    return out


class AgentProxy:
    def __init__(self, services: Any) -> None:
        self.services = services
        self.static = StaticFiles(directory=str(HARNESS_STATIC), check_dir=False)
        self.shell = ShellWeb(services)
        self.down = DownPage(services)

    def _resolve(self, scope: Scope) -> tuple[str, str, bytes] | None:
        """(name, sub path for the agent, raw upstream path incl. query) or None → 404."""
        path: str = scope["path"]
        rest = path[len(PREFIX) :]
        name = rest.split("/", 1)[0]
        try:
            validate_agent_name(name)
        except InvalidName:
            return None
        raw: bytes = scope.get("raw_path") or path.encode()
        raw_prefix = (PREFIX + name).encode()
        if not raw.startswith(raw_prefix):
            return None  # the name came out of percent-decoding (a%2Fb): refuse
        upstream = raw[len(raw_prefix) :]
        if upstream and not upstream.startswith(b"/"):
            return None
        query: bytes = scope.get("query_string", b"")
        return name, path[len(PREFIX) + len(name) :], upstream + (b"?" + query if query else b"")

    def _other_node(self, name: str) -> str | None:
        """The agent page on the dashboard of the node that runs `name` (docs/nodes.md), if another."""
        nodes = self.services.lifecycle.nodes
        if nodes is None or name not in nodes.remote:
            return None
        url = next((r.node_url for r in nodes.remote_rows() if r.name == name), None)
        return f"{url.rstrip('/')}/agent/{name}/" if url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resolved = self._resolve(scope)
        elsewhere = self._other_node(resolved[0]) if resolved is not None else None
        if elsewhere is not None and scope["type"] == "http":  # its page is on its own node's dashboard
            await send_simple(send, 303, b"", content_type=b"text/plain", extra=[(b"location", elsewhere.encode())])
            return
        if resolved is None or resolved[0] not in self.services.lifecycle.agents:
            await self._not_found(scope, send)
            return
        name, sub, upstream = resolved
        prefix = PREFIX + name
        if not sub:
            if scope["type"] == "http":
                query = scope.get("query_string", b"")
                location = (prefix + "/").encode() + (b"?" + query if query else b"")
                await send_simple(send, 307, b"", content_type=b"text/plain", extra=[(b"location", location)])
            else:
                await send({"type": "websocket.close", "code": 4404})
            return
        host = header(scope, b"host") or ""
        origin = f"http://{host}"
        scope["hh_proxied"] = True
        scope["hh_agent"] = name
        # the shared helpers and vendored libraries only: the dashboard's own app.js never runs here
        scope["hh_csp"] = csp_for(f"{origin}/static/common/ {origin}/static/vendor/ {origin}{prefix}/static/")
        if scope["type"] == "http" and sub.startswith("/static/") and scope.get("method") in ("GET", "HEAD"):
            # the harness's own assets, from the core's copy of the package: never from the cage
            await self.static({**scope, "path": sub[len("/static") :], "root_path": ""}, receive, send)
            return
        if sub.startswith("/_shell/"):  # the core's own shell routes: never the harness's
            await self.shell(scope, receive, send, name, sub[len("/_shell") :])
            return
        if sub.startswith("/_down/"):  # the core's down page actions (start, log): never the harness's
            await self.down(scope, receive, send, name, sub[len("/_down") :])
            return
        if sub == "/_core" or sub.startswith("/_core/"):
            # the core → harness routes are not the operator's (the harness also refuses any
            # request carrying the proxy's x-forwarded-prefix there)
            await self._not_found(scope, send)
            return
        sock = self.services.config.paths.agent(name).web_socket
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, name, sock, prefix, upstream)
        else:
            await self._http(scope, receive, send, name, sock, prefix, upstream)

    async def _not_found(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4404})
            return
        await send_simple(send, 404, page("N0T F0UND", "no such agent"), content_type=b"text/html; charset=utf-8")

    # ---- http ------------------------------------------------------------------------------

    async def _http(
        self, scope: Scope, receive: Receive, send: Send, name: str, sock: Path, prefix: str, upstream: bytes
    ) -> None:
        chunks = []
        while True:  # the guard capped it; agent request bodies are small forms and JSON
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not sock.exists():
            await self.down.page(scope, send, name, "no web socket")
            return
        transport = uds_transport(sock)
        timeout = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=5.0)
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            request = client.build_request(
                scope["method"],
                httpx.URL("http://agent" + upstream.decode("latin-1")),
                headers=_forward_headers(scope, prefix),
                content=body if body or scope["method"] not in ("GET", "HEAD") else None,
            )
            try:
                response = await client.send(request, stream=True)
            except (httpx.TransportError, httpx.InvalidURL, OSError) as exc:
                # InvalidURL: httpx parses a redirect's Location even when not following it
                await self.down.page(scope, send, name, type(exc).__name__)
                return
            try:
                await self._pump(response, receive, send, scope["path"], prefix)
            finally:
                await response.aclose()

    async def _pump(self, response: httpx.Response, receive: Receive, send: Send, path: str, prefix: str) -> None:
        headers = _response_headers(list(response.headers.raw), path, prefix)
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})

        async def forward() -> None:
            try:
                async for chunk in response.aiter_raw():
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (httpx.TransportError, OSError):
                pass  # upstream reset mid-stream: end what we sent
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def gone() -> None:
            while True:
                message: Message = await receive()
                if message["type"] == "http.disconnect":
                    return

        pump = asyncio.ensure_future(forward())
        watch = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({pump, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)

    # ---- websockets ------------------------------------------------------------------------

    async def _websocket(
        self, scope: Scope, receive: Receive, send: Send, name: str, sock: Path, prefix: str, upstream: bytes
    ) -> None:
        first = await receive()
        if first["type"] != "websocket.connect":
            return
        extra = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in _forward_headers(scope, prefix)
                 if k not in (b"origin", b"user-agent")]  # fmt: skip
        protocols = [Subprotocol(p) for p in scope.get("subprotocols") or []] or None
        try:
            conn = await unix_connect(
                str(sock),
                uri="ws://agent" + upstream.decode("latin-1"),
                additional_headers=extra,
                subprotocols=protocols,
                open_timeout=5,
                max_size=WS_MAX,
                compression=None,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            log.info("websocket to %s refused: %s", name, exc)
            await send({"type": "websocket.close", "code": 1011, "reason": "agent down"})
            return
        async with conn:
            await send({"type": "websocket.accept", "subprotocol": conn.subprotocol})

            async def client_to_agent() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    if message["type"] == "websocket.receive":
                        if message.get("text") is not None:
                            await conn.send(message["text"])
                        elif message.get("bytes") is not None:
                            await conn.send(message["bytes"])

            async def agent_to_client() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for data in conn:
                        if isinstance(data, str):
                            await send({"type": "websocket.send", "text": data})
                        else:
                            await send({"type": "websocket.send", "bytes": bytes(data)})
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": 1000})

            a = asyncio.ensure_future(client_to_agent())
            b = asyncio.ensure_future(agent_to_client())
            try:
                await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (a, b):
                    task.cancel()
                await asyncio.gather(a, b, return_exceptions=True)

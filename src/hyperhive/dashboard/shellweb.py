"""The agent page's terminal: `/agent/<name>/_shell/…`, served by the core itself (never by the
harness, never forwarded to the cage). Runs behind `auth.Guard`, so the session, the Host check
and (on POST) Origin + the CSRF token are already enforced.

- `POST _shell/ticket` → a single-use ticket, valid TICKET_TTL seconds, bound to this agent and
  this dashboard session (browsers cannot set headers on a websocket, so the CSRF token cannot
  ride on it; the ticket does).
- `GET _shell/ws?ticket=…` (websocket): refused unless the Origin header is present and is this
  origin, and the ticket is live, unused, for this agent and this session. Then the agent's
  dashboard shell (`Shells.web_shell`): shared by every viewer, the recent screen replayed
  first, the last resize wins; closing the tab leaves it running until it has had no viewer
  for 15 minutes or `POST _shell/end` ends it.

On the websocket: binary messages are terminal bytes both ways; text messages are JSON control:
client → `{"type": "resize", "rows", "cols"}`; core → `{"type": "hello", …}` first and
`{"type": "exit", "exit_code", "signal"}` last.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from hyperhive.core.websessions import sessions_of
from hyperhive.dashboard.auth import SESSION_COOKIE, cookies, header
from hyperhive.errors import HiveError

__all__ = ["TICKET_TTL", "ShellWeb"]

log = logging.getLogger(__name__)

TICKET_TTL: Final = 30.0
MAX_TICKETS: Final = 256
MAX_INPUT: Final = 64 * 1024
SESSION_RECHECK: Final = 2.0  # seconds between checks that the viewer's session is still live
STATUS: Final = {"not_found": 404, "conflict": 409, "cage_error": 502, "forbidden": 403}


@dataclass(frozen=True)
class _Ticket:
    agent: str
    sid: str
    expires: float


def _who(session: dict[str, Any]) -> str:
    """The operator and which dashboard session: the short id `hive sessions` lists."""
    return f"operator (dashboard session {str(session.get('sid', ''))[:8]})"


class ShellWeb:
    def __init__(self, services: Any) -> None:
        self.services = services
        self._tickets: dict[str, _Ticket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send, name: str, rest: str) -> None:
        session = scope.get("hh_session")
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send, name, session)
            return
        request = Request(scope, receive)
        response: Response
        if session is None:
            response = JSONResponse({"ok": False, "error": "no session"}, status_code=401)
        elif rest == "/ticket" and request.method == "POST":
            response = self._issue(name, session)
        elif rest == "/end" and request.method == "POST":
            shells = self.services.shells
            ended = bool(shells is not None and shells.end_web(name))
            response = JSONResponse({"ok": True, "ended": ended}, headers={"cache-control": "no-store"})
        else:
            response = JSONResponse({"ok": False, "error": "not found"}, status_code=404)
        await response(scope, receive, send)

    def _issue(self, name: str, session: dict[str, Any]) -> JSONResponse:
        now = time.monotonic()
        for key, t in list(self._tickets.items()):
            if t.expires < now:
                del self._tickets[key]
        if len(self._tickets) >= MAX_TICKETS:
            return JSONResponse({"ok": False, "error": "too many open shell tickets"}, status_code=429)
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = _Ticket(name, str(session["sid"]), now + TICKET_TTL)
        return JSONResponse(
            {"ok": True, "ticket": ticket, "expires_in": TICKET_TTL, "ws": f"/agent/{name}/_shell/ws"},
            headers={"cache-control": "no-store"},
        )

    def _redeem(self, scope: Scope, name: str, session: dict[str, Any] | None) -> str | None:
        """Why the websocket is refused, or None (and the ticket is used up)."""
        if session is None:
            return "no session"
        origin = header(scope, b"origin")
        if origin is None or origin != f"http://{header(scope, b'host')}":
            return "missing or foreign origin"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get("ticket") or [""]
        ticket = self._tickets.pop(values[0], None)  # single use: gone whatever happens next
        if ticket is None:
            return "no ticket, or a used one"
        if ticket.expires < time.monotonic() or ticket.agent != name or ticket.sid != session["sid"]:
            return "ticket expired or not for this agent and session"
        return None

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, name: str,
                         session: dict[str, Any] | None) -> None:  # fmt: skip
        ws = WebSocket(scope, receive, send)
        why = self._redeem(scope, name, session)
        shells = self.services.shells
        if why is not None or shells is None or session is None:
            log.info("shell websocket for %s refused: %s", name, why)
            await ws.close(code=4403)
            return
        try:
            shell = await shells.web_shell(name, by=_who(session))
        except HiveError as exc:
            await ws.accept()
            await ws.send_text(json.dumps({"type": "error", "error": exc.message}))
            await ws.close(code=4000 + STATUS.get(exc.code, 400))
            return
        await ws.accept()
        viewer = shell.attach()
        hello = {"type": "hello", "session": shell.id, "agent": name, "isolated": shell.isolated,
                 "cage": shells.lifecycle.cage.kind, "rows": shell.rows, "cols": shell.cols}  # fmt: skip
        await ws.send_text(json.dumps(hello))

        async def out() -> None:
            while (data := await viewer.queue.get()) is not None:
                await ws.send_bytes(data)

        async def inp() -> None:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is not None:
                    if len(data) <= MAX_INPUT:
                        await shell.write(data)
                    continue
                text = message.get("text")
                if text is not None and len(text) <= MAX_INPUT:
                    with contextlib.suppress(ValueError, TypeError, AttributeError):
                        control = json.loads(text)
                        if control.get("type") == "resize":
                            shell.resize(int(control["rows"]), int(control["cols"]))

        async def logged_in() -> None:
            """A logout (or log out everywhere) cuts the terminal too, within SESSION_RECHECK."""
            value = cookies(scope).get(SESSION_COOKIE)
            while sessions_of(self.services).load(value) is not None:
                await asyncio.sleep(SESSION_RECHECK)

        pump = asyncio.ensure_future(out())
        client = asyncio.ensure_future(inp())
        watch = asyncio.ensure_future(logged_in())
        try:
            done, _ = await asyncio.wait({pump, client, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch in done:
                with contextlib.suppress(Exception):
                    await ws.close(code=4401)
            if pump in done and shell.done.done():
                status = shell.done.result()
                with contextlib.suppress(Exception):
                    await ws.send_text(json.dumps({"type": "exit", **status.to_json()}))
                    await ws.close(code=1000)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            for task in (pump, client, watch):
                task.cancel()
            await asyncio.gather(pump, client, watch, return_exceptions=True)
            shell.detach(viewer)

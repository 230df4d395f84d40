"""The model API gateway (architecture §13): every cage reaches the model through its own
`/run/hive/api.sock`, and only the core holds the upstream credential.

Each agent gets an HTTP server on its socket (the socket is the identity, like mcp.sock) and a
per-agent token, minted at each cage start, that the cage presents as its API key: it is
worthless anywhere but on that agent's socket. The gateway swaps it for the real key and
forwards to the upstream, streaming the answer through chunk by chunk (no buffering), while
`GatewayWatch` reads the SSE events for the usage. 429/529 are waited out here, once for all of
the agent's requests (the CLI never sees them, so it burns no retries), and the agent shows
`rate_limited` meanwhile. A budget refusal, a too-large body, too many concurrent requests or a
broken upstream each give the CLI an error in the API's own shape with a readable message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from hyperhive.config import ApiSettings
from hyperhive.core.gateway_usage import UsageParser
from hyperhive.webserver import EmbeddedServer

__all__ = ["API_SOCKET", "Gateway", "RequestUsage"]

log = logging.getLogger(__name__)

API_SOCKET = "api.sock"
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade", "host", "content-length", "x-api-key", "authorization",
     "accept-encoding"}
)  # fmt: skip
RESPONSE_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"})
OPEN_PATHS = ("/api/hello",)  # the CLI's reachability probe carries no key
RATE_STATUSES = (429, 529)
MAX_RATE_ROUNDS = 6
SLOT_WAIT = 1.0  # a request over the per-agent cap waits this long for a slot, then gets a 429


@dataclass(frozen=True)
class RequestUsage:
    agent: str
    model: str
    request_id: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    status: int = 200
    duration_ms: int = 0


UsageSink = Callable[[RequestUsage], Awaitable[None]]
Refusal = Callable[[str], Awaitable[str | None]]  # agent → a reason to refuse (over budget), or None
RateNotice = Callable[[str, float | None], None]  # agent, until (None: cleared)


@dataclass
class _Agent:
    name: str
    token: str
    server: EmbeddedServer | None = None
    task: asyncio.Task[None] | None = None
    active: int = 0
    rate_until: float = 0.0
    freed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def slot(self, cap: int, wait: float) -> bool:
        """Take one of the agent's `cap` request slots, waiting up to `wait` s for one to free."""
        async with self.freed:
            try:
                await asyncio.wait_for(self.freed.wait_for(lambda: self.active < cap), wait)
            except TimeoutError:
                return False
            self.active += 1
            return True

    async def release(self) -> None:
        async with self.freed:
            self.active -= 1
            self.freed.notify()


def api_error(status: int, kind: str, message: str) -> tuple[int, bytes]:
    body = {"type": "error", "error": {"type": kind, "message": "hyperhive gateway: " + message}}
    return status, json.dumps(body).encode()


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`retry-after` as seconds (a number or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - (now or time.time()))
    return None


class Gateway:
    def __init__(
        self,
        settings: ApiSettings,
        *,
        on_usage: UsageSink | None = None,
        refuse: Refusal | None = None,
        on_rate: RateNotice | None = None,
    ) -> None:
        self.settings = settings
        self.on_usage = on_usage
        self.refuse = refuse
        self.on_rate = on_rate
        self.agents: dict[str, _Agent] = {}
        self._client: httpx.AsyncClient | None = None
        self._client_lock = asyncio.Lock()

    async def http(self) -> httpx.AsyncClient:
        """The upstream client, built in a thread: loading the CA bundle takes ~0.1 s."""
        async with self._client_lock:
            if self._client is None:
                s = self.settings
                timeout = httpx.Timeout(s.timeout, connect=min(30.0, s.timeout))
                limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
                self._client = await asyncio.to_thread(
                    httpx.AsyncClient, timeout=timeout, limits=limits, follow_redirects=False, trust_env=False
                )
            return self._client

    # ---- sockets -----------------------------------------------------------------------

    async def open(self, name: str, run_dir: Path, uid: int | None) -> str:
        """Serve `name`'s api.sock (owned by its uid, 0600) with a fresh token; return the token."""
        await self.close(name)
        path = run_dir / API_SOCKET
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        path.chmod(0o600)
        if uid is not None:
            os.chown(path, uid, uid)
        sock.listen(256)
        sock.setblocking(False)
        agent = _Agent(name, "hh-" + secrets.token_urlsafe(32))
        config = uvicorn.Config(self._app(agent), log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=2, server_header=False, date_header=False)  # fmt: skip
        agent.server = EmbeddedServer(config)
        agent.task = asyncio.create_task(agent.server.serve(sockets=[sock]), name=f"gateway-{name}")
        self.agents[name] = agent
        return agent.token

    async def close(self, name: str) -> None:
        agent = self.agents.pop(name, None)
        if agent is None or agent.server is None or agent.task is None:
            return
        agent.server.should_exit = True
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(agent.task)
        except TimeoutError:
            agent.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent.task

    async def aclose(self) -> None:
        for name in list(self.agents):
            await self.close(name)
        if self._client is not None:
            await self._client.aclose()

    def rate_limited_until(self, name: str) -> float | None:
        agent = self.agents.get(name)
        return agent.rate_until if agent is not None and agent.rate_until > time.time() else None

    # ---- the per-agent ASGI app ----------------------------------------------------------

    def _app(self, agent: _Agent) -> Callable[..., Awaitable[None]]:
        async def app(scope: dict[str, Any], receive: Callable[..., Awaitable[Any]], send: Callable[..., Awaitable[None]]) -> None:  # fmt: skip
            if scope["type"] != "http":
                return
            try:
                await self._handle(agent, scope, receive, send)
            except Exception:
                log.exception("gateway %s: %s %s failed", agent.name, scope.get("method"), scope.get("path"))
                with contextlib.suppress(Exception):
                    await _reply(send, *api_error(502, "api_error", "internal error in the gateway (see the core log)"))

        return app

    async def _handle(self, agent: _Agent, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]]
        if not (path in OPEN_PATHS and method in ("GET", "HEAD")) and not _authorised(agent.token, headers):
            await _reply(send, *api_error(401, "authentication_error", "this key is not valid on this socket"))
            return
        if agent.name not in self.agents or self.agents[agent.name] is not agent:
            await _reply(send, *api_error(401, "authentication_error", "this agent's gateway was closed"))
            return
        body = await _read_body(receive, headers, self.settings.max_body)
        if body is None:
            await _reply(send, *api_error(413, "request_too_large",
                                          f"the request body is over {self.settings.max_body} bytes"))  # fmt: skip
            return
        if path.startswith("/v1/messages") and method == "POST" and self.refuse is not None:
            reason = await self.refuse(agent.name)
            if reason is not None:
                await _reply(send, *api_error(403, "permission_error", reason))
                return
        if not await agent.slot(self.settings.max_concurrent, SLOT_WAIT):
            status, payload = api_error(429, "rate_limit_error",
                                        f"{agent.name} has {agent.active} requests in flight (cap {self.settings.max_concurrent})")  # fmt: skip
            await _reply(send, status, payload, extra=[(b"retry-after", b"1")])
            return
        try:
            await self._forward(agent, method, path, scope.get("query_string", b""), headers, body, send)
        finally:
            await agent.release()

    async def _forward(self, agent: _Agent, method: str, path: str, query: bytes, headers: list[tuple[str, str]],
                       body: bytes, send: Any) -> None:  # fmt: skip
        url = self.settings.upstream + path + ("?" + query.decode("latin-1") if query else "")
        fwd = [(k, v) for k, v in headers if k not in HOP_BY_HOP]
        if self.settings.key is not None:
            fwd.append(("x-api-key", self.settings.key))
        started = time.monotonic()
        for round_ in range(MAX_RATE_ROUNDS + 1):
            await self._wait_rate(agent)
            client = await self.http()
            request = client.build_request(method, url, headers=fwd, content=body)
            try:
                response = await client.send(request, stream=True)
            except httpx.TimeoutException:
                await _reply(
                    send, *api_error(504, "api_error", f"the upstream {self.settings.upstream} did not answer in time")
                )
                return
            except httpx.HTTPError as exc:
                await _reply(
                    send,
                    *api_error(502, "api_error", f"the upstream {self.settings.upstream} is unreachable: {_why(exc)}"),
                )
                return
            if response.status_code in RATE_STATUSES and round_ < MAX_RATE_ROUNDS:
                wait = retry_after_seconds(response.headers.get("retry-after"))
                wait = wait if wait is not None else min(60.0, 2.0 * 2**round_)
                if wait <= self.settings.max_rate_wait:
                    await response.aclose()
                    self._set_rate(agent, time.time() + wait)
                    log.info("gateway %s: upstream %d, waiting %.1f s", agent.name, response.status_code, wait)
                    continue
            try:
                await self._relay(agent, body, path, response, send, started)
            finally:
                await response.aclose()
            return

    async def _wait_rate(self, agent: _Agent) -> None:
        """Every request of a rate-limited agent waits for the same deadline (no storm)."""
        while (left := agent.rate_until - time.time()) > 0:
            await asyncio.sleep(min(left, 1.0))
        if agent.rate_until and self.on_rate is not None:
            agent.rate_until = 0.0
            self.on_rate(agent.name, None)

    def _set_rate(self, agent: _Agent, until: float) -> None:
        if until > agent.rate_until:
            agent.rate_until = until
            if self.on_rate is not None:
                self.on_rate(agent.name, until)

    async def _relay(self, agent: _Agent, body: bytes, path: str, response: httpx.Response, send: Any,
                     started: float) -> None:  # fmt: skip
        ctype = response.headers.get("content-type", "")
        status = response.status_code
        is_sse = ctype.startswith("text/event-stream")
        if not is_sse and "json" not in ctype and (status >= 400 or path.startswith("/v1/")):
            text = (await response.aread())[:300].decode("utf-8", "replace")
            await _reply(send, *api_error(502 if status < 400 else status, "api_error",
                                          f"the upstream answered {status} with {ctype or 'no content type'}: {text!r}"))  # fmt: skip
            return
        out_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.multi_items()
                       if k.lower() not in RESPONSE_DROP]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        parser = UsageParser(sse=is_sse)
        try:
            async for chunk in response.aiter_raw():
                parser.feed(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:
            why = f"the upstream broke off the answer: {_why(exc)}"
            log.warning("gateway %s: %s", agent.name, why)
            if is_sse:
                err = {"type": "error", "error": {"type": "api_error", "message": "hyperhive gateway: " + why}}
                await send({"type": "http.response.body", "body": f"event: error\ndata: {json.dumps(err)}\n\n".encode(),
                            "more_body": True})  # fmt: skip
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        usage = parser.usage()
        if (
            usage is not None
            and self.on_usage is not None
            and path.startswith("/v1/messages")
            and "count_tokens" not in path
        ):
            model = str(usage.get("model") or await asyncio.to_thread(_model_of, body))
            record = RequestUsage(
                agent=agent.name, model=model, request_id=usage.get("id") or "",
                input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"],
                cache_read_tokens=usage["cache_read_tokens"], cache_write_tokens=usage["cache_write_tokens"],
                status=status, duration_ms=int((time.monotonic() - started) * 1000),
            )  # fmt: skip
            try:
                await self.on_usage(record)
            except Exception:
                log.exception("gateway %s: recording usage failed", agent.name)


def _authorised(token: str, headers: list[tuple[str, str]]) -> bool:
    given = ""
    for k, v in headers:
        if k == "x-api-key":
            given = v
        elif k == "authorization" and not given:
            given = v.removeprefix("Bearer ").strip()
    return bool(given) and secrets.compare_digest(given.encode(), token.encode())


async def _read_body(receive: Any, headers: list[tuple[str, str]], cap: int) -> bytes | None:
    declared = next((v for k, v in headers if k == "content-length"), None)
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return None
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _reply(send: Any, status: int, payload: bytes, *, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


def _model_of(body: bytes) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        model = json.loads(body).get("model")
        if isinstance(model, str):
            return model[:100]
    return "unknown"


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300] if str(exc) else type(exc).__name__

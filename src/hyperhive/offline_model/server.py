"""The offline model's HTTP side: enough of the Anthropic Messages API for the claude CLI.

A labelled stand-in, not a real LLM: the answers come from `policy.decide`. Serves
`HEAD|GET /api/hello`, `POST /v1/messages` (SSE when `stream` is true, JSON otherwise),
`POST /v1/messages/count_tokens`, and `GET /_offline/requests` (the bounded log of what it
received, for tests). Anything else is a 404 in the API's error shape.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hyperhive.offline_model.policy import LABEL, Decision, decide
from hyperhive.offline_model.ratelimit import RateLimitScript
from hyperhive.webserver import EmbeddedServer

__all__ = ["LABEL", "OfflineModel", "OfflineModelServer", "build_app"]

logger = logging.getLogger("hyperhive.offline_model")

_CHUNK_CHARS = 24


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)


def _estimate_tokens(payload: Any) -> int:
    return max(1, len(json.dumps(payload, ensure_ascii=False)) // 4)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
            results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
            if texts:
                return str(texts[-1])
            if results:
                return "[tool_result]"
    return ""


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _chunks(text: str, n: int) -> list[str]:
    if n <= 1 or len(text) <= 1:
        return [text]
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _user_texts(body: dict[str, Any]) -> list[str]:
    texts = []
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
            texts += [str(b.get("text", ""))[:500] for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
    return texts


RequestHook = Callable[[dict[str, Any]], None]


class _State:
    def __init__(self, log_limit: int, api_key: str | None, on_request: RequestHook | None) -> None:
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=log_limit)
        self.api_key = api_key
        self.on_request = on_request
        self.rate_limit = RateLimitScript()
        self.hurried = False  # `slow N` answered at once (OfflineModelServer.hurry)


def build_app(*, log_limit: int = 200, api_key: str | None = None, on_request: RequestHook | None = None) -> Starlette:
    """The Starlette app. With `api_key`, /v1 requests carrying another key get a 401.
    `on_request` sees each log entry as it is recorded (tests wait on it instead of polling)."""
    state = _State(log_limit, api_key, on_request)

    def authorised(request: Request) -> bool:
        if state.api_key is None:
            return True
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        return secrets.compare_digest(given.encode(), state.api_key.encode())

    async def hello(request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status_code=200)
        return JSONResponse({"ok": True, "model": LABEL})

    async def read_body(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid_request_error", "offline model: the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "offline model: the body must be a JSON object")
        return body

    async def count_tokens(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "authentication_error", "offline model: invalid x-api-key")
        body = await read_body(request)
        if isinstance(body, JSONResponse):
            return body
        return JSONResponse({"input_tokens": _estimate_tokens(body.get("messages", []))})

    async def messages(request: Request) -> Response:
        if not authorised(request):
            logger.info("%s: refused a request with the wrong API key (401)", LABEL)
            return _error(401, "authentication_error", "offline model: invalid x-api-key")
        body = await read_body(request)
        if isinstance(body, JSONResponse):
            return body
        if (retry_after := state.rate_limit.check(body)) is not None:  # the `ratelimit N` script
            limited = _error(429, "rate_limit_error", "offline model: scripted rate limit")
            limited.headers["retry-after"] = f"{retry_after:g}"
            return limited
        tools = [str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)]
        entry = {
            "model": body.get("model"),
            "stream": bool(body.get("stream")),
            "last_user_text": _last_user_text(body),
            "user_texts": _user_texts(body),
            "tools": tools,
            "messages": len(body.get("messages") or []),
            "system": json.dumps(body.get("system")),  # as sent (tests check what reached the model)
        }
        decision = decide(body)
        if state.hurried and decision.delay:
            decision = dataclasses.replace(decision, delay=0.0)
        entry["answer"] = [b.get("text") if b["type"] == "text" else {"tool_use": b["name"]} for b in decision.blocks]
        state.requests.append(entry)
        if state.on_request is not None:
            try:
                state.on_request(entry)
            except Exception:
                logger.exception("offline model: the on_request hook failed")
        logger.info(
            "%s: model=%s last_user=%r → %s",
            LABEL,
            entry["model"],
            str(entry["last_user_text"])[:80],
            entry["answer"] if decision.error is None else decision.error,
        )
        if decision.error is not None:
            status, kind, message = decision.error
            return _error(status, kind, message)
        model = str(body.get("model") or "offline-model")
        input_tokens = _estimate_tokens(body.get("messages", []))
        output_tokens = max(1, sum(_estimate_tokens(b) for b in decision.blocks))
        message_id = "msg_offline_" + secrets.token_hex(12)
        if body.get("stream"):
            return StreamingResponse(
                _stream(decision, model, message_id, input_tokens, output_tokens),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "request-id": message_id},
            )
        return JSONResponse(
            {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": decision.blocks,
                "stop_reason": decision.stop_reason,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            }
        )

    async def requests_log(request: Request) -> Response:
        return JSONResponse(list(state.requests))

    async def not_found(request: Request) -> Response:
        return _error(404, "not_found_error", f"offline model: no route {request.method} {request.url.path}")

    app = Starlette(
        routes=[
            Route("/api/hello", hello, methods=["GET", "HEAD"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/_offline/requests", requests_log, methods=["GET"]),
            Route("/{path:path}", not_found, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
        ]
    )
    app.state.offline = state
    return app


async def _stream(
    decision: Decision, model: str, message_id: str, input_tokens: int, output_tokens: int
) -> AsyncIterator[bytes]:
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        },
    )
    text_chars = sum(len(b.get("text", "")) for b in decision.blocks if b["type"] == "text")
    n_chunks = max(1, text_chars // _CHUNK_CHARS) if decision.delay > 0 else 1
    pause = decision.delay / n_chunks if decision.delay > 0 else 0.0
    for index, block in enumerate(decision.blocks):
        if block["type"] == "text":
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            for piece in _chunks(block["text"], n_chunks):
                if pause:
                    await asyncio.sleep(pause)
                yield _sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
        else:
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": block["name"],
                        "input": {},
                    },
                },
            )
            yield _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
                },
            )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": decision.stop_reason, "stop_sequence": None},
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


class OfflineModelServer:
    """The offline model served by uvicorn inside the running asyncio loop.

    ```python
    async with OfflineModelServer() as model:  # port 0: the OS picks; model.url has it
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "dummy"}
    ```
    The listening socket is bound before `start()` returns, so the URL works at once.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        log_limit: int = 200,
        on_request: RequestHook | None = None,
    ) -> None:
        self.host = host
        self.app = build_app(log_limit=log_limit, api_key=api_key, on_request=on_request)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._requested_port = port
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The bounded log of received /v1/messages requests (oldest first)."""
        return list(self.app.state.offline.requests)

    def hurry(self) -> None:
        """From now on answer `slow N` at once: a test that interrupted a slow turn need not wait
        the delay out again on the message's redelivery."""
        self.app.state.offline.hurried = True

    async def start(self) -> None:
        self._sock.bind((self.host, self._requested_port))
        self._sock.listen(128)
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=2
        )
        # the process's owner handles SIGINT/SIGTERM (the demo's daemon, or __main__), not uvicorn
        self._server = EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]), name="offline-model")
        logger.warning("%s — listening on %s", LABEL, self.url)

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit; cancel it if it has not within `timeout`. Idempotent."""
        task, self._task = self._task, None
        if task is not None and self._server is not None:
            self._server.should_exit = True
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel("offline model did not stop within the bound")
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sock.close()

    async def __aenter__(self) -> OfflineModelServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


OfflineModel = OfflineModelServer
"""Short alias."""

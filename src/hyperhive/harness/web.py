"""The per-agent web app on /run/hive/web.sock: state, the event trail (history + SSE), and the
operator's controls. The core proxies it under /agent/<name>/ behind the dashboard session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hyperhive.errors import HiveError
from hyperhive.sse import sse_response

if TYPE_CHECKING:
    from hyperhive.harness.loop import Harness

__all__ = ["create_agent_app"]

MAX_FORM = 128 * 1024


def create_agent_app(harness: Harness) -> Starlette:
    def state() -> dict[str, Any]:
        return {
            "name": harness.name,
            "manager": harness.manager,
            "state": harness.state,
            "state_since": harness.state_since,
            "nap_until": harness.nap_until,
            "model": harness.model(),
            "model_default": harness.default_model(),
            "model_override": harness.model_override(),
            "model_active": harness.model_active,
            "model_queued_at": harness.model_queued_at,
            "last_turn_ms": harness.last_turn_ms,
            "events_persistent": harness.bus.persistent,
            "events_store_error": harness.bus.store_error,
            "last_event_id": harness.bus.last_id,
        }

    async def api_state(request: Request) -> JSONResponse:
        return JSONResponse(state())

    async def history(request: Request) -> JSONResponse:
        after = int(request.query_params.get("after", "0") or 0)
        events = [e.to_json() for e in harness.bus.history(after=after)]
        return JSONResponse({"events": events, "last_event_id": harness.bus.last_id})

    async def stream(request: Request) -> Response:
        return sse_response(request, harness.bus)

    async def _form(request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > MAX_FORM:
            raise HiveError("request body too large")
        if request.headers.get("content-type", "").startswith("application/json"):
            import json

            data = json.loads(body or b"{}")
            return data if isinstance(data, dict) else {}
        from urllib.parse import parse_qs

        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

    def control(fn: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                data = await _form(request)
                result = await fn(data)
            except HiveError as exc:
                return JSONResponse({"ok": False, "error": exc.message}, status_code=409)
            return JSONResponse({"ok": True, "result": result, "state": state()})

        return endpoint

    async def do_cancel(data: dict[str, Any]) -> str:
        return await harness.cancel()

    async def do_compact(data: dict[str, Any]) -> str:
        return await harness.compact()

    async def do_model(data: dict[str, Any]) -> str | None:
        name = str(data.get("model", "")).strip()[:200] or None
        return harness.set_model(name) or f"model set to {name or harness.default_model()}"

    async def do_new_session(data: dict[str, Any]) -> str:
        harness.new_session()
        return "new session on the next turn"

    routes = [
        Route("/api/state", api_state),
        Route("/events/history", history),
        Route("/events/stream", stream),
        Route("/api/cancel", control(do_cancel), methods=["POST"]),
        Route("/api/compact", control(do_compact), methods=["POST"]),
        Route("/api/model", control(do_model), methods=["POST"]),
        Route("/api/new-session", control(do_new_session), methods=["POST"]),
    ]
    return Starlette(routes=routes)

"""The per-agent web app on /run/hive/web.sock: the page, state, the event trail (history + SSE),
the inbox, token/cost stats, the operator's controls and the login panel. The core proxies it
under /agent/<name>/ behind the dashboard session, so the page uses relative URLs only (and the
core's own `POST /api/send` for operator messages: this socket cannot send as the operator).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hyperhive.errors import ErrorCode, HiveError
from hyperhive.harness.login import LoginSession
from hyperhive.sse import sse_response

if TYPE_CHECKING:
    from hyperhive.harness.loop import Harness

__all__ = ["STATIC_DIR", "create_agent_app", "trail_stats"]

MAX_FORM = 128 * 1024
STATIC_DIR = Path(__file__).parent / "static"
INBOX_DEFAULT = 20
DURATIONS_KEPT = 60
SERIES_KEPT = 100  # turns in the stats chart


class BodyTooLarge(HiveError):
    code = ErrorCode.TOO_LARGE


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def trail_stats(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Token and cost accounting over the trail: the sums of every `turn_end`'s usage and cost
    (plus what notes compactions spent, counted in `compactions`), turn counts, the latest turn
    durations, and `series`: the last SERIES_KEPT turns (turn number `n`, `ts`, `duration_ms`,
    `tokens` = input + output, `ok`, `cancelled`) for the page's chart."""
    out: dict[str, Any] = {
        "turns": 0, "ok": 0, "failed": 0, "cancelled": 0, "input_tokens": 0, "output_tokens": 0,
        "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0, "cost_usd": 0.0,
        "total_ms": 0, "durations": [], "series": [], "since": None, "compactions": 0,
    }  # fmt: skip
    durations: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    for event in events:
        if event.get("kind") in ("notes_compacted", "notes_compaction_failed"):
            p = event.get("payload") or {}
            out["compactions"] += 1
            raw_spent = p.get("usage")
            spent: dict[str, Any] = raw_spent if isinstance(raw_spent, dict) else {}
            for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
                out[key] += int(_num(spent.get(key)))
            out["cost_usd"] += _num(p.get("cost_usd"))
            continue
        if event.get("kind") != "turn_end":
            continue
        p = event.get("payload") or {}
        out["turns"] += 1
        if out["since"] is None:
            out["since"] = event.get("ts")
        if p.get("cancelled"):
            out["cancelled"] += 1
        elif p.get("ok"):
            out["ok"] += 1
        else:
            out["failed"] += 1
        raw_usage = p.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"):
            out[key] += int(_num(usage.get(key)))
        tokens = int(_num(usage.get("input_tokens"))) + int(_num(usage.get("output_tokens")))
        out["cost_usd"] += _num(p.get("cost_usd"))
        ms = int(_num(p.get("duration_ms")))
        out["total_ms"] += ms
        durations.append({"id": event.get("id"), "ts": event.get("ts"), "ms": ms, "ok": bool(p.get("ok"))})
        series.append({"n": out["turns"], "id": event.get("id"), "ts": event.get("ts"), "duration_ms": ms,
                       "tokens": tokens, "ok": bool(p.get("ok")), "cancelled": bool(p.get("cancelled"))})  # fmt: skip
    out["durations"] = durations[-DURATIONS_KEPT:]
    out["series"] = series[-SERIES_KEPT:]
    out["cost_usd"] = round(out["cost_usd"], 6)
    return out


SHELL_FIELDS = ("session", "kind", "via", "by", "command", "isolated", "started_at", "ended_at", "exit_code",
                "signal", "duration_ms")  # fmt: skip


def shell_note(data: dict[str, Any]) -> dict[str, Any] | None:
    """A core shell record → the `note` event payload the trail keeps (`event` names it)."""
    event = data.get("event")
    if event not in ("shell_started", "shell_ended"):
        return None
    fields = {k: data[k] for k in SHELL_FIELDS if isinstance(data.get(k), str | int | float | bool)}
    fields = {k: v[:300] if isinstance(v, str) else v for k, v in fields.items()}
    who = f"{fields.get('kind', 'shell')} #{fields.get('session', '?')} by {fields.get('by', '?')}"
    if event == "shell_started":
        text = f"operator {who} started: {fields.get('command', '')}"
    else:
        code, sig = fields.get("exit_code"), fields.get("signal")
        text = f"operator {who} ended: " + (f"exit {code}" if code is not None else f"signal {sig}")
    return {"text": text, "event": event, **fields}


def _page(harness: Harness, prefix: str) -> str:
    template = (STATIC_DIR / "agent.html").read_text(encoding="utf-8")
    base = f'<base href="{html.escape(prefix.rstrip("/") + "/", quote=True)}">' if prefix else ""
    return (
        template.replace("{{base}}", base)
        .replace("{{name}}", html.escape(harness.name))
        .replace("{{role}}", "manager" if harness.manager else "agent")
    )


def create_agent_app(harness: Harness, *, environ: dict[str, str] | None = None) -> Starlette:
    env = dict(environ if environ is not None else harness.environ)

    def _logged_in() -> None:
        harness.bus.emit("note", {"text": "login command finished: logged in (operator)"})
        harness.login_succeeded()

    login = LoginSession(env, home=harness.paths.home, on_success=_logged_in)

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
            "model_switched_at": harness.model_queued_at,
            "model_switch_source": harness.model_record.source if harness.model_record else None,
            "model_config_hidden": harness.config_model_hidden(),
            "last_turn_ms": harness.last_turn_ms,
            "notes_bytes": harness.notes.size(),
            "notes_compact_bytes": harness.notes_compact_bytes(),
            "notes_kept": len(harness.notes.kept_versions()),
            "events_persistent": harness.bus.persistent,
            "events_store_error": harness.bus.store_error,
            "last_event_id": harness.bus.last_id,
            "events_epoch": harness.bus.epoch,
            "login": login.snapshot(),
            "pool": harness.pool_state(),
        }

    async def index(request: Request) -> HTMLResponse:
        prefix = request.headers.get("x-forwarded-prefix", "").strip()
        if prefix and not prefix.startswith("/"):
            prefix = ""
        return HTMLResponse(_page(harness, prefix), headers={"cache-control": "no-store"})

    async def api_state(request: Request) -> JSONResponse:
        return JSONResponse(state())

    async def history(request: Request) -> JSONResponse:
        try:
            after = max(0, int(request.query_params.get("after", "0") or 0))
        except ValueError:
            return JSONResponse({"error": "after must be an integer"}, status_code=400)
        events = [e.to_json() for e in harness.bus.history(after=after)]
        return JSONResponse({"events": events, "last_event_id": harness.bus.last_id, "epoch": harness.bus.epoch})

    async def stream(request: Request) -> Response:
        return sse_response(request, harness.bus)

    async def inbox(request: Request) -> JSONResponse:
        try:
            limit = min(200, max(1, int(request.query_params.get("limit", INBOX_DEFAULT))))
        except ValueError:
            limit = INBOX_DEFAULT
        try:
            reply = await harness.client.call("recent", limit=limit)
        except (HiveError, OSError) as exc:
            return JSONResponse({"messages": [], "error": getattr(exc, "message", str(exc))}, status_code=502)
        return JSONResponse({"messages": reply.get("messages", [])})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(trail_stats([e.to_json() for e in harness.bus.history()]))

    async def _form(request: Request) -> dict[str, Any]:
        body = await request.body()
        if len(body) > MAX_FORM:
            raise BodyTooLarge("request body too large")
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                data = json.loads(body or b"{}")
            except ValueError as exc:
                raise HiveError(f"bad json: {exc}") from exc
            return data if isinstance(data, dict) else {}
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}

    def control(fn: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                data = await _form(request)
                result = await fn(data)
            except BodyTooLarge as exc:
                return JSONResponse({"ok": False, "error": exc.message}, status_code=413)
            except HiveError as exc:
                return JSONResponse({"ok": False, "error": exc.message}, status_code=409)
            return JSONResponse({"ok": True, "result": result, "state": state()})

        return endpoint

    async def do_cancel(data: dict[str, Any]) -> str:
        return await harness.cancel()

    async def do_compact(data: dict[str, Any]) -> str:
        return await harness.compact()

    async def do_end_nap(data: dict[str, Any]) -> str:
        return await harness.end_nap()

    async def do_compact_notes(data: dict[str, Any]) -> str:
        return await harness.compact_notes(forced=True)

    async def do_model(data: dict[str, Any]) -> str | None:
        name = str(data.get("model", "")).strip()[:200] or None
        return harness.set_model(name) or f"model set to {name or harness.default_model()}"

    async def do_new_session(data: dict[str, Any]) -> str:
        harness.new_session()
        return "new session on the next turn"

    async def do_login_start(data: dict[str, Any]) -> dict[str, Any]:
        snap = await login.start()
        harness.bus.emit("note", {"text": "login started by the operator: " + snap["command"]})
        # Give the command a moment to print its URL, bounded: the page also polls.
        for _ in range(50):
            if login.url is not None or not login.running:
                break
            await login.wait(0.1)
        return login.snapshot()

    async def do_login_code(data: dict[str, Any]) -> dict[str, Any]:
        await login.send_code(str(data.get("code", "")))
        return await login.wait(5.0)

    async def core_trail(request: Request) -> JSONResponse:
        """The core records an operator shell session in this trail (core/shell_trail.py). The
        dashboard proxy never forwards /_core/ and always adds x-forwarded-prefix."""
        if "x-forwarded-prefix" in request.headers:
            return JSONResponse({"ok": False, "error": "not found"}, status_code=404)
        try:
            data = await _form(request)
        except HiveError as exc:
            return JSONResponse({"ok": False, "error": exc.message}, status_code=400)
        note = shell_note(data)
        if note is None:
            return JSONResponse({"ok": False, "error": "not a shell record"}, status_code=400)
        harness.bus.emit("note", note)
        return JSONResponse({"ok": True})

    async def core_cool(request: Request) -> JSONResponse:
        """The core's pool asks for the claude CLI to be cooled (core/pool.py); never proxied."""
        if "x-forwarded-prefix" in request.headers:
            return JSONResponse({"ok": False, "error": "not found"}, status_code=404)
        try:
            data = await _form(request)
            result = await harness.cool(str(data.get("why", "the core's pool"))[:200])
        except HiveError as exc:
            return JSONResponse({"ok": False, "error": exc.message}, status_code=409)
        return JSONResponse({"ok": True, "result": result})

    async def login_status(request: Request) -> JSONResponse:
        return JSONResponse(login.snapshot())

    routes = [
        Route("/", index),
        Route("/api/state", api_state),
        Route("/api/inbox", inbox),
        Route("/api/stats", stats),
        Route("/api/login", login_status),
        Route("/events/history", history),
        Route("/events/stream", stream),
        Route("/api/cancel", control(do_cancel), methods=["POST"]),
        Route("/api/compact", control(do_compact), methods=["POST"]),
        Route("/api/compact-notes", control(do_compact_notes), methods=["POST"]),
        Route("/api/end-nap", control(do_end_nap), methods=["POST"]),
        Route("/api/model", control(do_model), methods=["POST"]),
        Route("/api/new-session", control(do_new_session), methods=["POST"]),
        Route("/api/login/start", control(do_login_start), methods=["POST"]),
        Route("/api/login/code", control(do_login_code), methods=["POST"]),
        Route("/_core/trail", core_trail, methods=["POST"]),
        Route("/_core/cool", core_cool, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.login = login
    return app

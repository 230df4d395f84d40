"""`GET /api/stats?agent=NAME&since=TS` (the telemetry series, session only) and `GET /metrics`
(the same figures in the Prometheus text format: a bearer token from `state/metrics.token`,
mode 0600, created at first start, or the dashboard session)."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hyperhive.errors import HiveError
from hyperhive.names import validate_agent_name

__all__ = ["MetricsBearer", "metrics_token", "render_metrics", "stats_routes"]

METRICS_TOKEN = "metrics.token"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_token(state_dir: Path) -> str:
    """The scrape token, created 0600 on first use."""
    path = state_dir / METRICS_TOKEN
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, encoding="utf-8") as f:
        return f.read().strip()


def _label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


async def render_metrics(services: Any, now: float | None = None) -> str:
    """Every agent's figures over the stats retention window (counters count rows kept there)."""
    now = time.time() if now is None else now
    tel = services.telemetry
    since = now - services.config.api.stats_retention_days * 86400
    out: dict[str, tuple[str, str, list[str]]] = {}

    def add(name: str, kind: str, help_: str, labels: dict[str, str], value: float | None) -> None:
        if value is None:
            return
        entry = out.setdefault(name, (kind, help_, []))
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        entry[2].append(f"{name}{{{text}}} {value:g}" if text else f"{name} {value:g}")

    for row in services.lifecycle.rows():
        a = row.name
        add(
            "hyperhive_agent_up",
            "gauge",
            "1 when the agent's cage runs.",
            {"agent": a},
            1.0 if row.state == "running" else 0.0,
        )
        if tel is None:
            continue
        st = await tel.series(a, since, now)
        add("hyperhive_turns_total", "counter", "Turns ended.", {"agent": a}, st["turns"])
        for q, key in (("0.5", "turn_ms_p50"), ("0.95", "turn_ms_p95")):
            v = st[key]
            add("hyperhive_turn_duration_seconds", "summary", "Turn duration.", {"agent": a, "quantile": q},
                None if v is None else v / 1000)  # fmt: skip
        add("hyperhive_tool_calls_total", "counter", "Tool calls in turns.", {"agent": a},
            sum(v for _, v in st["tool_calls_per_turn"]))  # fmt: skip
        for outcome, n in st["exits"].items():
            add("hyperhive_claude_exits_total", "counter", "Turn outcomes: ok, compact_retry, failure.",
                {"agent": a, "outcome": outcome}, n)  # fmt: skip
        add("hyperhive_inbox_depth", "gauge", "Unread messages waiting.", {"agent": a}, st["inbox_depth_current"])
        for cls, n in st["sent"].items():
            add("hyperhive_messages_sent_total", "counter", "Messages sent in turns, by recipient class.",
                {"agent": a, "class": cls}, n)  # fmt: skip
        for cls, n in st["received"].items():
            add("hyperhive_messages_received_total", "counter", "Wake messages, by sender class.",
                {"agent": a, "class": cls}, n)  # fmt: skip
        for tool, n in st["tools"].items():
            add("hyperhive_tool_uses_total", "counter", "Tool uses, by tool.", {"agent": a, "tool": tool}, n)
        add("hyperhive_seconds_since_last_turn", "gauge", "Seconds since the agent's last turn ended.", {"agent": a},
            st["seconds_since_last_turn"])  # fmt: skip
        if st["notes_bytes"]:
            add(
                "hyperhive_notes_bytes",
                "gauge",
                "Size of the agent's notes file.",
                {"agent": a},
                st["notes_bytes"][-1][1],
            )
        models = await services.store.usage_by("model", since, agent=a)
        for model, u in models.items():
            for kind in ("input", "output", "cache_read", "cache_write"):
                add("hyperhive_model_tokens_total", "counter", "Model tokens through the gateway.",
                    {"agent": a, "model": model, "kind": kind}, u[f"{kind}_tokens"])  # fmt: skip
            add("hyperhive_model_cost_usd_total", "counter", "Model spend through the gateway (USD).",
                {"agent": a, "model": model}, u["cost_usd"])  # fmt: skip
            add("hyperhive_model_requests_total", "counter", "Model responses through the gateway.",
                {"agent": a, "model": model}, u["requests"])  # fmt: skip
    add("hyperhive_approval_queue_length", "gauge", "Approvals waiting for the operator.", {},
        float(len(await services.approvals.pending())))  # fmt: skip
    lines: list[str] = []
    for name, (kind, help_, samples) in out.items():
        lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *samples]
    return "\n".join(lines) + "\n"


def stats_routes(services: Any) -> list[Route]:
    async def api_stats(request: Request) -> Response:
        try:
            raw = request.query_params.get("agent")
            agent = validate_agent_name(raw) if raw else None
            if agent is not None and agent not in services.lifecycle.agents:
                return JSONResponse({"ok": False, "error": f"no agent named {agent!r}"}, status_code=404)
            since = float(request.query_params.get("since") or time.time() - 86400)
        except HiveError as exc:
            return JSONResponse({"ok": False, "error": exc.message}, status_code=400)
        except ValueError:
            return JSONResponse({"ok": False, "error": "since must be a unix timestamp"}, status_code=400)
        if services.telemetry is None:
            return JSONResponse({"ok": False, "error": "telemetry is not running"}, status_code=503)
        return JSONResponse({"ok": True, "stats": await services.telemetry.series(agent, since)})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(await render_metrics(services), media_type=CONTENT_TYPE)

    return [Route("/api/stats", api_stats, methods=["GET"]), Route("/metrics", metrics, methods=["GET"])]


class MetricsBearer:
    """`GET /metrics` with the scrape token answers before the session guard; anything else
    (no token: the session decides) goes on to the guarded app."""

    def __init__(self, app: ASGIApp, services: Any) -> None:
        self.app = app
        self.services = services
        self.token = metrics_token(services.config.paths.state_dir)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == "/metrics" and scope.get("method") in ("GET", "HEAD"):
            auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            if auth.startswith("Bearer "):
                if not secrets.compare_digest(auth[7:].strip().encode(), self.token.encode()):
                    await PlainTextResponse("bad metrics token\n", status_code=401)(scope, receive, send)
                    return
                response = PlainTextResponse(await render_metrics(self.services), media_type=CONTENT_TYPE)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

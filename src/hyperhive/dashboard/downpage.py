"""An agent's page while its harness is gone, served by the core under `/agent/<name>/`: why it is
down (exit status or signal, when, the restart policy and count), the last lines of its output,
a start button and its log. Agent text is escaped; the start form carries the page's own token,
which the guard binds to this agent's path."""

from __future__ import annotations

import asyncio
import html
import os
import time
from typing import Any, Final

from starlette.types import Receive, Scope, Send

from hyperhive.core.verbs import Verbs
from hyperhive.dashboard.actions import operator_verb
from hyperhive.dashboard.auth import page_token, send_simple
from hyperhive.errors import HiveError

__all__ = ["DownPage", "fmt_time", "read_log_tail"]

LOG_TAIL_BYTES: Final = 64 * 1024
LOG_TAIL_LINES: Final = 300
HTML: Final = b"text/html; charset=utf-8"


def fmt_time(ts: float | None) -> str:
    """The one date format of the web UI and the CLI: local `YYYY-MM-DD HH:MM:SS`."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "—"


def read_log_tail(services: Any, name: str) -> str:
    """The last lines of the agent's harness log (written by the core, outside the cage), else
    the output tail of its last exit. Blocking: call it in a thread."""
    path = services.config.paths.agent(name).root / "harness.log"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            size = os.fstat(fd).st_size
            os.lseek(fd, max(0, size - LOG_TAIL_BYTES), os.SEEK_SET)
            data = os.read(fd, LOG_TAIL_BYTES)
        finally:
            os.close(fd)
        lines = data.decode("utf-8", "replace").splitlines()[-LOG_TAIL_LINES:]
        return "\n".join(lines) + "\n"
    rt = services.lifecycle.agents.get(name)
    if rt is not None and rt.down is not None and rt.down.last_lines:
        return "\n".join(rt.down.last_lines) + "\n"
    return f"{name} has written no log yet\n"


def _why(row: dict[str, Any]) -> list[str]:
    """The plain-text facts of the row's downtime, as the dashboard row shows them too."""
    down = row.get("down")
    facts = [f"state: {row['state']}"]
    if down:
        facts.append(f"last exit: {down['reason']} at {fmt_time(down['at'])}")
        policy = f"restart policy: {down['policy']}, {row.get('restarts', 0)} restart(s) in a row"
        if down["policy"] == "on-failure" and down["exit_code"] == 0 and down["signal"] is None:
            policy += " — a clean exit is not restarted"
        elif down.get("gave_up"):
            policy += " — gave up"
        elif down.get("next_restart_at"):
            policy += f" — next restart at {fmt_time(down['next_restart_at'])}"
        facts.append(policy)
    elif row["state"] == "stopped":
        facts.append("stopped (by the operator or the manager)")
    return facts


class DownPage:
    def __init__(self, services: Any) -> None:
        self.services = services

    def _row(self, name: str) -> dict[str, Any]:
        row: dict[str, Any] = self.services.lifecycle.row(name).model_dump()
        return row

    async def page(self, scope: Scope, send: Send, name: str, why: str, note: str | None = None) -> None:
        """The down page (502: the harness behind this path is not answering)."""
        try:
            row = self._row(name)
        except HiveError:  # destroyed while the request was on its way
            await send_simple(send, 404, b"no such agent", content_type=b"text/plain")
            return
        e = html.escape
        prefix = f"/agent/{e(name)}"
        session = scope.get("hh_session")
        token = page_token(str(session["csrf"]), name) if session else ""
        down = row.get("down") or {}
        tail = "\n".join(down.get("last_lines") or [])
        parts = [
            "<!doctype html><html lang=en><head><meta charset=utf-8>",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(name)} is down · hyperhive</title>",
            '<link rel="stylesheet" href="/static/common/hive.css">',
            '<script src="/static/common/downpage.js" defer></script></head>',
            f'<body data-agent="{e(name)}" data-seq="{int(self.services.hub.seq)}">',
            '<main class="hh-main" id="down-page">',
            f'<section class="hh-section" aria-label="{e(name)} is down"><h2 aria-hidden="true">◆ 4G3NT D0WN ◆</h2>',
            '<div class="body">',
            f'<p class="down-lead"><b>{e(name)}</b>\'s harness is not answering ({e(why)}).</p>',
            f'<p class="red" role="alert">{e(note)}</p>' if note else "",
            '<ul class="down-facts">' + "".join(f"<li>{e(f)}</li>" for f in _why(row)) + "</ul>",
            f'<details open><summary>last lines of its output</summary><pre class="down-tail">{e(tail)}</pre></details>'
            if tail
            else "",
            '<div class="down-actions">',
            f'<form method="post" id="down-start-form" action="{prefix}/_down/start">'
            f'<input type="hidden" name="csrf" value="{e(token)}">'
            '<button type="submit" class="go" id="down-start">▶ start</button></form>'
            if row["state"] in ("stopped", "crashed")
            else "",
            '<span class="muted" id="down-status" role="status"></span>',
            f'<a class="btn" id="down-log" href="{prefix}/_down/log">read its log</a>',
            '<a class="btn" href="/">dashboard</a>',
            "</div></div></section></main></body></html>",
        ]
        await send_simple(send, 409 if note else 502, "".join(parts).encode(), content_type=HTML)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, name: str, sub: str) -> None:
        """The core's own routes under /agent/<name>/_down/: `start` (POST) and `log` (GET)."""
        method = scope.get("method")
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 4404})
        elif sub == "/start" and method == "POST":
            try:
                await operator_verb(Verbs(self.services), {"cmd": "start", "name": name})  # as `hive start`
            except HiveError as exc:
                await self.page(scope, send, name, "not started", note=exc.message)
                return
            location = f"/agent/{name}/".encode()
            await send_simple(send, 303, b"", content_type=b"text/plain", extra=[(b"location", location)])
        elif sub == "/log" and method in ("GET", "HEAD"):
            text = await asyncio.to_thread(read_log_tail, self.services, name)
            await send_simple(send, 200, text.encode("utf-8", "replace"), content_type=b"text/plain; charset=utf-8",
                              extra=[(b"cache-control", b"no-store")])  # fmt: skip
        else:
            await send_simple(send, 404, b"no such route", content_type=b"text/plain")

"""An agent's events as plain text lines, the way its web page renders them (harness/static/
renderers.js), for `hive events`. Agent text is flattened to one line per item and control
characters are dropped, so an event cannot move the operator's cursor or forge a line."""

from __future__ import annotations

import json
import re
import time
from typing import Any

__all__ = ["format_event"]

HH = "mcp__hyperhive__"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


def _one_line(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    flat = " ".join(_CONTROL.sub("", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(str(b.get("text", "")) if isinstance(b, dict) and b.get("type") == "text" else
                         json.dumps(b, ensure_ascii=False) for b in value)  # fmt: skip
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _tool_use(block: dict[str, Any]) -> str:
    name = str(block.get("name") or "?")
    args = block.get("input") if isinstance(block.get("input"), dict) else {}
    assert isinstance(args, dict)
    if name == "Bash":
        return f"Bash $ {_one_line(args.get('command', ''))}"
    if name in ("Read", "Write", "Edit", "MultiEdit"):
        return f"{name} {_one_line(args.get('file_path', '?'))}"
    if name in ("Glob", "Grep"):
        where = f"  in {args['path']}" if args.get("path") else ""
        return f"{name} {_one_line(str(args.get('pattern', '')) + where)}"
    if name == HH + "send":
        return f"send → {_one_line(args.get('to', '?'), 40)}: {_one_line(args.get('body', ''))}"
    if name == HH + "recv":
        return f"recv wait {args.get('wait_seconds') or 0} s"
    if name == HH + "ask":
        return f"ask → {_one_line(args.get('to') or 'operator', 40)}: {_one_line(args.get('question', ''))}"
    return f"{name.removeprefix(HH)} {_one_line(args)}"


def _stream(p: dict[str, Any]) -> list[str]:
    kind = p.get("type")
    out: list[str] = []
    if kind == "assistant":
        content = p.get("content")
        for b in content if isinstance(content, list) else []:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text" and str(b.get("text", "")).strip():
                out.append(_one_line(b["text"], 400))
            elif b.get("type") == "thinking":
                out.append("✻ " + _one_line(b.get("thinking", "")))
            elif b.get("type") in ("tool_use", "server_tool_use"):
                out.append(_tool_use(b))
            elif b.get("type") == "tool_result":
                out.append("↳ " + _one_line(_as_text(b.get("content"))))
        if p.get("error"):
            out.append(f"model error: {_one_line(p['error'])}")
    elif kind == "user":
        content = p.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        for b in blocks:
            if isinstance(b, dict) and b.get("type") == "tool_result":
                out.append(
                    ("↳ error " if b.get("is_error") else "↳ ")
                    + (_one_line(_as_text(b.get("content"))) or "(no output)")
                )
            elif isinstance(b, dict) and b.get("type") == "text":
                out.append("↳ " + _one_line(b.get("text", "")))
    elif kind == "system" and p.get("subtype") == "init":
        data = p.get("data") if isinstance(p.get("data"), dict) else {}
        assert isinstance(data, dict)
        out.append(f"· claude up · session {str(data.get('session_id', '?'))[:8]}")
    elif kind == "result" and p.get("is_error"):
        out.append(f"result: {_one_line(_as_text(p.get('result') or p.get('subtype')), 300)}")
    return out


def _lines(kind: str, p: dict[str, Any]) -> list[str]:
    if kind == "turn_start":
        extra = f" · {p['unread']} unread" if p.get("unread") else ""
        return [f"▶ {_one_line(p.get('from', '?'), 40)}{' #' + str(p['id']) if p.get('id') else ''}{extra}: "
                f"{_one_line(p.get('body', ''), 400)}"]  # fmt: skip
    if kind == "stream":
        return _stream(p)
    if kind == "note":
        return [f"· {_one_line(p.get('text', ''), 400)}"]
    if kind == "turn_end":
        bits = []
        if p.get("duration_ms") is not None:
            bits.append(f"{p['duration_ms'] / 1000:.1f} s")
        usage = p.get("usage") if isinstance(p.get("usage"), dict) else None
        if usage:
            bits.append(f"{usage.get('input_tokens') or 0} in / {usage.get('output_tokens') or 0} out tok")
        if p.get("cost_usd"):
            bits.append(f"${float(p['cost_usd']):.4f}")
        head = "■ turn cancelled" if p.get("cancelled") else "■ turn done" if p.get("ok") else "✗ turn failed"
        note = f" · {_one_line(p['note'], 300)}" if not p.get("ok") and p.get("note") else ""
        return [head + "".join(f" · {b}" for b in bits) + note]
    if kind == "state_changed":
        state = p.get("state")
        if state == "napping" and p.get("until"):
            return [f"· napping until {time.strftime('%H:%M:%S', time.localtime(float(p['until'])))}"]
        return [f"· {_one_line(str(state or '?').replace('_', ' '), 40)}"]
    if kind == "model_changed":
        return [f"· model → {_one_line(p.get('model') or 'default', 60)} from the next turn"]
    return [f"{kind} {_one_line(p, 300)}"]


def format_event(e: dict[str, Any]) -> list[str]:
    """The text lines of one event (none for an event the page hides too)."""
    ts = time.strftime("%H:%M:%S", time.localtime(float(e.get("ts") or 0)))
    payload = e.get("payload") if isinstance(e.get("payload"), dict) else {"value": e.get("payload")}
    assert isinstance(payload, dict)
    return [f"{e.get('id', 0):>6} {ts}  {line}" for line in _lines(str(e.get("kind", "?")), payload)]

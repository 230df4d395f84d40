"""`hive stats NAME [--since DURATION] [--json]`: an agent's telemetry series (core/telemetry.py),
the same figures as `GET /api/stats` and the agent page's charts. Registered on `hive` by cli.py."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import click
from click import Command

from hyperhive.cli_common import _call, _print_json, handle_errors, json_option, run_dir_option
from hyperhive.errors import HiveError

__all__ = ["COMMANDS", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `2h`, `7d`, `1w` or combinations (`1h30m`) → seconds."""
    text = text.strip().lower()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise HiveError(f"--since wants a duration such as 30m, 2h or 7d, got {text[:40]!r}")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.0f}{unit}"


def _render(st: dict[str, Any]) -> list[str]:
    turns = st["turns"]
    span = max(60.0, st["now"] - st["since"])
    lines = [
        f"turns: {turns} ({turns / (span / 60):.2f}/min over the window)",
        f"turn duration: p50 {_fmt(st['turn_ms_p50'], ' ms')} · p95 {_fmt(st['turn_ms_p95'], ' ms')}",
        f"tool calls per turn: {_avg(st['tool_calls_per_turn'])} avg",
        "claude exits: " + " · ".join(f"{k.replace('_', '-')} {v}" for k, v in st["exits"].items()),
        f"inbox depth: {st['inbox_depth_current']} now · max {st['inbox_depth_max']}",
        "sent: " + " · ".join(f"{k} {v}" for k, v in st["sent"].items()),
        "received: " + " · ".join(f"{k} {v}" for k, v in st["received"].items()),
        f"approval queue: {st['approval_queue_current']} now",
        "tools: " + (" · ".join(f"{k} {v}" for k, v in st["tools"].items()) or "-"),
        "time since last turn: " + _fmt(st["seconds_since_last_turn"], " s"),
        "notes file: " + (f"{int(st['notes_bytes'][-1][1])} bytes" if st["notes_bytes"] else "-"),
        f"tokens per turn: {_avg(st['tokens_per_turn'])} avg · cost {_sum(st['cost_per_turn']):.4f} USD",
    ]
    return lines


def _avg(points: list[list[float]]) -> str:
    return f"{sum(v for _, v in points) / len(points):.1f}" if points else "-"


def _sum(points: list[list[float]]) -> float:
    return sum(v for _, v in points)


@click.command("stats")
@click.argument("name")
@click.option("--since", default="24h", show_default=True, help="How far back: 30m, 2h, 7d, ...")
@run_dir_option
@json_option
@handle_errors
def stats(name: str, since: str, run_dir: Path | None, as_json: bool) -> None:
    """An agent's telemetry: turns/min, durations, exits, inbox, messages, tools, tokens, cost."""
    reply = _call(run_dir, "stats", agent=name, since=time.time() - parse_duration(since))["stats"]
    if as_json:
        _print_json({"stats": reply})
        return
    click.echo(f"{name} since {time.strftime('%Y-%m-%d %H:%M', time.localtime(reply['since']))}")
    for line in _render(reply):
        click.echo("  " + line)


COMMANDS: list[Command] = [stats]

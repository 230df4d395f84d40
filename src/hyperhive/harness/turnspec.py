"""What a turn needs and what it gives back, with no import of the SDK: the harness loop, the
notes compactor and the worker client use these while only the worker (harness/worker.py)
imports claude-agent-sdk (issue 13: an idle harness stays lean)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_BUILTINS",
    "MessageCallback",
    "NoteCallback",
    "TurnResult",
    "TurnSpec",
    "result_from_wire",
    "spec_from_wire",
    "spec_to_wire",
]

DEFAULT_BUILTINS: tuple[str, ...] = ("Read", "Edit", "Write", "Glob", "Grep")

MessageCallback = Callable[[dict[str, Any]], None]
NoteCallback = Callable[[str], None]


@dataclass
class TurnSpec:
    """Everything one turn needs. `bash_patterns` like `"git *"` become `Bash(git *)` rules."""

    prompt: str
    cwd: Path
    system_prompt: str = ""
    model: str | None = None
    allowed_builtins: list[str] = field(default_factory=lambda: list(DEFAULT_BUILTINS))
    bash_patterns: list[str] = field(default_factory=list)
    mcp_server: Any = None
    """The in-process `hyperhive` server (tools.build_hyperhive_server)."""
    mcp_tools: list[str] = field(default_factory=list)
    """Full names of the hyperhive tools to allow (tools.allowed_tool_names)."""
    extra_mcp_servers: dict[str, Any] = field(default_factory=dict)
    """Config-declared servers; all their tools are allowed (`mcp__<key>`)."""
    env: dict[str, str] = field(default_factory=dict)
    resume_session: str | None = None
    max_turns: int = 40
    cli_path: str | Path | None = None
    """The claude CLI (default: the one bundled in the SDK); always passed explicitly, so the
    runner knows which child of the harness to signal on cancel."""
    allow_rules: list[str] | None = None
    """Replaces the built-in tools' allow rules (e.g. `Edit(//state/x/notes.md)`); the tools
    offered stay `allowed_builtins`."""
    hyperhive: str | None = None
    """`agent` or `manager`: the worker (harness/worker.py) builds the in-process `hyperhive`
    server and its allow-list for that role (the harness never imports the SDK to do it)."""
    keep_warm: bool = False
    """Keep the CLI connected after a good turn (issue 13): the next turn with the same options
    on the same session reuses it (the model is switched over the connection)."""


@dataclass
class TurnResult:
    ok: bool
    note: str
    session_id: str | None = None
    duration_ms: int = 0
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    auth_failed: bool = False
    prompt_too_long: bool = False
    cancelled: bool = False
    text: str = ""
    """The assistant's text of this turn, joined (for the UI and tests)."""
    warm: bool = False
    """The turn ran on a CLI kept from an earlier turn (no start-up)."""
    cli_pid: int | None = None


def spec_to_wire(spec: TurnSpec) -> dict[str, Any]:
    """A spec as JSON for the worker: everything but the in-process MCP server object (the
    worker builds its own `hyperhive` server when `mcp_tools` names its tools)."""
    wire = dataclasses.asdict(dataclasses.replace(spec, mcp_server=None))
    wire["cwd"] = str(spec.cwd)
    wire["cli_path"] = str(spec.cli_path) if spec.cli_path is not None else None
    del wire["mcp_server"]
    return wire


def spec_from_wire(wire: dict[str, Any]) -> TurnSpec:
    names = {f.name for f in dataclasses.fields(TurnSpec)} - {"mcp_server"}
    data = {k: v for k, v in wire.items() if k in names}
    data["cwd"] = Path(data["cwd"])
    return TurnSpec(**data)


def result_from_wire(wire: dict[str, Any]) -> TurnResult:
    names = {f.name for f in dataclasses.fields(TurnResult)}
    return TurnResult(**{k: v for k, v in wire.items() if k in names})

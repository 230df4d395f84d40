"""The typed schema of an agent's `agent.toml` (architecture §7), its parser and its templates.

`parse_agent_toml` is strict: unknown fields, wrong types and unsafe values are refused with
one sentence naming the field ("agent.toml: `network`: must be 'host' or 'none'"). The config
repo machinery lives in `core.configrepo`; this module does no I/O.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hyperhive.errors import ErrorCode, HiveError, InvalidName
from hyperhive.names import BROADCAST, MANAGER, validate_agent_name, validate_recipient

__all__ = [
    "DEFAULT_MODEL",
    "AgentConfig",
    "ConfigInvalid",
    "Limits",
    "McpServer",
    "default_agent_toml",
    "default_instructions",
    "manager_agent_toml",
    "manager_instructions",
    "parse_agent_toml",
    "validate_repo_path",
]

DEFAULT_MODEL = "sonnet"
AGENT_TOML = "agent.toml"
INSTRUCTIONS_MD = "instructions.md"
MAX_TOML_BYTES = 64 * 1024

_MODEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\[\]-]{0,99}")
_ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_MCP_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_TOOL_RE = re.compile(r"[A-Za-z0-9_*-]{1,128}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MIN_MEMORY = 64 << 20

# agent.toml `[env]` is an allow-list: only names that change how tools present things, never
# how a program loads code or finds files (no PATH, LD_*, GCONV_PATH, GLIBC_TUNABLES, LOCPATH,
# NLSPATH, PYTHON*, NODE_*, BASH_ENV...), plus the agent's own `APP_*` names. The runtime's own
# (HYPERHIVE_*, CLAUDE_*, model credentials: `hive serve --agent-env`) are never settable here.
# The values reach only the claude CLI inside the cage (docs/security.md).
ALLOWED_ENV_NAMES = frozenset(
    {"LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "EDITOR", "VISUAL",
     "PAGER", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"}
)  # fmt: skip
ALLOWED_ENV_PREFIXES = ("LC_", "APP_")
_LOCALE_RE = re.compile(r"[A-Za-z0-9_.@:-]{0,64}")


class ConfigInvalid(HiveError):
    """An agent config that does not validate. `field` names the first offending field (dotted,
    e.g. `limits.memory`), `problems` lists every problem found."""

    code = ErrorCode.CONFIG_INVALID

    def __init__(self, message: str, *, field: str | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.problems = problems if problems is not None else [message]


def _no_control(value: str, what: str) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def validate_repo_path(path: object) -> str:
    """A relative path that stays inside a config repo: no absolute path, `..`, `.`, empty part,
    backslash or control character, and nothing under `.git`. Returns it unchanged."""
    if not isinstance(path, str) or not path:
        raise ValueError("must be a non-empty relative path")
    if len(path) > 255 or _CONTROL_RE.search(path) or "\\" in path:
        raise ValueError(f"{path[:60]!r} is not an acceptable path")
    if path.startswith("/"):
        raise ValueError(f"{path[:60]!r} must be relative to the repo")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{path[:60]!r} must stay inside the repo (no '..', '.' or empty parts)")
    if parts[0] == ".git":
        raise ValueError(f"{path[:60]!r} is inside .git")
    return path


def _env_key(key: str, *, reserved: bool) -> str:
    if not _ENV_KEY_RE.fullmatch(key):
        raise ValueError(f"{key[:60]!r} is not a valid environment variable name")
    if reserved and key not in ALLOWED_ENV_NAMES and not key.startswith(ALLOWED_ENV_PREFIXES):
        raise ValueError(
            f"{key!r} is not an allowed [env] name (allowed: {', '.join(sorted(ALLOWED_ENV_NAMES))}, "
            f"{', '.join(p + '*' for p in ALLOWED_ENV_PREFIXES)})"
        )
    return key


def _env(value: dict[str, str], *, reserved: bool) -> dict[str, str]:
    for key, val in value.items():
        _env_key(key, reserved=reserved)
        if reserved and key.startswith(("LANG", "LC_")) and not _LOCALE_RE.fullmatch(val):
            raise ValueError(f"the value of {key!r} must be a locale name (a path is not)")
        if "\x00" in val or len(val) > 32 * 1024:
            raise ValueError(f"the value of {key!r} must be under 32 KiB with no NUL")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class McpServer(_Strict):
    """An extra MCP server started inside the cage (stdio). Its tools appear as
    `mcp__<key>__<tool>`; `allowed_tools` are the tool-name patterns the agent may call."""

    command: str = Field(min_length=1, max_length=4096, description="The program to run (found on the cage's PATH).")
    args: list[str] = Field(default_factory=list, max_length=256, description="Its arguments.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment for the server.")
    allowed_tools: list[str] = Field(
        default_factory=lambda: ["*"], max_length=256,
        description="Tool-name patterns the agent may call (letters, digits, `_`, `-`, `*`).",
    )  # fmt: skip

    @field_validator("command")
    @classmethod
    def _command(cls, v: str) -> str:
        return _no_control(v, "the command")

    @field_validator("args")
    @classmethod
    def _args(cls, v: list[str]) -> list[str]:
        for arg in v:
            if "\x00" in arg:
                raise ValueError("arguments must not contain NUL")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _env(v, reserved=False)

    @field_validator("allowed_tools")
    @classmethod
    def _tools(cls, v: list[str]) -> list[str]:
        for tool in v:
            if not _TOOL_RE.fullmatch(tool):
                raise ValueError(f"{tool[:60]!r} is not a tool name pattern (letters, digits, _ - *)")
        return v


class Limits(_Strict):
    """Cage resource limits; None means the cage backend's default."""

    memory: int | None = Field(
        default=None, description='Memory cap: a size such as `"512M"`, `"2G"`, `"1.5GiB"` or bytes (at least 64M).'
    )
    pids: int | None = Field(default=None, ge=8, le=4_194_304, description="Cap on processes and threads (8 or more).")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | str):
            raise ValueError('must be a size such as "2G" or a number of bytes')
        if isinstance(v, str):
            m = _MEMORY_RE.fullmatch(v.strip())
            if not m:
                raise ValueError(f'{v[:40]!r} is not a size (use e.g. "512M", "2G")')
            v = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
        if v < MIN_MEMORY:
            raise ValueError("must be at least 64M")
        return v


class Budget(_Strict):
    """What the agent may spend through the gateway (`[budget]`); unset means no cap."""

    usd_per_day: float | None = Field(default=None, ge=0, description="USD per day, priced by the core's price table.")
    tokens_per_day: int | None = Field(
        default=None, ge=0, description="Tokens per day (input, output and cache reads and writes together)."
    )
    window: Literal["calendar", "rolling"] = Field(
        default="calendar",
        description="`calendar`: the day starts at midnight in the hive's time zone; `rolling`: the last 24 hours.",
    )

    @field_validator("usd_per_day", mode="before")
    @classmethod
    def _usd(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


class AgentConfig(_Strict):
    """An agent's `agent.toml` (architecture §7), validated."""

    description: str = Field(default="", max_length=2000, description="What the agent is for (shown to the operator).")
    model: str = Field(default=DEFAULT_MODEL, description="The claude model alias or id its turns use.")
    instructions: str | None = Field(
        default=None, description="A file in this repo whose text is appended to the agent's system prompt."
    )
    allowed_recipients: list[str] = Field(
        default_factory=list, max_length=1024,
        description="Who it may message (agent names, `manager`, `operator`); `[]` means anyone. "
        "`manager` is always reachable.",
    )  # fmt: skip
    bash: list[str] = Field(
        default_factory=list, max_length=256,
        description='Bash allow-list: command patterns such as `"git *"`; `[]` means no Bash at all.',
    )  # fmt: skip
    network: Literal["host", "none"] = Field(default="host", description="`host` or `none` (no network in the cage).")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment for the cage: allow-listed names only (locale, terminal, editor, git "
        "identity, `LC_*`, `APP_*`); the runtime's own (`HYPERHIVE_*`, `CLAUDE_*`, credentials) never.",
    )
    mcp_servers: dict[str, McpServer] = Field(
        default_factory=dict, description="Extra stdio MCP servers started in the cage, by key (`[mcp_servers.<key>]`)."
    )
    limits: Limits = Field(default_factory=Limits, description="Cage resource limits (`[limits]`).")
    budget: Budget = Field(default_factory=Budget, description="Model spend caps through the gateway (`[budget]`).")
    restart: Literal["no", "on-failure", "always"] | None = Field(
        default=None,
        description="What the core does when the agent's cage exits without being asked to: `no`, `on-failure` "
        "(a non-zero exit or a signal) or `always`. Unset: `on-failure` for the manager, `no` for other agents.",
    )
    restart_limit: int = Field(
        default=3, ge=0, le=100,
        description="Restarts in a row before the core gives up and leaves the agent crashed; the count starts "
        "again once the agent has run for 10 minutes.",
    )  # fmt: skip
    restart_backoff: float = Field(
        default=2.0, ge=0.1, le=300,
        description="Seconds before the first restart; each further restart in a row waits twice as long "
        "(at most 5 minutes).",
    )  # fmt: skip

    notes_compact_bytes: int = Field(
        default=32 * 1024, ge=0, le=64 * 1024 * 1024,
        description="After a turn, compact `/state/notes.md` with a short secondary claude session once it is "
        "larger than this many bytes (the previous version is kept in `/state/notes.history/`); 0 = never.",
    )  # fmt: skip

    @field_validator("restart_backoff", mode="before")
    @classmethod
    def _backoff(cls, v: Any) -> Any:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        if not _MODEL_RE.fullmatch(v):
            raise ValueError(f"{v[:60]!r} is not a model name")
        return v

    @field_validator("instructions")
    @classmethod
    def _instructions(cls, v: str | None) -> str | None:
        return None if v is None else validate_repo_path(v)

    @field_validator("allowed_recipients")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for name in v:
            if name == BROADCAST:
                raise ValueError("'*' is not allowed here; use [] to allow anyone")
            try:
                validate_recipient(name)
            except InvalidName as exc:
                raise ValueError(exc.message) from None
            if name not in out:
                out.append(name)
        return out

    @field_validator("bash")
    @classmethod
    def _bash(cls, v: list[str]) -> list[str]:
        for pattern in v:
            if not pattern.strip() or len(pattern) > 500:
                raise ValueError("each pattern must be a non-empty string under 500 characters")
            _no_control(pattern, "a pattern")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        return _env(v, reserved=True)

    @field_validator("mcp_servers")
    @classmethod
    def _mcp(cls, v: dict[str, McpServer]) -> dict[str, McpServer]:
        for key in v:
            if not _MCP_KEY_RE.fullmatch(key) or "__" in key:
                raise ValueError(f"{key[:60]!r} is not a server key (letters, digits, _ and -, no '__')")
            if key.lower() == "hyperhive":
                raise ValueError("'hyperhive' is the built-in server and cannot be redefined")
        return v


# ---- parsing ----------------------------------------------------------------------------

_TYPE_WORDS = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "extra_forbidden": "is not a known field",
    "missing": "is required",
}


def _describe(err: Any) -> tuple[str, str]:
    loc = ".".join(str(p) for p in err["loc"])
    kind = err["type"]
    if kind in _TYPE_WORDS:
        text = _TYPE_WORDS[kind]
    elif kind == "literal_error":
        text = f"must be {err['ctx']['expected']}"
    elif kind == "value_error":
        text = str(err["ctx"]["error"])
    else:
        msg = str(err["msg"])
        text = msg[:1].lower() + msg[1:]
    return loc, text


def parse_agent_toml(text: str | bytes) -> AgentConfig:
    """Parse and validate an `agent.toml`; raise ConfigInvalid with one sentence naming the field."""
    if isinstance(text, bytes):
        if len(text) > MAX_TOML_BYTES:
            raise ConfigInvalid(f"agent.toml: larger than {MAX_TOML_BYTES // 1024} KiB")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigInvalid("agent.toml: not UTF-8 text") from None
    if len(text) > MAX_TOML_BYTES:
        raise ConfigInvalid(f"agent.toml: larger than {MAX_TOML_BYTES // 1024} KiB")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigInvalid(f"agent.toml: not valid TOML: {exc}") from None
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        loc, text = problems[0]
        message = f"agent.toml: `{loc}`: {text}"
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more)"
        raise ConfigInvalid(message, field=loc, problems=[f"agent.toml: `{p}`: {t}" for p, t in problems]) from None


# ---- templates ----------------------------------------------------------------------------


def _toml_str(value: str) -> str:
    """A TOML basic string."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def default_agent_toml(name: str, description: str | None = None, *, network: str = "host") -> str:
    """The template a new agent's proposed repo starts from (least privilege: no Bash; no
    network when the core is its gateway to the model API)."""
    name = validate_agent_name(name)
    desc = description or f"{name}: a hyperhive agent"
    return f"""\
# {name}'s configuration (hyperhive: docs/agent-config.md). The manager edits this file, commits, and calls
# request_apply_commit; the operator approves the diff before it takes effect.
description = {_toml_str(desc)}
model = {_toml_str(DEFAULT_MODEL)}                    # the default model; the operator may override it
instructions = "{INSTRUCTIONS_MD}"    # a file in this repo, appended to the system prompt
allowed_recipients = []             # who it may message; [] = anyone, e.g. ["manager", "operator", "iris"]
bash = []                           # Bash allow-list, e.g. ["git *", "pytest *"]; [] = no Bash
network = "{network}"{" " * (16 - len(network))}# "host" or "none" (the model API needs none: the core is its gateway)
# restart = "on-failure"            # after an unexpected exit: "no" (default), "on-failure", "always"

[env]                               # extra environment, e.g. LANG = "C.UTF-8"

[limits]                            # e.g. memory = "2G", pids = 256

# Extra MCP servers (tools appear as mcp__<key>__<tool>):
# [mcp_servers.notes]
# command = "notes-mcp"
# args = ["--dir", "/state/notes"]
# env = {{}}
"""


def manager_agent_toml(description: str | None = None, *, network: str = "host") -> str:
    """The manager's own configuration at first start."""
    desc = description or "the manager: coordinates the swarm"
    return f"""\
# The manager's configuration (hyperhive: docs/agent-config.md). Changes go through request_apply_commit
# like any agent's, and the operator approves them.
description = {_toml_str(desc)}
model = {_toml_str(DEFAULT_MODEL)}
instructions = "{INSTRUCTIONS_MD}"
allowed_recipients = []
# Claude checks each part of a compound command on its own: `cd /agents/x/config && git commit`
# needs both `cd *` and `git *`. `git -C /agents/x/config ...` needs only `git *`. python3 is for
# structured edits of agent.toml; `git *` can already run code, so the cage is the boundary.
bash = ["git *", "cd *", "ls *", "pwd", "python3 *"]
network = "{network}"

[env]

[limits]
"""


def default_instructions(name: str, description: str | None = None) -> str:
    name = validate_agent_name(name)
    about = f"\n{description}\n" if description else ""
    return f"""\
# {name}
{about}
You are {name}, an agent in a hyperhive swarm. Messages reach you through the hyperhive tools;
answer with `send`. The manager coordinates the swarm and the operator is the human in charge.
Keep durable notes in /state/notes.md.
"""


def manager_instructions() -> str:
    return f"""\
# manager

You coordinate this hyperhive swarm for the operator, the human in charge.

Every agent's configuration is a git repo at /agents/<name>/config (yours is
/agents/{MANAGER}/config). To change an agent, edit its agent.toml (and the files it names, such
as instructions.md), commit, and call `request_apply_commit(agent, sha)` with the commit's sha
(7-40 hex digits; branch names are refused). The operator reviews the diff and approves or denies;
you get an `approval_resolved` event either way. What is running is in /applied/<name> (read-only):
tags proposal/<id>, approved/<id>, deployed/<id>, failed/<id> and denied/<id> record every request.

To create an agent: `request_init_config(name, description)`; once approved, its repo appears at
/agents/<name>/config; edit it, commit, and `request_apply_commit`: the first approved commit
creates the agent.

Prefer `git -C /agents/<name>/config ...` over `cd ... && git ...`.
"""

"""HiveConfig: the daemon's settings, built once (flags > environment > hive.toml > defaults)
and passed down. Nothing below cli.py reads os.environ for these."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hyperhive.errors import StartupError
from hyperhive.paths import HivePaths, default_run_dir, default_state_dir
from hyperhive.poolsettings import PoolSettings, pool_settings

__all__ = ["ENV_VARS", "HiveConfig", "NotifySettings", "load_config", "parse_env_pairs", "read_env_file"]

# Every environment variable hyperhive reads, with what it does (docs are checked against this).
ENV_VARS: dict[str, str] = {
    "HYPERHIVE_STATE_DIR": "durable state directory (same as --state-dir)",
    "HYPERHIVE_RUN_DIR": "socket directory (same as --run-dir)",
    "HYPERHIVE_HOST": "dashboard bind address (same as --host)",
    "HYPERHIVE_PORT": "dashboard port (same as --port)",
    "HYPERHIVE_CAGE": "cage backend: auto, bwrap, nspawn or process (same as --cage)",
    "HYPERHIVE_EVENTS_DB": "in a cage: the events database path (default /state/hyperhive-events.sqlite)",
    "HYPERHIVE_MODEL_FILE": "in a cage: the model override file (default /state/hyperhive-model)",
    "HYPERHIVE_LOGIN_CMD": "in a cage: the login command the login panel runs (default: claude's own)",
    "HYPERHIVE_AGENT_STATE": "in a cage: where /state is (set by the cage backend)",
    "HYPERHIVE_AGENT_RUN": "in a cage: where /run/hive is (set by the cage backend)",
    "HYPERHIVE_NODE": "this host's node name in a hive of several hosts (same as --node; default the short hostname)",
    "HYPERHIVE_STORE": "the store: postgresql://… (same as --store; default SQLite in the state dir)",
    "HYPERHIVE_API_BASE": "the model API upstream the gateway forwards to (same as --api-base)",
    "HYPERHIVE_API_KEY_FILE": "file (mode 0600) holding the upstream API key (same as --api-key-file)",
    "ANTHROPIC_API_KEY": "in the daemon's environment: the upstream API key for the gateway (never passed to a cage)",
    "HYPERHIVE_GATEWAY": "in a cage: 1 when the model API is reached through /run/hive/api.sock (set by the core)",
    "NOTIFY_SOCKET": "set by systemd for a Type=notify unit: hive serve sends READY=1 there when it is ready",
    "JOURNAL_STREAM": "set by systemd when stderr is the journal: log lines carry <N> priorities, no timestamps",
}

MANAGER_CAGE_DIRS = ("/agents", "/applied")


def parse_env_pairs(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise StartupError(f"--agent-env wants KEY=VALUE, got {pair[:60]!r}")
        out[key] = value
    return out


@dataclass(frozen=True)
class HiveConfig:
    state_dir: Path
    run_dir: Path
    host: str = "127.0.0.1"
    port: int = 7000
    cage: str = "auto"
    agent_env: dict[str, str] = field(default_factory=dict)
    uid_base: int = 200_000  # per-agent host uid = uid_base + agent id (isolated cages, as root)
    stop_grace: float = 10.0
    manager: bool = True  # ensure the manager agent exists and runs
    offline_model: bool = False  # demo: agents talk to the labelled stand-in model
    api: ApiSettings = field(default_factory=lambda: ApiSettings())  # the model API gateway (core/gateway.py)
    notify: NotifySettings = field(default_factory=lambda: NotifySettings())  # push notifications (core/notify.py)
    max_attempts: int = 3  # [broker] max_attempts: deliveries before a message is parked as a dead letter
    store_url: str | None = None  # [store] url / HYPERHIVE_STORE / --store: None = SQLite in the state dir
    pool: PoolSettings = field(default_factory=lambda: PoolSettings())  # [pool]: warm agents, turns at once
    node: str = field(default_factory=lambda: default_node())  # --node / HYPERHIVE_NODE / hive.toml node

    @property
    def gateway(self) -> bool:
        """The core is the agents' door to the model API: it holds a credential or an upstream
        was named, and `--agent-env` does not already point the cages elsewhere (direct mode)."""
        return (self.api.key is not None or self.api.base is not None) and not direct_mode(self.agent_env)

    @property
    def paths(self) -> HivePaths:
        return HivePaths(self.state_dir, self.run_dir)

    def with_overrides(self, **changes: Any) -> HiveConfig:
        return replace(self, **changes)


DIRECT_ENV_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
DEFAULT_API_BASE = "https://api.anthropic.com"


def direct_mode(env: Mapping[str, str]) -> bool:
    """An environment that already gives the CLI a model endpoint or credential."""
    return any(k in env for k in DIRECT_ENV_KEYS)


@dataclass(frozen=True)
class ApiSettings:
    """The gateway's settings (`[api]` in hive.toml). `key` is never printed (repr=False)."""

    base: str | None = None  # None: DEFAULT_API_BASE
    key: str | None = field(default=None, repr=False)
    timeout: float = 600.0  # seconds an upstream may stay silent before the request fails
    max_body: int = 32 * 1024 * 1024
    max_concurrent: int = 8  # per agent
    max_rate_wait: float = 900.0  # a longer retry-after is passed to the CLI instead of waited out
    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # overrides, USD per million tokens
    budget: dict[str, Any] = field(default_factory=dict)  # the hive-wide [budget]
    stats_retention_days: float = 30.0

    @property
    def upstream(self) -> str:
        return (self.base or DEFAULT_API_BASE).rstrip("/")


def read_key_file(path: Path) -> str:
    """The upstream key from a file only its owner can read."""
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            raise StartupError(f"{path}: the API key file must be private (chmod 600 {path})")
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise StartupError(f"{path}: {exc.strerror or exc}") from exc
    if not key or "\n" in key:
        raise StartupError(f"{path}: expected one API key on one line")
    return key


def _api_settings(toml: dict[str, Any], env: Mapping[str, str], base: str | None, key_file: Path | None) -> ApiSettings:
    section = toml.get("api") or {}
    if not isinstance(section, dict):
        raise StartupError("hive.toml: [api] must be a table")
    base = base or env.get("HYPERHIVE_API_BASE") or section.get("base")
    if base is not None and not str(base).startswith(("http://", "https://")):
        raise StartupError(f"--api-base wants an http(s) URL, got {str(base)[:60]!r}")
    kf = key_file or env.get("HYPERHIVE_API_KEY_FILE") or section.get("key_file")
    key = read_key_file(Path(kf).expanduser()) if kf else (env.get("ANTHROPIC_API_KEY") or None)
    try:
        return ApiSettings(
            base=str(base) if base else None,
            key=key,
            timeout=float(section.get("timeout", 600.0)),
            max_body=int(section.get("max_body", 32 * 1024 * 1024)),
            max_concurrent=int(section.get("max_concurrent", 8)),
            max_rate_wait=float(section.get("max_rate_wait", 900.0)),
            prices={str(k): {str(a): float(b) for a, b in v.items()} for k, v in (toml.get("prices") or {}).items()},
            budget=dict(toml.get("budget") or {}),
            stats_retention_days=float((toml.get("stats") or {}).get("retention_days", 30.0)),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise StartupError(f"hive.toml: [api]/[prices]/[budget]/[stats]: {exc}") from exc


@dataclass(frozen=True)
class NotifySettings:
    """`[notify]` in hive.toml: where push notifications go and the dashboard link they carry."""

    webhook_url: str | None = field(default=None, repr=False)  # POST, a JSON body
    ntfy_url: str | None = field(default=None, repr=False)  # an ntfy topic URL, e.g. https://ntfy.sh/my-hive
    link: str | None = None  # the dashboard as the operator's phone reaches it; default: the bound address
    ntfy_token: str | None = field(default=None, repr=False)  # an ntfy access token (Authorization: Bearer)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url or self.ntfy_url)


def _notify_settings(toml: dict[str, Any]) -> NotifySettings:
    section = toml.get("notify") or {}
    if not isinstance(section, dict):
        raise StartupError("hive.toml: [notify] must be a table")
    unknown = set(section) - {"webhook_url", "ntfy_url", "link", "ntfy_token"}
    if unknown:
        raise StartupError(f"hive.toml: [notify] has unknown keys: {', '.join(sorted(unknown))}")
    values: dict[str, str | None] = {}
    for key in ("webhook_url", "ntfy_url", "link"):
        value = section.get(key)
        if value is not None and not (isinstance(value, str) and value.startswith(("http://", "https://"))):
            raise StartupError(f"hive.toml: [notify] {key} must be an http(s) URL")
        values[key] = value
    token = section.get("ntfy_token")
    if token is not None and (not isinstance(token, str) or not token.isprintable() or not token.isascii()):
        raise StartupError("hive.toml: [notify] ntfy_token must be one line of ASCII")
    return NotifySettings(**values, ntfy_token=token)


def _max_attempts(toml: dict[str, Any]) -> int:
    section = toml.get("broker") or {}
    if not isinstance(section, dict) or set(section) - {"max_attempts"}:
        raise StartupError("hive.toml: [broker] takes only max_attempts")
    value = section.get("max_attempts", 3)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
        raise StartupError("hive.toml: [broker] max_attempts must be an integer from 1 to 100")
    return value


def _store_url(toml: dict[str, Any]) -> str | None:
    section = toml.get("store") or {}
    if not isinstance(section, dict) or set(section) - {"url"}:
        raise StartupError("hive.toml: [store] takes only url")
    url = section.get("url")
    if url is not None and not isinstance(url, str):
        raise StartupError("hive.toml: [store] url must be a string")
    return url or None


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (blank lines and # comments skipped, one pair of surrounding quotes
    stripped) from a file only its owner can read: it holds secrets for the cages."""
    try:
        st = path.stat()
        if st.st_mode & 0o077:
            raise StartupError(f"{path}: the agent env file must be private (chmod 600 {path})")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StartupError(f"{path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise StartupError(f"{path}: not UTF-8 text") from exc
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            raise StartupError(f"{path}:{number}: expected KEY=VALUE")  # the line may hold a secret: not shown
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def _read_hive_toml(state_dir: Path) -> dict[str, Any]:
    path = state_dir / "hive.toml"
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StartupError(f"{path}: {exc}") from exc


def load_config(
    *,
    state_dir: Path | None = None,
    run_dir: Path | None = None,
    host: str | None = None,
    port: int | None = None,
    cage: str | None = None,
    agent_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    api_base: str | None = None,
    api_key_file: Path | None = None,
    agent_env_files: list[Path] | tuple[Path, ...] = (),
    store: str | None = None,
    node: str | None = None,
) -> HiveConfig:
    env = os.environ if environ is None else environ
    sd = Path(state_dir or env.get("HYPERHIVE_STATE_DIR") or default_state_dir()).expanduser().absolute()
    rd = Path(run_dir or env.get("HYPERHIVE_RUN_DIR") or default_run_dir()).expanduser().absolute()
    toml = _read_hive_toml(sd)
    merged_env = {str(k): str(v) for k, v in (toml.get("agent_env") or {}).items()}
    for env_file in agent_env_files or ():
        merged_env.update(read_env_file(env_file))
    merged_env.update(agent_env or {})
    try:
        # 0 is a real choice (any free port), not "unset"
        raw_port = port if port is not None else env.get("HYPERHIVE_PORT") or toml.get("port")
        port_value = int(raw_port) if raw_port not in (None, "") else 7000
        if not 0 <= port_value <= 65535:
            raise ValueError(f"{port_value} is not a TCP port (0-65535)")
    except ValueError as exc:
        raise StartupError(f"port: {exc}") from exc
    return HiveConfig(
        state_dir=sd,
        run_dir=rd,
        host=host or env.get("HYPERHIVE_HOST") or toml.get("host") or "127.0.0.1",
        port=port_value,
        cage=cage or env.get("HYPERHIVE_CAGE") or toml.get("cage") or "auto",
        agent_env=merged_env,
        uid_base=int(toml.get("uid_base", 200_000)),
        api=_api_settings(toml, env, api_base, api_key_file),
        notify=_notify_settings(toml),
        max_attempts=_max_attempts(toml),
        store_url=store or env.get("HYPERHIVE_STORE") or _store_url(toml),
        pool=pool_settings(toml),
        node=validate_node(node or env.get("HYPERHIVE_NODE") or toml.get("node") or default_node()),
    )


def default_node() -> str:
    """The short hostname, as a node name (lower case, letters, digits and dashes)."""
    import re
    import socket

    name = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().split(".")[0].lower()).strip("-")
    return name[:63] or "node"


def validate_node(name: str) -> str:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", name):
        raise StartupError(f"node name {str(name)[:70]!r}: use 1-63 lower-case letters, digits and dashes")
    return name

"""agent.toml: the typed schema, its one-sentence errors, and the templates (architecture §7)."""

from __future__ import annotations

import pytest

from hyperhive.agentconfig import (
    DEFAULT_MODEL,
    AgentConfig,
    ConfigInvalid,
    default_agent_toml,
    default_instructions,
    manager_agent_toml,
    manager_instructions,
    parse_agent_toml,
)
from hyperhive.errors import HiveError, InvalidName

FULL = """
description = "frontend: owns the dashboard"
model = "haiku"
instructions = "docs/instructions.md"
allowed_recipients = ["manager", "operator", "iris", "iris"]
bash = ["git *", "pytest *"]
network = "none"
[env]
LANG = "C.UTF-8"
[mcp_servers.notes]
command = "notes-mcp"
args = ["--dir", "/state/notes"]
env = { PATH = "/opt/notes/bin" }
[limits]
memory = "2G"
pids = 256
"""


def test_a_full_agent_toml_parses_into_typed_fields() -> None:
    """Every documented field parses; limits become bytes/int; recipients are de-duplicated (architecture §7)."""
    cfg = parse_agent_toml(FULL)
    assert cfg.description == "frontend: owns the dashboard"
    assert cfg.model == "haiku"
    assert cfg.instructions == "docs/instructions.md"
    assert cfg.allowed_recipients == ["manager", "operator", "iris"]
    assert cfg.bash == ["git *", "pytest *"]
    assert cfg.network == "none"
    assert cfg.env == {"LANG": "C.UTF-8"}
    assert cfg.mcp_servers["notes"].args == ["--dir", "/state/notes"]
    assert cfg.mcp_servers["notes"].env == {"PATH": "/opt/notes/bin"}  # a server's own env is its business
    assert cfg.mcp_servers["notes"].allowed_tools == ["*"]
    assert cfg.limits.memory == 2 << 30
    assert cfg.limits.pids == 256
    assert cfg.model_dump(mode="json")["limits"] == {"memory": 2 << 30, "pids": 256}


def test_an_empty_agent_toml_gets_the_defaults() -> None:
    """Omitted fields default: anyone reachable, no Bash, host network, no limits."""
    cfg = parse_agent_toml("")
    assert cfg == AgentConfig()
    assert (cfg.model, cfg.instructions, cfg.bash, cfg.allowed_recipients, cfg.network) == (
        DEFAULT_MODEL, None, [], [], "host",
    )  # fmt: skip
    assert (cfg.limits.memory, cfg.limits.pids) == (None, None)


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("2G", 2 << 30),
        ("512M", 512 << 20),
        ("1.5GiB", 3 << 29),
        ("1g", 1 << 30),
        (" 100 MB ", 100 << 20),
        (1 << 30, 1 << 30),
    ],
)
def test_memory_sizes_are_parsed_to_bytes(memory: object, expected: int) -> None:
    """`limits.memory` takes binary-unit sizes or a byte count (architecture §7)."""
    value = f'"{memory}"' if isinstance(memory, str) else str(memory)
    assert parse_agent_toml(f"limits = {{ memory = {value} }}").limits.memory == expected


def test_the_error_is_one_sentence_naming_the_field() -> None:
    """A bad value is reported as "agent.toml: `field`: what is wrong" and carries the field."""
    with pytest.raises(ConfigInvalid) as info:
        parse_agent_toml('network = "bridge"')
    assert info.value.message == "agent.toml: `network`: must be 'host' or 'none'"
    assert info.value.field == "network"
    assert isinstance(info.value, HiveError)
    assert info.value.code == "config_invalid"


BAD = [
    ('colour = "red"', "`colour`: is not a known field"),
    ("model = 3", "`model`: must be a string"),
    ('model = "a b"', "`model`: 'a b' is not a model name"),
    ('instructions = "../escape.md"', "`instructions`: '../escape.md' must stay inside the repo"),
    ('instructions = "/etc/passwd"', "`instructions`: '/etc/passwd' must be relative"),
    ('instructions = ".git/config"', "`instructions`: '.git/config' is inside .git"),
    ('instructions = "a//b"', "must stay inside the repo"),
    ('allowed_recipients = ["*"]', "`allowed_recipients`: '*' is not allowed here; use [] to allow anyone"),
    ('allowed_recipients = ["../etc"]', "`allowed_recipients`: '../etc' is not a valid agent name"),
    ('allowed_recipients = ["system"]', "`allowed_recipients`: 'system' is a reserved name"),
    ('allowed_recipients = "iris"', "`allowed_recipients`: must be a list"),
    ('bash = "git *"', "`bash`: must be a list"),
    ('bash = ["git *\\nrm -rf /"]', "`bash`: a pattern must not contain control characters"),
    ('bash = [""]', "`bash`: each pattern must be a non-empty string"),
    ('env = { PATH = "/evil" }', "`env`: 'PATH' is not an allowed [env] name"),
    ('env = { HOME = "/" }', "`env`: 'HOME' is not an allowed [env] name"),
    ('env = { HYPERHIVE_EVENTS_DB = "/x" }', "`env`: 'HYPERHIVE_EVENTS_DB' is not an allowed [env] name"),
    ('env = { LD_PRELOAD = "/x.so" }', "`env`: 'LD_PRELOAD' is not an allowed [env] name"),
    ('env = { ANTHROPIC_BASE_URL = "http://evil" }', "`env`: 'ANTHROPIC_BASE_URL' is not an allowed [env] name"),
    # names a deny-list let through (issue 9): each changes how glibc loads code or data
    ('env = { GCONV_PATH = "/state/x" }', "`env`: 'GCONV_PATH' is not an allowed [env] name"),
    ('env = { GLIBC_TUNABLES = "glibc.malloc.check=3" }', "`env`: 'GLIBC_TUNABLES' is not an allowed [env] name"),
    ('env = { LOCPATH = "/state" }', "`env`: 'LOCPATH' is not an allowed [env] name"),
    ('env = { NLSPATH = "/state/%N" }', "`env`: 'NLSPATH' is not an allowed [env] name"),
    ('env = { NODE_OPTIONS = "--require x" }', "`env`: 'NODE_OPTIONS' is not an allowed [env] name"),
    ('env = { LC_ALL = "../../state/x" }', "`env`: the value of 'LC_ALL' must be a locale name"),
    ('env = { "1BAD" = "x" }', "`env`: '1BAD' is not a valid environment variable name"),
    ("env = { A = 1 }", "`env.A`: must be a string"),
    ('[mcp_servers.hyperhive]\ncommand = "x"', "`mcp_servers`: 'hyperhive' is the built-in server"),
    ('[mcp_servers.HyperHive]\ncommand = "x"', "`mcp_servers`: 'hyperhive' is the built-in server"),
    ('[mcp_servers."a__b"]\ncommand = "x"', "`mcp_servers`: 'a__b' is not a server key"),
    ("[mcp_servers.x]\nargs = []", "`mcp_servers.x.command`: is required"),
    ('[mcp_servers.x]\ncommand = "x"\nurl = "y"', "`mcp_servers.x.url`: is not a known field"),
    (
        '[mcp_servers.x]\ncommand = "x"\nallowed_tools = ["a b"]',
        "`mcp_servers.x.allowed_tools`: 'a b' is not",
    ),
    ('limits = { memory = "2" }', "`limits.memory`: must be at least 64M"),
    ('limits = { memory = "lots" }', "`limits.memory`: 'lots' is not a size"),
    ("limits = { memory = true }", "`limits.memory`: must be a size"),
    ("limits = { pids = true }", "`limits.pids`: must be an integer"),
    ('limits = { pids = "256" }', "`limits.pids`: must be an integer"),
    ("limits = { pids = 1 }", "`limits.pids`: input should be greater than or equal to 8"),
    ("limits = { cpus = 2 }", "`limits.cpus`: is not a known field"),
    ("limits = 5", "`limits`: must be a table"),
]


@pytest.mark.parametrize(("text", "needle"), BAD, ids=[t for t, _ in BAD])
def test_bad_values_are_refused_with_the_field_named(text: str, needle: str) -> None:
    """Each unsafe or malformed value is refused and the sentence says which field and why (architecture §7)."""
    with pytest.raises(ConfigInvalid) as info:
        parse_agent_toml(text)
    assert info.value.message.startswith("agent.toml: ")
    assert needle in info.value.message


def test_several_problems_are_counted_and_all_listed() -> None:
    """The message names the first problem and counts the rest; `problems` lists them all."""
    with pytest.raises(ConfigInvalid) as info:
        parse_agent_toml('network = "x"\nmodel = 1\nfoo = 2')
    assert info.value.message.endswith("(and 2 more)")
    assert len(info.value.problems) == 3


def test_toml_syntax_errors_and_non_utf8_bytes_are_config_errors() -> None:
    """Broken TOML and undecodable bytes are ConfigInvalid, not a crash."""
    with pytest.raises(ConfigInvalid, match="agent.toml: not valid TOML"):
        parse_agent_toml("model = [")
    with pytest.raises(ConfigInvalid, match="not UTF-8"):
        parse_agent_toml(b"model = '\xff'")
    with pytest.raises(ConfigInvalid, match="larger than"):
        parse_agent_toml("# " + "x" * 70_000)


@pytest.mark.parametrize("description", ['front "end" \\ owner', "two\nlines\tand\x7fcontrol", "ünïcode ✓ 🐝", ""])
def test_the_default_template_parses_and_keeps_the_description(description: str) -> None:
    """The spawn template is valid TOML for any description and grants least privilege: no Bash."""
    cfg = parse_agent_toml(default_agent_toml("iris", description))
    assert cfg.description == (description or "iris: a hyperhive agent")
    assert cfg.bash == []
    assert cfg.instructions == "instructions.md"
    assert cfg.allowed_recipients == []


def test_the_manager_template_allows_the_git_commands_it_needs() -> None:
    """Claude checks each part of `cd X && git ...` separately, so the manager needs both rules."""
    cfg = parse_agent_toml(manager_agent_toml())
    assert {"git *", "cd *"} <= set(cfg.bash)
    assert cfg.instructions == "instructions.md"
    assert "request_apply_commit" in manager_instructions()


def test_templates_refuse_hostile_names() -> None:
    """A template is built from a validated name only."""
    with pytest.raises(InvalidName):
        default_agent_toml("../etc", "x")
    with pytest.raises(InvalidName):
        default_instructions("a/b")
    assert "iris" in default_instructions("iris", "frontend")


def test_env_accepts_only_the_allow_list() -> None:
    """`[env]` is an allow-list of names and prefixes (issue 9), not a deny-list."""
    text = 'env = { LANG = "C.UTF-8", LC_TIME = "en_GB.UTF-8", TZ = "UTC", NO_COLOR = "1", APP_MODE = "/any/thing" }'
    cfg = parse_agent_toml(text)
    assert cfg.env["APP_MODE"] == "/any/thing"
    for key in ("GCONV_PATH", "SOMETHING_NEW", "GIT_SSH_COMMAND", "SSL_CERT_FILE", "TMPDIR"):
        with pytest.raises(ConfigInvalid, match="not an allowed"):
            parse_agent_toml(f'env = {{ {key} = "x" }}')

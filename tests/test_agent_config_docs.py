"""docs/agent-config.md is generated from the agent.toml schema and stays true to it (issue 15):
every key of AgentConfig and its tables is described in the schema, and the checked-in file is
exactly what scripts/gen_agent_config_docs.py renders."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from hyperhive.agentconfig import AgentConfig, parse_agent_toml

ROOT = Path(__file__).resolve().parent.parent


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_agent_config_docs", ROOT / "scripts" / "gen_agent_config_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_key_has_a_description_in_the_schema() -> None:
    assert generator().undocumented() == []


def test_agent_config_md_is_generated_from_the_schema() -> None:
    current = (ROOT / "docs" / "agent-config.md").read_text(encoding="utf-8")
    assert current == generator().render(), "docs/agent-config.md is stale: run scripts/gen_agent_config_docs.py"
    for key in AgentConfig.model_fields:
        assert f"| `{key}` |" in current, key


def test_the_documented_restart_policy_parses_and_bad_values_are_refused() -> None:
    cfg = parse_agent_toml('restart = "always"\nrestart_limit = 5\nrestart_backoff = 1\n')
    assert (cfg.restart, cfg.restart_limit, cfg.restart_backoff) == ("always", 5, 1.0)
    assert parse_agent_toml("").restart is None
    for bad, field in (('restart = "sometimes"', "restart"), ("restart_limit = -1", "restart_limit"),
                       ("restart_backoff = 0", "restart_backoff"), ('restart_limit = "3"', "restart_limit")):  # fmt: skip
        try:
            parse_agent_toml(bad)
        except Exception as exc:  # noqa: BLE001
            assert getattr(exc, "field", None) == field, exc
        else:
            raise AssertionError(f"{bad!r} was accepted")

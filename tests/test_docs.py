"""The docs stay true to the code (STYLE §7, §9, §12): docs/cli.md is the current `--help`,
every environment variable hyperhive reads is documented, and docs/protocol.md names every verb
and error code in protocol.py."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from hyperhive import protocol
from hyperhive.config import ENV_VARS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_md_is_generated_from_the_current_help() -> None:
    """docs/cli.md is exactly what scripts/gen_cli_docs.py renders from `hive --help` (STYLE §9)."""
    expected = load_generator().render()
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == expected, "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_docs.py"


def test_cli_md_covers_every_command_of_the_design_contract() -> None:
    """Every command of architecture §12 that exists has its section in docs/cli.md."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for command in ("serve", "demo", "list", "spawn", "start", "stop", "restart", "destroy", "send", "inbox",
                    "pending", "approve", "deny", "questions", "answer", "events", "agent serve",
                    "logs", "backup", "service install", "kept", "revive", "purge", "config show",
                    "config edit"):  # fmt: skip
        assert f"## hive {command}\n" in text, command


@pytest.mark.parametrize("var", sorted(ENV_VARS))
def test_every_environment_variable_is_documented(var: str) -> None:
    """Each env var in hyperhive.config.ENV_VARS is mentioned in docs/ or README.md (STYLE §7)."""
    texts = [p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))] if p.exists()]
    assert any(var in t for t in texts), f"{var} is not documented in docs/ or README.md"


def _doc_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))] if p.exists()]


def _source_env_vars() -> set[str]:
    pattern = re.compile(r"\bHYPERHIVE_[A-Z0-9_]*[A-Z0-9]\b")
    found: set[str] = set()
    for path in (ROOT / "src" / "hyperhive").rglob("*"):
        if path.suffix in {".py", ".js", ".html", ".toml"} and "__pycache__" not in path.parts:
            found |= set(pattern.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_hyperhive_variable_in_the_source_is_documented() -> None:
    """Every HYPERHIVE_* name anywhere in src/ (scanned, not a hand-kept list) is mentioned in
    docs/ or README.md (issue 10)."""
    found = _source_env_vars()
    assert len(found) > 10
    texts = _doc_texts()
    missing = sorted(v for v in found if not any(re.search(rf"\b{v}\b", t) for t in texts))
    assert not missing, f"HYPERHIVE_* variables read in src/ but not documented: {missing}"


def test_protocol_md_names_every_verb_and_error_code() -> None:
    """docs/protocol.md documents every verb and every error code of protocol.py (architecture §3)."""
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    missing = [v for v in sorted(protocol.VERBS) if f"`{v}`" not in text]
    assert not missing, f"verbs missing from docs/protocol.md: {missing}"
    codes = [v for k, v in vars(protocol.ErrorCode).items() if k.isupper()]
    assert codes and not [c for c in codes if f"`{c}`" not in text], "an error code is missing from docs/protocol.md"
    for cap in ("MAX_LINE_BYTES", "MAX_BODY_BYTES", "MAX_RECV_WAIT", "MAX_RECV"):
        assert f"`{cap}`" in text, cap


def test_no_page_cites_the_design_document_that_is_not_in_the_repository() -> None:
    """README, docs/, the agent.toml templates and the source cite docs/architecture.md, whose
    sections keep the old numbers; nothing points at a DESIGN document (issue 10)."""
    places = [ROOT / "README.md", *DOCS.glob("*.md"), *(ROOT / "src" / "hyperhive").rglob("*.py")]
    citing = [str(p.relative_to(ROOT)) for p in places if re.search(r"\bDESIGN\b", p.read_text(encoding="utf-8"))]
    assert citing == []
    assert (DOCS / "architecture.md").is_file()


def test_architecture_md_names_every_module_with_its_job() -> None:
    """docs/architecture.md §16 has a row for each module of the package (issue 10): a new module
    gets its one job written down."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    rooms = text[text.index("## 16. The rooms") : text.index("## 17.")]
    package = ROOT / "src" / "hyperhive"
    missing = []
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts or (path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip()):
            continue
        rel = path.relative_to(package)
        shown = rel.name if len(rel.parts) == 1 else "/".join(rel.parts[1:])
        if f"| `{shown}` |" not in rooms:
            missing.append(str(rel))
    assert missing == [], f"modules missing from docs/architecture.md §16: {missing}"

"""One list of error codes (issue 10): every code the package raises or sends is an ErrorCode
member, and docs/protocol.md documents every member. The source is scanned, so a new
`code = "..."` outside the enum fails here."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import hyperhive
from hyperhive.errors import ErrorCode, HiveError

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "hyperhive"
CODES = {c.value for c in ErrorCode}
# string literals given as an error code: `code = "x"`, `code="x"`, error_reply(..., "x")
LITERAL = re.compile(r"""\bcode\s*(?::\s*\w+\s*)?=\s*["']([a-z_]+)["']|error_reply\([^()]*,\s*["']([a-z_]+)["']\)""")
MEMBER = re.compile(r"\bErrorCode\.([A-Z_]+)\b")


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _all_subclasses(cls: type[HiveError]) -> list[type[HiveError]]:
    out: list[type[HiveError]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def test_every_error_code_literal_in_the_source_is_an_error_code_member() -> None:
    """No module invents a code: each literal code in src/ is a member of ErrorCode."""
    strays = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for match in LITERAL.finditer(text):
            code = match.group(1) or match.group(2)
            if code not in CODES:
                strays.append(f"{path.relative_to(ROOT)}: {code}")
        strays += [
            f"{path.relative_to(ROOT)}: ErrorCode.{m}" for m in MEMBER.findall(text) if m not in ErrorCode.__members__
        ]
    assert not strays, f"codes outside ErrorCode: {strays}"


def test_every_hive_error_class_carries_an_error_code_member() -> None:
    """Every HiveError subclass in the package (all modules imported) has a listed code."""
    for info in pkgutil.walk_packages(hyperhive.__path__, "hyperhive."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    classes: list[type[HiveError]] = [HiveError, *_all_subclasses(HiveError)]
    assert len(classes) > 10
    bad = [f"{c.__module__}.{c.__qualname__}: {c.code!r}" for c in classes if c.code not in CODES]
    assert not bad, f"HiveError classes with a code outside ErrorCode: {bad}"


def test_error_classes_name_their_code_by_member_not_by_string() -> None:
    """`code = ErrorCode.X` in every error class, so a typo cannot pass as a new code."""
    strays = [
        f"{path.relative_to(ROOT)}: {m.group(0).strip()}"
        for path in _sources()
        for m in re.finditer(r"^\s+code(?::\s*\w+)?\s*=\s*[\"'][a-z_]+[\"']", path.read_text(encoding="utf-8"), re.M)
    ]
    assert strays == []


def test_protocol_md_documents_every_error_code() -> None:
    """docs/protocol.md has a row for each ErrorCode member."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    missing = [c for c in sorted(CODES) if f"| `{c}` |" not in text]
    assert not missing, f"error codes missing from docs/protocol.md: {missing}"

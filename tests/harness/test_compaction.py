"""Notes compaction (issue 14 §2) through the real claude CLI on the offline model: the
secondary session rewrites a private copy with Read/Write allowed for that one file; the harness
keeps the old version and swaps the new one in, or rejects the rewrite and leaves the notes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hyperhive.harness.compaction import NotesCompactor, compaction_prompt, compaction_target
from hyperhive.harness.turn import TurnRunner, build_options
from hyperhive.offline_model.policy import COMPACT_ESCAPE, COMPACT_FAIL, COMPACT_GARBAGE
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e


def bloated_notes(extra: str = "") -> str:
    """Notes with the same lines many times over (the offline model's compaction drops repeats)."""
    lines = ["# notes", "", "- the build runs with `make test`", "- iris owns the dashboard", extra]
    lines += [f"- status: still waiting for bob (check {i % 3})" for i in range(600)]
    return "\n".join(lines) + "\n"


class Rig:
    def __init__(self, tmp_path: Path, model: OfflineModelServer) -> None:
        self.state = tmp_path / "state"
        self.state.mkdir()
        home = tmp_path / "home"
        home.mkdir()
        self.model = model
        self.env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "dummy", "HOME": str(home),
                    "CLAUDE_CONFIG_DIR": str(home / ".claude")}  # fmt: skip
        self.notes = self.state / "notes.md"
        self.compactor = NotesCompactor(self.notes, keep=2)
        self.runner = TurnRunner()
        self.messages: list[dict[str, Any]] = []

    async def compact(self) -> Any:
        return await self.compactor.compact(self.runner, model="haiku", env=self.env,
                                            on_message=self.messages.append, on_note=lambda _l: None)  # fmt: skip


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with OfflineModelServer() as model:
        yield Rig(tmp_path, model)


async def test_a_compaction_rewrites_the_notes_shorter_and_keeps_the_previous_version(rig: Rig) -> None:
    """The session Reads and Writes its copy; the notes become the shorter rewrite (every distinct
    line kept) and the previous version is kept byte for byte under notes.history/."""
    original = bloated_notes()
    rig.notes.write_text(original, encoding="utf-8")
    rig.notes.chmod(0o640)
    outcome = await rig.compact()
    assert outcome.ok, outcome.reason
    after = rig.notes.read_text(encoding="utf-8")
    assert outcome.before_bytes == len(original.encode()) and outcome.after_bytes == len(after.encode())
    assert len(after) < len(original) / 10
    assert set(after.splitlines()) == set(original.splitlines())  # nothing distinct lost
    assert Path(outcome.kept).read_text(encoding="utf-8") == original
    assert Path(outcome.kept).parent == rig.state / "notes.history"
    assert (rig.notes.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in rig.state.iterdir()] != [] and not any(
        p.name.startswith(".notes-") for p in rig.state.iterdir()
    )  # the working copy and temp files are gone
    tools = [
        b["name"] for m in rig.messages if m["type"] == "assistant" for b in m["content"] if b["type"] == "tool_use"
    ]
    assert tools == ["Read", "Write"]
    request = next(r for r in rig.model.requests if r["last_user_text"].startswith("[hyperhive notes compaction]"))
    assert not any(t.startswith("mcp__") for t in request["tools"]) and "Bash" not in request["tools"]
    assert "haiku" in request["model"]  # the same model as the turns (an alias the CLI resolves)


@pytest.mark.parametrize(("marker", "reason"), [
    (COMPACT_GARBAGE, "came back larger"),
    (COMPACT_FAIL, "the compaction session failed"),
])  # fmt: skip
async def test_a_failed_or_garbage_compaction_leaves_the_notes_untouched(rig: Rig, marker: str, reason: str) -> None:
    """A rewrite larger than the original, or a session that fails, is rejected with its reason;
    the notes stay byte for byte and no version is kept."""
    original = bloated_notes(marker)
    rig.notes.write_text(original, encoding="utf-8")
    outcome = await rig.compact()
    assert not outcome.ok and reason in outcome.reason
    assert rig.notes.read_text(encoding="utf-8") == original
    assert not (rig.state / "notes.history").exists()
    assert sorted(p.name for p in rig.state.iterdir()) == ["notes.md"]


async def test_the_session_cannot_write_anything_but_its_copy(rig: Rig) -> None:
    """The only writable file is the private copy: a Write of a new file next to the live notes
    is denied by the CLI (dontAsk + the path-scoped Edit rule), the copy stays as it was and the
    unchanged rewrite is rejected; the live notes are byte for byte the same (issue 14 §2)."""
    original = bloated_notes(COMPACT_ESCAPE)
    rig.notes.write_text(original, encoding="utf-8")
    outcome = await rig.compact()
    assert not outcome.ok and "unchanged" in outcome.reason
    assert rig.notes.read_text(encoding="utf-8") == original
    assert not (rig.state / "escaped-by-compaction.md").exists()
    results = [b for m in rig.messages if m["type"] == "user" and isinstance(m["content"], list)
               for b in m["content"] if b["type"] == "tool_result"]  # fmt: skip
    assert results[-1]["is_error"] is True
    assert any(m["type"] == "system" and m.get("subtype") == "permission_denied" for m in rig.messages)


async def test_the_history_keeps_only_the_newest_versions(rig: Rig) -> None:
    """With keep=2, three compactions leave the two newest previous versions."""
    kept = []
    for round_ in range(3):
        rig.notes.write_text(bloated_notes(f"- round {round_}"), encoding="utf-8")
        outcome = await rig.compact()
        assert outcome.ok, outcome.reason
        kept.append(Path(outcome.kept))
    assert rig.compactor.kept_versions() == kept[1:]


def test_the_session_may_edit_only_its_copy_of_the_notes(tmp_path: Path) -> None:
    """The options of the compaction session: Read/Edit/Write offered, allowed only for the copy,
    no MCP servers, no Bash (the rest is denied by dontAsk)."""
    from hyperhive.harness.turn import TurnSpec

    target = tmp_path / "work" / "notes.md"
    spec = TurnSpec(prompt=compaction_prompt(str(target), 10), cwd=tmp_path, allowed_builtins=["Read", "Edit", "Write"],
                    allow_rules=[f"Read(/{target})", f"Edit(/{target})"])  # fmt: skip
    options = build_options(spec)
    assert options.allowed_tools == [f"Read(/{target})", f"Edit(/{target})"]
    assert options.tools == ["Read", "Edit", "Write"] and options.mcp_servers == {}
    assert options.permission_mode == "dontAsk"
    assert compaction_target(spec.prompt) == str(target)
    assert compaction_target("[hyperhive] a wake prompt") is None


def test_leftover_working_copies_of_a_killed_harness_are_removed(tmp_path: Path) -> None:
    """A harness killed mid-compaction leaves its private working copy; the next start removes
    it and nothing else."""
    notes = tmp_path / "notes.md"
    notes.write_text("# notes\n", encoding="utf-8")
    (tmp_path / ".notes-compaction-abc").mkdir()
    (tmp_path / ".notes-compaction-abc" / "notes.md").write_text("half", encoding="utf-8")
    assert NotesCompactor(notes).remove_leftovers() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.md"]

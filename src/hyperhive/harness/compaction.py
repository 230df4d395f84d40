"""Notes compaction (issue 14 §2): a short-lived secondary claude session rewrites bloated
`/state/notes.md` shorter.

The session works on a private copy (`/state/.notes-compaction-*/notes.md`): its only tools
are Read, Edit and Write, each allowed for that one file (`Edit(//…/notes.md)` rules, dontAsk),
no hyperhive tools, no Bash, a fresh session. The harness then checks the rewrite and only if it
is non-empty UTF-8, changed and smaller (and the live notes did not change meanwhile) keeps the
old version under `/state/notes.history/<UTC time>.md` (the newest `keep`) and swaps the new one
in with one rename. Anything else leaves the notes exactly as they were and says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperhive.harness.turnspec import MessageCallback, NoteCallback, TurnResult, TurnSpec

if TYPE_CHECKING:  # the SDK is imported only where a turn runs (issue 13)
    from hyperhive.harness.turn import TurnRunner
    from hyperhive.harness.workerclient import WorkerRunner

__all__ = [
    "DEFAULT_COMPACT_BYTES",
    "HEADER",
    "HISTORY_KEEP",
    "CompactionOutcome",
    "NotesCompactor",
    "compaction_prompt",
    "compaction_target",
]

DEFAULT_COMPACT_BYTES = 32 * 1024
HISTORY_KEEP = 10
HEADER = "[hyperhive notes compaction]"
"""The first line of the compaction prompt (the offline model recognises it)."""
_TARGET_RE = re.compile(r"^file: (/\S+)$", re.M)
SYSTEM_PROMPT = (
    "You compact an agent's durable notes. You have one file to work on and only Read, Edit and "
    "Write for it. Work on the file, do not paste the notes into your answer."
)


def compaction_prompt(target: str, size: int) -> str:
    return (
        f"{HEADER}\n"
        f"file: {target}\n"
        f"size: {size} bytes\n\n"
        "These are an agent's durable notes; they have grown too long. Read the file, then rewrite "
        "it in place, clearly shorter: keep every fact, decision, open task, name, path, number and "
        "instruction that still matters; merge duplicates; drop chatter, stale status and anything "
        "superseded. Keep it Markdown. Edit only this file. Reply `done` when the file is written."
    )


def compaction_target(prompt: str) -> str | None:
    """The file a compaction prompt names, or None when `prompt` is not one."""
    if not prompt.startswith(HEADER):
        return None
    match = _TARGET_RE.search(prompt)
    return match[1] if match else None


@dataclass(frozen=True)
class CompactionOutcome:
    ok: bool
    reason: str
    before_bytes: int
    after_bytes: int | None = None
    kept: str | None = None
    """Where the previous version was kept (ok only)."""
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    """What the secondary session spent (the page's stats count it)."""

    def payload(self) -> dict[str, Any]:
        """The trail event's payload (`notes_compacted` or `notes_compaction_failed`)."""
        spent = {"usage": self.usage, "cost_usd": self.cost_usd}
        if self.ok:
            return {"before_bytes": self.before_bytes, "after_bytes": self.after_bytes, "kept": self.kept, **spent}
        return {"reason": self.reason, "before_bytes": self.before_bytes, **spent}


class NotesCompactor:
    """Compacts one notes file; `history` keeps the versions it replaced (newest `keep`)."""

    def __init__(self, notes: Path, history: Path | None = None, *, keep: int = HISTORY_KEEP) -> None:
        self.notes = notes
        self.history = history if history is not None else notes.parent / "notes.history"
        self.keep = max(1, keep)

    def size(self) -> int:
        """The notes' size in bytes (0 when there are none)."""
        try:
            return self.notes.stat().st_size
        except OSError:
            return 0

    def remove_leftovers(self) -> int:
        """Remove working copies a killed harness left behind (the notes themselves were never
        touched: they are only ever replaced by one rename). Returns how many."""
        removed = 0
        for leftover in self.notes.parent.glob(".notes-compaction-*"):
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
        return removed

    def kept_versions(self) -> list[Path]:
        try:
            return sorted(p for p in self.history.iterdir() if p.suffix == ".md")
        except OSError:
            return []

    async def compact(
        self,
        runner: TurnRunner | WorkerRunner,
        *,
        model: str | None,
        env: dict[str, str],
        on_message: MessageCallback,
        on_note: NoteCallback,
        cli_path: str | Path | None = None,
        max_turns: int = 12,
    ) -> CompactionOutcome:
        """Run the secondary session and settle its result; never raises for a bad rewrite."""
        try:
            original = await asyncio.to_thread(self.notes.read_bytes)
        except OSError as exc:
            return CompactionOutcome(False, f"cannot read the notes: {exc.strerror or exc}", 0)
        try:
            work = await asyncio.to_thread(self._scratch, original)
        except OSError as exc:
            return CompactionOutcome(False, f"cannot make a working copy: {exc.strerror or exc}", len(original))
        try:
            target = work / "notes.md"
            spec = TurnSpec(
                prompt=compaction_prompt(str(target), len(original)),
                cwd=work,
                system_prompt=SYSTEM_PROMPT,
                model=model,
                allowed_builtins=["Read", "Edit", "Write"],
                # `//` is an absolute path in a permission rule; Edit rules cover Write too
                allow_rules=[f"Read(/{target})", f"Edit(/{target})"],
                env=env,
                max_turns=max_turns,
                cli_path=cli_path,
            )
            result = await runner.run(spec, on_message, on_note)
            outcome = await asyncio.to_thread(self._settle, original, target, result)
            return dataclasses.replace(outcome, usage=result.usage, cost_usd=result.cost_usd)
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)

    def _scratch(self, original: bytes) -> Path:
        work = Path(tempfile.mkdtemp(prefix=".notes-compaction-", dir=self.notes.parent))
        (work / "notes.md").write_bytes(original)
        return work

    def _settle(self, original: bytes, target: Path, result: TurnResult) -> CompactionOutcome:
        before = len(original)

        def fail(reason: str) -> CompactionOutcome:
            return CompactionOutcome(False, reason, before)

        if result.cancelled:
            return fail("the compaction session was cancelled")
        if not result.ok:
            return fail(f"the compaction session failed: {result.note}")
        try:
            new = target.read_bytes()
        except OSError:
            return fail("the compaction session left no notes file")
        try:
            text = new.decode("utf-8")
        except UnicodeDecodeError:
            return fail("the rewrite is not UTF-8 text")
        if not text.strip():
            return fail("the rewrite came back empty")
        if new == original:
            return fail("the rewrite came back unchanged")
        if len(new) >= before:
            return fail(f"the rewrite came back larger ({len(new)} bytes, was {before})")
        try:
            if self.notes.read_bytes() != original:
                return fail("the notes changed while the compaction ran")
            kept = self._keep(original)
            self._replace(new)
        except OSError as exc:
            return fail(f"cannot write the notes: {exc.strerror or exc}")
        return CompactionOutcome(True, "compacted", before, len(new), str(kept))

    def _keep(self, original: bytes) -> Path:
        self.history.mkdir(mode=0o700, parents=True, exist_ok=True)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"  # sorts by time
        path = self.history / f"{stamp}.md"
        n = 1
        while path.exists():
            path = self.history / f"{stamp}-{n}.md"
            n += 1
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(original)
        for old in self.kept_versions()[: -self.keep]:
            with contextlib.suppress(OSError):
                old.unlink()
        return path

    def _replace(self, new: bytes) -> None:
        mode = self.notes.stat().st_mode & 0o777
        fd, tmp = tempfile.mkstemp(prefix=".notes-", suffix=".md", dir=self.notes.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(new)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).chmod(mode)
            Path(tmp).replace(self.notes)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            raise

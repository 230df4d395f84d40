"""The harness turn loop (architecture §5): requeue → recv → one claude turn → ack, with back-off on
failure, the operator's controls (cancel, compact, model, new session, nap) and state reports.
No SQL, no HTTP: the Bus records, the TurnRunner runs claude, the HiveClient talks to the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperhive.client import HiveClient
from hyperhive.errors import HiveError
from hyperhive.harness.bookkeeping import DEFAULT_DIGEST_SECONDS, HeldEvents, quiet_event
from hyperhive.harness.bus import NOTES_COMPACTED, NOTES_COMPACTION_FAILED, Bus
from hyperhive.harness.compaction import DEFAULT_COMPACT_BYTES, NotesCompactor
from hyperhive.harness.modelchoice import load_record
from hyperhive.harness.modelctl import ModelMixin
from hyperhive.harness.pooling import DEFAULT_WARM_IDLE, PoolingMixin, Refused
from hyperhive.harness.prompting import format_wake_prompt, load_system_prompt
from hyperhive.harness.turnspec import TurnResult, TurnSpec
from hyperhive.wirecaps import HARNESS_STATES as STATES
from hyperhive.wirecaps import MAX_NAP_SECONDS

if TYPE_CHECKING:  # the SDK is imported only where a turn runs: the worker (issue 13)
    from hyperhive.harness.turn import TurnRunner
    from hyperhive.harness.workerclient import WorkerRunner

__all__ = ["Harness", "HarnessPaths", "Refused"]

log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class HarnessPaths:
    state: Path
    run: Path
    home: Path
    model_file: Path
    session_file: Path
    nap_file: Path
    notes: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str]) -> HarnessPaths:
        state = Path(environ.get("HYPERHIVE_AGENT_STATE", "/state"))
        run = Path(environ.get("HYPERHIVE_AGENT_RUN", "/run/hive"))
        home = Path(environ.get("HOME", str(state)))
        return cls(
            state=state,
            run=run,
            home=home,
            model_file=Path(environ.get("HYPERHIVE_MODEL_FILE", str(state / "hyperhive-model"))),
            session_file=state / "hyperhive-session.json",
            nap_file=state / "hyperhive-nap",
            notes=state / "notes.md",
        )


class Harness(ModelMixin, PoolingMixin):
    def __init__(
        self,
        *,
        name: str,
        manager: bool,
        paths: HarnessPaths,
        client: HiveClient,
        poll_client: HiveClient,
        bus: Bus,
        runner: TurnRunner | WorkerRunner,
        config: dict[str, Any],
        instructions: str = "",
        agents_dir: str = "/agents",
        environ: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.manager = manager
        self.paths = paths
        self.client = client
        self.poll = poll_client
        self.bus = bus
        self.runner = runner
        self.config = config
        self.environ = dict(environ or {})
        self.state = "starting"
        self.state_since = time.time()
        self.nap_until: float | None = self._read_nap()
        self.last_turn_ms: int | None = None
        self.failures = 0
        self.model_record_path = paths.model_file.with_name(paths.model_file.name + "-state.json")
        self.model_record = load_record(self.model_record_path)
        self.model_queued_at: float | None = self.model_record.switched_at if self.model_record else None
        self.model_active: str | None = self.model_record.active if self.model_record else None
        self.current_message: dict[str, Any] | None = None
        self._turn_lock = asyncio.Lock()
        self._nap_cancel = asyncio.Event()
        self._logged_in = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.system_prompt = load_system_prompt(
            name, manager=manager, notes_path=str(paths.notes), agents_dir=agents_dir, instructions=instructions
        )
        self.server: Any = None
        self.tool_names: list[str] = []
        if not getattr(runner, "remote", False):  # in-process turns (tests): the tools live here
            from hyperhive.harness.tools import allowed_tool_names, build_hyperhive_server

            self.server = build_hyperhive_server(client, manager=manager, nap=self.request_nap)
            self.tool_names = allowed_tool_names(manager=manager)
        self.notes = NotesCompactor(paths.notes)
        self._notes_failed_at: int | None = None  # the size a compaction last failed at
        self.held = HeldEvents(paths.state / "hyperhive-held.json")
        self.digest_seconds = _positive(self.environ.get("HYPERHIVE_DIGEST_SECONDS"), DEFAULT_DIGEST_SECONDS)
        self.keep_warm = self.environ.get("HYPERHIVE_WARM", "1") != "0"
        self.warm_idle = _positive(self.environ.get("HYPERHIVE_WARM_IDLE_SECONDS"), DEFAULT_WARM_IDLE)
        self.warm_on_start = self.environ.get("HYPERHIVE_WARM_ON_START") == "1"  # set by the core's pool
        self._turn_asked = False
        self._cooler: asyncio.Task[None] | None = None

    # ---- state -------------------------------------------------------------------------

    def set_state(self, state: str, **extra: Any) -> None:
        assert state in STATES, state
        if state != self.state:
            self.state = state
            self.state_since = time.time()
        self.bus.emit("state_changed", {"state": state, "since": self.state_since, **extra})
        self._background(self._report(), "report-state")

    async def _report(self) -> None:
        with contextlib.suppress(HiveError, OSError, asyncio.TimeoutError):
            await self.client.call("report_state", state=self.state, model=self.model(), last_turn_ms=self.last_turn_ms,
                                   warm=self.runner.warm)  # fmt: skip

    def _background(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- session -----------------------------------------------------------------------

    def session_id(self) -> str | None:
        try:
            data = json.loads(self.paths.session_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        sid = data.get("session_id") if isinstance(data, dict) else None
        return sid if isinstance(sid, str) else None

    def _save_session(self, sid: str | None) -> None:
        try:
            if sid:
                self.paths.session_file.write_text(json.dumps({"session_id": sid}), encoding="utf-8")
            else:
                self.paths.session_file.unlink(missing_ok=True)
        except OSError as exc:
            self.bus.emit("note", {"text": f"warning: could not save the session id: {exc}", "level": "warning"})

    def new_session(self) -> None:
        self._save_session(None)
        self.bus.emit("note", {"text": "the next turn starts a new session (operator)"})

    # ---- the turn ----------------------------------------------------------------------

    def _spec(self, prompt: str) -> TurnSpec:
        cfg = self.config
        extra = {}
        for key, server in (cfg.get("mcp_servers") or {}).items():
            extra[key] = {"type": "stdio", "command": server["command"], "args": list(server.get("args") or []),
                          "env": dict(server.get("env") or {})}  # fmt: skip
        env = {"ENABLE_TOOL_SEARCH": "false", "HOME": str(self.paths.home)}
        return TurnSpec(
            prompt=prompt,
            cwd=self.paths.state,
            system_prompt=self.system_prompt,
            model=self.model(),
            bash_patterns=list(cfg.get("bash") or []),
            mcp_server=self.server,
            mcp_tools=list(self.tool_names),
            hyperhive=None if self.server is not None else ("manager" if self.manager else "agent"),
            extra_mcp_servers=extra,
            env=env,
            resume_session=self.session_id(),
            keep_warm=self.keep_warm,
        )

    def _on_message(self, message: dict[str, Any]) -> None:
        self.bus.emit("stream", message)

    def _on_note(self, text: str) -> None:
        self.bus.emit("note", {"text": text, "level": "stderr"})

    async def _run_turn(self, prompt: str) -> TurnResult:
        spec = self._spec(prompt)
        self.model_active = spec.model
        if self.model_record is not None and self.model_record.active != spec.model:
            self.model_record.active = spec.model
            self._save_model_record()
        result = await self.runner.run(spec, self._on_message, self._on_note)
        if result.prompt_too_long and not result.cancelled:
            self.bus.emit("note", {"text": "prompt too long: compacting the session once and retrying"})
            sid = result.session_id or spec.resume_session
            if sid:
                self.set_state("compacting")
                compacted = await self.runner.compact(spec, sid, self._on_message, self._on_note)
                self._save_session(compacted.session_id or sid)
                self.set_state("thinking")
            result = await self.runner.run(self._spec(prompt), self._on_message, self._on_note)
        if result.session_id:
            self._save_session(result.session_id)
        return result

    async def handle(self, message: dict[str, Any], unread: int, *, digest: bool = False) -> None:
        """One wake message → one turn → ack (success or operator cancel) or back-off + requeue.
        Held system notices go in front of the prompt (a digest carries them in its body)."""
        sender, body = message["sender"], message["body"]
        earlier = [] if digest else self.held.preface()
        self._stop_cooler()
        await self._admit(message)  # the turn starts once the core's scheduler has a slot
        self.bus.emit(
            "turn_start",
            {"from": sender, "body": body, "unread": unread, "id": message["id"],
             "redelivered": message.get("redelivered", False), "earlier": len(earlier), "digest": digest},
        )  # fmt: skip
        prompt = format_wake_prompt(
            message["id"], sender, body, unread, bool(message.get("redelivered")), earlier=earlier
        )
        async with self._turn_lock:
            self.current_message = message
            self.set_state("thinking")
            started = time.monotonic()
            try:
                result = await self._run_turn(prompt)
            finally:
                self.current_message = None
                await self._release()
        duration_ms = int((time.monotonic() - started) * 1000)
        self.last_turn_ms = duration_ms
        note = result.note
        if result.cancelled:
            # not acknowledged: at-least-once, the message comes back (redelivered) on the next recv
            note = f"cancelled by the operator; message #{message['id']} not acknowledged: it comes back"
            self.bus.emit("note", {"text": note})
        elif result.ok:
            await self._ack()
            self.failures = 0
            if earlier or digest:
                self._warn(self.held.clear())
        self.bus.emit(
            "turn_end",
            {"ok": result.ok and not result.cancelled, "note": note, "duration_ms": duration_ms,
             "usage": result.usage, "cost_usd": result.cost_usd, "cancelled": result.cancelled,
             "model": self.model_active, "warm": result.warm, "cli_pid": result.cli_pid},
        )  # fmt: skip
        self._start_cooler()
        if result.cancelled:
            await self.client.call("requeue_inflight")
            self.set_state("idle")
            return
        if result.ok:
            self.set_state("idle")
            return
        if result.auth_failed:
            await self._wait_for_login()
        else:
            await self._back_off(result.note)
        await self.client.call("requeue_inflight")

    def _warn(self, warning: str | None) -> None:
        if warning:
            self.bus.emit("note", {"text": "warning: " + warning, "level": "warning"})

    async def _ack(self) -> None:
        try:
            await self.client.call("ack_turn")
        except HiveError as exc:
            self.bus.emit("note", {"text": f"could not acknowledge the turn: {exc.message}", "level": "warning"})

    async def _back_off(self, reason: str) -> None:
        self.failures += 1
        delay = min(MAX_BACKOFF, 2.0**self.failures)
        self.bus.emit("note", {"text": f"turn failed ({reason}); retrying in {delay:.0f} s", "level": "warning"})
        self.set_state("idle")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _wait_for_login(self) -> None:
        self.bus.emit("note", {"text": "claude is not logged in: waiting for the operator to log in on this page"})
        self._logged_in.clear()
        self.set_state("needs_login")
        await self._logged_in.wait()
        self.bus.emit("note", {"text": "logged in: retrying"})
        self.set_state("idle")

    def login_succeeded(self) -> None:
        self._logged_in.set()

    # ---- operator controls -------------------------------------------------------------

    async def cancel(self) -> str:
        """End a nap, or interrupt the turn in flight."""
        if self.state == "napping":
            self._nap_cancel.set()
            return "nap ended by the operator"
        if self.runner.busy:
            await self.runner.cancel()
            stop = self.runner.last_stop
            how = stop.describe(self.runner.interrupt_grace) if stop is not None else "the turn had ended"
            self.bus.emit("note", {"text": f"cancel: {how}"})
            return f"turn cancelled ({how}); its message comes back"
        raise Refused("nothing to cancel: the agent is " + self.state)

    async def end_nap(self) -> str:
        """End a nap now (the dashboard's and the page's "end nap"); never touches a turn."""
        if self.state != "napping":
            raise Refused("the agent is not napping: it is " + self.state)
        self._nap_cancel.set()
        return "nap ended by the operator"

    async def compact(self) -> str:
        """Compact the current session; refused while a turn runs (never two claude processes
        on one session)."""
        if self._turn_lock.locked() or self.runner.busy:
            raise Refused("a turn is running: compact after it ends (or cancel it first)")
        sid = self.session_id()
        if not sid:
            raise Refused("there is no session to compact yet")
        async with self._turn_lock:
            previous = self.state
            self.set_state("compacting")
            try:
                result = await self.runner.compact(self._spec("/compact"), sid, self._on_message, self._on_note)
            finally:
                self.set_state(previous if previous != "thinking" else "idle")
        if result.session_id:
            self._save_session(result.session_id)
        self.bus.emit("note", {"text": "compacted" if result.ok else f"compaction failed: {result.note}"})
        return "compacted" if result.ok else f"compaction failed: {result.note}"

    # ---- notes compaction (issue 14) ----------------------------------------------------

    def notes_compact_bytes(self) -> int:
        value = self.config.get("notes_compact_bytes", DEFAULT_COMPACT_BYTES)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_COMPACT_BYTES

    def notes_due(self) -> bool:
        """Past the threshold, and not at the very size a compaction already failed at (so a
        failing compaction is not retried after every turn until the notes change)."""
        limit, size = self.notes_compact_bytes(), self.notes.size()
        return limit > 0 and size > limit and size != self._notes_failed_at

    async def compact_notes(self, *, forced: bool = False) -> str:
        """Run the secondary session on /state/notes.md (after a turn when due, or when the
        operator asks); the outcome is a `notes_compacted` / `notes_compaction_failed` event."""
        if forced and (self._turn_lock.locked() or self.runner.busy):
            raise Refused("a turn is running: compact the notes after it ends")
        if forced and self.notes.size() == 0:
            raise Refused(f"there are no notes to compact ({self.paths.notes} is empty or missing)")
        async with self._turn_lock:
            previous = self.state
            self.set_state("compacting", what="notes")
            try:
                outcome = await self.notes.compact(
                    self.runner, model=self.model(), env=self._spec("").env,
                    on_message=self._on_message, on_note=self._on_note,
                )  # fmt: skip
                self._notes_failed_at = None if outcome.ok else outcome.before_bytes
                self.bus.emit(NOTES_COMPACTED if outcome.ok else NOTES_COMPACTION_FAILED, outcome.payload())
            finally:
                self.set_state(previous if previous not in ("thinking", "compacting") else "idle")
        if outcome.ok:
            return f"notes compacted: {outcome.before_bytes} → {outcome.after_bytes} bytes (previous kept at {outcome.kept})"
        return f"notes compaction rejected, notes unchanged: {outcome.reason}"

    async def _compact_notes_if_due(self) -> None:
        if self.notes_due():
            self.bus.emit(
                "note", {"text": f"notes are {self.notes.size()} bytes (over {self.notes_compact_bytes()}): compacting"}
            )
            await self.compact_notes()

    async def request_nap(self, seconds: float) -> str:
        """The nap tool: park the loop until a wake-not-before time (persisted, bounded)."""
        seconds = max(1.0, min(float(seconds), MAX_NAP_SECONDS))
        self.nap_until = time.time() + seconds
        try:
            self.paths.nap_file.write_text(str(self.nap_until), encoding="utf-8")
        except OSError as exc:
            self.bus.emit("note", {"text": f"warning: nap not persisted: {exc}", "level": "warning"})
        return (
            f"napping for {int(seconds)} s after this turn (until {time.strftime('%H:%M:%S', time.localtime(self.nap_until))});"
            " new messages wait until then. end this turn now."
        )

    def _read_nap(self) -> float | None:
        try:
            until = float(self.paths.nap_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None
        return min(until, time.time() + MAX_NAP_SECONDS)

    async def _nap_if_asked(self) -> None:
        if self.nap_until is None or self.nap_until <= time.time():
            self.nap_until = None
            return
        self._nap_cancel.clear()
        self.set_state("napping", until=self.nap_until)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._nap_cancel.wait(), self.nap_until - time.time())
        self.bus.emit("note", {"text": "nap ended early by the operator" if self._nap_cancel.is_set() else "nap over"})
        self.nap_until = None
        self.paths.nap_file.unlink(missing_ok=True)
        self.set_state("idle")

    # ---- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        self.note_config_model()
        await asyncio.to_thread(self.notes.remove_leftovers)
        requeued = (await self.client.call("requeue_inflight")).get("requeued", 0)
        if requeued:
            self.bus.emit("note", {"text": f"{requeued} unacknowledged message(s) requeued after a restart"})
        self.set_state("idle")
        self._background(self._prewarm(), "prewarm")  # warm on start (harness/pooling.py)
        while not self._stopping.is_set():
            await self._nap_if_asked()
            wait = self._recv_wait()
            try:
                reply = await self.poll.call("recv", wait_seconds=wait, max=1)
            except HiveError as exc:
                self.bus.emit("note", {"text": f"recv failed: {exc.message}", "level": "warning"})
                await self._back_off(exc.message)
                continue
            messages = reply.get("messages", [])
            if not messages and self.held and self.manager and self._recv_wait() <= 0:
                messages = [self._digest()]
            for message in messages:
                try:
                    if message.get("digest"):
                        await self.handle(message, 0, digest=True)
                        continue
                    event = quiet_event(message)
                    if event is not None:
                        await self._hold(message, event)
                        continue
                    await self.handle(message, int(reply.get("unread", 0)))
                except HiveError as exc:
                    self.bus.emit("note", {"text": f"turn bookkeeping failed: {exc.message}", "level": "warning"})
                await self._compact_notes_if_due()

    def stop(self) -> None:
        self._stop_cooler()
        self._stopping.set()
        self._logged_in.set()
        self._nap_cancel.set()


def _positive(value: str | None, default: float) -> float:
    try:
        number = float(value) if value else default
    except ValueError:
        return default
    return number if number > 0 else default

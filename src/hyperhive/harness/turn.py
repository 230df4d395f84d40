"""One claude turn through the Claude Agent SDK (its bundled `claude` CLI).

The turn gets an allow-list of built-in tools (Bash only through pattern rules), the in-process
`hyperhive` MCP server, and `permission_mode="dontAsk"`, so whatever is not allowed is denied
rather than prompted (bypassPermissions is refused as root anyway). Every SDK message is handed
to the caller as a JSON-ready dict; stderr lines and harness remarks as notes. Knows nothing of
the broker: the caller acks, persists the session id, compacts and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    RateLimitEvent,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from claude_agent_sdk.types import McpServerConfig, ServerToolResultBlock, ServerToolUseBlock, SystemPromptFile

from hyperhive.harness.cancel import StopOutcome, TrackedChild, find_claude_cli, stop_child
from hyperhive.harness.prompting import PromptFile, config_env
from hyperhive.harness.turnspec import DEFAULT_BUILTINS, TurnResult, TurnSpec
from hyperhive.wirecaps import OVER_BUDGET_MARK

__all__ = [
    "DEFAULT_BUILTINS",
    "FORBIDDEN_BUILTINS",
    "TurnResult",
    "TurnRunner",
    "TurnSpec",
    "build_options",
    "message_to_dict",
]

logger = logging.getLogger(__name__)

FORBIDDEN_BUILTINS: tuple[str, ...] = (
    "WebFetch", "WebSearch", "Task", "Agent", "TodoWrite", "NotebookEdit", "KillShell", "BashOutput",
    "ExitPlanMode", "Skill", "SlashCommand",
)  # fmt: skip
"""Never offered, whatever the config says: no web, no nested agents."""

_AUTH_RE = re.compile(r"not logged in|invalid api key|authentication_error|authentication_failed|/login", re.I)
_TOO_LONG_RE = re.compile(r"prompt is too long", re.I)

MessageCallback = Callable[[dict[str, Any]], None]
NoteCallback = Callable[[str], None]


# ---- options -------------------------------------------------------------------------------


def _builtin_tools(spec: TurnSpec) -> list[str]:
    tools = [t for t in spec.allowed_builtins if t not in FORBIDDEN_BUILTINS and t != "Bash"]
    if spec.bash_patterns:
        tools.append("Bash")
    return list(dict.fromkeys(tools))


def build_options(
    spec: TurnSpec, *, stderr: NoteCallback | None = None, system_prompt_file: str | None = None
) -> ClaudeAgentOptions:
    """The SDK options for a spec: base tool set, allow rules, dontAsk, no filesystem settings."""
    builtins = _builtin_tools(spec)
    allowed = [t for t in builtins if t != "Bash"] if spec.allow_rules is None else list(spec.allow_rules)
    allowed += [f"Bash({p})" for p in spec.bash_patterns]
    allowed += list(spec.mcp_tools)
    allowed += [f"mcp__{key}" for key in spec.extra_mcp_servers]
    servers: dict[str, McpServerConfig] = dict(spec.extra_mcp_servers)
    if spec.mcp_server is not None:
        servers["hyperhive"] = spec.mcp_server
    # No telemetry, update checks or session-title side requests from inside a cage; MCP tools
    # listed directly instead of behind the tool-search tool.
    env = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", **config_env(), **spec.env, "ENABLE_TOOL_SEARCH": "false"}
    system_prompt: str | SystemPromptFile = spec.system_prompt
    if system_prompt_file is not None:  # never on the command line (`ps`): see prompting.PromptFile
        system_prompt = {"type": "file", "path": system_prompt_file}
    return ClaudeAgentOptions(
        tools=builtins,
        allowed_tools=allowed,
        disallowed_tools=[t for t in FORBIDDEN_BUILTINS if t not in builtins],
        permission_mode="dontAsk",
        system_prompt=system_prompt,
        mcp_servers=servers,
        strict_mcp_config=True,
        setting_sources=[],
        model=spec.model,
        resume=spec.resume_session,
        max_turns=spec.max_turns,
        cwd=spec.cwd,
        env=env,
        cli_path=spec.cli_path,
        stderr=stderr,
    )


# ---- messages → dicts ----------------------------------------------------------------------

_BLOCK_TYPES: dict[type, str] = {
    TextBlock: "text",
    ThinkingBlock: "thinking",
    ToolUseBlock: "tool_use",
    ToolResultBlock: "tool_result",
    ServerToolUseBlock: "server_tool_use",
    ServerToolResultBlock: "server_tool_result",
}
_MESSAGE_TYPES: dict[type, str] = {
    AssistantMessage: "assistant",
    UserMessage: "user",
    ResultMessage: "result",
    StreamEvent: "stream_event",
    RateLimitEvent: "rate_limit_event",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name.removesuffix("Message")).lower()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        kind = _BLOCK_TYPES.get(type(value))
        if kind is not None:
            out = {"type": kind, **out}
        return out
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def message_to_dict(message: object) -> dict[str, Any]:
    """An SDK message as a JSON-serialisable dict with a `type` field ("assistant", "user",
    "system" (with `subtype`), "result", "stream_event", …); content blocks get `type` too."""
    body = _plain(message)
    if not isinstance(body, dict):
        body = {"value": body}
    if isinstance(message, SystemMessage):
        kind = "system"
    else:
        kind = _MESSAGE_TYPES.get(type(message)) or _snake(type(message).__name__)
    return {"type": kind, **{k: v for k, v in body.items() if k != "type"}}


# ---- the runner ----------------------------------------------------------------------------


class TurnRunner:
    """Runs turns one at a time; `cancel()` from another task stops the one in flight.

    Each turn's CLI is found in the harness's process tree by its `cli_path` (never through the
    SDK's private attributes); cancel is SIGTERM, then SIGKILL after `interrupt_grace` seconds.
    """

    def __init__(self, *, interrupt_grace: float = 5.0) -> None:
        self.interrupt_grace = interrupt_grace
        self._lock = asyncio.Lock()
        self._warm: WarmCli | None = None
        self._stderr_sink: NoteCallback | None = None
        self.cooled = 0  # how many warm CLIs were ended (idle, the core's pool, a change of options)
        self._client: ClaudeSDKClient | None = None
        self._child: TrackedChild | None = None
        self._task: asyncio.Task[Any] | None = None
        self._done = asyncio.Event()
        self._cancel_requested = False
        self._killed = False
        self.last_stop: StopOutcome | None = None

    @property
    def busy(self) -> bool:
        return self._client is not None

    @property
    def warm(self) -> bool:
        """A CLI is kept connected between turns."""
        return self._warm is not None

    def warm_pid(self) -> int | None:
        return self._warm.pid if self._warm is not None else None

    async def cool(self, why: str = "") -> bool:
        """End the kept CLI (never one in a turn: waits for the turn to end). False if none."""
        async with self._lock:
            return await self._end_warm(why)

    async def _end_warm(self, why: str) -> bool:
        warm, self._warm = self._warm, None
        if warm is None:
            return False
        self.cooled += 1
        logger.info("cooling the claude CLI (pid %s)%s", warm.pid, f": {why}" if why else "")
        await warm.close()
        return True

    def _stderr(self, line: str) -> None:
        if self._stderr_sink is not None:
            self._stderr_sink(line)

    async def prewarm(self, spec: TurnSpec) -> tuple[int | None, str]:
        """Start and connect the CLI a turn on `spec` would start (same options, so that turn
        reuses it), with no query: no model request. (pid, "") once kept; (None, why) if it
        could not start or a CLI is already kept."""
        async with self._lock:
            if self._warm is not None:
                return None, "a claude CLI is already kept"
            tail: list[str] = []

            def note(line: str) -> None:
                tail.append(line)
                del tail[:-5]

            warm: WarmCli | None = None
            try:
                cli_path = str(spec.cli_path) if spec.cli_path is not None else await asyncio.to_thread(find_claude_cli)
                spec = dataclasses.replace(spec, cli_path=cli_path)
                prompt_file = PromptFile(spec.system_prompt)
                client = ClaudeSDKClient(build_options(spec, stderr=self._stderr, system_prompt_file=prompt_file.path))
                warm = WarmCli(client, prompt_file, options_key(spec), spec.resume_session, spec.model, cli_path)
                self._stderr_sink = note
                await client.connect()
                warm.pid = await asyncio.to_thread(TrackedChild(cli_path).pid)
            except (ClaudeSDKError, OSError) as exc:
                if warm is not None:
                    await warm.close()
                detail = " | ".join(tail)
                return None, _short(f"{type(exc).__name__}: {exc}" + (f" ({detail})" if detail else ""), 600)
            except BaseException:  # cancelled (the worker is ending): never leave a CLI behind
                if warm is not None:
                    await warm.close()
                raise
            finally:
                self._stderr_sink = None
            if warm.pid is None or not await asyncio.to_thread(warm.alive):
                await warm.close()
                return None, "the claude CLI exited while connecting"
            self._warm = warm
            return warm.pid, ""

    async def run(self, spec: TurnSpec, on_message: MessageCallback, on_note: NoteCallback) -> TurnResult:
        """Run one turn; never raises for a CLI or API failure (they come back in the result)."""
        async with self._lock:
            self._done.clear()
            self._cancel_requested = self._killed = False
            self._task = asyncio.current_task()
            try:
                return await self._run(spec, on_message, on_note)
            finally:
                self._client = None
                self._task = None
                self._done.set()

    async def _run(self, spec: TurnSpec, on_message: MessageCallback, on_note: NoteCallback) -> TurnResult:
        started = time.monotonic()
        stderr_tail: list[str] = []
        cli_path = str(spec.cli_path) if spec.cli_path is not None else await asyncio.to_thread(find_claude_cli)
        spec = dataclasses.replace(spec, cli_path=cli_path)
        self._child = TrackedChild(cli_path)

        def note(line: str) -> None:
            stderr_tail.append(line)
            del stderr_tail[:-20]
            _safe(on_note, line)

        key = options_key(spec)
        warm = self._warm
        if warm is not None and not (spec.keep_warm and warm.key == key and warm.session_id == spec.resume_session
                                     and await asyncio.to_thread(warm.alive)):  # fmt: skip
            await self._end_warm("the next turn needs a different CLI (options, session) or it exited")
            warm = None
        reused = warm is not None
        self._stderr_sink = note
        result: ResultMessage | None = None
        texts: list[str] = []
        auth_failed = too_long = auth_abort = False
        failure: str | None = None
        if warm is None:
            prompt_file = PromptFile(spec.system_prompt)
            client = ClaudeSDKClient(build_options(spec, stderr=self._stderr, system_prompt_file=prompt_file.path))
            warm = WarmCli(client, prompt_file, key, spec.resume_session, spec.model, cli_path)
        client = warm.client
        keep = False
        try:
            self._client = client
            if not reused:
                await client.connect()
                warm.pid = await asyncio.to_thread(self._child.pid)
            elif warm.model != spec.model:
                await client.set_model(spec.model)
                warm.model = spec.model
            await client.query(spec.prompt)
            async for message in client.receive_response():
                _safe(on_message, message_to_dict(message))
                if isinstance(message, AssistantMessage):
                    if message.error == "authentication_failed":
                        auth_failed = True
                    for block in message.content:
                        if isinstance(block, TextBlock):
                            texts.append(block.text)
                elif isinstance(message, ResultMessage):
                    result = message
                elif _is_auth_retry(message) and not auth_abort:
                    # The CLI retries a 401 ten times with back-off (minutes): stop it now.
                    auth_failed = auth_abort = True
                    _safe(on_note, "the API refused the credentials (401); stopping the turn")
                    await self._interrupt_or_kill(client)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not (self._killed and task is not None and task.uncancel() == 0):
                raise
            failure = "the turn was cancelled and the CLI killed"
        except ClaudeSDKError as exc:
            failure = f"{type(exc).__name__}: {_short(str(exc), 600)}"
        finally:
            self._stderr_sink = None
            keep = (spec.keep_warm and failure is None and result is not None and not self._cancel_requested
                    and not auth_failed and result.subtype == "success")  # fmt: skip
            if keep and result is not None:
                warm.session_id = result.session_id
                self._warm = warm
            else:
                self._warm = None
                await warm.close()
            self._child = None

        duration_ms = int((time.monotonic() - started) * 1000)
        cancelled = self._cancel_requested
        evidence = "\n".join([*texts, failure or "", *stderr_tail])
        if result is not None:
            evidence += "\n" + (result.result or "") + "\n" + "\n".join(result.errors or [])
            if result.terminal_reason in ("aborted_streaming", "aborted_tools") and not auth_abort:
                cancelled = True
        auth_failed = auth_failed or (bool(_AUTH_RE.search(evidence)) and (result is None or result.is_error))
        if OVER_BUDGET_MARK in evidence:
            auth_failed = False  # the gateway refused it for the budget (a 403 the CLI calls "authenticate")
        too_long = too_long or bool(_TOO_LONG_RE.search(evidence))
        ok = (
            result is not None
            and not result.is_error
            and result.subtype == "success"
            and not cancelled
            and not auth_failed
        )
        if ok:
            assert result is not None
            note_text = _short(result.result or "", 500)
        elif cancelled:
            note_text = "cancelled"
        elif failure is not None:
            note_text = failure
        elif result is not None:
            note_text = _short(
                f"{result.subtype}: " + (result.result or "; ".join(result.errors or []) or "no detail"), 600
            )
        else:
            note_text = "the CLI ended without a result"
        if auth_failed:
            note_text = "not logged in: " + note_text
        return TurnResult(
            ok=ok,
            note=note_text,
            session_id=result.session_id if result is not None else None,
            duration_ms=result.duration_ms if result is not None and result.duration_ms else duration_ms,
            usage=_plain(result.usage) if result is not None else None,
            cost_usd=result.total_cost_usd if result is not None else None,
            auth_failed=auth_failed,
            prompt_too_long=too_long,
            cancelled=cancelled,
            text="\n".join(texts),
            warm=reused,
            cli_pid=warm.pid,
        )

    async def cancel(self) -> bool:
        """Stop the turn in flight: SIGTERM to its CLI, SIGKILL (with everything below it) after
        the grace, and as a last resort cancel the run. False when no turn was running.
        `last_stop` says how it went."""
        child = self._child
        if self._client is None or child is None:
            return False
        self._cancel_requested = True
        self.last_stop = await stop_child(child, self._done.wait, self.interrupt_grace)
        try:
            async with asyncio.timeout(self.interrupt_grace):
                await self._done.wait()
        except TimeoutError:
            self._killed = True
            if self._task is not None and not self._task.done():
                self._task.cancel("turn cancelled: the CLI did not stop")
            async with asyncio.timeout(self.interrupt_grace * 2):
                await self._done.wait()
        return True

    async def _interrupt_or_kill(self, client: ClaudeSDKClient) -> None:
        try:
            async with asyncio.timeout(self.interrupt_grace):
                await client.interrupt()
        except (TimeoutError, ClaudeSDKError):
            child = self._child
            if child is not None:
                # inside the turn itself: only the CLI's exit ends the wait
                await stop_child(child, asyncio.Event().wait, self.interrupt_grace)

    async def compact(
        self, spec: TurnSpec, session_id: str, on_message: MessageCallback, on_note: NoteCallback
    ) -> TurnResult:
        """Run `/compact` on `session_id` (with `spec`'s model, tools and env); the result's
        session_id is the one to resume next."""
        compact_spec = dataclasses.replace(spec, prompt="/compact", resume_session=session_id)
        return await self.run(compact_spec, on_message, on_note)


def options_key(spec: TurnSpec) -> str:
    """What a kept CLI was started with, apart from the prompt, the model and the session."""
    parts = dataclasses.asdict(dataclasses.replace(spec, prompt="", model=None, resume_session=None,
                                                   mcp_server=None, extra_mcp_servers={}))  # fmt: skip
    parts["mcp_server"] = id(spec.mcp_server) if spec.mcp_server is not None else None
    parts["extra"] = _plain(spec.extra_mcp_servers)
    return json.dumps(parts, sort_keys=True, default=str)


class WarmCli:
    """One connected claude CLI (SDK streaming client) with the prompt file it was started on."""

    def __init__(self, client: ClaudeSDKClient, prompt_file: PromptFile, key: str, session_id: str | None,
                 model: str | None, cli_path: str) -> None:  # fmt: skip
        self.client = client
        self.prompt_file = prompt_file
        self.key = key
        self.session_id = session_id
        self.model = model
        self.cli_path = cli_path
        self.pid: int | None = None

    def alive(self) -> bool:
        """Its process still runs (the CLI did not die while idle)."""
        if self.pid is None:
            return False
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            return False
        return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")

    async def close(self) -> None:
        with contextlib.suppress(ClaudeSDKError, OSError):
            await self.client.disconnect()
        self.prompt_file.close()


def _is_auth_retry(message: object) -> bool:
    if not isinstance(message, SystemMessage) or message.subtype != "api_retry":
        return False
    data = message.data or {}
    return data.get("error") == "authentication_failed" or data.get("error_status") in (401, 403)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe(callback: Callable[[Any], None], value: Any) -> None:
    try:
        callback(value)
    except Exception:
        logger.exception("turn callback failed")


def dumps(message: dict[str, Any]) -> str:
    """Compact JSON for a message dict (what `message_to_dict` returns is always serialisable)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

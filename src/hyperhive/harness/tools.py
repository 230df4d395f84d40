"""The hyperhive MCP tools: an in-process SDK MCP server named `hyperhive`.

The model sees them as `mcp__hyperhive__<tool>`. Each tool is one HiveClient call over the
agent's socket (argument checks are the core's: protocol.py), except `nap`, which belongs to
the harness loop and calls the callback it provides. A refusal from the core comes back as a
readable tool error (`is_error`), never as an exception that ends the turn.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from claude_agent_sdk import SdkMcpTool, create_sdk_mcp_server
from claude_agent_sdk.types import McpSdkServerConfig
from pydantic import BaseModel, ConfigDict, Field

from hyperhive import protocol as p
from hyperhive.client import HiveClient
from hyperhive.errors import HiveError
from hyperhive.harness.prompting import REDELIVERED_BANNER

__all__ = [
    "AGENT_TOOLS",
    "MANAGER_TOOLS",
    "SERVER_NAME",
    "NapCallback",
    "allowed_tool_names",
    "build_hyperhive_server",
    "build_hyperhive_tools",
    "format_messages",
    "tool_schema",
]

logger = logging.getLogger(__name__)

SERVER_NAME = "hyperhive"
AGENT_TOOLS: tuple[str, ...] = ("send", "recv", "whoami", "ask", "answer", "get_open_threads", "nap")
MANAGER_TOOLS: tuple[str, ...] = (
    "request_spawn", "request_init_config", "request_apply_commit", "kill", "start", "restart", "update",
)  # fmt: skip

NapCallback = Callable[[float], Awaitable[str | None] | str | None]
"""Called by the `nap` tool with the seconds asked for; returns what the model is told."""

ToolResult = dict[str, Any]


def allowed_tool_names(*, manager: bool) -> list[str]:
    """Full tool names (`mcp__hyperhive__send`, …) for the turn's allow-list."""
    names = AGENT_TOOLS + (MANAGER_TOOLS if manager else ())
    return [f"mcp__{SERVER_NAME}__{n}" for n in names]


def _ok(text: str) -> ToolResult:
    return {"content": [{"type": "text", "text": text}]}


def _err(text: str) -> ToolResult:
    return {"content": [{"type": "text", "text": text}], "is_error": True}


def _payload(reply: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in reply.items() if k not in ("version", "ok", "error", "code")}


def _json(reply: dict[str, Any]) -> str:
    body = _payload(reply)
    return json.dumps(body, ensure_ascii=False, indent=2) if body else "ok"


def format_messages(messages: list[dict[str, Any]], pending: int | None = None) -> str:
    """Messages from `recv` as the model reads them."""
    if not messages:
        text = "no messages waiting."
    else:
        parts = []
        for m in messages:
            head = f"message {m.get('id')} from {m.get('sender')}"
            if m.get("in_reply_to"):
                head += f" (in reply to {m['in_reply_to']})"
            if m.get("broadcast"):
                head += " (broadcast — may not need action)"
            lines = [head]
            if m.get("redelivered"):
                lines.append(REDELIVERED_BANNER)
            lines += ["---", str(m.get("body", ""))]
            parts.append("\n".join(lines))
        text = "\n\n".join(parts)
    if pending:
        text += f"\n\n({pending} more pending)"
    return text


class NapArgs(BaseModel):
    """The `nap` tool's input (the harness's own, not a socket verb)."""

    model_config = ConfigDict(extra="forbid")
    seconds: float = Field(gt=0, le=p.MAX_NAP_SECONDS)


_NAME = {"description": "agent name"}


def _plain(prop: dict[str, Any]) -> dict[str, Any]:
    """A property as the model reads it: no pydantic title; an optional field is its type (the
    model omits it rather than sending null)."""
    prop = {k: v for k, v in prop.items() if k != "title"}
    options = prop.pop("anyOf", None)
    if options is not None:
        kept = [o for o in options if o != {"type": "null"}]
        prop = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **prop}
        if prop.get("default") is None:
            prop.pop("default", None)
    return prop


def tool_schema(model: type[BaseModel], **extra: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema, generated from its request model in protocol.py (without `cmd`), so
    the model is offered exactly the fields and bounds the core accepts. `extra` adds
    descriptions to named properties."""
    schema = model.model_json_schema()
    props = {k: {**_plain(v), **extra.get(k, {})} for k, v in schema.get("properties", {}).items() if k != "cmd"}
    required = [k for k in schema.get("required", []) if k != "cmd"]
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def build_hyperhive_tools(client: HiveClient, *, manager: bool, nap: NapCallback) -> list[SdkMcpTool[Any]]:
    """The tool definitions (handlers bound to `client`); the manager's adds its verbs."""

    async def call(cmd: str, **fields: Any) -> dict[str, Any] | ToolResult:
        try:
            return await client.call(cmd, **fields)
        except HiveError as exc:
            code = getattr(exc, "code", "error")
            return _err(f"{cmd} refused ({code}): {exc}")
        except (TimeoutError, OSError) as exc:
            return _err(f"{cmd} failed: the hive did not answer ({type(exc).__name__}: {exc})")

    def failed(reply: dict[str, Any] | ToolResult) -> bool:
        return bool(reply.get("is_error"))

    async def send(args: dict[str, Any]) -> ToolResult:
        reply = await call("send", to=args.get("to"), body=args.get("body"), in_reply_to=args.get("in_reply_to"))
        if failed(reply):
            return reply
        msg_id = reply.get("id")
        return _ok(f"sent to {args.get('to')}" + (f" (message {msg_id})" if msg_id is not None else ""))

    async def recv(args: dict[str, Any]) -> ToolResult:
        reply = await call("recv", wait_seconds=args.get("wait_seconds"), max=args.get("max"))
        if failed(reply):
            return reply
        messages = reply.get("messages") or []
        pending = reply.get("unread", reply.get("pending"))
        return _ok(format_messages(list(messages), pending if isinstance(pending, int) else None))

    async def whoami(args: dict[str, Any]) -> ToolResult:
        reply = await call("whoami")
        return reply if failed(reply) else _ok(_json(reply))

    async def ask(args: dict[str, Any]) -> ToolResult:
        reply = await call(
            "ask",
            question=args.get("question"),
            options=args.get("options") or None,
            multi=args.get("multi") or None,
            ttl_seconds=args.get("ttl_seconds"),
            to=args.get("to"),
        )
        if failed(reply):
            return reply
        qid = reply.get("id")
        who = args.get("to") or "the operator"
        return _ok(
            f"question {qid} asked of {who}. This does not wait: the answer arrives later as a "
            "question_answered message. Carry on or end the turn."
        )

    async def answer(args: dict[str, Any]) -> ToolResult:
        reply = await call("answer", id=args.get("id"), answer=args.get("answer"))
        return reply if failed(reply) else _ok(f"answered question {args.get('id')}")

    async def get_open_threads(args: dict[str, Any]) -> ToolResult:
        reply = await call("open_threads")
        return reply if failed(reply) else _ok(_json(reply))

    async def nap_tool(args: dict[str, Any]) -> ToolResult:
        try:
            seconds = float(args.get("seconds", 0))
        except (TypeError, ValueError):
            return _err("nap: `seconds` must be a number")
        if seconds <= 0:
            return _err("nap: `seconds` must be positive")
        try:
            outcome = nap(seconds)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except HiveError as exc:
            return _err(f"nap refused: {exc}")
        return _ok(outcome or f"napping for {seconds:g}s once this turn ends; new messages wait until then.")

    def verb(cmd: str, *extra: str) -> Callable[[dict[str, Any]], Awaitable[ToolResult]]:
        async def handler(args: dict[str, Any]) -> ToolResult:
            reply = await call(cmd, **{k: args.get(k) for k in ("name", "agent", "commit_ref", *extra)})
            return reply if failed(reply) else _ok(f"{cmd}: " + _json(reply))

        return handler

    tools: list[SdkMcpTool[Any]] = [
        SdkMcpTool(
            "send",
            "Send a message to an agent, `manager`, `operator` (the human's inbox) or `*` (broadcast).",
            tool_schema(p.SendReq),
            send,
        ),
        SdkMcpTool(
            "recv",
            "Receive waiting messages. wait_seconds (≤180) long-polls for new work: use it instead of "
            "any shell sleep. Omit or 0 to just peek. max ≤ 32.",
            tool_schema(p.RecvReq),
            recv,
        ),
        SdkMcpTool("whoami", "Your name, role and configuration summary.", tool_schema(p.WhoamiReq), whoami),
        SdkMcpTool(
            "ask",
            "Ask the operator (or another agent with `to`) a question. Non-blocking: returns the "
            "question id at once; the answer arrives later as a message.",
            tool_schema(p.AskReq),
            ask,
        ),
        SdkMcpTool(
            "answer",
            "Answer a question someone asked you.",
            tool_schema(p.AnswerReq),
            answer,
        ),
        SdkMcpTool(
            "get_open_threads",
            "Questions you asked that are still open, and questions waiting for your answer.",
            tool_schema(p.OpenThreadsReq),
            get_open_threads,
        ),
        SdkMcpTool(
            "nap",
            "Nap for `seconds` (at most 6 h) once this turn ends: until then you are not woken, new messages "
            "wait in your inbox and are delivered when you wake (the operator can end the nap early).",
            tool_schema(NapArgs),
            nap_tool,
        ),
    ]
    if manager:
        tools += [
            SdkMcpTool(
                "request_spawn",
                "Ask the operator to approve creating agent `name` (from its applied config).",
                tool_schema(p.RequestSpawnReq, name=_NAME),
                verb("request_spawn", "description"),
            ),
            SdkMcpTool(
                "request_init_config",
                "Ask the operator to approve seeding a config repo for new agent `name`; you then "
                "edit it and call request_apply_commit.",
                tool_schema(p.RequestInitConfigReq, name=_NAME),
                verb("request_init_config", "description"),
            ),
            SdkMcpTool(
                "request_apply_commit",
                "Ask the operator to approve and deploy commit `commit_ref` (a sha) of `agent`'s config.",
                tool_schema(p.RequestApplyCommitReq, agent=_NAME),
                verb("request_apply_commit", "description"),
            ),
            SdkMcpTool("kill", "Stop agent `name`'s cage.", tool_schema(p.KillReq, name=_NAME), verb("kill")),
            SdkMcpTool("start", "Start agent `name`'s cage.", tool_schema(p.StartReq, name=_NAME), verb("start")),
            SdkMcpTool(
                "restart", "Restart agent `name`'s cage.", tool_schema(p.RestartReq, name=_NAME), verb("restart")
            ),
            SdkMcpTool(
                "update",
                "Rebuild agent `name` on its current applied config.",
                tool_schema(p.UpdateReq, name=_NAME),
                verb("update"),
            ),
        ]
    return tools


def build_hyperhive_server(client: HiveClient, *, manager: bool, nap: NapCallback) -> McpSdkServerConfig:
    """The `hyperhive` in-process MCP server config, for ClaudeAgentOptions.mcp_servers."""
    return create_sdk_mcp_server(SERVER_NAME, tools=build_hyperhive_tools(client, manager=manager, nap=nap))

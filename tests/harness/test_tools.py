"""The hyperhive MCP tools (architecture §5, §12): each one HiveClient call, refusals as tool errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fakesock import FakeHive
from hyperhive.client import HiveClient
from hyperhive.harness.tools import (
    AGENT_TOOLS,
    MANAGER_TOOLS,
    allowed_tool_names,
    build_hyperhive_server,
    build_hyperhive_tools,
)

QUESTION = {"id": 8, "asker": "bob", "target": "operator", "question": "ok?"}
# real reply shapes: FakeHive passes each through hyperhive.replies, as the core does
REPLIES: dict[str, dict[str, Any]] = {
    "send": {"id": 31, "ids": [31], "recipients": 1},
    "recv": {
        "messages": [
            {"id": 4, "sender": "iris", "recipient": "bob", "body": "hello", "sent_at": 1.0},
            {
                "id": 5,
                "sender": "manager",
                "recipient": "*",
                "body": "all hands",
                "sent_at": 2.0,
                "broadcast": True,
                "redelivered": True,
            },  # fmt: skip
        ],
        "unread": 2,
    },
    "whoami": {"name": "bob", "role": "agent", "cage": "process", "hyperhive": "0.1.0"},
    "ask": {"id": 8, "question": QUESTION},
    "answer": {"question": {**QUESTION, "id": 2, "asker": "iris", "target": "bob", "answer": "yes"}},
    "open_threads": {"asked": [QUESTION], "owed": [], "approvals": []},
    "request_apply_commit": {
        "approval": {"id": 3, "kind": "apply_commit", "agent": "iris", "status": "pending", "tag": "proposal/3"}
    },
    "kill": {"agent": {"name": "iris", "cage": "process", "state": "stopped"}},
}


@pytest.fixture
async def hive(short_dir: Path) -> AsyncIterator[FakeHive]:
    async with FakeHive(short_dir / "mcp.sock", REPLIES) as fake:
        yield fake


def by_name(tools: list[Any]) -> dict[str, Any]:
    return {t.name: t for t in tools}


def text_of(result: dict[str, Any]) -> str:
    return "".join(c["text"] for c in result["content"])


async def test_agent_and_manager_tool_surfaces() -> None:
    """Agents get the seven agent tools; the manager adds its seven verbs; names are mcp__hyperhive__*."""
    client = HiveClient("/nonexistent")
    agent = by_name(build_hyperhive_tools(client, manager=False, nap=lambda s: None))
    manager = by_name(build_hyperhive_tools(client, manager=True, nap=lambda s: None))
    assert set(agent) == set(AGENT_TOOLS)
    assert set(manager) == set(AGENT_TOOLS) | set(MANAGER_TOOLS)
    assert allowed_tool_names(manager=False) == [f"mcp__hyperhive__{t}" for t in AGENT_TOOLS]
    server = build_hyperhive_server(client, manager=False, nap=lambda s: None)
    assert server["type"] == "sdk" and server["name"] == "hyperhive"


async def test_each_tool_is_one_socket_call_with_its_arguments(hive: FakeHive) -> None:
    """send/recv/ask/answer/open_threads/manager verbs send exactly the verb and their arguments."""
    async with HiveClient(hive.path) as client:
        tools = by_name(build_hyperhive_tools(client, manager=True, nap=lambda s: None))
        sent = await tools["send"].handler({"to": "iris", "body": "hi", "in_reply_to": 4})
        await tools["ask"].handler({"question": "ok?", "options": ["y", "n"], "to": "iris"})
        await tools["answer"].handler({"id": 2, "answer": "yes"})
        await tools["get_open_threads"].handler({})
        applied = await tools["request_apply_commit"].handler({"agent": "iris", "commit_ref": "abc"})
        await tools["kill"].handler({"name": "iris"})
    assert hive.requests == [
        {"cmd": "send", "to": "iris", "body": "hi", "in_reply_to": 4},
        {"cmd": "ask", "question": "ok?", "options": ["y", "n"], "to": "iris"},
        {"cmd": "answer", "id": 2, "answer": "yes"},
        {"cmd": "open_threads"},
        {"cmd": "request_apply_commit", "agent": "iris", "commit_ref": "abc"},
        {"cmd": "kill", "name": "iris"},
    ]
    assert "message 31" in text_of(sent) and not sent.get("is_error")
    assert "proposal/3" in text_of(applied)


async def test_recv_formats_messages_with_broadcast_and_redelivery_marks(hive: FakeHive) -> None:
    """recv shows each message readably; broadcasts and redeliveries are marked (architecture §4)."""
    async with HiveClient(hive.path) as client:
        tools = by_name(build_hyperhive_tools(client, manager=False, nap=lambda s: None))
        result = await tools["recv"].handler({"wait_seconds": 5, "max": 4})
    assert hive.requests == [{"cmd": "recv", "wait_seconds": 5, "max": 4}]
    text = text_of(result)
    assert "message 4 from iris\n---\nhello" in text
    assert "message 5 from manager (broadcast — may not need action)" in text
    assert "[redelivered after harness restart — may already be handled]" in text
    assert "(2 more pending)" in text


async def test_ask_says_it_does_not_block(hive: FakeHive) -> None:
    async with HiveClient(hive.path) as client:
        tools = by_name(build_hyperhive_tools(client, manager=False, nap=lambda s: None))
        text = text_of(await tools["ask"].handler({"question": "?"}))
    assert "question 8" in text and "does not wait" in text


REFUSAL = "iris is not in your allowed_recipients"


async def test_a_refusal_becomes_a_tool_error_not_an_exception(short_dir: Path) -> None:
    """ok:false from the core → is_error text with the code and reason; the turn goes on."""

    class Refusing(FakeHive):
        def reply(self, request: dict[str, Any]) -> dict[str, Any]:
            return {"version": 1, "ok": False, "error": REFUSAL, "code": "forbidden"}

    async with Refusing(short_dir / "r.sock", {}) as hive, HiveClient(hive.path) as client:
        tools = by_name(build_hyperhive_tools(client, manager=False, nap=lambda s: None))
        result = await tools["send"].handler({"to": "iris", "body": "x"})
    assert result["is_error"] is True
    assert text_of(result) == "send refused (forbidden): iris is not in your allowed_recipients"


async def test_a_missing_daemon_becomes_a_tool_error(short_dir: Path) -> None:
    async with HiveClient(short_dir / "absent.sock") as client:
        tools = by_name(build_hyperhive_tools(client, manager=False, nap=lambda s: None))
        result = await tools["whoami"].handler({})
    assert result["is_error"] is True and "not running" in text_of(result)


async def test_nap_calls_the_harness_callback_not_the_core(hive: FakeHive) -> None:
    """nap is the harness's: the callback gets the seconds, its text goes back to the model."""
    asked: list[float] = []

    async def nap(seconds: float) -> str:
        asked.append(seconds)
        return f"napping {seconds:g}s"

    async with HiveClient(hive.path) as client:
        tools = by_name(build_hyperhive_tools(client, manager=False, nap=nap))
        result = await tools["nap"].handler({"seconds": 90})
        bad = await tools["nap"].handler({"seconds": -1})
    assert asked == [90.0] and text_of(result) == "napping 90s"
    assert bad["is_error"] is True
    assert hive.requests == []


async def test_the_nap_description_matches_the_loop_messages_wait(hive: FakeHive) -> None:
    """The seed's nap semantics, as the model reads them: no wake-up until the time, messages wait
    (the loop skips the long poll while napping: test_agent_web); nothing claims a message wakes it."""
    async with HiveClient(hive.path) as client:
        tools = by_name(build_hyperhive_tools(client, manager=False, nap=lambda s: None))
        fallback = await tools["nap"].handler({"seconds": 5})
    description = tools["nap"].description
    assert "messages" in description and "wait" in description and "wakes you" not in description
    assert "wait until then" in text_of(fallback) and "wakes you" not in text_of(fallback)


async def test_tool_schemas_are_generated_from_the_request_models() -> None:
    """Each tool offers exactly its protocol request's fields, required ones and bounds (issue 10):
    the schema cannot drift from what the core accepts."""
    from hyperhive import protocol

    verb_of = {"get_open_threads": "open_threads"}
    tools = by_name(build_hyperhive_tools(HiveClient("/nonexistent"), manager=True, nap=lambda s: None))
    models = {m.model_fields["cmd"].annotation.__args__[0]: m for m in protocol.Request.__origin__.__args__}  # type: ignore[attr-defined]
    for name, tool in tools.items():
        if name == "nap":
            assert tool.input_schema["properties"]["seconds"]["maximum"] == protocol.MAX_NAP_SECONDS
            continue
        model = models[verb_of.get(name, name)]
        fields = {f for f in model.model_fields if f != "cmd"}
        required = {f for f, info in model.model_fields.items() if info.is_required() and f != "cmd"}
        assert set(tool.input_schema["properties"]) == fields, name
        assert set(tool.input_schema["required"]) == required, name
        assert tool.input_schema["additionalProperties"] is False
    assert tools["recv"].input_schema["properties"]["wait_seconds"]["maximum"] == protocol.MAX_RECV_WAIT
    assert tools["send"].input_schema["properties"]["in_reply_to"]["minimum"] == 1

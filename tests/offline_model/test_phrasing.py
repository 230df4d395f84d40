"""The offline model understands a newcomer's first phrasings (issue 15), and docs/offline-model.md
lists exactly what it does with them: every example row of the page's first table is played
through `decide` (the real policy) and must call the tool the page names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hyperhive.harness.prompting import format_wake_prompt
from hyperhive.offline_model.phrasing import HELP, newcomer_intent
from hyperhive.offline_model.policy import decide

DOC = Path(__file__).resolve().parents[2] / "docs" / "offline-model.md"
HH = "mcp__hyperhive__"


def first_call(body: str, sender: str = "operator") -> dict[str, Any]:
    request = {"model": "m", "stream": True,
               "messages": [{"role": "user", "content": format_wake_prompt(9, sender, body)}]}  # fmt: skip
    decision = decide(request)
    assert decision.stop_reason == "tool_use", decision
    block: dict[str, Any] = next(b for b in decision.blocks if b["type"] == "tool_use")
    return block


def documented() -> list[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## A newcomer's first words", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| `([a-z_]+)` \|$", table, re.M)
    assert len(rows) >= 8, rows
    return rows


@pytest.mark.parametrize(("phrase", "tool"), documented())
def test_every_documented_phrasing_calls_the_documented_tool(phrase: str, tool: str) -> None:
    call = first_call(phrase)
    assert call["name"] == HH + tool, (phrase, call)
    if tool in ("request_spawn", "request_init_config"):
        assert call["input"]["name"] == "zed"


def test_the_description_and_politeness_are_understood() -> None:
    call = first_call("Hi! Could you please create a new agent named Zed, for reviewing pull requests? thanks")
    assert call["input"] == {"name": "zed", "description": "reviewing pull requests"}
    assert first_call("I would like you to initialize zed.")["input"] == {"name": "zed"}


def test_help_replies_to_the_sender_with_the_list() -> None:
    call = first_call("what can you do?", sender="operator")
    assert call["input"] == {"to": "operator", "body": HELP, "in_reply_to": 9}
    assert "create an agent called NAME" in HELP and "init NAME" in HELP


@pytest.mark.parametrize("body", ["create an agent", "start zed", "relay hi to bob", "initiative matters", "zed"])
def test_other_messages_are_not_taken_for_a_spawn(body: str) -> None:
    intent = newcomer_intent(body)
    assert intent is None or intent.tool not in ("request_spawn", "request_init_config"), intent

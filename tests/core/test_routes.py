"""One allow-list for every path that carries an agent's text to another agent (issue 9 item 1),
`in_reply_to` that must name a message the sender saw, and duplicate JSON keys (issue 9
"Small"). Driven through the daemon's real sockets; agents are wired without a harness, so
the test speaks as each agent on its own socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import ask_socket, sync, system_events, wire_agent
from hyperhive.agentconfig import default_agent_toml
from hyperhive.core.daemon import Daemon
from hyperhive.names import MANAGER
from hyperhive.protocol import ErrorCode


def toml_allowing(name: str, allowed: list[str]) -> str:
    lines = [
        f"allowed_recipients = {json.dumps(allowed)}" if line.startswith("allowed_recipients =") else line
        for line in default_agent_toml(name).splitlines()
    ]
    return "\n".join(lines) + "\n"


@dataclass
class Hive:
    daemon: Daemon
    host: Path
    alpha: Path  # allowed ["operator", "manager"] only
    beta: Path  # default config: anyone
    manager: Path

    def questions(self) -> list[dict[str, Any]]:
        assert self.daemon.services is not None
        return sync(self.daemon.services.questions.pending())

    def texts_for(self, name: str) -> list[str]:
        assert self.daemon.services is not None
        return [m.body for m in sync(self.daemon.services.broker.recent(name, 100))]


@pytest.fixture
async def rhive(hive: Daemon) -> AsyncIterator[Hive]:
    alpha = await wire_agent(hive, "alpha", toml=toml_allowing("alpha", ["operator", "manager"]))
    beta = await wire_agent(hive, "beta")
    manager = await wire_agent(hive, MANAGER)
    yield Hive(hive, hive.paths.host_socket, alpha, beta, manager)


def refused(reply: dict[str, Any], code: str) -> str:
    assert reply["ok"] is False and reply["code"] == code, reply
    assert "\n" not in reply["error"]
    return str(reply["error"])


async def test_ask_is_held_to_the_same_allow_list_as_send(rhive: Hive) -> None:
    """alpha may not send to beta, and may not ask beta either: no question row, nothing in
    beta's inbox (issue 9 item 1)."""
    sent = await ask_socket(rhive.alpha, {"cmd": "send", "to": "beta", "body": "psst"})
    refused(sent, ErrorCode.FORBIDDEN)
    asked = await ask_socket(rhive.alpha, {"cmd": "ask", "question": "psst, run this?", "to": "beta"})
    assert "may not send to 'beta'" in refused(asked, ErrorCode.FORBIDDEN)
    assert rhive.questions() == []
    assert not [t for t in rhive.texts_for("beta") if "psst" in t]
    ok = await ask_socket(rhive.alpha, {"cmd": "ask", "question": "may I?", "to": MANAGER})
    assert ok["ok"] is True, ok
    ok = await ask_socket(rhive.alpha, {"cmd": "ask", "question": "operator, may I?"})
    assert ok["ok"] is True, ok


async def test_an_answer_is_held_to_the_answerers_allow_list(rhive: Hive) -> None:
    """beta asks alpha; alpha (allowed operator and manager only) cannot carry its text to beta
    through `answer`; the question stays open for the operator (issue 9 item 1)."""
    asked = await ask_socket(rhive.beta, {"cmd": "ask", "question": "what is the key?", "to": "alpha"})
    assert asked["ok"] is True, asked
    answer = await ask_socket(rhive.alpha, {"cmd": "answer", "id": asked["id"], "answer": "smuggled text"})
    refused(answer, ErrorCode.FORBIDDEN)
    assert [q["id"] for q in rhive.questions()] == [asked["id"]]
    assert daemon_events(rhive, "beta", "question_answered") == []
    # the operator may still answer it
    assert (await ask_socket(rhive.host, {"cmd": "answer", "id": asked["id"], "answer": "none"}))["ok"] is True


def daemon_events(rhive: Hive, to: str, event: str) -> list[dict[str, Any]]:
    assert rhive.daemon.services is not None
    return system_events(rhive.daemon.services, to, event)


async def test_an_agent_whose_config_cannot_be_read_reaches_the_manager_only(hive: Daemon) -> None:
    """No applied config: the allow-list fails closed to the manager (issue 9 item 1)."""
    ghost = await wire_agent(hive, "ghost", seed=False)
    await wire_agent(hive, "beta")
    await wire_agent(hive, MANAGER)
    for req in ({"cmd": "send", "to": "beta", "body": "x"}, {"cmd": "send", "to": "operator", "body": "x"},
                {"cmd": "send", "to": "*", "body": "x"}, {"cmd": "ask", "question": "x", "to": "beta"}):  # fmt: skip
        refused(await ask_socket(ghost, req), ErrorCode.FORBIDDEN)
    assert (await ask_socket(ghost, {"cmd": "send", "to": MANAGER, "body": "help"}))["ok"] is True


async def test_in_reply_to_must_name_a_message_the_sender_received_or_sent(rhive: Hive) -> None:
    """A reply to a message that does not exist, or that went to someone else, is refused with
    `unknown_reply` and writes nothing; a reply to a message addressed to the sender, or sent by
    it, goes through (issue 9)."""
    to_beta = await ask_socket(rhive.host, {"cmd": "send", "to": "beta", "body": "for beta only"})
    to_mgr = await ask_socket(rhive.host, {"cmd": "send", "to": MANAGER, "body": "for the manager"})
    before = rhive.texts_for(MANAGER)
    for ref in (to_beta["id"], 999_999):
        reply = await ask_socket(rhive.alpha, {"cmd": "send", "to": MANAGER, "body": "re", "in_reply_to": ref})
        assert f"#{ref}" in refused(reply, ErrorCode.UNKNOWN_REPLY)
    assert rhive.texts_for(MANAGER) == before
    ok = await ask_socket(rhive.manager, {"cmd": "send", "to": "beta", "body": "re", "in_reply_to": to_mgr["id"]})
    assert ok["ok"] is True, ok
    mine = await ask_socket(rhive.manager, {"cmd": "send", "to": "beta", "body": "and", "in_reply_to": ok["id"]})
    assert mine["ok"] is True, mine


@pytest.mark.parametrize("sock", ["host", "alpha"])
async def test_a_duplicate_key_is_refused_not_last_one_wins(rhive: Hive, sock: str) -> None:
    """`{"to":"beta",...,"to":"manager"}` would be read two ways; it is refused with
    `duplicate_key`, at any depth, and nothing is written (issue 9)."""
    path = rhive.host if sock == "host" else rhive.alpha
    before = rhive.texts_for(MANAGER), rhive.texts_for("beta")
    lines = [b'{"cmd":"send","to":"beta","body":"x","to":"manager"}',
             b'{"cmd":"send","cmd":"send","to":"manager","body":"x"}',
             b'{"cmd":"ask","question":"q","options":[],"to":"manager","to":null}']  # fmt: skip
    for line in lines:
        reply = await raw(path, line)
        refused(reply, ErrorCode.DUPLICATE_KEY)
    assert (rhive.texts_for(MANAGER), rhive.texts_for("beta")) == before
    assert rhive.questions() == []


async def raw(path: Path, line: bytes) -> dict[str, Any]:
    """One raw request line (bytes as given) on a fresh connection; the reply decoded."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(line + b"\n")
        await writer.drain()
        async with asyncio.timeout(10):
            reply: dict[str, Any] = json.loads(await reader.readline())
        return reply
    finally:
        writer.close()
        await writer.wait_closed()

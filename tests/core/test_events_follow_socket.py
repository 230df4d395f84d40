"""`events_follow` on host.sock (issue 10): `hive events --follow` reaches an agent's live trail
through the core like every other operator verb. With no harness answering, the stream says
`waiting` and stays open; an unknown agent is refused; the verb is the operator's only.
The live relay itself runs end to end in tests/e2e/test_events_follow.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hivetest import ask_socket, wire_agent
from hyperhive.core.daemon import Daemon
from hyperhive.protocol import MAX_LINE_BYTES

BOUND = 10


async def _line(reader: asyncio.StreamReader) -> dict[str, Any]:
    async with asyncio.timeout(BOUND):
        raw = await reader.readline()
    assert raw, "the stream closed"
    reply: dict[str, Any] = json.loads(raw)
    return reply


async def test_following_an_agent_that_is_not_running_says_waiting_once(hive: Daemon) -> None:
    await wire_agent(hive, "idle")  # registered, its socket open, no harness (no web.sock)
    reader, writer = await asyncio.open_unix_connection(str(hive.paths.host_socket), limit=MAX_LINE_BYTES + 2)
    try:
        writer.write(json.dumps({"cmd": "events_follow", "name": "idle", "after": 3}).encode() + b"\n")
        await writer.drain()
        ack = await _line(reader)
        assert ack["ok"] is True and ack["following"] == "idle" and ack["after"] == 3
        assert (await _line(reader))["event"] == {"kind": "waiting", "data": {"agent": "idle"}}
    finally:
        writer.close()
        await writer.wait_closed()
    assert (await ask_socket(hive.paths.host_socket, {"cmd": "ping"}))["ok"] is True


async def test_an_unknown_agent_is_refused_and_agents_cannot_follow(hive: Daemon) -> None:
    reply = await ask_socket(hive.paths.host_socket, {"cmd": "events_follow", "name": "ghost"})
    assert reply["ok"] is False and reply["code"] == "not_found"
    sock = await wire_agent(hive, "nosy")
    reply = await ask_socket(sock, {"cmd": "events_follow", "name": "nosy"})
    assert reply["ok"] is False and reply["code"] == "unknown_verb"

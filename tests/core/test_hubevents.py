"""The hub's events are typed (issue 10): every kind published in src/ is a `HubKind` with a
payload model, and the events a real daemon streams on `subscribe` fit their models."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hivetest import ask_socket, wire_agent
from hyperhive.core.daemon import Daemon
from hyperhive.hubevents import HUB_KINDS, PAYLOADS, check_event
from hyperhive.protocol import MAX_LINE_BYTES

SRC = Path(__file__).resolve().parents[2] / "src" / "hyperhive"
BOUND = 10


def test_every_kind_published_in_the_source_is_a_hub_kind() -> None:
    """`hub.publish("<kind>", …)` literals anywhere in src/ name kinds HubKind lists."""
    found = set()
    for path in SRC.rglob("*.py"):
        found |= set(re.findall(r"""\.publish\(\s*["']([a-z_]+)["']""", path.read_text(encoding="utf-8")))
    assert len(found) > 10
    assert found <= HUB_KINDS, sorted(found - HUB_KINDS)


def test_a_payload_that_misses_a_field_or_names_no_kind_is_reported() -> None:
    """check_event says no (and logs) for an unknown kind or a payload without its fields."""
    assert check_event("agent_added", {"name": "x"})
    assert not check_event("agent_added", {})
    assert not check_event("no_such_kind", {})
    assert set(PAYLOADS) == HUB_KINDS


async def test_the_events_a_real_daemon_streams_fit_their_models(
    hive: Daemon, caplog: pytest.LogCaptureFixture
) -> None:
    """Messages, a question and its answer, a destroy (kept state): every event line of `subscribe` validates against
    PAYLOADS[kind], and the hub reported no mismatch meanwhile."""
    reader, writer = await asyncio.open_unix_connection(str(hive.paths.host_socket), limit=MAX_LINE_BYTES + 2)
    try:
        writer.write(b'{"cmd": "subscribe"}\n')
        await writer.drain()
        async with asyncio.timeout(BOUND):
            assert json.loads(await reader.readline())["subscribed"] is True
        sock = await wire_agent(hive, "iris")
        assert (await ask_socket(sock, {"cmd": "send", "to": "operator", "body": "hi"}))["ok"]
        asked = await ask_socket(sock, {"cmd": "ask", "question": "ok?"})
        assert (await ask_socket(hive.paths.host_socket, {"cmd": "answer", "id": asked["id"], "answer": "yes"}))["ok"]
        assert (await ask_socket(hive.paths.host_socket, {"cmd": "send", "to": "iris", "body": "go"}))["ok"]
        assert (await ask_socket(sock, {"cmd": "recv", "max": 5}))["ok"]
        hive.paths.agent("iris").root.mkdir(parents=True, exist_ok=True)  # so its state is kept
        assert (await ask_socket(hive.paths.host_socket, {"cmd": "destroy", "name": "iris"}))["ok"]
        seen: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(BOUND):
            want = {"message_sent", "question_added", "question_resolved", "message_delivered", "agent_removed"}
            while not want <= set(seen):
                event = json.loads(await reader.readline())["event"]
                PAYLOADS[event["kind"]].model_validate(event["data"])
                seen[event["kind"]] = event["data"]
    finally:
        writer.close()
        await writer.wait_closed()
    assert seen["agent_removed"]["kept"]["name"] == "iris"
    assert not [r for r in caplog.records if r.name == "hyperhive.hubevents"], caplog.text

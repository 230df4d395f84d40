"""The offline model's HTTP surface (architecture §10), served by a real uvicorn on a port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from hyperhive.harness.prompting import format_wake_prompt
from hyperhive.offline_model.server import LABEL, OfflineModelServer


@pytest.fixture
async def model() -> AsyncIterator[OfflineModelServer]:
    async with OfflineModelServer(api_key="sekrit") as server:
        yield server


def body(text: str, *, stream: bool, model: str = "claude-x") -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 100,
        "stream": stream,
        "messages": [{"role": "user", "content": format_wake_prompt(1, "operator", text)}],
        "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
    }


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def test_hello_answers_head_and_get(model: OfflineModelServer) -> None:
    """The CLI's `HEAD /api/hello` gets 200; GET says what it is."""
    async with httpx.AsyncClient(base_url=model.url, timeout=10) as http:
        assert (await http.head("/api/hello")).status_code == 200
        assert (await http.get("/api/hello")).json()["model"] == LABEL


async def test_unknown_routes_get_a_404_error_object(model: OfflineModelServer) -> None:
    async with httpx.AsyncClient(base_url=model.url, timeout=10) as http:
        reply = await http.post("/v1/complete", json={})
    assert reply.status_code == 404
    assert reply.json()["error"]["type"] == "not_found_error"
    assert "/v1/complete" in reply.json()["error"]["message"]


async def test_streaming_answer_has_the_messages_api_event_sequence(model: OfflineModelServer) -> None:
    """A tool call streams message_start, block start/delta(input_json)/stop, message_delta, message_stop."""
    async with httpx.AsyncClient(base_url=model.url, timeout=10, headers={"x-api-key": "sekrit"}) as http:
        reply = await http.post("/v1/messages?beta=true", json=body("bash echo hi", stream=True))
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(reply.text)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[1][1]["content_block"]["name"] == "Bash"
    assert json.loads(events[2][1]["delta"]["partial_json"])["command"] == "echo hi"
    assert events[4][1]["delta"]["stop_reason"] == "tool_use"
    assert events[4][1]["usage"]["output_tokens"] > 0


async def test_non_streaming_answer_is_one_json_message(model: OfflineModelServer) -> None:
    async with httpx.AsyncClient(base_url=model.url, timeout=10, headers={"x-api-key": "sekrit"}) as http:
        reply = await http.post("/v1/messages", json=body("echo hello", stream=False))
    message = reply.json()
    assert message["type"] == "message" and message["stop_reason"] == "end_turn"
    assert message["content"] == [{"type": "text", "text": "hello"}]


async def test_count_tokens_answers(model: OfflineModelServer) -> None:
    async with httpx.AsyncClient(base_url=model.url, timeout=10, headers={"x-api-key": "sekrit"}) as http:
        reply = await http.post("/v1/messages/count_tokens?beta=true", json=body("x", stream=False))
    assert reply.json()["input_tokens"] > 0


async def test_requests_are_logged_for_tests(model: OfflineModelServer) -> None:
    """`GET /_offline/requests` lists model, last user text and offered tools per request."""
    async with httpx.AsyncClient(base_url=model.url, timeout=10, headers={"x-api-key": "sekrit"}) as http:
        await http.post("/v1/messages", json=body("model?", stream=False, model="claude-haiku-9"))
        log = (await http.get("/_offline/requests")).json()
    assert log[-1]["model"] == "claude-haiku-9"
    assert log[-1]["last_user_text"].endswith("model?")
    assert log[-1]["tools"] == ["Bash"]
    assert model.requests == log


async def test_a_wrong_api_key_gets_401(model: OfflineModelServer) -> None:
    async with httpx.AsyncClient(base_url=model.url, timeout=10, headers={"x-api-key": "nope"}) as http:
        reply = await http.post("/v1/messages", json=body("echo x", stream=True))
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"


async def test_overflow_answers_prompt_too_long(model: OfflineModelServer) -> None:
    async with httpx.AsyncClient(base_url=model.url, timeout=10, headers={"x-api-key": "sekrit"}) as http:
        reply = await http.post("/v1/messages", json=body("overflow", stream=True))
    assert reply.status_code == 400 and "prompt is too long" in reply.json()["error"]["message"]


async def test_stop_is_idempotent() -> None:
    server = OfflineModelServer()
    await server.start()
    assert server.port > 0
    await server.stop()
    await server.stop()

"""Usage accounting through the gateway (issue 12): every response's usage — streamed or not —
is recorded per agent, model and request, durably (it survives a daemon restart), and priced
from the one price table with hive.toml's overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from hivetest import make_config, start_daemon, stop_daemon, wire_agent
from hyperhive.config import ApiSettings
from hyperhive.core.gateway import API_SOCKET, RequestUsage
from hyperhive.core.gateway_usage import UsageParser
from hyperhive.core.usage import DEFAULT_PRICES, PriceTable
from hyperhive.harness.prompting import format_wake_prompt
from hyperhive.offline_model.server import OfflineModelServer

KEY = "sk-upstream-usage"


def ask(text: str, model: str, **extra: Any) -> dict[str, Any]:
    content = format_wake_prompt(1, "operator", text)
    return {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": content}], **extra}


def sse_usage(text: str) -> dict[str, int]:
    """What the upstream reported, read from the stream the client got."""
    usage: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("data:"):
            event = json.loads(line[5:])
            if event["type"] == "message_start":
                usage.update(event["message"]["usage"])
            elif event["type"] == "message_delta":
                usage.update(event["usage"])
    return usage


async def test_streamed_and_plain_responses_are_recorded_per_agent_and_model_and_survive_a_restart(
    tmp_path: Path, short_dir: Path
) -> None:
    prices = {"claude-test-x": {"input": 1000.0, "output": 2000.0}}
    async with OfflineModelServer(api_key=KEY) as model:
        config = make_config(tmp_path, short_dir, api=ApiSettings(base=model.url, key=KEY, prices=prices))
        daemon, task = await start_daemon(config)
        try:
            await wire_agent(daemon, "a")
            assert daemon.gateway is not None
            token = daemon.gateway.tokens["a"]
            transport = httpx.AsyncHTTPTransport(uds=str(daemon.paths.agent("a").run / API_SOCKET))
            async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=30) as client:
                hdr = {"x-api-key": token}
                streamed = await client.post(
                    "/v1/messages", json=ask("echo one", "claude-test-x", stream=True), headers=hdr
                )
                plain = await client.post("/v1/messages", json=ask("echo two two", "claude-sonnet-4-5"), headers=hdr)
                counted = await client.post("/v1/messages/count_tokens", json=ask("x", "claude-test-x"), headers=hdr)
            assert streamed.status_code == plain.status_code == counted.status_code == 200
            s_usage, p_usage = sse_usage(streamed.text), plain.json()["usage"]
            rows = await daemon.gateway.usage.recent("a")
            assert len(rows) == 2, "count_tokens is not a model response"
            by_model = {r["model"]: r for r in rows}
            x, sonnet = by_model["claude-test-x"], by_model["claude-sonnet-4-5"]
            assert (x["input_tokens"], x["output_tokens"]) == (s_usage["input_tokens"], s_usage["output_tokens"])
            assert (sonnet["input_tokens"], sonnet["output_tokens"]) == (
                p_usage["input_tokens"],
                p_usage["output_tokens"],
            )
            assert x["request_id"].startswith("msg_offline_")
            expected_x = (x["input_tokens"] * 1000.0 + x["output_tokens"] * 2000.0) / 1e6
            assert abs(x["cost_usd"] - expected_x) < 1e-9, "the hive.toml override prices claude-test-x"
            expected_s = (sonnet["input_tokens"] * 3.0 + sonnet["output_tokens"] * 15.0) / 1e6
            assert abs(sonnet["cost_usd"] - expected_s) < 1e-9
            before = await daemon.gateway.usage.summary()
        finally:
            await stop_daemon(daemon, task)
        daemon, task = await start_daemon(config)
        try:
            assert daemon.gateway is not None
            after = await daemon.gateway.usage.summary()
            assert after["agents"] == before["agents"] and after["agents"]["a"]["today"]["requests"] == 2
            assert after["today"]["usd"] == before["today"]["usd"] > 0
        finally:
            await stop_daemon(daemon, task)


def test_the_parser_reads_cache_figures_across_chunk_boundaries() -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "m1",
            "model": "claude-opus-4-5",
            "usage": {
                "input_tokens": 10,
                "output_tokens": 1,
                "cache_read_input_tokens": 500,
                "cache_creation_input_tokens": 70,
            },
        },
    }
    delta = {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 42}}
    stream = (f"event: message_start\ndata: {json.dumps(start)}\n\nevent: ping\ndata: {{}}\n\n"
              f"event: message_delta\ndata: {json.dumps(delta)}\n\n").encode()  # fmt: skip
    parser = UsageParser(sse=True)
    for i in range(0, len(stream), 7):
        parser.feed(stream[i : i + 7])
    usage = parser.usage()
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"], usage["cache_read_tokens"], usage["cache_write_tokens"]) == (
        10,
        42,
        500,
        70,
    )
    assert usage["model"] == "claude-opus-4-5" and usage["id"] == "m1"
    assert UsageParser(sse=True).usage() is None
    table = PriceTable()
    assert table.price("claude-opus-4-5-20251101") == DEFAULT_PRICES["claude-opus-4-5"]
    assert table.price("claude-haiku-4-5") == DEFAULT_PRICES["claude-haiku-4-5"]
    assert table.price("mystery") == DEFAULT_PRICES["*"]
    u = RequestUsage("a", "claude-opus-4-5", "m1", 10, 42, 500, 70)
    assert abs(table.price(u.model).cost(u) - (10 * 5 + 42 * 25 + 500 * 0.5 + 70 * 6.25) / 1e6) < 1e-12

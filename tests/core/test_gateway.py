"""The model API gateway (issue 12, architecture §13) with the real daemon, real agent sockets and the
offline model as the upstream: the agent's token is good on its own api.sock only, the upstream
sees the real key, streaming passes through as it comes, HEAD/count_tokens/errors are forwarded
as they are, and bad input or a broken upstream gives a readable error, never a hang."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import make_config, start_daemon, stop_daemon, wire_agent
from hyperhive.config import ApiSettings, HiveConfig, load_config, read_key_file
from hyperhive.core.daemon import Daemon
from hyperhive.core.gateway import API_SOCKET, retry_after_seconds
from hyperhive.errors import StartupError
from hyperhive.harness.prompting import format_wake_prompt
from hyperhive.offline_model.server import OfflineModelServer

REAL_KEY = "sk-upstream-REAL-0123456789"
ASGIApp = Callable[..., Awaitable[None]]


def header_recorder(app: ASGIApp, seen: list[dict[str, str]]) -> ASGIApp:
    """Wrap the upstream's ASGI app to record each request's path and headers."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            seen.append({"path": scope["path"], "method": scope["method"], **headers})
        await app(scope, receive, send)

    wrapped.state = app.state  # type: ignore[attr-defined]  # OfflineModelServer.requests reads it
    return wrapped


class Upstream:
    def __init__(self) -> None:
        self.model = OfflineModelServer(api_key=REAL_KEY)
        self.seen: list[dict[str, str]] = []
        self.model.app = header_recorder(self.model.app, self.seen)  # type: ignore[assignment]


async def _daemon(tmp_path: Path, run_dir: Path, api: ApiSettings) -> tuple[Daemon, asyncio.Task[None]]:
    return await start_daemon(make_config(tmp_path, run_dir, api=api))


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    async with up.model:
        yield up


@pytest.fixture
async def gw(tmp_path: Path, short_dir: Path, upstream: Upstream) -> AsyncIterator[Daemon]:
    api = ApiSettings(base=upstream.model.url, key=REAL_KEY, max_body=64 * 1024, max_concurrent=2)
    daemon, task = await _daemon(tmp_path, short_dir, api)
    try:
        yield daemon
    finally:
        await stop_daemon(daemon, task)


async def agent_client(daemon: Daemon, name: str) -> tuple[httpx.AsyncClient, str]:
    """An HTTP client on `name`'s api.sock (a fresh agent wired without a harness) and its token."""
    await wire_agent(daemon, name)
    assert daemon.gateway is not None
    sock = daemon.paths.agent(name).run / API_SOCKET
    transport = httpx.AsyncHTTPTransport(uds=str(sock))
    client = httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30)
    return client, daemon.gateway.tokens[name]


def ask(text: str, **extra: Any) -> dict[str, Any]:
    """A Messages API body whose last user message is a hyperhive wake prompt saying `text`."""
    content = format_wake_prompt(1, "operator", text)
    return {"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": content}], **extra}


MESSAGE = ask("echo hello there")


async def test_the_agent_token_works_on_its_own_socket_only_and_the_upstream_sees_the_real_key(
    gw: Daemon, upstream: Upstream
) -> None:
    a, a_token = await agent_client(gw, "a")
    b, b_token = await agent_client(gw, "b")
    async with a, b:
        ok = await a.post("/v1/messages", json=MESSAGE, headers={"x-api-key": a_token})
        assert ok.status_code == 200, ok.text
        assert "hello there" in json.dumps(ok.json()["content"])
        stolen = await a.post("/v1/messages", json=MESSAGE, headers={"x-api-key": b_token})
        assert stolen.status_code == 401
        assert stolen.json()["error"]["type"] == "authentication_error"
        assert "not valid on this socket" in stolen.json()["error"]["message"]
        none = await b.post("/v1/messages", json=MESSAGE)
        assert none.status_code == 401
        bearer = await b.post("/v1/messages", json=MESSAGE, headers={"authorization": f"Bearer {b_token}"})
        assert bearer.status_code == 200
    posts = [h for h in upstream.seen if h["path"] == "/v1/messages"]
    assert len(posts) == 2, "refused requests never reach the upstream"
    assert all(h["x-api-key"] == REAL_KEY for h in posts)
    for h in upstream.seen:
        assert a_token not in json.dumps(h) and b_token not in json.dumps(h)


async def test_streaming_head_count_tokens_and_errors_are_forwarded_faithfully(gw: Daemon, upstream: Upstream) -> None:
    a, token = await agent_client(gw, "a")
    hdr = {"x-api-key": token}
    async with a:
        head = await a.head("/api/hello")
        assert head.status_code == 200
        count = await a.post("/v1/messages/count_tokens", json=MESSAGE, headers=hdr)
        assert count.status_code == 200 and count.json()["input_tokens"] > 0
        missing = await a.get("/v1/nothing-here", headers=hdr)
        assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
        bad = await a.post("/v1/messages", content=b"not json", headers={**hdr, "content-type": "application/json"})
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]["message"]
        # a slow streamed answer arrives chunk by chunk: the first text delta comes before the end
        body = ask("slow 2", stream=True)
        events: list[str] = []
        first_delta_seen_before_stop = False
        async with a.stream("POST", "/v1/messages", json=body, headers=hdr) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            async for line in resp.aiter_lines():
                if line.startswith("event: "):
                    events.append(line[7:])
                    if line == "event: content_block_delta" and "message_stop" not in events:
                        first_delta_seen_before_stop = True
        assert events[0] == "message_start" and events[-1] == "message_stop"
        assert events.count("content_block_delta") > 1 and first_delta_seen_before_stop


async def test_a_huge_body_and_too_many_concurrent_requests_get_clear_errors(gw: Daemon, upstream: Upstream) -> None:
    a, token = await agent_client(gw, "a")
    b, b_token = await agent_client(gw, "b")
    hdr = {"x-api-key": token}
    async with a, b:
        huge = await a.post("/v1/messages", content=b"x" * (65 * 1024), headers=hdr)
        assert huge.status_code == 413 and "over 65536 bytes" in huge.json()["error"]["message"]
        slow = ask("slow 3", stream=True)
        started = [asyncio.Event(), asyncio.Event()]

        async def hold(i: int) -> int:
            async with a.stream("POST", "/v1/messages", json=slow, headers=hdr) as resp:
                async for _ in resp.aiter_bytes():
                    started[i].set()
                return resp.status_code

        holders = [asyncio.create_task(hold(i)) for i in range(2)]
        await asyncio.gather(*(e.wait() for e in started))
        third = await a.post("/v1/messages", json=MESSAGE, headers=hdr)
        assert third.status_code == 429 and "cap 2" in third.json()["error"]["message"]
        other = await b.post("/v1/messages", json=MESSAGE, headers={"x-api-key": b_token})
        assert other.status_code == 200, "one agent's cap does not starve another"
        assert await asyncio.gather(*holders) == [200, 200]
        after = await a.post("/v1/messages", json=MESSAGE, headers=hdr)
        assert after.status_code == 200


class BadUpstream:
    """An upstream that misbehaves as the query string says: hang, reset, html, cut."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.writers: list[asyncio.StreamWriter] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            await _bad_upstream(reader, writer, self.done)
        finally:
            writer.close()

    def close(self) -> None:
        self.done.set()
        for w in self.writers:
            w.close()


async def _bad_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, done: asyncio.Event) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    line = head.split(b"\r\n", 1)[0].decode()
    if "mode=hang" in line:
        await done.wait()
    elif "mode=reset" in line:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()
        return
    elif "mode=html" in line:
        body = b"<html><body>502 Bad Gateway (nginx)</body></html>"
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n%s"
                     % (len(body), body))  # fmt: skip
    elif "mode=cut" in line:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 5000\r\n\r\n"
                     b'event: message_start\ndata: {"type":"message_start"}\n\n')  # fmt: skip
        await writer.drain()
    writer.close()


async def test_an_upstream_that_hangs_resets_or_answers_html_gives_a_readable_error(
    tmp_path: Path, short_dir: Path
) -> None:
    bad = BadUpstream()
    server = await asyncio.start_server(bad, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = ApiSettings(base=f"http://127.0.0.1:{port}", key=REAL_KEY, timeout=1.0)
    daemon, task = await _daemon(tmp_path, short_dir, api)
    try:
        a, token = await agent_client(daemon, "a")
        hdr = {"x-api-key": token}
        async with a:
            hang = await a.post("/v1/messages?mode=hang", json=MESSAGE, headers=hdr)
            assert hang.status_code == 504 and "did not answer in time" in hang.json()["error"]["message"]
            reset = await a.post("/v1/messages?mode=reset", json=MESSAGE, headers=hdr)
            assert reset.status_code == 502 and "unreachable" in reset.json()["error"]["message"]
            html = await a.post("/v1/messages?mode=html", json=MESSAGE, headers=hdr)
            assert html.status_code == 502
            assert "answered 502 with text/html" in html.json()["error"]["message"]
            assert "nginx" in html.json()["error"]["message"]
            cut = await a.post("/v1/messages?mode=cut", json=MESSAGE, headers=hdr)
            assert cut.status_code == 200
            assert "event: error" in cut.text and "broke off the answer" in cut.text
    finally:
        bad.close()
        server.close()
        await server.wait_closed()
        await stop_daemon(daemon, task)


def test_the_key_file_must_be_private_and_the_key_never_shows_in_the_config_repr(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(REAL_KEY + "\n")
    key.chmod(0o644)
    with pytest.raises(StartupError, match="chmod 600"):
        read_key_file(key)
    key.chmod(0o600)
    state = tmp_path / "state"
    config = load_config(state_dir=state, run_dir=tmp_path / "run", api_key_file=key, environ={})
    assert config.api.key == REAL_KEY and config.gateway
    assert REAL_KEY not in repr(config)
    direct = load_config(state_dir=state, run_dir=tmp_path / "run", api_key_file=key, environ={},
                         agent_env={"ANTHROPIC_BASE_URL": "http://x"})  # fmt: skip
    assert not direct.gateway, "--agent-env ANTHROPIC_* keeps the direct mode"
    from_env = load_config(state_dir=state, run_dir=tmp_path / "run", environ={"ANTHROPIC_API_KEY": "k"})
    assert from_env.api.key == "k" and from_env.api.upstream == "https://api.anthropic.com"
    state.mkdir(exist_ok=True)
    (state / "hive.toml").write_text('[api]\nbase = "http://up.example:8080/"\n')
    toml = load_config(state_dir=state, run_dir=tmp_path / "run", environ={})
    assert toml.gateway and toml.api.upstream == "http://up.example:8080"
    assert replace(toml, agent_env={"CLAUDE_CODE_OAUTH_TOKEN": "t"}).gateway is False
    assert isinstance(toml, HiveConfig)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("1.5") == 1.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


async def test_a_rate_limit_longer_than_the_gateway_waits_is_passed_to_the_cli_as_it_came(
    tmp_path: Path, short_dir: Path, upstream: Upstream
) -> None:
    api = ApiSettings(base=upstream.model.url, key=REAL_KEY, max_rate_wait=1.0)
    daemon, task = await _daemon(tmp_path, short_dir, api)
    try:
        a, token = await agent_client(daemon, "a")
        async with a:
            resp = await a.post("/v1/messages", json=ask("ratelimit 30"), headers={"x-api-key": token})
        assert resp.status_code == 429 and resp.headers["retry-after"] == "30"
        assert resp.json()["error"]["type"] == "rate_limit_error"
        assert daemon.services is not None and daemon.services.lifecycle.row("a").blocked_until is None
    finally:
        await stop_daemon(daemon, task)

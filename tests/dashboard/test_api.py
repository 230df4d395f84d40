"""The dashboard's JSON API, live stream and agent proxy over real HTTP against an in-process
daemon (issue 6 "Live model", "Sections"; architecture §9)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from dashkit import Dash, raw_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from hyperhive.core.lifecycle import AgentRuntime


async def read_events(lines: AsyncIterator[str], count: int) -> list[dict[str, Any]]:
    """The next `count` SSE events (id, event, data) from a line iterator."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with asyncio.timeout(10):
        async for line in lines:
            if line == "":
                if "data" in current:
                    events.append(current)
                    if len(events) == count:
                        return events
                current = {}
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(": ")
                if field == "data":
                    current["data"] = json.loads(value)
                elif field == "id":
                    current["id"] = int(value)
                elif field == "event":
                    current["event"] = value
    raise AssertionError(f"stream ended after {len(events)} events")


async def test_state_snapshot_carries_seq_and_every_section(dash: Dash, client: httpx.AsyncClient) -> None:
    """GET /api/state: agents, kept state, approvals (with diff), questions, operator inbox, flow,
    cage facts, counts and the hub seq at snapshot time. Issue 6 "Live model"."""
    s = dash.services
    await s.approvals.request_spawn("alpha", "the first", requested_by="manager")
    await s.questions.ask("manager", "ok to go?", options=["yes", "no"], ttl_seconds=600)
    await s.broker.send("system", "operator", "hello operator")
    before = s.hub.seq
    r = await client.get("/api/state")
    assert r.status_code == 200
    snap = r.json()
    # the hub's seq when the snapshot was taken: a follow-up event of the calls above (published
    # from a task) may land on either side of it, never outside these two readings
    assert snap["ok"] is True and before <= snap["seq"] <= s.hub.seq and before > 0
    assert {
        "agents",
        "kept",
        "approvals",
        "questions",
        "inbox",
        "flow",
        "cage",
        "cage_reason",
        "isolated",
        "counts",
    } <= set(snap)
    assert snap["cage"] == "process" and snap["isolated"] is False
    [approval] = snap["approvals"]
    assert approval["agent"] == "alpha" and "diff" in approval
    [question] = snap["questions"]
    assert question["options"] == ["yes", "no"] and question["deadline_at"] is not None
    assert snap["inbox"][0]["body"] == "hello operator"
    assert snap["flow"][-1]["preview"] == "hello operator"
    assert snap["counts"] == {"agents_up": 0, "agents_down": 0, "approvals": 1, "questions": 1, "kept": 0,
                              "dead_letters": 0}  # fmt: skip
    assert r.headers["cache-control"] == "no-store"


async def test_stream_sends_typed_events_after_the_snapshot_seq(dash: Dash, client: httpx.AsyncClient) -> None:
    """/api/stream: SSE events named by kind, id = hub seq, only those after `last_event_id`."""
    s = dash.services
    await s.broker.send("system", "operator", "before the snapshot")
    seq = (await client.get("/api/state")).json()["seq"]
    async with client.stream("GET", f"/api/stream?last_event_id={seq}") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        await s.questions.ask("alpha", "what now?")
        [event] = await read_events(r.aiter_lines(), 1)
    assert event["id"] == seq + 1
    assert event["event"] == "question_added"
    assert event["data"]["kind"] == "question_added" and event["data"]["data"]["question"] == "what now?"


async def test_stream_resumes_from_last_event_id_without_gaps_or_duplicates(
    dash: Dash, client: httpx.AsyncClient
) -> None:
    """A reconnect with Last-Event-ID gets exactly the events it missed, in order. Issue 6."""
    s = dash.services
    seq = s.hub.seq
    async with client.stream("GET", f"/api/stream?last_event_id={seq}") as r:
        for i in range(3):
            await s.broker.send("system", "operator", f"m{i}")
        first = await read_events(r.aiter_lines(), 3)
    last = first[-1]["id"]
    for i in range(3, 6):  # published while nobody listens
        await s.broker.send("system", "operator", f"m{i}")
    async with client.stream("GET", "/api/stream", headers={"last-event-id": str(last)}) as r:
        await s.broker.send("system", "operator", "m6")
        rest = await read_events(r.aiter_lines(), 4)
    ids = [e["id"] for e in first + rest]
    assert ids == list(range(seq + 1, seq + 8))
    assert [e["data"]["data"]["preview"] for e in first + rest] == [f"m{i}" for i in range(7)]


async def test_approvals_resolve_by_api_and_errors_map_to_status(dash: Dash, client: httpx.AsyncClient) -> None:
    """Request-spawn queues an approval; deny records the reason; resolving twice is 409, an
    unknown id 404. Issue 6 "P3NDING APPR0VALS"."""
    r = await client.post("/api/request-spawn", json={"name": "beta", "description": "does beta things"})
    assert r.status_code == 200, r.text
    aid = r.json()["approval"]["id"]
    assert [a["id"] for a in (await dash.services.approvals.pending())] == [aid]
    r = await client.post("/api/request-spawn", json={"name": "beta"})
    assert r.status_code == 409
    r = await client.post(f"/api/approvals/{aid}/deny", data={"note": "not now"})
    assert r.status_code == 200, r.text
    assert r.json()["approval"]["status"] == "denied" and r.json()["approval"]["note"] == "not now"
    assert (await client.post(f"/api/approvals/{aid}/approve")).status_code == 409
    assert (await client.post("/api/approvals/9999/deny", json={})).status_code == 404
    assert (await client.post("/api/request-spawn", json={"name": "Bad Name"})).status_code == 400
    assert (await client.post("/api/request-spawn", json={"name": "manager"})).status_code == 400
    assert (
        await client.post("/api/request-spawn", content=b"[1]", headers={"content-type": "application/json"})
    ).status_code == 400
    assert (await dash.services.approvals.pending()) == []


async def test_questions_are_answered_overridden_and_cancelled(dash: Dash, client: httpx.AsyncClient) -> None:
    """The operator answers operator questions, overrides peer ones and cancels. Issue 6."""
    q = dash.services.questions
    await dash.services.repos.seed("alpha")  # a peer question needs alpha's allow-list
    await dash.services.lifecycle.refresh_config("alpha")  # read once, as a start would
    mine = await q.ask("alpha", "which?", options=["a", "b"])
    peer = await q.ask("alpha", "review this?", to="gamma")
    other = await q.ask("alpha", "still there?")
    r = await client.post(f"/api/questions/{mine['id']}/answer", json={"answer": "a"})
    assert r.status_code == 200 and r.json()["question"]["answer"] == "a"
    r = await client.post(f"/api/questions/{peer['id']}/answer", data={"answer": "operator says no"})
    assert r.status_code == 200 and r.json()["question"]["answerer"] == "operator"
    r = await client.post(f"/api/questions/{other['id']}/cancel")
    assert r.status_code == 200 and r.json()["question"]["answer"] == "[cancelled]"
    assert (await client.post(f"/api/questions/{mine['id']}/answer", json={"answer": "b"})).status_code == 409
    assert (await client.post("/api/questions/4242/cancel")).status_code == 404
    assert (await client.post(f"/api/questions/{mine['id']}/answer", json={})).status_code == 400
    assert await q.pending() == []


async def test_operator_send_reaches_the_broker_and_bad_recipients_are_refused(
    dash: Dash, client: httpx.AsyncClient
) -> None:
    """/api/send commits an operator → agent message; unknown or invalid recipients are refused."""
    s = dash.services
    s.lifecycle.agents["delta"] = AgentRuntime("delta", 900, None)  # registered, never started
    r = await client.post("/api/send", json={"to": "@delta", "body": "hi delta"})
    assert r.status_code == 200, r.text
    [mid] = r.json()["ids"]
    msg = await s.broker.get(mid)
    assert msg is not None and (msg.sender, msg.recipient, msg.body) == ("operator", "delta", "hi delta")
    r = await client.post("/api/send", data={"to": "delta", "body": "a reply", "in_reply_to": str(mid)})
    assert r.status_code == 200 and (await s.broker.get(r.json()["ids"][0])).in_reply_to == mid
    assert (await client.post("/api/send", json={"to": "nobody", "body": "x"})).status_code == 404
    assert (await client.post("/api/send", json={"to": "operator", "body": "x"})).status_code == 400
    assert (await client.post("/api/send", json={"to": "Bad/Name", "body": "x"})).status_code == 400
    assert (await client.post("/api/send", json={"to": "delta"})).status_code == 400
    assert (await client.post("/api/send", json={"to": "delta", "body": "x", "in_reply_to": "z"})).status_code == 400


HOSTILE = [
    "..",
    "%2e%2e",
    "%2E%2E",
    "a/b",
    "a%2Fb",
    "..%2f..",
    "Bad",
    "-x",
    "x" * 40,
    "%00",
    "manager%2f..",
    ".",
    "%20",
]
NAME_ROUTES = [
    ("POST", "/api/agents/{}/start"),
    ("POST", "/api/agents/{}/destroy"),
    ("POST", "/api/agents/{}/purge"),
    ("POST", "/api/kept/{}/revive"),
    ("POST", "/api/kept/{}/purge"),
    ("GET", "/agent/{}/"),
    ("GET", "/agent/{}/api/state"),
    ("POST", "/agent/{}/api/cancel"),
]


async def test_hostile_names_are_refused_on_every_name_route(dash: Dash, client: httpx.AsyncClient) -> None:
    """`..`, `a/b`, `%2e%2e` and friends get 400/404 on every route that takes a name, sent byte
    for byte; afterwards the daemon still answers and nothing was written. architecture §2, STYLE §11."""
    headers = {"Cookie": f"hh_session={client.cookies['hh_session']}", "X-CSRF-Token": client.cookies["hh_csrf"]}
    s = dash.services
    before = s.hub.seq
    for method, route in NAME_ROUTES:
        for name in HOSTILE:
            target = route.format(name)
            status, body = await raw_request(dash.port, method, target, headers)
            assert status in (400, 404), (target, status, body[:200])
    assert (await client.get("/api/state")).status_code == 200
    assert s.hub.seq == before, "no hostile request changed anything"
    assert (await s.approvals.pending()) == [] and s.lifecycle.kept_state() == []


async def test_agent_lifecycle_actions_and_kept_state(dash: Dash, client: httpx.AsyncClient) -> None:
    """Approve a spawn, stop / start / restart it, destroy it into K3PT ST4T3, revive (queues a
    spawn) and purge the kept state: each through the dashboard's POSTs. Issue 6 "Sections"."""
    s = dash.services
    aid = (await client.post("/api/request-spawn", json={"name": "epsilon", "description": "e"})).json()["approval"][
        "id"
    ]
    r = await client.post(f"/api/approvals/{aid}/approve")
    assert r.status_code == 200 and r.json()["approval"]["status"] == "approved", r.text
    assert s.lifecycle.agents["epsilon"].state == "running"
    assert (await client.post("/api/agents/epsilon/stop")).status_code == 200
    assert s.lifecycle.agents["epsilon"].state == "stopped"
    rows = {a["name"]: a for a in (await client.get("/api/state")).json()["agents"]}
    assert rows["epsilon"]["state"] == "stopped"
    assert (await client.post("/api/agents/epsilon/start")).status_code == 200
    assert s.lifecycle.agents["epsilon"].state == "running"
    assert (await client.post("/api/agents/epsilon/restart")).status_code == 200
    assert (await client.post("/api/agents/epsilon/explode")).status_code == 404
    assert (await client.post("/api/agents/zeta/stop")).status_code == 404
    # the same answer as `hive purge` (one verb): a live agent's state is not kept state
    r = await client.post("/api/kept/epsilon/purge")
    assert r.status_code == 409 and "is live" in r.json()["error"], r.text
    assert (await client.post("/api/agents/epsilon/destroy")).status_code == 200
    kept = (await client.get("/api/state")).json()["kept"]
    assert [k["name"] for k in kept] == ["epsilon"] and kept[0]["size_bytes"] > 0
    r = await client.post("/api/kept/epsilon/revive")
    assert r.status_code == 200 and r.json()["approval"]["kind"] == "spawn"
    assert [a["agent"] for a in (await s.approvals.pending())] == ["epsilon"]
    assert (await client.post("/api/kept/epsilon/purge")).status_code == 200
    assert s.lifecycle.kept_state() == []
    assert not s.config.paths.agent("epsilon").root.exists()


# ---- the agent proxy -------------------------------------------------------------------------


class FakeHarness:
    """A stand-in for the harness web app on the agent's web.sock."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

        async def echo(request: Request) -> Response:
            body = await request.body()
            return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                                 "headers": dict(request.headers), "body": body.decode()})  # fmt: skip

        async def sse(request: Request) -> Response:
            async def gen() -> AsyncIterator[bytes]:
                yield b"id: 1\ndata: first\n\n"
                await self.release.wait()
                yield b"id: 2\ndata: second\n\n"

            return StreamingResponse(gen(), media_type="text/event-stream")

        async def cookie(request: Request) -> Response:
            return Response("ok", headers={"set-cookie": "hh_session=evil; Path=/", "x-agent": "yes"})

        async def ws(socket: WebSocket) -> None:
            await socket.accept()
            with contextlib.suppress(Exception):
                while True:
                    text = await socket.receive_text()
                    await socket.send_text("echo:" + text)

        self.app = Starlette(routes=[
            Route("/echo", echo, methods=["GET", "POST", "PUT", "DELETE"]),
            Route("/sse", sse), Route("/cookie", cookie), WebSocketRoute("/ws", ws),
        ])  # fmt: skip

    @contextlib.asynccontextmanager
    async def serving(self, path: Path) -> AsyncIterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        server = uvicorn.Server(uvicorn.Config(self.app, uds=str(path), lifespan="off", log_level="warning"))
        server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        task = asyncio.create_task(server.serve())
        try:
            async with asyncio.timeout(10):
                while not server.started:
                    await asyncio.sleep(0.01)
            yield
        finally:
            self.release.set()
            server.should_exit = True
            await task


@pytest.fixture
async def fake_agent(dash: Dash) -> AsyncIterator[FakeHarness]:
    s = dash.services
    s.lifecycle.agents["fake"] = AgentRuntime("fake", 901, None)
    harness = FakeHarness()
    async with harness.serving(s.config.paths.agent("fake").web_socket):
        yield harness


async def test_proxy_forwards_requests_without_the_dashboard_credentials(
    dash: Dash, client: httpx.AsyncClient, fake_agent: FakeHarness
) -> None:
    """/agent/<name>/… reaches the agent's web.sock with method, path, query and body; the
    session cookie and CSRF header are stripped; the agent learns its prefix. Issue 6 "Access"."""
    client.cookies.set("other", "kept", domain="127.0.0.1")
    r = await client.get("/agent/fake/echo?x=1&y=%2F")
    assert r.status_code == 200, r.text
    seen = r.json()
    assert (seen["method"], seen["path"], seen["query"]) == ("GET", "/echo", "x=1&y=%2F")
    assert "hh_session" not in seen["headers"].get("cookie", "") and "hh_csrf" not in seen["headers"].get("cookie", "")
    assert seen["headers"].get("cookie") == "other=kept"
    assert seen["headers"]["x-forwarded-prefix"] == "/agent/fake"
    r = await client.post("/agent/fake/echo", json={"a": 1})
    assert r.status_code == 200 and r.json()["body"] == '{"a":1}'
    assert "x-csrf-token" not in r.json()["headers"]
    csp = r.headers["content-security-policy"]
    assert f"script-src {dash.base}/static/common/ {dash.base}/static/vendor/ {dash.base}/agent/fake/static/;" in csp


async def test_proxied_posts_need_the_csrf_token_too(
    dash: Dash, client: httpx.AsyncClient, fake_agent: FakeHarness
) -> None:
    """CSRF covers the agent pages' POSTs: without the token the agent never sees the request."""
    r = await client.post("/agent/fake/echo", json={}, headers={"x-csrf-token": ""})
    assert r.status_code == 403


async def test_proxy_drops_cookies_the_agent_tries_to_set(
    dash: Dash, client: httpx.AsyncClient, fake_agent: FakeHarness
) -> None:
    """An agent must not set cookies on the operator's origin (it could overwrite the session):
    the only cookie on a proxied answer is the core's own page token, scoped to the agent's path."""
    r = await client.get("/agent/fake/cookie")
    assert r.status_code == 200 and r.text == "ok" and "x-agent" not in r.headers
    cookies = r.headers.get_list("set-cookie")
    assert len(cookies) == 1 and cookies[0].startswith("hh_page_csrf=fake.") and "Path=/agent/fake/" in cookies[0]


async def test_proxy_streams_sse_without_buffering(
    dash: Dash, client: httpx.AsyncClient, fake_agent: FakeHarness
) -> None:
    """The first SSE event reaches the browser while the agent's stream is still open."""
    async with client.stream("GET", "/agent/fake/sse") as r:
        assert r.status_code == 200
        lines = r.aiter_lines()
        async with asyncio.timeout(5):
            assert await anext(lines) == "id: 1"
            assert await anext(lines) == "data: first"
        fake_agent.release.set()
        async with asyncio.timeout(5):
            rest = [line async for line in lines]
    assert "data: second" in rest


async def test_proxy_carries_websockets_both_ways(
    dash: Dash, client: httpx.AsyncClient, fake_agent: FakeHarness
) -> None:
    """Websockets under /agent/<name>/ are proxied to the agent's socket with the session."""
    cookie = f"hh_session={client.cookies['hh_session']}"
    async with asyncio.timeout(10):
        async with websockets.connect(
            f"ws://127.0.0.1:{dash.port}/agent/fake/ws", additional_headers={"Cookie": cookie}
        ) as ws:
            await ws.send("ping")
            assert await ws.recv() == "echo:ping"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(
                f"ws://127.0.0.1:{dash.port}/agent/fake/ws",
                additional_headers={"Cookie": cookie, "Origin": "http://evil.example"},
            ):
                pass


async def test_proxy_answers_502_when_the_agent_is_down(dash: Dash, client: httpx.AsyncClient) -> None:
    """A registered agent whose web.sock does not answer gets a readable 502 page; an unknown
    agent 404; `/agent/<name>` redirects to the slash form the page's relative links need."""
    dash.services.lifecycle.agents["sleepy"] = AgentRuntime("sleepy", 902, None)
    r = await client.get("/agent/sleepy/", headers={"accept": "text/html"})
    assert r.status_code == 502 and "sleepy" in r.text and "4G3NT D0WN" in r.text
    sock = dash.services.config.paths.agent("sleepy").web_socket
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.touch()  # a stale file, nobody listening
    r = await client.get("/agent/sleepy/api/state")
    assert r.status_code == 502
    assert (await client.get("/agent/nobody/")).status_code == 404
    r = await client.get("/agent/sleepy?x=1")
    assert r.status_code == 307 and r.headers["location"] == "/agent/sleepy/?x=1"

"""Budgets through the gateway with the real daemon, real agent sockets and the offline model as
the upstream, no harness: the agent's own socket is driven as its harness would (model calls on
api.sock, `recv` and `report_state` on mcp.sock). Covers what the e2e does not: tokens_per_day,
"resume once" (ends with the next turn), "keep paused", and the hive-wide budget."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hivetest import ask_socket, make_config, start_daemon, stop_daemon, sync, until, wire_agent
from hyperhive.agentconfig import default_agent_toml
from hyperhive.config import ApiSettings
from hyperhive.core.budget import KEEP_PAUSED, RESUME_ONCE
from hyperhive.core.daemon import Daemon
from hyperhive.core.gateway import API_SOCKET
from hyperhive.harness.prompting import format_wake_prompt
from hyperhive.offline_model.server import OfflineModelServer

KEY = "sk-upstream-budget-core"
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 20,
        "messages": [{"role": "user", "content": format_wake_prompt(1, "operator", "echo hi")}]}  # fmt: skip


class Agent:
    def __init__(self, daemon: Daemon, name: str) -> None:
        self.daemon = daemon
        self.name = name
        assert daemon.gateway is not None
        self.token = daemon.gateway.tokens[name]
        uds = str(daemon.paths.agent(name).run / API_SOCKET)
        self.http = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=uds), base_url="http://gw", timeout=30)

    async def call(self) -> httpx.Response:
        return await self.http.post("/v1/messages", json=BODY, headers={"x-api-key": self.token})

    async def mcp(self, cmd: str, **kw: Any) -> dict[str, Any]:
        return await ask_socket(self.daemon.paths.agent(self.name).socket, {"cmd": cmd, **kw})


async def budgeted(daemon: Daemon, name: str, budget: str) -> Agent:
    assert daemon.services is not None
    toml = default_agent_toml(name) + f"\n[budget]\n{budget}\n"
    await daemon.services.repos.seed(name, toml=toml)
    await wire_agent(daemon, name)
    return Agent(daemon, name)


@pytest.fixture
async def model() -> AsyncIterator[OfflineModelServer]:
    async with OfflineModelServer(api_key=KEY) as m:
        yield m


async def _hive(
    tmp_path: Path, short_dir: Path, model: OfflineModelServer, budget: dict[str, Any]
) -> tuple[Daemon, Any]:
    api = ApiSettings(base=model.url, key=KEY, budget=budget)
    return await start_daemon(make_config(tmp_path, short_dir, api=api))


async def question_for(daemon: Daemon, key: str) -> dict[str, Any]:
    s = daemon.services
    assert s is not None
    return await until(s.hub, f"a budget question about {key}",
                       lambda: next((q for q in sync(s.questions.pending()) if f"budget: {key} is over" in q["question"]), None),
                       10, explain=lambda: str(sync(s.questions.pending())))  # fmt: skip


async def test_tokens_per_day_resume_once_and_keep_paused(
    tmp_path: Path, short_dir: Path, model: OfflineModelServer
) -> None:
    daemon, task = await _hive(tmp_path, short_dir, model, {})
    try:
        s = daemon.services
        assert s is not None
        await wire_agent(daemon, "manager")
        a = await budgeted(daemon, "a", "tokens_per_day = 1")
        b = await budgeted(daemon, "b", "tokens_per_day = 1000000")
        async with a.http, b.http:
            assert (await a.call()).status_code == 200, "under budget: the call goes through"
            q = await question_for(daemon, "a")
            refused = await a.call()
            assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
            assert "over its calendar budget" in refused.json()["error"]["message"]
            assert (
                daemon.gateway is not None and (await daemon.gateway.spend_summary())["agents"]["a"]["paused"] is True
            )
            assert (await b.call()).status_code == 200, "another agent is not affected"
            await s.broker.send("operator", "a", "queued while paused")
            held = await a.mcp("recv", wait_seconds=0.2)
            assert held["ok"] and held["messages"] == [] and held["paused"] == "over budget"
            assert held["unread"] == 1, "the message stays queued"

            await s.questions.answer(q["id"], RESUME_ONCE, answerer="operator", as_operator=True)
            got = await a.mcp("recv", wait_seconds=5)
            assert [m["body"] for m in got["messages"]] == ["queued while paused"]
            assert (await a.call()).status_code == 200, "resumed once: the turn's calls go through"
            await a.mcp("report_state", state="thinking")
            assert (await a.call()).status_code == 200
            await a.mcp("report_state", state="idle")  # the turn ended: the one turn is used up
            q2 = await question_for(daemon, "a")
            assert q2["id"] != q["id"]
            assert (await a.call()).status_code == 403
            await s.questions.answer(q2["id"], KEEP_PAUSED, answerer="operator", as_operator=True)
            assert (await a.call()).status_code == 403, "keep paused"
            assert (await a.mcp("recv", wait_seconds=0.1))["paused"] == "over budget"
    finally:
        await stop_daemon(daemon, task)


async def test_the_hive_budget_pauses_every_agent(tmp_path: Path, short_dir: Path, model: OfflineModelServer) -> None:
    daemon, task = await _hive(tmp_path, short_dir, model, {"usd_per_day": 0.0000001, "window": "rolling"})
    try:
        s = daemon.services
        assert s is not None and daemon.gateway is not None
        a = await budgeted(daemon, "a", "")
        b = await budgeted(daemon, "b", "")
        async with a.http, b.http:
            assert (await a.call()).status_code == 200
            await question_for(daemon, "*")
            assert (await b.call()).status_code == 403, "the hive's budget holds for every agent"
            summary = await daemon.gateway.spend_summary()
            assert summary["budget"]["window"] == "rolling" and summary["budget"]["over"] is True
            assert summary["today"]["requests"] == 1
    finally:
        await stop_daemon(daemon, task)

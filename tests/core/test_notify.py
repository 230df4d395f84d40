"""Push notifications (issue 15): a real local HTTP receiver on port 0 hears a JSON webhook and
an ntfy-style post for a question to the operator, a pending approval and a crash, each with
a link to the dashboard and never the login token; a failing sink degrades /healthz and is
logged once, and the daemon keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hivetest import ask_socket, make_config, start_daemon, stop_daemon, wire_agent
from hyperhive.config import NotifySettings
from hyperhive.core.daemon import Daemon
from hyperhive.webserver import EmbeddedServer, bind_listener


@dataclass
class Receiver:
    url: str
    status: int = 200
    got: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    async def next(self, bound: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(bound):
            return await self.got.get()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver("")

    async def record(request: Request) -> Response:
        body = await request.body()
        await rec.got.put({"path": request.url.path, "headers": dict(request.headers), "body": body.decode()})
        return Response("ok" if rec.status < 300 else "no", status_code=rec.status)

    app = Starlette(routes=[Route("/{path:path}", record, methods=["POST"])])
    sock = bind_listener("127.0.0.1", 0, what="the test receiver")
    server = EmbeddedServer(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    rec.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield rec
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _daemon(tmp_path: Path, short_dir: Path, notify: NotifySettings) -> tuple[Daemon, asyncio.Task[None]]:
    return await start_daemon(make_config(tmp_path, short_dir, notify=notify))


async def test_questions_approvals_and_crashes_reach_the_webhook_and_ntfy(
    tmp_path: Path, short_dir: Path, receiver: Receiver
) -> None:
    notify = NotifySettings(webhook_url=receiver.url + "/hook", ntfy_url=receiver.url + "/my-topic",
                            ntfy_token="tk_test")  # fmt: skip
    daemon, task = await _daemon(tmp_path, short_dir, notify)
    try:
        assert daemon.dashboard_url and daemon.dashboard_base
        token = daemon.dashboard_url.split("token=", 1)[1]
        asker = await wire_agent(daemon, "asker")
        reply = await ask_socket(asker, {"cmd": "ask", "question": "ship <it> now?", "options": ["yes", "no"]})
        assert reply["ok"], reply
        got = {(r := await receiver.next())["path"]: r for _ in range(2)}
        hook = json.loads(got["/hook"]["body"])
        assert hook["event"] == "question" and hook["agent"] == "asker" and hook["message"] == "ship <it> now?"
        assert hook["link"] == daemon.dashboard_base
        ntfy = got["/my-topic"]
        assert ntfy["body"] == "ship <it> now?"
        assert ntfy["headers"]["click"] == daemon.dashboard_base
        assert ntfy["headers"]["title"] == "hyperhive: asker asks you"
        assert ntfy["headers"]["authorization"] == "Bearer tk_test"
        assert "authorization" not in got["/hook"]["headers"]

        manager = await wire_agent(daemon, "manager")
        reply = await ask_socket(manager, {"cmd": "request_spawn", "name": "newbie", "description": "a helper"})
        assert reply["ok"], reply
        got = {(r := await receiver.next())["path"]: r for _ in range(2)}
        hook = json.loads(got["/hook"]["body"])
        assert hook["event"] == "approval" and hook["agent"] == "newbie" and "a helper" in hook["message"]
        assert got["/my-topic"]["headers"]["title"].startswith("hyperhive: approval #")

        assert daemon.services is not None
        await daemon.services.lifecycle.spawn("crashy", "crashes on purpose")
        pid = daemon.services.lifecycle.row("crashy").pid
        assert pid
        os.killpg(pid, signal.SIGKILL)
        got = {(r := await receiver.next())["path"]: r for _ in range(2)}
        hook = json.loads(got["/hook"]["body"])
        assert hook["event"] == "crash" and hook["agent"] == "crashy" and "signal 9" in hook["message"]
        everything = json.dumps([hook, got["/my-topic"]])
        assert token not in everything and "/login" not in everything

        daemon.services.hub.publish("budget", {"agent": "crashy", "paused": True})  # what core/budget.py says
        got = {(r := await receiver.next())["path"]: r for _ in range(2)}
        hook = json.loads(got["/hook"]["body"])
        assert hook["event"] == "budget_stop" and hook["agent"] == "crashy" and "over budget" in hook["message"]
        assert got["/my-topic"]["headers"]["title"] == "hyperhive: crashy paused by its budget"
    finally:
        await stop_daemon(daemon, task)


async def test_a_failing_sink_degrades_healthz_is_logged_once_and_blocks_nothing(
    tmp_path: Path, short_dir: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    caplog.set_level(logging.WARNING, logger="hyperhive.core.notify")
    daemon, task = await _daemon(tmp_path, short_dir, NotifySettings(webhook_url=receiver.url + "/hook"))
    try:
        asker = await wire_agent(daemon, "asker")
        for n in range(3):
            assert (await ask_socket(asker, {"cmd": "ask", "question": f"q{n}?"}))["ok"]
        for _ in range(3):
            await receiver.next()  # the third arrives only after the first two failed
        failures = [r for r in caplog.records if "delivery failed" in r.getMessage()]
        assert len(failures) == 1, [r.getMessage() for r in caplog.records]
        assert receiver.url not in failures[0].getMessage()
        async with httpx.AsyncClient(timeout=10) as client:
            health = (await client.get(f"{daemon.dashboard_base}healthz")).json()
        assert health == {"status": "degraded", "reasons": ["push notifications (webhook) are failing"]}
        assert (await ask_socket(asker, {"cmd": "whoami"}))["ok"]
    finally:
        await stop_daemon(daemon, task)


def test_notify_settings_come_from_hive_toml_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    from hyperhive.config import load_config
    from hyperhive.errors import StartupError

    def load(text: str) -> NotifySettings:
        (tmp_path / "hive.toml").write_text(text)
        return load_config(state_dir=tmp_path, run_dir=tmp_path / "run", environ={}).notify

    settings = load('[notify]\nwebhook_url = "https://hooks.example/x"\nlink = "https://hive.example/"\n')
    assert settings.enabled and settings.webhook_url == "https://hooks.example/x" and settings.ntfy_url is None
    assert "hooks.example" not in repr(settings)  # a webhook URL may carry a secret
    assert not load("").enabled
    for bad, why in (('[notify]\nwebhook = "https://x"\n', "unknown keys: webhook"),
                     ('[notify]\nntfy_url = "ftp://x"\n', "ntfy_url must be an http(s) URL"),
                     ("notify = 3\n", "[notify] must be a table")):  # fmt: skip
        with pytest.raises(StartupError) as info:
            load(bad)
        assert why in info.value.message and "\n" not in info.value.message

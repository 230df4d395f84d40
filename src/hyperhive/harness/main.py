"""The harness in a cage (`python -m hyperhive.harness`, `hive agent serve`): wire the harness inside a cage (client, Bus, runner, web page, loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from typing import Any

import uvicorn

from hyperhive.client import HiveClient
from hyperhive.errors import HiveError, StartupError
from hyperhive.harness.apishim import ApiShim
from hyperhive.harness.bus import Bus, default_events_path
from hyperhive.harness.loop import Harness, HarnessPaths
from hyperhive.harness.web import create_agent_app
from hyperhive.harness.workerclient import WorkerRunner
from hyperhive.webserver import EmbeddedServer

__all__ = ["run_harness"]

log = logging.getLogger(__name__)


def _check_mcp_servers(config: dict[str, Any]) -> None:
    """Fail fast (so a deploy is marked failed) when a configured MCP server cannot start."""
    for key, server in (config.get("mcp_servers") or {}).items():
        command = server.get("command", "")
        if not shutil.which(command):
            raise StartupError(f"mcp server {key!r}: command {command!r} not found in this cage")


async def run_harness() -> None:
    environ = dict(os.environ)
    paths = HarnessPaths.from_env(environ)
    socket_path = paths.run / "mcp.sock"
    shim = None
    if environ.get("HYPERHIVE_GATEWAY") == "1":  # the model API through the core (core/gateway.py)
        shim = ApiShim(paths.run / "api.sock")
        await shim.start()
        os.environ["ANTHROPIC_BASE_URL"] = environ["ANTHROPIC_BASE_URL"] = shim.url  # the CLI inherits it
    client = HiveClient(socket_path)
    poll = HiveClient(socket_path)
    who = await client.call("whoami")
    reply = await client.call("agent_config")
    config: dict[str, Any] = reply["config"]
    _check_mcp_servers(config)
    bus = Bus(default_events_path(paths.state, environ))
    harness = Harness(
        name=who["name"],
        manager=who["role"] == "manager",
        paths=paths,
        client=client,
        poll_client=poll,
        bus=bus,
        runner=(runner := WorkerRunner()),
        config=config,
        instructions=reply.get("instructions_text") or "",
        agents_dir=environ.get("HYPERHIVE_AGENTS_DIR", "/agents"),
        environ=environ,
    )
    runner.nap = harness.request_nap  # the worker's nap tool parks this loop
    web_sock = paths.run / "web.sock"
    with contextlib.suppress(FileNotFoundError):
        web_sock.unlink()
    web = EmbeddedServer(
        uvicorn.Config(
            create_agent_app(harness),
            uds=str(web_sock),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=2,
        )  # fmt: skip
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(bus.run_vacuum(), name="bus-vacuum"),
        asyncio.create_task(web.serve(), name="agent-web"),
        asyncio.create_task(harness.run(), name="turn-loop"),
    ]
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    log.info("harness for %s (%s) started, pid %d", who["name"], who["role"], os.getpid())  # in `hive logs NAME`
    try:
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if isinstance(exc, HiveError):
                    raise exc
                raise StartupError(f"{task.get_name()} failed: {exc!r}") from exc
    finally:
        harness.stop()
        web.should_exit = True
        if harness.runner.busy:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(harness.runner.cancel(), 10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(harness.runner.cool("the harness is stopping"), 10)
        for task in [*tasks, stopper]:
            if task.get_name() != "agent-web":
                task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            web_sock.unlink()  # asyncio on 3.11 leaves a unix server's path behind
        bus.close()
        await client.close()
        await poll.close()
        if shim is not None:
            await shim.close()
        log.info("harness for %s stopped", who["name"])

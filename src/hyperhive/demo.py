"""`hive demo`: the daemon with the offline model (a scripted stand-in, not a real LLM) and a
small swarm that talks through the broker. Composition only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import click

from hyperhive.config import HiveConfig
from hyperhive.errors import Conflict
from hyperhive.logsetup import say

__all__ = ["run_demo"]

log = logging.getLogger(__name__)
KICKOFF_MARKER = "demo-kickoff-sent"  # in the state dir: the kickoff goes once per fresh state
KICKOFF = "relay hello from the demo — the swarm is alive to {second}"


def run_demo(config: HiveConfig, agents: list[str], run_daemon: Callable[..., None]) -> None:
    from hyperhive.offline_model.server import OfflineModelServer

    async def main() -> None:
        model = OfflineModelServer(host="127.0.0.1", port=0)
        await model.start()
        say(f"offline model (scripted stand-in, not a real LLM) at {model.url}")
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in", **config.agent_env}
        cfg = config.with_overrides(agent_env=env, offline_model=True)

        async def announce(daemon: Any) -> None:
            services = daemon.services
            for name in agents:
                with contextlib.suppress(Conflict):
                    await services.lifecycle.spawn(name, "demo agent")
            marker = daemon.paths.state_dir / KICKOFF_MARKER
            if marker.exists():
                log.info("demo kickoff already sent for this state (%s); not sending it again", marker)
            elif len(agents) >= 2:
                await services.broker.send("operator", agents[0], KICKOFF.format(second=agents[1]))
                marker.write_text(f"{time.time():.0f}\n", encoding="utf-8")
                say(
                    f"sent '{KICKOFF.format(second=agents[1])}' to {agents[0]}; watch it arrive in the "
                    "dashboard's operator inbox (or `hive inbox`)"
                )

        try:
            await _serve(cfg, announce)
        finally:
            await model.stop()

    asyncio.run(main())


async def _serve(config: HiveConfig, announce: Callable[[Any], Any]) -> None:
    from hyperhive.core.daemon import Daemon

    async def ready(daemon: Daemon) -> None:
        say(f"hyperhive demo is up: cage {daemon.services.cage_reason if daemon.services else '?'}")
        click.echo(f"dashboard login URL: {daemon.dashboard_url}")
        await announce(daemon)

    await Daemon(config, on_ready=ready).serve()

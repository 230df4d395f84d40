"""Shell sessions in the agent's own trail: the core posts `shell_started` / `shell_ended` to the
harness's `/_core/trail` on its web.sock, and the harness emits them as `note` events (the Bus
kinds of architecture §6 stay as they are). The dashboard proxy never forwards `/_core/`, so only the
core (and the agent itself, which owns its trail anyway) reaches that route. The authoritative
record is the core's: its log and the hub's `shell_*` events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from hyperhive.paths import HivePaths
from hyperhive.udshttp import uds_transport

__all__ = ["TRAIL_PATH", "TrailRecorder"]

log = logging.getLogger(__name__)
TRAIL_PATH = "/_core/trail"
POST_TIMEOUT = 5.0


class TrailRecorder:
    """Posts each record in order per agent, in the background: a slow or stopped harness never
    holds up a shell."""

    def __init__(self, paths: HivePaths) -> None:
        self.paths = paths
        self._last: dict[str, asyncio.Task[None]] = {}

    async def __call__(self, agent: str, kind: str, payload: dict[str, Any]) -> None:
        previous = self._last.get(agent)
        task = asyncio.ensure_future(self._post(previous, agent, {"event": kind, **payload}))
        self._last[agent] = task
        task.add_done_callback(lambda t: self._last.pop(agent, None) if self._last.get(agent) is t else None)

    async def _post(self, previous: asyncio.Task[None] | None, agent: str, body: dict[str, Any]) -> None:
        if previous is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await previous
        sock = self.paths.agent(agent).web_socket
        transport = uds_transport(sock)
        try:
            async with httpx.AsyncClient(transport=transport, timeout=POST_TIMEOUT) as client:
                response = await client.post("http://agent" + TRAIL_PATH, json=body)
                if response.status_code != 200:
                    log.warning("%s's harness refused the %s record: %s", agent, body["event"], response.status_code)
        except (httpx.HTTPError, OSError) as exc:
            log.info("could not write %s to %s's trail: %s", body["event"], agent, exc)

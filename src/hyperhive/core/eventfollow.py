"""`events_follow` on host.sock: an agent's live trail relayed by the core, so `hive events
--follow` talks to host.sock like every other operator verb (issue 10) instead of opening the
agent's `web.sock` itself.

The core reads the agent page's SSE stream (`events/stream` on its web.sock, resumed with
Last-Event-ID) and yields each event. While the agent is down it yields one `waiting` event and
waits for the hub to say the agent runs again (bounded, then it tries anyway); a `missed` control
from the agent's stream is passed on. The stream ends when the agent is destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from hyperhive.core.hub import Hub
from hyperhive.core.lifecycle import Lifecycle
from hyperhive.errors import AgentNotFound, HiveError
from hyperhive.udshttp import uds_transport

__all__ = ["follow"]

RETRY_BOUND = 5.0  # seconds: wait this long for the hub's word that the agent is back, then retry


async def follow(lifecycle: Lifecycle, hub: Hub, name: str, after: int) -> AsyncIterator[dict[str, Any]]:
    """The agent's events after `after`, live, until the agent is destroyed or the client leaves."""
    last = after
    waiting = False
    timeout = httpx.Timeout(None, connect=5.0)
    while True:
        try:
            lifecycle.get(name)
        except AgentNotFound:
            return
        sub = hub.subscribe()  # before trying, so a start in between wakes the wait below
        try:
            sock = lifecycle.paths.agent(name).web_socket
            try:
                async with (
                    httpx.AsyncClient(transport=uds_transport(sock), timeout=timeout) as client,
                    client.stream("GET", "http://agent/events/stream", headers=_resume(last)) as response,
                ):
                    if response.status_code != 200:
                        raise HiveError(f"{name}'s event stream answered HTTP {response.status_code}")
                    sub.close()
                    waiting = False
                    async for kind, data in _sse(response.aiter_lines()):
                        if kind == "missed":
                            yield {"kind": "missed", "data": data}
                        elif kind is None and isinstance(data, dict) and isinstance(data.get("id"), int):
                            last = max(last, data["id"])
                            yield data
            except (httpx.TransportError, OSError):
                if not waiting:
                    waiting = True
                    yield {"kind": "waiting", "data": {"agent": name}}
                await _until_running(sub, name)
        finally:
            sub.close()


def _resume(last: int) -> dict[str, str]:
    return {"Last-Event-ID": str(last), "Accept": "text/event-stream"}


async def _until_running(sub: Any, name: str) -> None:
    """Until the hub reports `name` running (or RETRY_BOUND passes)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(RETRY_BOUND):
            async for event in sub:
                data = event.payload
                if event.kind == "agent_changed" and data.get("name") == name and data.get("harness_state"):
                    return


async def _sse(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, Any]]:
    """(event name, parsed JSON data) per SSE event; comments skipped."""
    kind: str | None = None
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line == "":
            if data:
                with contextlib.suppress(ValueError):
                    yield kind, json.loads("\n".join(data))
            kind, data = None, []

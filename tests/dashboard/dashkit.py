"""Helpers for the dashboard tests (HTTP and browser): the dashboard of an in-process daemon."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from hyperhive.core.daemon import Daemon


@dataclass
class Dash:
    daemon: Daemon
    base: str  # http://127.0.0.1:PORT
    login_url: str
    token: str
    port: int

    @property
    def services(self) -> Any:
        return self.daemon.services


def dash_of(daemon: Daemon) -> Dash:
    assert daemon.uvicorn is not None and daemon.dashboard_url is not None
    port = daemon.uvicorn.servers[0].sockets[0].getsockname()[1]
    url = daemon.dashboard_url
    token = parse_qs(urlsplit(url).query)["token"][0]
    return Dash(daemon, f"http://127.0.0.1:{port}", url, token, port)


async def logged_in(dash: Dash) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=dash.base, timeout=10)
    r = await client.get(dash.login_url)
    assert r.status_code == 303, r.text
    client.headers["x-csrf-token"] = client.cookies["hh_csrf"]
    return client


async def raw_request(
    port: int, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the target sent byte for byte (httpx normalises `..` away)."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        lines = [f"{method} {target} HTTP/1.1", "Connection: close"]
        if not any(k.lower() == "host" for k in headers or {}):
            lines.append(f"Host: 127.0.0.1:{port}")
        for k, v in (headers or {}).items():
            lines.append(f"{k}: {v}")
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]

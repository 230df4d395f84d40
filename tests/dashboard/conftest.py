"""Dashboard fixtures: the in-process daemon's dashboard over real HTTP (uvicorn on a port)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from dashkit import Dash, dash_of, logged_in

from hyperhive.core.daemon import Daemon


@pytest.fixture
def dash(hive: Daemon) -> Dash:
    return dash_of(hive)


@pytest.fixture
async def client(dash: Dash) -> AsyncIterator[httpx.AsyncClient]:
    """A logged-in client that sends the CSRF header on every request."""
    c = await logged_in(dash)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
async def anon(dash: Dash) -> AsyncIterator[httpx.AsyncClient]:
    c = httpx.AsyncClient(base_url=dash.base, timeout=10)
    try:
        yield c
    finally:
        await c.aclose()

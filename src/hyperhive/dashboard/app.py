"""Dashboard app factory (placeholder until the dashboard lands in this same change)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


def create_app(services: Any) -> Starlette:
    async def index(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hyperhive dashboard")

    return Starlette(routes=[Route("/", index)])


def login_url(services: Any, host: str, port: int) -> str:
    return f"http://{host}:{port}/"

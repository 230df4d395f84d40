"""uvicorn embedded in our own event loop: the owner of the loop handles signals, not uvicorn."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn

__all__ = ["EmbeddedServer"]


class EmbeddedServer(uvicorn.Server):
    """A uvicorn.Server that leaves signal handling to the daemon (stop it with should_exit)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

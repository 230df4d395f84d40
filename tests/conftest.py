"""Shared fixtures: a real daemon on tmp dirs (in-process), short socket paths. Helpers live in
tests/hivetest.py (importable as `hivetest`), so no test imports a conftest module by name."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hivetest import IN_CI, make_config, require, require_tool, start_daemon, stop_daemon
from hyperhive.core.daemon import Daemon

__all__ = ["IN_CI", "make_config", "require", "require_tool", "start_daemon", "stop_daemon"]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory under /tmp for unix sockets (sun_path is 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hh-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)



@pytest.fixture
async def hive(tmp_path: Path, short_dir: Path) -> AsyncIterator[Daemon]:
    """A real daemon, in-process, on tmp dirs: process cages, no manager, dashboard on port 0."""
    daemon, task = await start_daemon(make_config(tmp_path, short_dir))
    try:
        yield daemon
    finally:
        await stop_daemon(daemon, task)

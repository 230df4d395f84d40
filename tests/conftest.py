"""Shared fixtures: a real daemon on tmp dirs (in-process), short socket paths. Helpers live in
tests/hivetest.py (importable as `hivetest`), so no test imports a conftest module by name."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hivetest import IN_CI, StoreUse, make_config, require, require_tool, start_daemon, stop_daemon
from hyperhive.core.daemon import Daemon

__all__ = ["IN_CI", "make_config", "require", "require_tool", "start_daemon", "stop_daemon"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store", choices=("sqlite", "postgresql"), default=None,
                     help="the store the test hives run on (default: HYPERHIVE_TEST_STORE or sqlite)")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--store"):
        os.environ["HYPERHIVE_TEST_STORE"] = config.getoption("--store")


def pytest_report_header(config: pytest.Config) -> str:
    return f"store: {os.environ.get('HYPERHIVE_TEST_STORE', 'sqlite')}"


OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
STORE_FILES = OUTPUT / "store-files.txt"
_store_files: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Note the test files whose tests open a store of the run's kind (hivetest.StoreUse)."""
    StoreUse.opened = False
    try:
        return (yield)
    finally:
        if StoreUse.opened:
            _store_files.add(item.nodeid.split("::", 1)[0])


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The SQLite pass writes test-output/store-files.txt: the files `make test` runs again on
    PostgreSQL (scripts/test-both)."""
    if os.environ.get("HYPERHIVE_TEST_STORE", "sqlite") == "sqlite" and session.testscollected:
        OUTPUT.mkdir(exist_ok=True)
        STORE_FILES.write_text("".join(f"{f}\n" for f in sorted(_store_files)), encoding="utf-8")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A failure's whole report goes to test-output/failures-<store>.log the moment it happens:
    a long run's first failure can be read while the run goes on (pytest prints it at the end)."""
    if not report.failed:
        return
    OUTPUT.mkdir(exist_ok=True)
    store = os.environ.get("HYPERHIVE_TEST_STORE", "sqlite")
    with (OUTPUT / f"failures-{store}.log").open("a", encoding="utf-8") as f:
        f.write(f"===== {report.nodeid} ({report.when})\n{report.longreprtext}\n")


@pytest.fixture(autouse=True)
def _own_uid_registry(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's hives claim their host uid ranges in a registry of their own, so tests (and
    other test runs on this host) do not refuse each other; a test of the registry shares one
    between its own daemons."""
    monkeypatch.setenv("HYPERHIVE_UID_REGISTRY", str(tmp_path_factory.mktemp("uidreg") / "uid-ranges.json"))


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

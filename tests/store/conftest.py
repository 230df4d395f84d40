"""Every contract of `store/base.py` runs against each backend: SQLite in a temp dir and a real
PostgreSQL (a throw-away cluster, tests/pgserver.py). `store` and `second` are two store objects
on the same data: two writers, as two nodes would be."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hivetest import pg_test_url
from hyperhive.store.base import Store
from hyperhive.store.open import open_store

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return pg_test_url() if request.param == "postgresql" else None


@pytest.fixture
async def opener(store_url: str | None, tmp_path: Path) -> AsyncIterator[Callable[[], Store]]:
    opened: list[Store] = []

    def open_one() -> Store:
        s = open_store(store_url, tmp_path / "broker.sqlite")
        opened.append(s)
        return s

    yield open_one
    for s in opened:
        await s.close()


@pytest.fixture
def store(opener: Callable[[], Store]) -> Store:
    return opener()


@pytest.fixture
def second(store: Store, opener: Callable[[], Store]) -> Store:
    return opener()

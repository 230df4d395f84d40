"""Two hives on one host never run agents as the same host uid (issue 9): each claims its uid
range in a host-wide registry and a second hive on an overlapping range refuses to start.
Two real root daemons with bwrap cages (the only case that hands out host uids)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from hivetest import make_config, require, require_tool, start_daemon, stop_daemon
from hyperhive.core.uidclaim import UID_RANGE
from hyperhive.errors import Conflict, StartupError


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    require_tool("bwrap")
    from hyperhive.cages.bwrap import BwrapCage

    ok, why = BwrapCage.available()
    require(ok, f"bwrap does not work here: {why}")
    require(os.geteuid() == 0, "host uids are handed out only by a root daemon")


def run_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="hh-", dir="/tmp"))
    path.chmod(0o711)
    return path


async def test_a_second_hive_on_an_overlapping_uid_range_refuses_to_start(tmp_path: Path) -> None:
    first = make_config(tmp_path / "one", run_dir(), cage="bwrap")
    daemon, task = await start_daemon(first)
    try:
        clash = make_config(tmp_path / "two", run_dir(), cage="bwrap", uid_base=first.uid_base + 1000)
        with pytest.raises(StartupError, match=r"overlap .*running hive at .*one/state") as info:
            await start_daemon(clash)
        assert "uid_base" in str(info.value)
        apart = make_config(tmp_path / "three", run_dir(), cage="bwrap", uid_base=first.uid_base + 65536)
        other, other_task = await start_daemon(apart)  # a range of its own: fine
        await stop_daemon(other, other_task)
    finally:
        await stop_daemon(daemon, task)
    registry = json.loads(Path(os.environ["HYPERHIVE_UID_REGISTRY"]).read_text())
    assert registry == []  # both released their claims on shutdown
    daemon, task = await start_daemon(clash)  # the range is free again
    await stop_daemon(daemon, task)


async def test_a_claim_left_by_a_dead_daemon_does_not_block(tmp_path: Path) -> None:
    registry = Path(os.environ["HYPERHIVE_UID_REGISTRY"])
    registry.parent.mkdir(parents=True, exist_ok=True)
    config = make_config(tmp_path, run_dir(), cage="bwrap")
    stale = {"state_dir": "/elsewhere", "first": config.uid_base + 1, "last": config.uid_base + 65535,
             "pid": 1, "started": "not-its-start-time"}  # fmt: skip
    registry.write_text(json.dumps([stale]))
    daemon, task = await start_daemon(config)
    try:
        claims = json.loads(registry.read_text())
        assert [c["state_dir"] for c in claims] == [str(config.paths.state_dir.resolve())]
    finally:
        await stop_daemon(daemon, task)


async def test_an_agent_past_the_claimed_range_gets_no_uid(tmp_path: Path) -> None:
    """Agent ids map to uid_base + id; an id past the claimed range is refused, not handed a uid
    another hive may hold."""
    config = make_config(tmp_path, run_dir(), cage="bwrap")
    daemon, task = await start_daemon(config)
    try:
        assert daemon.services is not None
        last = UID_RANGE - 1  # a kept (destroyed) agent holds the last id of the range (as a copy brings it)
        store = daemon.services.store
        await store.import_rows(
            "agents",
            [
                {
                    "name": "old",
                    "id": last,
                    "created_at": 0.0,
                    "desired": "stopped",
                    "uid": config.uid_base + last,
                    "description": None,
                    "destroyed_at": 1.0,
                }
            ],
        )
        await store.import_rows("counters", [{"name": "agent_id", "value": last}])
        with pytest.raises(Conflict, match="no host uid left"):
            await daemon.services.lifecycle.spawn("beta", seed=False)
        assert "beta" not in daemon.services.lifecycle.names()
    finally:
        await stop_daemon(daemon, task)

"""`hive spawn a b c …` (issue 13 §5): several agents at once through the real CLI against a
real daemon with process cages; `--wait` answers once every harness has reported in; a bad name
or an existing agent fails alone (its own line, exit status 1), the others are spawned."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hivetest import HiveRig, make_config, run_hive, start_daemon, stop_daemon


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[HiveRig]:
    daemon, task = await start_daemon(make_config(tmp_path, short_dir))
    try:
        yield HiveRig(daemon)
    finally:
        await stop_daemon(daemon, task)


async def test_spawn_several_and_wait_for_their_harnesses(rig: HiveRig) -> None:
    done = await run_hive(rig.daemon.paths.run_dir, "spawn", "a", "b", "c", "--wait", bound=120, ok=True)
    assert done.stdout.splitlines() == ["a: idle", "b: idle", "c: idle"]
    listed = json.loads((await run_hive(rig.daemon.paths.run_dir, "list", "--json", ok=True)).stdout)["agents"]
    assert {(a["name"], a["state"], a["harness_state"]) for a in listed} == {
        ("a", "running", "idle"), ("b", "running", "idle"), ("c", "running", "idle"),
    }  # fmt: skip


async def test_one_failure_does_not_stop_the_others(rig: HiveRig) -> None:
    await run_hive(rig.daemon.paths.run_dir, "spawn", "a", ok=True)
    done = await run_hive(rig.daemon.paths.run_dir, "spawn", "a", "d", bound=120)
    assert done.returncode == 1
    assert "d: running" in done.stdout and "a: " in done.stderr and "already exists" in done.stderr
    assert "d" in rig.s.lifecycle.agents


async def test_bad_names_are_refused_before_anything_is_spawned(rig: HiveRig) -> None:
    for args in (("e", "Bad_Name"), ("e", "e"), ("e", "manager")):
        done = await run_hive(rig.daemon.paths.run_dir, "spawn", *args)
        assert done.returncode != 0 and done.stderr.strip(), args
    assert "e" not in rig.s.lifecycle.agents

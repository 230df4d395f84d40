"""A one-host hive (the SQLite store) is one node: `hive nodes` says so, and placing an agent on
another node or moving the manager is refused with one line, changing nothing."""

from __future__ import annotations

import json
from pathlib import Path

from hivetest import make_config, run_hive, start_daemon, stop_daemon


async def test_a_sqlite_hive_is_one_node_and_refuses_other_nodes(tmp_path: Path, short_dir: Path) -> None:
    hive, task = await start_daemon(make_config(tmp_path, short_dir, store_url=None))  # SQLite under either run
    try:
        await _one_node(hive.config.run_dir, hive.config.node)
    finally:
        await stop_daemon(hive, task)


async def _one_node(run: Path, node: str) -> None:
    listed = json.loads((await run_hive(run, "nodes", "--json", ok=True)).stdout)
    assert listed["multi"] is False and listed["node"] == node
    assert [n["name"] for n in listed["nodes"]] == [node]
    placed = await run_hive(run, "spawn", "x", "--node", "elsewhere")
    assert placed.returncode == 1 and len(placed.stderr.strip().splitlines()) == 1
    assert placed.stderr.strip().endswith("this hive has one node (its store is SQLite): nodes need a PostgreSQL store")
    bad = await run_hive(run, "spawn", "x", "--node", "Not_A_Node")
    assert bad.returncode != 0 and "--node" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    claim = await run_hive(run, "manager", "claim")
    assert claim.returncode == 1 and "one node" in claim.stderr
    assert "x" not in {a["name"] for a in json.loads((await run_hive(run, "list", "--json", ok=True)).stdout)["agents"]}

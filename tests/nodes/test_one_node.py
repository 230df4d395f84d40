"""A one-host hive (the SQLite store) is one node: `hive nodes` says so, and placing an agent on
another node or moving the manager is refused with one line, changing nothing."""

from __future__ import annotations

import json

import pytest

from hivetest import run_hive
from hivetest import test_store as store_kind
from hyperhive.core.daemon import Daemon


async def test_a_sqlite_hive_is_one_node_and_refuses_other_nodes(hive: Daemon) -> None:
    if store_kind() != "sqlite":
        pytest.skip("the one-node case is the SQLite store's; the PostgreSQL run covers nodes in test_nodes.py")
    run = hive.config.run_dir
    listed = json.loads((await run_hive(run, "nodes", "--json", ok=True)).stdout)
    assert listed["multi"] is False and listed["node"] == hive.config.node
    assert [n["name"] for n in listed["nodes"]] == [hive.config.node]
    placed = await run_hive(run, "spawn", "x", "--node", "elsewhere")
    assert placed.returncode == 1 and len(placed.stderr.strip().splitlines()) == 1
    assert placed.stderr.strip().endswith("this hive has one node (its store is SQLite): nodes need a PostgreSQL store")
    bad = await run_hive(run, "spawn", "x", "--node", "Not_A_Node")
    assert bad.returncode != 0 and "--node" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    claim = await run_hive(run, "manager", "claim")
    assert claim.returncode == 1 and "one node" in claim.stderr
    assert "x" not in json.loads((await run_hive(run, "list", "--json", ok=True)).stdout)["agents"]

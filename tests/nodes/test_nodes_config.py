"""The manager's config proposal for an agent of another node (docs/nodes.md "Config deploys"):
the manager runs on n1, b on n2. n1 seeds a proposed repo for b from b's applied config; the
manager commits a change there and requests it; the operator approves it on n1; n2 fetches the
proposed tree through the store, commits it on its own applied repo and deploys it, with the same
tags."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from nodes_rig import Node, run_dir

from hivetest import ask_socket, make_config, pg_test_url, wire_agent

BOUND = 60.0


async def test_a_proposal_made_with_the_manager_on_n1_is_deployed_on_b_s_node(tmp_path: Path, short_dir: Path) -> None:
    url = pg_test_url()
    n1, n2 = (Node(make_config(tmp_path / n, run_dir(short_dir, n), store_url=url, node=n, manager=True))
              for n in ("n1", "n2"))  # fmt: skip
    try:
        await n1.start()
        await n2.start()
        await wire_agent(n2.d, "b")
        s1 = n1.d.services
        assert s1 is not None
        async with asyncio.timeout(BOUND):  # n1's heartbeat learns of b and seeds the manager's repo for it
            while not await s1.repos.has_proposed("b"):
                await asyncio.sleep(0.2)  # seeding has no event of its own
        proposed = n1.d.paths.agent("b").config
        toml = (proposed / "agent.toml").read_text()
        edited = toml + "\n# proposed by the manager on n1\n"
        (proposed / "agent.toml").write_text(edited)
        git = ["git", "-C", str(proposed), "-c", "user.name=manager", "-c", "user.email=manager@hyperhive.local"]
        subprocess.run([*git, "commit", "-qam", "a comment for b"], check=True, capture_output=True)
        sha = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

        manager = n1.d.paths.agent("manager").socket
        asked = await ask_socket(manager, {"cmd": "request_apply_commit", "agent": "b", "commit_ref": sha,
                                           "description": "a comment"})  # fmt: skip
        assert asked["ok"], asked
        aid = asked["approval"]["id"]
        approved = await ask_socket(n1.config.run_dir / "host.sock", {"cmd": "approve", "id": aid}, bound=BOUND * 3)
        assert approved["ok"] and approved["approval"]["status"] == "deployed", approved

        shown = await ask_socket(n2.config.run_dir / "host.sock", {"cmd": "config_show", "name": "b"})
        assert shown["agent_toml"] == edited, "n2's applied repo has the proposed tree"
        assert {f"proposal/{aid}", f"approved/{aid}", f"deployed/{aid}"} <= set(shown["tags"]), shown["tags"]
    finally:
        await n2.stop()
        await n1.stop()

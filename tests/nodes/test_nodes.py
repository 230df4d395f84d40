"""Two nodes of one hive (docs/nodes.md): two real daemons, each with its own state and run dirs
and `--node`, on one throw-away PostgreSQL (tests/pgserver.py). An agent on n1 sends to an agent
on n2 by name and wakes it; the inbox and the live stream are hive-wide; a node that stops shows
its agents unreachable while their messages queue, and they get them when it returns; host verbs
on an agent of the other node are run by that node."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nodes_rig import BOUND, Node, run_dir

from dashboard.dashkit import dash_of, logged_in
from hivetest import ask_socket, make_config, pg_test_url, run_hive, wire_agent
from hyperhive.core.nodes import DEAD_AFTER


async def wire(node: Node, name: str) -> Path:
    """An agent of `node` with its socket open and no harness (tests/hivetest.py wire_agent),
    its applied config loaded so its default allow-list (anyone) holds."""
    path = await wire_agent(node.d, name)
    assert node.d.services is not None
    await node.d.services.lifecycle.refresh_config(name)
    return path


@pytest.fixture
async def pair(tmp_path: Path, short_dir: Path) -> AsyncIterator[tuple[Node, Node]]:
    url = pg_test_url()
    nodes = []
    for name in ("n1", "n2"):
        nodes.append(Node(make_config(tmp_path / name, run_dir(short_dir, name), store_url=url, node=name)))
    try:
        for node in nodes:
            await node.start()
        yield nodes[0], nodes[1]
    finally:
        for node in nodes:
            await node.stop()


async def test_a_on_n1_sends_to_b_on_n2_by_name_and_the_inbox_and_stream_are_hive_wide(pair: tuple[Node, Node]) -> None:
    n1, n2 = pair
    a = await wire(n1, "a")
    b = await wire(n2, "b")
    await n1.until("n1 to list b as n2's", lambda: n1.rows().get("b") and n1.rows()["b"].node == "n2")
    await n2.until("n2 to list a as n1's", lambda: n2.rows().get("a") and n2.rows()["a"].node == "n1")
    assert n1.rows()["b"].node_url == n2.d.dashboard_base, "the row links to b's own node's dashboard"
    assert "b" not in n1.d.services.lifecycle.agents and "a" not in n2.d.services.lifecycle.agents

    recv = asyncio.create_task(ask_socket(b, {"cmd": "recv", "wait_seconds": 60}, bound=BOUND))
    sent = await ask_socket(a, {"cmd": "send", "to": "b", "body": "hello from n1"})
    assert sent["ok"], sent
    got = await recv
    assert got["ok"] and [(m["sender"], m["body"]) for m in got["messages"]] == [("a", "hello from n1")]

    assert n1.d.services is not None
    stream = n1.d.services.hub.subscribe()
    try:
        reply = await ask_socket(b, {"cmd": "send", "to": "operator", "body": "b answers"})
        assert reply["ok"], reply
        for node in (n1, n2):
            inbox = json.loads((await run_hive(node.config.run_dir, "inbox", "--json", ok=True)).stdout)["messages"]
            assert [m["body"] for m in inbox if m["sender"] == "b"] == ["b answers"]
        # n2's live event reaches n1's stream, marked with its node
        async with asyncio.timeout(BOUND):
            while True:
                event = await stream.next()
                assert event is not None
                if event.kind == "message_sent" and event.payload.get("sender") == "b":
                    break
        assert event.payload["_node"] == "n2" and event.payload["recipient"] == "operator"
    finally:
        stream.close()


async def test_a_stopped_node_shows_its_agents_unreachable_messages_queue_and_resume(pair: tuple[Node, Node]) -> None:
    n1, n2 = pair
    a = await wire(n1, "a")
    await wire(n2, "b")
    await n1.until("n1 to list b", lambda: n1.rows().get("b") and n1.rows()["b"].state != "unreachable")
    assert n2.d.services is not None
    await n2.d.services.lifecycle.stop("b")  # desired stopped: its node's restart leaves it to this test's socket
    await n2.stop()
    await n1.until("b unreachable", lambda: n1.rows()["b"].state == "unreachable", bound=DEAD_AFTER + BOUND)
    ids = []
    for i in range(5):
        reply = await ask_socket(a, {"cmd": "send", "to": "b", "body": f"queued {i}"})
        assert reply["ok"], reply
        ids.append(reply["id"])
    refused = await run_hive(n1.config.run_dir, "start", "b")
    assert refused.returncode != 0 and "node n2 is unreachable" in refused.stderr, refused

    await n2.start()
    b = await wire(n2, "b")
    await n1.until("b back", lambda: n1.rows()["b"].state != "unreachable")
    got = await ask_socket(b, {"cmd": "recv", "wait_seconds": 5, "max": 32})
    assert [m["id"] for m in got["messages"]] == ids, got
    assert [m["body"] for m in got["messages"]] == [f"queued {i}" for i in range(5)]


async def test_host_verbs_on_the_other_nodes_agent_run_there(pair: tuple[Node, Node]) -> None:
    n1, n2 = pair
    await wire(n2, "b")
    await n1.until("n1 to list b", lambda: n1.rows().get("b"))
    stopped = await run_hive(n1.config.run_dir, "stop", "b", ok=True)
    assert "b: stopped" in stopped.stdout
    assert n2.d.services is not None
    assert n2.d.services.lifecycle.agents["b"].state == "stopped"
    nowhere = await run_hive(n1.config.run_dir, "spawn", "c", "--node", "n9")
    assert nowhere.returncode != 0 and "no node named 'n9'" in nowhere.stderr
    again = await run_hive(n1.config.run_dir, "spawn", "b")
    assert again.returncode != 0 and "already exists on node n2" in again.stderr
    # an operator config edit made on n1 travels through the store to n2, which deploys it
    shown = await ask_socket(n1.config.run_dir / "host.sock", {"cmd": "config_show", "name": "b"})
    assert shown["ok"] and shown["sha"], shown
    edited = shown["agent_toml"] + "\n# edited on n1\n"
    applied = await ask_socket(n1.config.run_dir / "host.sock", {"cmd": "config_apply", "name": "b",
                               "agent_toml": edited, "base_sha": shown["sha"]}, bound=BOUND * 4)  # fmt: skip
    assert applied["ok"] and applied["approval"]["status"] == "deployed", applied
    assert (await ask_socket(n2.config.run_dir / "host.sock", {"cmd": "config_show", "name": "b"}))[
        "agent_toml"
    ] == edited
    listed = json.loads((await run_hive(n1.config.run_dir, "nodes", "--json", ok=True)).stdout)
    assert {n["name"]: n["alive"] for n in listed["nodes"]} == {"n1": True, "n2": True}


async def test_every_dashboard_lists_the_whole_hive_and_links_an_agent_page_to_its_node(
    pair: tuple[Node, Node],
) -> None:
    n1, n2 = pair
    await wire(n1, "a")
    await wire(n2, "b")
    await n1.until("n1 to list b", lambda: n1.rows().get("b"))
    client = await logged_in(dash_of(n1.d))
    try:
        state = (await client.get("/api/state")).json()
        nodes = {a["name"]: a.get("node") for a in state["agents"]}
        assert nodes == {"a": None, "b": "n2"}
        page = await client.get("/agent/b/")
        assert page.status_code == 303 and page.headers["location"] == f"{n2.d.dashboard_base}agent/b/"
        async with httpx.AsyncClient(timeout=10) as stranger:
            anon = await stranger.get(f"{dash_of(n1.d).base}/agent/b/")
        assert anon.status_code != 303, "only a logged-in operator learns where the other node is"
    finally:
        await client.aclose()


async def test_the_manager_runs_on_one_node_and_moves_only_when_its_node_is_gone(
    tmp_path: Path, short_dir: Path
) -> None:
    url = pg_test_url()
    n1, n2 = (
        Node(make_config(tmp_path / n, run_dir(short_dir, n), store_url=url, node=n, manager=True))
        for n in ("n1", "n2")
    )
    try:
        await n1.start()
        await n2.start()
        assert "manager" in n1.d.services.lifecycle.agents
        assert "manager" not in n2.d.services.lifecycle.agents
        await n2.until(
            "n2 to list n1's manager", lambda: n2.rows().get("manager") and n2.rows()["manager"].node == "n1"
        )
        refused = await run_hive(n2.config.run_dir, "manager", "claim")
        assert refused.returncode != 0 and "the manager runs on node n1, which is alive" in refused.stderr

        await n1.stop()
        await n2.until("the manager unreachable", lambda: n2.rows()["manager"].state == "unreachable",
                       bound=DEAD_AFTER + BOUND)  # fmt: skip
        claimed = await run_hive(n2.config.run_dir, "manager", "claim", ok=True)
        assert claimed.stdout.strip() == "manager: now runs on node n2 (was n1)"
        assert n2.rows()["manager"].state == "running" and n2.rows()["manager"].node is None

        await n1.start()  # it comes back: the manager stays on n2
        assert "manager" not in n1.d.services.lifecycle.agents
        await n1.until("n1 to list the manager as n2's", lambda: n1.rows()["manager"].node == "n2")
        again = await run_hive(n1.config.run_dir, "manager", "claim")
        assert again.returncode != 0 and "runs on node n2, which is alive" in again.stderr
    finally:
        await n2.stop()
        await n1.stop()


async def test_a_starting_node_leaves_another_live_nodes_deploy_alone(pair: tuple[Node, Node]) -> None:
    """Recovery at start fails approvals cut off by a crash, but not one a live node is deploying."""
    n1, n2 = pair
    s1 = n1.d.services
    assert s1 is not None
    row = await s1.store.insert_approval("apply_commit", "a", "in flight on n1", "operator", time.time(),
                                         status="approving")  # fmt: skip
    s1.hub.publish("approval_resolving", {"id": row["id"]})  # what Approvals.approve says as it starts deploying
    async with asyncio.timeout(BOUND):
        while row["id"] not in {a for n in await s1.store.nodes() if n["name"] == "n1" for a in n["approving"]}:
            await asyncio.sleep(0.05)  # the heartbeat has no event of its own to wait on
    await n2.stop()
    await n2.start()
    got = await s1.store.get_approval(row["id"])
    assert got is not None and got["status"] == "approving", "n2's start left n1's deploy alone"
    await n1.stop()  # n1 leaves with the deploy unfinished: now a starting node fails it
    await n2.stop()
    n2_again = await n2.start()
    assert n2_again.services is not None
    got = await n2_again.services.store.get_approval(row["id"])
    assert got is not None and got["status"] == "failed"


async def test_a_question_outlives_the_node_it_was_asked_on(pair: tuple[Node, Node]) -> None:
    """Asked on n1 with a deadline, n1 stops: n2's watchdog expires it when the deadline comes."""
    n1, n2 = pair
    a = await wire(n1, "a")
    assert n2.d.services is not None
    stream = n2.d.services.hub.subscribe()
    try:
        asked = await ask_socket(a, {"cmd": "ask", "question": "still there?", "ttl_seconds": 2})
        assert asked["ok"], asked
        qid = asked["question"]["id"]

        async def next_on_n2(kind: str) -> dict[str, Any]:
            async with asyncio.timeout(BOUND):
                while True:
                    event = await stream.next()
                    assert event is not None
                    if event.kind == kind and event.payload.get("id") == qid:
                        return event.payload

        await next_on_n2("question_added")  # relayed: n2 knows the deadline
        await n1.stop()
        resolved = await next_on_n2("question_resolved")
        assert resolved["answer"] == "[expired]" and "_node" not in resolved, "n2's own watchdog expired it"
    finally:
        stream.close()

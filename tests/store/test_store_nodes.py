"""The node operations (store/node_base.py) on both backends, with two writers as two nodes:
the registry's node column, claims that only one node wins, requests answered once, relayed
events read in order without this node's own."""

from __future__ import annotations

import asyncio
import time

from hyperhive.store.base import Store


async def test_agents_are_adopted_once_and_a_moved_agent_is_claimed_by_one_node(store: Store, second: Store) -> None:
    now = time.time()
    await store.register_agent("a", None, now)
    await store.register_agent("b", None, now)
    assert await store.agent_nodes() == {"a": None, "b": None}
    assert await store.adopt_agents("n1", all_agents=False) == 2
    assert await second.adopt_agents("n2", all_agents=False) == 0
    assert await second.agent_nodes() == {"a": "n1", "b": "n1"}
    # two nodes take "a" from n1 at once: exactly one wins
    wins = await asyncio.gather(store.set_agent_node("a", "n2", only_from="n1"),
                                second.set_agent_node("a", "n3", only_from="n1"))  # fmt: skip
    assert sorted(wins) == [False, True]
    assert (await store.agent_nodes())["a"] in ("n2", "n3")
    await store.mark_destroyed("b", now)
    assert "b" not in await store.agent_nodes()
    assert (await store.agent_nodes(include_destroyed=True))["b"] == "n1"


async def test_a_request_is_answered_once_and_events_come_in_order_without_our_own(store: Store, second: Store) -> None:
    now = time.time()
    rid = await store.node_request("n2", {"cmd": "stop", "name": "b"}, "operator", now)
    open_ = await second.node_requests_open("n2")
    assert [(r["id"], r["request"], r["caller"]) for r in open_] == [(rid, {"cmd": "stop", "name": "b"}, "operator")]
    assert await second.node_requests_open("n1") == []
    answers = await asyncio.gather(second.node_request_done(rid, {"ok": True, "result": {}}, now),
                                   store.node_request_done(rid, {"ok": False}, now))  # fmt: skip
    assert sorted(answers) == [False, True]
    assert await second.node_requests_open("n2") == []
    done = await store.node_request_get(rid)
    assert done is not None and done["done_at"] == now and done["reply"] in ({"ok": True, "result": {}}, {"ok": False})

    start = await store.node_events_last_id()
    await store.node_events_insert("n1", [(now, "message_sent", {"id": 1}), (now, "agent_added", {"name": "x"})])
    await second.node_events_insert("n2", [(now, "agent_changed", {"name": "y"})])
    seen_by_n2 = await second.node_events_after(start, "n2")
    assert [(e["node"], e["kind"], e["payload"]) for e in seen_by_n2] == [
        ("n1", "message_sent", {"id": 1}), ("n1", "agent_added", {"name": "x"})]  # fmt: skip
    assert [e["kind"] for e in await store.node_events_after(start, "n1")] == ["agent_changed"]
    assert await store.node_housekeeping(now + 1, now + 1) == 4  # three events and the answered request


async def test_heartbeats_carry_the_nodes_rows_and_url(store: Store, second: Store) -> None:
    await store.node_heartbeat("n1", "http://127.0.0.1:1/", [{"name": "a", "state": "running"}], 100.0)
    await second.node_heartbeat("n2", None, [], 101.0)
    await store.node_heartbeat("n1", "http://127.0.0.1:1/", [], 102.0, approving={7, 3})
    nodes = {n["name"]: n for n in await second.nodes()}
    assert nodes["n1"]["heartbeat_at"] == 102.0 and nodes["n1"]["started_at"] == 100.0 and nodes["n1"]["rows"] == []
    assert nodes["n1"]["approving"] == [3, 7] and nodes["n2"]["approving"] == []
    assert nodes["n2"]["dashboard_url"] is None

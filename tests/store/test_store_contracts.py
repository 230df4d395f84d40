"""The store contracts (store/base.py), each against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from hyperhive.store.base import ApprovalStatus, Store
from hyperhive.store.migrations import BROKER_MIGRATIONS

# ---- messages: at-least-once ---------------------------------------------------------------


async def test_claim_hands_out_oldest_first_once_and_ack_settles(store: Store) -> None:
    ids = [(await store.insert_messages("a", ["b"], f"m{i}", 10.0 + i))[0] for i in range(3)]
    first = await store.claim_pending("b", 2, 20.0)
    assert [m["id"] for m in first] == ids[:2]
    assert all(m["delivered_at"] == 20.0 and m["attempts"] == 1 and not m["redelivered"] for m in first)
    rest = await store.claim_pending("b", 5, 21.0)
    assert [m["id"] for m in rest] == ids[2:]
    assert await store.claim_pending("b", 5, 22.0) == []
    assert await store.unread("b") == 0
    assert await store.ack("b", 23.0) == 3
    assert await store.requeue_inflight("b", 3, 24.0) == (0, [])
    got = await store.get_message(ids[0])
    assert got is not None and got["acked_at"] == 23.0


async def test_requeue_redelivers_then_parks_and_dead_letters_resolve(store: Store) -> None:
    (mid,) = await store.insert_messages("a", ["b"], "hello", 1.0)
    await store.claim_pending("b", 1, 2.0)
    count, parked = await store.requeue_inflight("b", 2, 3.0)
    assert (count, parked) == (1, [])
    (again,) = await store.claim_pending("b", 1, 4.0)
    assert again["redelivered"] and again["attempts"] == 2
    count, parked = await store.requeue_inflight("b", 2, 5.0)
    assert count == 0 and [m["id"] for m in parked] == [mid] and parked[0]["dead_at"] == 5.0
    assert await store.claim_pending("b", 1, 6.0) == []
    assert await store.unread("b") == 0
    assert [m["id"] for m in await store.dead_letters(10)] == [mid]
    retried = await store.retry_dead(mid)
    assert retried is not None and retried["attempts"] == 0 and retried["dead_at"] is None
    assert await store.retry_dead(mid) is None  # no longer parked
    (third,) = await store.claim_pending("b", 1, 7.0)
    assert third["id"] == mid and third["redelivered"]
    await store.requeue_inflight("b", 1, 8.0)
    discarded = await store.discard_dead(mid, 9.0)
    assert discarded is not None and discarded["acked_at"] == 9.0
    assert await store.dead_letters(10) == []
    assert await store.discard_dead(mid, 10.0) is None


async def test_settled_recipients_arrive_delivered_and_acknowledged(store: Store) -> None:
    ids = await store.insert_messages("a", ["operator", "b"], "x", 5.0, settled={"operator"}, broadcast=True)
    op, b = (await store.get_message(ids[0])), (await store.get_message(ids[1]))
    assert op is not None and op["delivered_at"] == 5.0 and op["acked_at"] == 5.0 and op["broadcast"]
    assert b is not None and b["delivered_at"] is None
    assert await store.unread_counts() == {"b": 1}
    assert [m["id"] for m in await store.recent_messages(recipient="b")] == [ids[1]]
    assert [m["id"] for m in await store.recent_messages(involving="a")] == sorted(ids, reverse=True)
    assert [m["id"] for m in await store.recent_messages(limit=1)] == [max(ids)]


@pytest.mark.parametrize("claimers", [8])
async def test_concurrent_claims_from_two_writers_never_share_a_message(
    store: Store, second: Store, claimers: int
) -> None:
    total = 300
    for chunk in range(0, total, 50):
        await store.insert_messages("a", ["b"] * 50, f"chunk {chunk}", float(chunk))
    barrier = asyncio.Barrier(claimers)
    seen: list[list[int]] = [[] for _ in range(claimers)]

    async def claimer(i: int) -> None:
        s = store if i % 2 == 0 else second
        await barrier.wait()
        while True:
            got = await s.claim_pending("b", 7, 100.0)
            if not got:
                return
            seen[i].extend(m["id"] for m in got)

    await asyncio.gather(*(claimer(i) for i in range(claimers)))
    flat = [mid for ids in seen for mid in ids]
    assert len(flat) == total and len(set(flat)) == total
    assert sum(1 for ids in seen if ids) > 1  # the claims did overlap in time


async def test_vacuum_removes_only_acknowledged_rows_older_than_the_cutoff(store: Store) -> None:
    old, edge, fresh, unacked, dead = await store.insert_messages("a", ["b1", "b2", "b3", "b4", "b5"], "x", 1.0)
    for r, at in (("b1", 99.0), ("b2", 100.0), ("b3", 150.0)):
        await store.claim_pending(r, 1, at)
        await store.ack(r, at)
    await store.claim_pending("b5", 1, 2.0)
    await store.requeue_inflight("b5", 1, 3.0)  # parked, unacknowledged
    assert await store.vacuum_messages(100.0) == 1
    assert await store.get_message(old) is None
    for kept in (edge, fresh, unacked, dead):
        assert await store.get_message(kept) is not None


# ---- agents: id allocation -----------------------------------------------------------------


async def test_agent_ids_are_unique_across_writers_and_never_reused(store: Store, second: Store) -> None:
    names = [f"ag{i}" for i in range(12)]
    barrier = asyncio.Barrier(len(names))

    async def register(i: int, name: str) -> int:
        await barrier.wait()
        rec = await (store if i % 2 else second).register_agent(name, f"d {name}", 1.0, uid_base=5000)
        assert rec["uid"] == 5000 + rec["id"]
        return rec["id"]

    ids = await asyncio.gather(*(register(i, n) for i, n in enumerate(names)))
    assert sorted(ids) == list(range(1, len(names) + 1))
    top = names[ids.index(max(ids))]
    assert await store.delete_agent(top)
    assert not await store.delete_agent(top)
    newcomer = await store.register_agent("late", None, 2.0)
    assert newcomer["id"] == len(names) + 1 and newcomer["uid"] is None


async def test_destroyed_agent_comes_back_with_its_id(store: Store) -> None:
    a = await store.register_agent("scout", "first", 1.0, uid_base=100)
    await store.set_desired("scout", "stopped")
    assert (await store.get_agent("scout"))["desired"] == "stopped"  # type: ignore[index]
    await store.mark_destroyed("scout", 5.0)
    assert [r["name"] for r in await store.agents(destroyed=True)] == ["scout"]
    assert await store.agents(destroyed=False) == []
    back = await store.register_agent("scout", None, 6.0, uid_base=100)
    assert back["id"] == a["id"] and back["destroyed_at"] is None and back["desired"] == "running"
    assert back["description"] == "first"
    assert [r["name"] for r in await store.agents()] == ["scout"]


# ---- approvals: one transition wins --------------------------------------------------------


async def test_racing_approval_transitions_let_exactly_one_win(store: Store, second: Store) -> None:
    a = await store.insert_approval("spawn", "scout", "why", "manager", 1.0)
    assert a["status"] == "pending" and a["kind"] == "spawn"
    racers = 10
    barrier = asyncio.Barrier(racers)
    targets: list[ApprovalStatus] = ["approving", "denying"]

    async def race(i: int) -> bool:
        await barrier.wait()
        s = store if i % 2 else second
        return await s.transition_approval(a["id"], ["pending"], targets[i % 2]) is not None

    wins = await asyncio.gather(*(race(i) for i in range(racers)))
    assert sum(wins) == 1
    done = await store.transition_approval(a["id"], ["approving", "denying"], "deployed", resolved_at=9.0,
                                           tag="deployed/1", note="ok")  # fmt: skip
    assert done is not None and (done["status"], done["tag"], done["note"], done["resolved_at"]) == (
        "deployed", "deployed/1", "ok", 9.0)  # fmt: skip
    assert await store.transition_approval(a["id"], ["pending"], "approving") is None
    assert await store.transition_approval(999, ["pending"], "approving") is None
    with pytest.raises(ValueError):
        await store.transition_approval(a["id"], ["deployed"], "failed", status="pending")


async def test_approval_listing(store: Store) -> None:
    one = await store.insert_approval("spawn", "a1", None, "manager", 1.0)
    two = await store.insert_approval("apply_commit", "a2", None, "manager", 2.0, status="proposing",
                                      commit_ref="HEAD")  # fmt: skip
    assert two["commit_ref"] == "HEAD"
    assert [r["id"] for r in await store.approvals(statuses=["pending", "approving"])] == [one["id"]]
    assert [r["id"] for r in await store.approvals(limit=1)] == [two["id"]]
    assert (await store.get_approval(one["id"])) == one
    assert await store.get_approval(12345) is None


# ---- questions -----------------------------------------------------------------------------


async def test_questions_one_answer_wins_and_deadlines(store: Store, second: Store) -> None:
    q = await store.insert_question("a", None, "ok?", ["yes", "no"], True, 1.0, 50.0)
    assert q["options"] == ["yes", "no"] and q["multi"] and q["target"] is None
    later = await store.insert_question("a", "b", "and?", [], False, 2.0, 80.0)
    assert await store.next_question_deadline() == 50.0
    assert await store.due_questions(60.0) == [q["id"]]
    barrier = asyncio.Barrier(6)

    async def answer(i: int) -> bool:
        await barrier.wait()
        return await (store if i % 2 else second).resolve_question(q["id"], f"a{i}", "operator", 3.0) is not None

    assert sum(await asyncio.gather(*(answer(i) for i in range(6)))) == 1
    assert [x["id"] for x in await store.open_questions()] == [later["id"]]
    assert await store.next_question_deadline() == 80.0
    resolved = await store.get_question(q["id"])
    assert resolved is not None and resolved["answerer"] == "operator"


# ---- dashboard sessions --------------------------------------------------------------------


async def test_sessions_revocation_and_forgetting(store: Store) -> None:
    await store.session_create("s1", 10.0, "127.0.0.1", "ua", forget_before=0.0)
    await store.session_create("s2", 20.0, "127.0.0.1", "ua", forget_before=0.0)
    await store.session_touch("s1", 30.0)
    rows = await store.sessions_active(0.0)
    assert [(r["sid"], r["last_seen"]) for r in rows] == [("s1", 30.0), ("s2", 20.0)]
    assert await store.session_revoke("s1", 40.0) == 1
    assert await store.session_revoke("s1", 41.0) == 0
    assert [r["sid"] for r in await store.sessions_active(0.0)] == ["s2"]
    await store.session_create("s3", 100.0, "", "", forget_before=15.0)  # s1 (created 10) is forgotten
    assert [r["sid"] for r in await store.sessions_active(15.0)] == ["s2", "s3"]
    assert await store.session_revoke_all(101.0) == 2
    assert await store.sessions_active(0.0) == []


# ---- usage, grants, stats ------------------------------------------------------------------


async def test_usage_grants_and_stats(store: Store) -> None:
    row = {"agent": "a", "ts": 10.0, "model": "m1", "input_tokens": 5, "output_tokens": 7, "cost_usd": 0.5}
    uid = await store.record_usage(row, [("a", 10.0, "turn", 1.0)])
    await store.record_usage({**row, "ts": 20.0, "model": "m2"})
    await store.record_usage({**row, "agent": "b", "ts": 30.0})
    sums = await store.usage_sums(agent="a", since=0.0)
    assert (sums["requests"], sums["input_tokens"], sums["output_tokens"]) == (2, 10, 14)
    assert sums["cost_usd"] == pytest.approx(1.0)
    assert (await store.usage_sums(since=15.0))["requests"] == 2
    assert (await store.usage_sums(agent="a", since=0.0, until=15.0))["requests"] == 1
    assert set(await store.usage_by("agent", 0.0)) == {"a", "b"}
    assert (await store.usage_by("model", 0.0, agent="a"))["m2"]["requests"] == 1
    recent = await store.usage_recent("a", 1)
    assert recent[0]["model"] == "m2" and recent[0]["id"] > uid
    gid = await store.add_grant("a", 5.0, "raise", 1.5, 100)
    await store.use_grant(gid)
    (grant,) = await store.grants_since("a", 0.0)
    assert grant["used"] == 1 and grant["kind"] == "raise"
    await store.stats_insert([("a", 40.0, "turn", 2.0), ("hive", 41.0, "approvals_pending", 0.0)])
    assert await store.stats_last_ts("a", "turn") == 40.0
    assert [r["ts"] for r in await store.stats_series("a", 0.0)] == [10.0, 40.0]
    assert len(await store.stats_series(None, 0.0)) == 3
    assert await store.purge_usage_and_stats(25.0) == 3  # 1 stats row + 2 usage rows before 25
    assert (await store.usage_sums(since=0.0))["requests"] == 1


# ---- migrations and check ------------------------------------------------------------------


async def test_check_reports_every_migration_applied_and_counts(store: Store) -> None:
    await store.insert_messages("a", ["b", "c"], "x", 1.0)
    report = await store.check()
    assert report["applied"] == [m.name for m in BROKER_MIGRATIONS] and report["missing"] == []
    assert report["counts"]["messages"] == 2 and report["counts"]["counters"] == 1
    assert report["backend"] in ("sqlite", "postgresql")


async def test_racing_requests_for_one_agent_make_one_open_approval(store: Store, second: Store) -> None:
    racers = 8
    barrier = asyncio.Barrier(racers)

    async def request(i: int) -> tuple[int, bool]:
        await barrier.wait()
        row, created = await (store if i % 2 else second).insert_approval_once("spawn", "scout", None, "manager", 1.0)
        return row["id"], created

    results = await asyncio.gather(*(request(i) for i in range(racers)))
    assert sum(created for _, created in results) == 1
    assert len({aid for aid, _ in results}) == 1
    (aid,) = {aid for aid, _ in results}
    await store.transition_approval(aid, ["pending"], "denied")
    _row, created = await store.insert_approval_once("spawn", "scout", None, "manager", 2.0)
    assert created  # the earlier one is resolved: a new request may open
    _other, created = await store.insert_approval_once("init_config", "scout", None, "manager", 2.0)
    assert created  # another kind is another request

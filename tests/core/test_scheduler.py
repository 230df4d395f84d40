"""The burst scheduler (issue 13 §4): admission order with requests arriving at once (a real
barrier), warm turns cheaper than cold ones, and a harness that goes away frees its slot."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hivetest import ask_socket, make_config, start_daemon, stop_daemon, wire_agent
from hyperhive.core.scheduler import PrewarmRefused, Scheduler
from hyperhive.poolsettings import PoolSettings


async def _arrive_together(
    sched: Scheduler, requests: list[tuple[str, float, bool]], order: list[str]
) -> list[asyncio.Task[bool]]:
    barrier = asyncio.Barrier(len(requests) + 1)

    async def one(agent: str, sent_at: float, warm: bool) -> bool:
        await barrier.wait()
        ok = await sched.admit(agent, sent_at=sent_at, warm=warm, wait=60)
        order.append(agent)
        return ok

    tasks = [asyncio.create_task(one(*r)) for r in requests]
    await barrier.wait()
    while len(sched.queued()) + len(sched.running()) < len(requests):
        await asyncio.sleep(0)
    return tasks


async def test_the_oldest_message_is_admitted_first_whatever_the_arrival_order() -> None:
    sched = Scheduler(1)
    assert await sched.admit("holder", sent_at=0.0, warm=False, wait=1)
    order: list[str] = []
    tasks = await _arrive_together(sched, [("c", 30.0, False), ("a", 10.0, False), ("b", 20.0, False)], order)
    assert set(sched.queued()) == {"a", "b", "c"} and sched.running() == ["holder"]
    for expected in ("a", "b", "c"):
        sched.release(sched.running()[0])
        while expected not in order:
            await asyncio.sleep(0)
        assert sched.running() == [expected]
    assert order == ["a", "b", "c"] and all(t.result() for t in tasks)


async def test_warm_turns_fill_what_the_oldest_cold_turn_cannot_use() -> None:
    sched = Scheduler(2)
    assert await sched.admit("cold1", sent_at=0.0, warm=False, wait=1)
    assert await sched.admit("warm1", sent_at=1.0, warm=True, wait=1)  # 1.25 of 2 in use
    order: list[str] = []
    tasks = await _arrive_together(sched, [("cold2", 2.0, False), ("warm2", 3.0, True), ("cold3", 4.0, False)], order)
    while "warm2" not in order:
        await asyncio.sleep(0)
    assert set(sched.queued()) == {"cold2", "cold3"}, "the warm turn fits the 0.75 left; a cold one does not"
    sched.release("warm1")
    sched.release("warm2")
    while "cold2" not in order:
        await asyncio.sleep(0)
    assert list(sched.queued()) == ["cold3"], "cold turns keep the oldest-first order"
    sched.release("cold1")
    await asyncio.gather(*tasks)
    assert order == ["warm2", "cold2", "cold3"]


async def test_a_wait_that_ends_or_a_release_frees_everything() -> None:
    sched = Scheduler(1)
    assert await sched.admit("a", sent_at=0.0, warm=False, wait=1)
    assert await sched.admit("b", sent_at=1.0, warm=False, wait=0.01) is False
    assert sched.queued() == {}
    waiting = asyncio.create_task(sched.admit("c", sent_at=2.0, warm=False, wait=60))
    while "c" not in sched.queued():
        await asyncio.sleep(0)
    sched.release("c")  # its harness went away while it waited
    assert await waiting is False and sched.queued() == {}
    sched.release("a")
    assert sched.in_use == 0 and await sched.admit("d", sent_at=3.0, warm=False, wait=1)


# ---- pre-warms (warm on start): the lowest priority, and only while the warm pool has room ----


async def test_a_waiting_turn_is_admitted_before_an_older_prewarm() -> None:
    sched = Scheduler(1)
    assert await sched.admit("holder", sent_at=0.0, warm=False, wait=1)
    order: list[str] = []
    barrier = asyncio.Barrier(3)

    async def one(agent: str, sent_at: float, prewarm: bool) -> bool:
        await barrier.wait()
        ok = await sched.admit(agent, sent_at=sent_at, warm=False, wait=60, prewarm=prewarm)
        order.append(agent)
        return ok

    tasks = [asyncio.create_task(one("p", 1.0, True)), asyncio.create_task(one("t", 50.0, False))]
    await barrier.wait()
    while sched.prewarms()[0] != ["p"] or "t" not in sched.queued():
        await asyncio.sleep(0)
    assert list(sched.queued()) == ["t"], "a pre-warm is not a queued turn"
    sched.release("holder")
    while "t" not in order:
        await asyncio.sleep(0)
    assert sched.running() == ["t"] and sched.prewarms() == (["p"], []), "the younger turn went first"
    sched.release("t")
    assert await asyncio.gather(*tasks) == [True, True]
    assert order == ["t", "p"] and sched.prewarms() == ([], ["p"])


async def test_a_prewarm_over_the_warm_room_is_refused() -> None:
    warm: set[str] = set()
    sched = Scheduler(4, warm_room=lambda starting: 1 - len(warm | starting))
    assert await sched.admit("a", sent_at=0.0, warm=False, wait=1, prewarm=True)
    with pytest.raises(PrewarmRefused, match="warm pool is full"):
        await sched.admit("b", sent_at=0.0, warm=False, wait=1, prewarm=True)  # a's pre-warm takes the room
    warm.add("a")  # a reports warm, then frees its pre-warm's slot
    with pytest.raises(PrewarmRefused):
        await sched.admit("b", sent_at=0.0, warm=False, wait=1, prewarm=True)
    sched.release("a", prewarm=True)
    with pytest.raises(PrewarmRefused):
        await sched.admit("b", sent_at=0.0, warm=False, wait=1, prewarm=True)
    assert await sched.admit("b", sent_at=0.0, warm=False, wait=1), "a turn is never refused"
    assert sched.running() == ["b"]


async def test_an_agent_warm_and_still_holding_its_prewarm_is_counted_once() -> None:
    warm: set[str] = set()
    sched = Scheduler(4, warm_room=lambda starting: 2 - len(warm | starting))
    assert await sched.admit("a", sent_at=0.0, warm=False, wait=1, prewarm=True)
    warm.add("a")  # a reported warm; its turn_release is still on the way
    assert await sched.admit("b", sent_at=0.0, warm=False, wait=1, prewarm=True), "room for one more"
    with pytest.raises(PrewarmRefused):
        await sched.admit("c", sent_at=0.0, warm=False, wait=1, prewarm=True)


async def test_waiting_prewarms_are_refused_when_the_room_goes_while_they_wait() -> None:
    room = [2]
    sched = Scheduler(1, warm_room=lambda starting: room[0] - len(starting))
    assert await sched.admit("holder", sent_at=0.0, warm=False, wait=1)
    waiting = [asyncio.create_task(sched.admit(n, sent_at=1.0, warm=False, wait=60, prewarm=True)) for n in "pq"]
    while sched.prewarms()[0] != ["p", "q"]:
        await asyncio.sleep(0)
    room[0] = 0  # other agents warmed meanwhile
    sched.release("holder")
    for task in waiting:
        with pytest.raises(PrewarmRefused):
            await task
    assert sched.prewarms() == ([], []) and sched.in_use == 0


async def test_releasing_a_prewarm_never_frees_the_turn_admitted_since() -> None:
    sched = Scheduler(1)
    assert await sched.admit("a", sent_at=0.0, warm=False, wait=1, prewarm=True)
    assert await sched.admit("a", sent_at=1.0, warm=False, wait=1), "a's message replaces its pre-warm"
    sched.release("a", prewarm=True)  # the pre-warm ends after the turn was admitted
    assert sched.running() == ["a"] and sched.prewarms() == ([], [])
    assert await sched.admit("b", sent_at=2.0, warm=False, wait=0.01) is False, "a's turn still holds the slot"


async def test_the_turn_admit_verb_refuses_a_prewarm_when_the_pool_is_full(tmp_path: Path, short_dir: Path) -> None:
    config = make_config(tmp_path, short_dir, pool=PoolSettings(max_warm=1, max_turns=4))
    daemon, task = await start_daemon(config)
    try:
        a, b = await wire_agent(daemon, "a"), await wire_agent(daemon, "b")
        admit = {"cmd": "turn_admit", "sent_at": 1.0, "prewarm": True, "wait_seconds": 5}
        first = await ask_socket(a, admit)
        assert first["ok"] and first["admitted"] is True and not first.get("refused")
        refused = await ask_socket(b, admit)
        assert refused["ok"] and refused["admitted"] is False and "warm pool is full" in refused["refused"]
        bad = await ask_socket(b, {**admit, "prewarm": "yes"})
        assert bad["ok"] is False, "a request is strict"
        assert (await ask_socket(a, {"cmd": "turn_release", "prewarm": True}))["ok"]
        assert (await ask_socket(b, admit))["admitted"] is True, "a's pre-warm freed the room"
    finally:
        await stop_daemon(daemon, task)


async def test_prewarms_wait_while_held_and_go_on_dispatch() -> None:
    held = [True]
    sched = Scheduler(2, hold_prewarms=lambda: held[0])
    waiting = asyncio.create_task(sched.admit("p", sent_at=0.0, warm=False, wait=60, prewarm=True))
    while sched.prewarms()[0] != ["p"]:
        await asyncio.sleep(0)
    assert await sched.admit("t", sent_at=1.0, warm=False, wait=1), "a turn is never held"
    sched.dispatch()
    assert sched.prewarms() == (["p"], []), "still held: a cage is starting"
    held[0] = False
    sched.dispatch()
    assert await waiting and sched.prewarms() == ([], ["p"])


async def test_the_slot_of_an_agents_prewarm_goes_to_its_own_message_not_another_prewarm() -> None:
    sched = Scheduler(1)
    assert await sched.admit("a", sent_at=0.0, warm=False, wait=1, prewarm=True)
    b = asyncio.create_task(sched.admit("b", sent_at=0.0, warm=False, wait=60, prewarm=True))
    while sched.prewarms()[0] != ["b"]:
        await asyncio.sleep(0)
    assert await sched.admit("a", sent_at=5.0, warm=False, wait=1), "a's message takes a's slot"
    assert sched.running() == ["a"] and sched.prewarms() == (["b"], [])
    sched.release("a")
    assert await b and sched.prewarms() == ([], ["b"])


async def test_busy_names_waiting_and_running_turns_and_starting_cold_the_cli_starts() -> None:
    sched = Scheduler(1.25, warm_room=lambda _starting: 5)
    assert await sched.admit("cold", sent_at=1.0, warm=False, wait=1)
    assert await sched.admit("warm", sent_at=2.0, warm=True, wait=1)
    waiting = asyncio.create_task(sched.admit("waits", sent_at=3.0, warm=True, wait=60))
    prewarm = asyncio.create_task(sched.admit("pre", sent_at=4.0, warm=False, wait=60, prewarm=True))
    while "waits" not in sched.queued() or sched.prewarms()[0] != ["pre"]:
        await asyncio.sleep(0)
    assert sched.busy() == {"cold", "warm", "waits"}, "a waiting pre-warm is no turn"
    assert sched.starting_cold() == {"cold"}
    sched.release("cold")
    sched.release("warm")
    assert await waiting and await prewarm
    assert sched.busy() == {"waits", "pre"} and sched.starting_cold() == {"pre"}


async def test_a_cold_turn_waits_for_room_in_the_pool_and_goes_on_dispatch() -> None:
    room = {"ok": False}
    asked: list[tuple[str, frozenset[str]]] = []

    def cold_room(agent: str, starting: frozenset[str]) -> bool:
        asked.append((agent, starting))
        return room["ok"]

    sched = Scheduler(4, cold_room=cold_room)
    assert await sched.admit("warm", sent_at=1.0, warm=True, wait=1), "a warm turn starts no CLI: never held"
    cold = asyncio.create_task(sched.admit("cold", sent_at=2.0, warm=False, wait=60))
    while "cold" not in sched.queued():
        await asyncio.sleep(0)
    assert asked[-1] == ("cold", frozenset()) and sched.cold_wanted() == 1
    assert await sched.admit("warm2", sent_at=3.0, warm=True, wait=1), "warm turns pass a cold one held for room"
    room["ok"] = True
    sched.dispatch()
    assert await cold
    assert sched.cold_wanted() == 0 and sched.starting_cold() == {"cold"}

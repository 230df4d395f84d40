"""The burst scheduler (issue 13 §4): admission order with requests arriving at once (a real
barrier), warm turns cheaper than cold ones, and a harness that goes away frees its slot."""

from __future__ import annotations

import asyncio

from hyperhive.core.scheduler import Scheduler


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

"""The loop watch itself (tests/loopwatch.py, issue 10): a callback of the package that holds
the loop is caught with the line that blocked; the test's own blocking code is not judged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from hyperhive.livefeed import replay
from loopwatch import LoopWatch


class Event:
    def __init__(self, id: int) -> None:
        self.id = id


def slow_history() -> Iterator[Event]:
    time.sleep(0.3)  # blocks the loop from inside the package's replay (a sleep is not CPU wait)
    yield Event(1)


async def test_a_package_callback_that_blocks_the_loop_is_caught_with_its_stack() -> None:
    watch = LoopWatch(threshold=0.1)
    watch.start()
    try:
        await asyncio.create_task(replay(slow_history(), 0))
    finally:
        slow = watch.stop()
    assert len(slow) == 1, watch.report()
    assert "livefeed.py" in slow[0].stack and "slow_history" in slow[0].stack


async def test_the_tests_own_blocking_code_is_not_judged() -> None:
    watch = LoopWatch(threshold=0.1)
    watch.start()
    try:

        async def blocks() -> None:
            time.sleep(0.3)  # no frame of the package on the stack

        await asyncio.create_task(blocks())
    finally:
        slow = watch.stop()
    assert slow == []

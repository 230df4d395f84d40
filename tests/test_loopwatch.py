"""The loop watch itself (tests/loopwatch.py, issue 10): a callback of the package that holds
the loop is caught with the line that blocked; the test's own blocking code is not judged, nor
is a garbage collection of the process's heap that happened to run in the callback."""

from __future__ import annotations

import asyncio
import gc
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


class SlowToFinalize:
    """In a reference cycle, so only a collection frees it, and its finalizer takes 0.3 s."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        time.sleep(0.3)


def history_that_collects() -> Iterator[Event]:
    SlowToFinalize()
    gc.collect()  # the 0.3 s pause is the collector's, inside the package's replay
    yield Event(1)


async def test_a_garbage_collection_inside_a_package_callback_is_not_judged() -> None:
    for watched_gc, expected in ((True, 0), (False, 1)):
        watch = LoopWatch(threshold=0.1)
        watch.start()
        if not watched_gc:
            gc.callbacks.remove(watch._on_gc)  # the control: the same pause, timed as held
        try:
            await asyncio.create_task(replay(history_that_collects(), 0))
        finally:
            slow = watch.stop()
        assert len(slow) == expected, watch.report()

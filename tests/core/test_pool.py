"""The warm pool's choice of whom to cool (issue 13): over the limit, the longest-idle warm agents
are asked to cool through their harness's web socket; a CLI the scheduler admitted to start counts
as warm already; an agent running a turn or waiting for its slot is never chosen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hyperhive.core.pool import COOL_PATH, Pool
from hyperhive.core.registry import AgentRuntime
from hyperhive.poolsettings import PoolSettings


class Harnesses:
    """A web socket per agent that records the cool requests it receives."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cooled: list[str] = []
        self.arrived = asyncio.Condition()
        self._servers: list[asyncio.Server] = []

    def socket(self, name: str) -> Path:
        return self.root / f"{name}.sock"

    async def listen(self, name: str) -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            if head.startswith(f"POST {COOL_PATH} ".encode()):
                async with self.arrived:
                    self.cooled.append(name)
                    self.arrived.notify_all()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            writer.close()

        self._servers.append(await asyncio.start_unix_server(serve, path=str(self.socket(name))))

    async def wait_for(self, count: int) -> list[str]:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.cooled) >= count), 30)
        return sorted(self.cooled)

    def close(self) -> None:
        for server in self._servers:
            server.close()


@pytest.fixture
async def harnesses(short_dir: Path) -> AsyncIterator[Harnesses]:
    h = Harnesses(short_dir)
    yield h
    h.close()


async def _warm_agents(harnesses: Harnesses, idle_since: dict[str, float]) -> dict[str, AgentRuntime]:
    agents = {}
    for i, (name, since) in enumerate(idle_since.items()):
        rt = AgentRuntime(name, i + 1, None, state="running", harness_state="idle", harness_since=since, warm=True)
        agents[name] = rt
        await harnesses.listen(name)
    return agents


async def test_over_the_limit_the_longest_idle_agents_are_asked_to_cool(harnesses: Harnesses) -> None:
    agents = await _warm_agents(harnesses, {"a": 30.0, "b": 10.0, "c": 20.0, "d": 40.0})
    pool = Pool(PoolSettings(max_warm=2), agents, harnesses.socket)
    assert pool.rebalance() == ["b", "c"]
    assert await harnesses.wait_for(2) == ["b", "c"]
    await pool.close()


async def test_a_starting_cli_counts_as_warm_and_a_busy_agent_is_never_chosen(harnesses: Harnesses) -> None:
    agents = await _warm_agents(harnesses, {"a": 10.0, "b": 20.0, "c": 30.0})
    pool = Pool(PoolSettings(max_warm=3), agents, harnesses.socket)
    assert pool.rebalance() == [], "three warm agents fit a limit of three"
    # a cold turn of "new" admitted: its CLI will be the fourth; "a", the longest idle, waits for
    # its own slot (a warm turn's price), so "b" makes the room
    assert pool.rebalance(busy=frozenset({"a", "new"}), starting=frozenset({"new"})) == ["b"]
    assert await harnesses.wait_for(1) == ["b"]
    await pool.close()


async def test_nothing_is_cooled_when_every_warm_agent_is_busy(harnesses: Harnesses) -> None:
    agents = await _warm_agents(harnesses, {"a": 10.0, "b": 20.0})
    pool = Pool(PoolSettings(max_warm=1), agents, harnesses.socket)
    assert pool.rebalance(busy=frozenset({"a", "b"})) == []
    await pool.close()
    assert harnesses.cooled == []


async def test_room_for_a_cold_start_waits_while_the_pool_can_make_room(harnesses: Harnesses) -> None:
    agents = await _warm_agents(harnesses, {"a": 10.0, "b": 20.0})
    cooled = asyncio.Event()
    pool = Pool(PoolSettings(max_warm=2), agents, harnesses.socket, on_cooled=cooled.set)
    assert not pool.room_for_cold("new", frozenset(), frozenset), "full, and a or b can be cooled"
    assert pool.room_for_cold("new", frozenset(), lambda: frozenset({"a", "b"})), "full, but nothing can be cooled"
    assert pool.rebalance(wanted=1) == ["a"], "the longest idle makes room for the waiting cold turn"
    assert not pool.room_for_cold("new", frozenset(), lambda: frozenset({"b"})), "a is cooling: wait for it"
    await harnesses.wait_for(1)
    await asyncio.wait_for(cooled.wait(), 30)  # the cool is answered: the scheduler looks again
    agents["a"].warm = False  # what a's harness reports once its CLI is gone
    assert pool.room_for_cold("new", frozenset(), frozenset)
    await pool.close()

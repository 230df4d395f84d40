"""One INFO line per hive event in the daemon's log, from the real core (issue 15): an agent's
start and stop, a question (without its text), an approval and its resolution."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hivetest import ask_socket, wire_agent
from hyperhive.core.daemon import Daemon


async def test_each_event_is_one_info_line_without_message_text(hive: Daemon, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hyperhive.events")
    denied = asyncio.Event()

    class Waker(logging.Handler):  # wakes the test when the last line is logged
        def emit(self, record: logging.LogRecord) -> None:
            if "denied" in record.getMessage():
                denied.set()

    waker = Waker()
    logging.getLogger("hyperhive.events").addHandler(waker)
    assert hive.services is not None
    s = hive.services
    await s.lifecycle.spawn("worker", "logs its life")
    await s.lifecycle.stop("worker")
    asker = await wire_agent(hive, "asker")
    assert (await ask_socket(asker, {"cmd": "ask", "question": "the secret plan?"}))["ok"]
    manager = await wire_agent(hive, "manager")
    assert (await ask_socket(manager, {"cmd": "request_spawn", "name": "newbie"}))["ok"]
    pending = await s.approvals.pending()
    await s.approvals.deny(pending[0]["id"], note="not now")
    try:
        async with asyncio.timeout(10):
            await denied.wait()
    finally:
        logging.getLogger("hyperhive.events").removeHandler(waker)
    lines = [r.getMessage() for r in caplog.records if r.name == "hyperhive.events"]
    assert lines.count("agent worker: running") == 1 and lines.count("agent worker: stopped") == 1, lines
    assert "agent worker: created" in lines
    assert any(line.startswith("question #") and line.endswith(": asker asks the operator") for line in lines)
    assert any(line.startswith("approval #") and "spawn newbie requested by manager" in line for line in lines)
    assert not [line for line in lines if "secret plan" in line]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "hyperhive.events")

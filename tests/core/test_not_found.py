"""A missing approval, question, dead letter or kept state is NotFound; AgentNotFound names a
missing agent only (issue 10). Both answer `not_found` on the wire; callers that branch on the
class (`except AgentNotFound`) must not mistake one for the other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hivetest import ask_socket
from hyperhive.core.daemon import Daemon
from hyperhive.errors import AgentNotFound, NotFound


async def test_missing_things_that_are_not_agents_are_not_found_not_agent_not_found(hive: Daemon) -> None:
    s = hive.services
    assert s is not None
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: s.approvals.approve(9999),
        lambda: s.approvals.deny(9999, None),
        lambda: s.questions.answer(9999, "x", answerer="operator", as_operator=True),
        lambda: s.questions.cancel(9999),
        lambda: s.broker.retry_dead(9999),
        lambda: s.broker.discard_dead(9999),
        lambda: s.lifecycle.purge_kept("ghost"),
    ]
    for call in calls:
        with pytest.raises(NotFound) as caught:
            await call()
        assert not isinstance(caught.value, AgentNotFound), caught.value
    with pytest.raises(AgentNotFound):
        await s.lifecycle.start("ghost", reason="test")
    reply = await ask_socket(hive.paths.host_socket, {"cmd": "approve", "id": 9999})
    assert reply["ok"] is False and reply["code"] == "not_found"

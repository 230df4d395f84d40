"""Questions (issue 4 "Questions"; architecture §4, §12): ask returns at once, the answer arrives in
the asker's inbox as `question_answered`; TTL expiry, operator cancel, peer questions and open
threads, driven through the daemon's real sockets and the `hive` CLI.

The agents' harnesses are stopped after spawning: their sockets stay open, so the test speaks
as each agent on its own socket, and the events addressed to them stay in the broker to read."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import HiveRig, make_config, start_daemon, stop_daemon
from hyperhive.client import HiveClient, RemoteError
from hyperhive.core.questions import CANCELLED, EXPIRED, WATCHDOG
from hyperhive.names import MANAGER
from hyperhive.protocol import MAX_QUESTION_TTL


@dataclass
class Hive(HiveRig):
    host: HiveClient
    alice: HiveClient
    bob: HiveClient
    manager: HiveClient

    HIVE_BOUND = 30.0

    def events(self, to: str, event: str) -> list[dict[str, Any]]:
        """The system events addressed to `to`, oldest first, read from the broker's rows."""
        return self.system_events(to, event)


@pytest.fixture
async def qhive(tmp_path: Path, short_dir: Path) -> AsyncIterator[Hive]:
    daemon, task = await start_daemon(make_config(tmp_path, short_dir, manager=True))
    clients: list[HiveClient] = []
    try:
        s = daemon.services
        assert s is not None
        await s.lifecycle.stop(MANAGER)
        for name in ("alice", "bob"):
            await s.lifecycle.spawn(name)
            await s.lifecycle.stop(name)

        def client(path: Path) -> HiveClient:
            clients.append(HiveClient(path, timeout=10))
            return clients[-1]

        ap = daemon.paths.agent
        yield Hive(daemon, client(daemon.paths.host_socket), client(ap("alice").socket),
                   client(ap("bob").socket), client(ap(MANAGER).socket))  # fmt: skip
    finally:
        for c in clients:
            await c.close()
        await stop_daemon(daemon, task)


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_an_operator_answer_reaches_the_askers_inbox(qhive: Hive) -> None:
    """ask returns an id at once; the operator's answer arrives as question_answered {id, question,
    answer, answerer} in the asker's inbox (issue 4; architecture §4)."""
    reply = await qhive.alice.call("ask", question="ship it?", options=["yes", "no"], multi=True)
    qid = reply["id"]
    assert reply["question"]["target"] == "operator" and reply["question"]["answer"] is None
    assert [q["id"] for q in (await qhive.host.call("questions"))["questions"]] == [qid]
    await qhive.host.call("answer", id=qid, answer="yes,no")
    assert qhive.events("alice", "question_answered") == [
        {"event": "question_answered", "id": qid, "question": "ship it?", "answer": "yes,no", "answerer": "operator"}
    ]
    assert (await qhive.host.call("questions"))["questions"] == []
    with pytest.raises(RemoteError) as again:
        await qhive.host.call("answer", id=qid, answer="no")
    assert again.value.code == "conflict"
    assert len(qhive.events("alice", "question_answered")) == 1  # no second answer was invented


async def test_the_watchdog_expires_a_question_at_its_deadline_on_an_injected_clock(qhive: Hive) -> None:
    """ttl_seconds sets a deadline; the daemon's watchdog resolves it with [expired] by
    ttl-watchdog once the (injected) clock passes it, and not before (issue 4)."""
    clock = FakeClock()
    qhive.s.questions.clock = clock
    qid = (await qhive.alice.call("ask", question="still needed?", ttl_seconds=60))["id"]
    assert (await qhive.s.questions.get(qid))["deadline_at"] == clock.now + 60
    clock.now += 59
    assert await qhive.s.questions.expire_due() == []
    clock.now += 2
    # a new question wakes the running watchdog, which now finds the first one due
    await qhive.bob.call("ask", question="unrelated")
    # question_answered is the last thing _resolve writes
    await qhive.until("the watchdog's expiry", lambda: qhive.events("alice", "question_answered"), 5)
    q = await qhive.s.questions.get(qid)
    assert (q["answer"], q["answerer"], q["answered_at"]) == (EXPIRED, WATCHDOG, clock.now)
    assert qhive.events("alice", "question_answered") == [
        {"event": "question_answered", "id": qid, "question": "still needed?", "answer": EXPIRED, "answerer": WATCHDOG}
    ]
    with pytest.raises(RemoteError) as late:
        await qhive.host.call("answer", id=qid, answer="too late")
    assert late.value.code == "conflict"


async def test_a_ttl_over_the_cap_is_capped_at_six_hours(qhive: Hive) -> None:
    """ttl_seconds is capped at 6 h (issue 4), whether asked of the service or over the wire."""
    clock = FakeClock()
    qhive.s.questions.clock = clock
    q = await qhive.s.questions.ask("alice", "long wait?", ttl_seconds=10 * MAX_QUESTION_TTL)
    assert q["deadline_at"] == clock.now + MAX_QUESTION_TTL
    longer = await qhive.alice.call("ask", question="longer?", ttl_seconds=MAX_QUESTION_TTL + 1)
    assert longer["question"]["deadline_at"] == clock.now + MAX_QUESTION_TTL
    at_cap = await qhive.alice.call("ask", question="at the cap?", ttl_seconds=MAX_QUESTION_TTL)
    assert at_cap["question"]["deadline_at"] == clock.now + MAX_QUESTION_TTL


async def test_the_operator_cancels_a_question_and_the_asker_gets_cancelled(qhive: Hive) -> None:
    """cancel_question resolves it with [cancelled]; it is then closed for answers (issue 4)."""
    qid = (await qhive.bob.call("ask", question="which branch?", options=["main", "dev"]))["id"]
    await qhive.host.call("cancel_question", id=qid)
    assert qhive.events("bob", "question_answered") == [
        {"event": "question_answered", "id": qid, "question": "which branch?", "answer": CANCELLED,
         "answerer": "operator"}
    ]  # fmt: skip
    with pytest.raises(RemoteError) as again:
        await qhive.host.call("cancel_question", id=qid)
    assert again.value.code == "conflict"
    with pytest.raises(RemoteError) as missing:
        await qhive.host.call("cancel_question", id=qid + 1000)
    assert missing.value.code == "not_found"


async def test_a_peer_question_goes_to_its_target_and_only_the_target_answers(qhive: Hive) -> None:
    """ask(to=bob) pushes question_asked to bob; a non-target agent (and the manager) is refused and
    the question stays open; bob's answer reaches alice with answerer bob (issue 4; upstream §2.3)."""
    qid = (await qhive.alice.call("ask", question="can you review #12?", options=["yes", "later"], to="bob"))["id"]
    assert qhive.events("bob", "question_asked") == [
        {"event": "question_asked", "id": qid, "asker": "alice", "question": "can you review #12?",
         "options": ["yes", "later"], "multi": False}
    ]  # fmt: skip
    for outsider in (qhive.alice, qhive.manager):
        with pytest.raises(RemoteError) as refused:
            await outsider.call("answer", id=qid, answer="yes")
        assert refused.value.code == "forbidden"
    assert (await qhive.s.questions.get(qid))["answered_at"] is None  # the refusals wrote nothing
    assert qhive.events("alice", "question_answered") == []
    await qhive.bob.call("answer", id=qid, answer="later")
    assert qhive.events("alice", "question_answered") == [
        {"event": "question_answered", "id": qid, "question": "can you review #12?", "answer": "later",
         "answerer": "bob"}
    ]  # fmt: skip


async def test_the_operator_may_override_a_peer_question(qhive: Hive) -> None:
    """The operator answers a question asked of a peer (the dashboard's override); the target can
    no longer answer it (upstream §2.3)."""
    qid = (await qhive.bob.call("ask", question="lunch?", to="alice"))["id"]
    await qhive.host.call("answer", id=qid, answer="no: the operator says keep working")
    assert qhive.events("bob", "question_answered")[0]["answerer"] == "operator"
    with pytest.raises(RemoteError) as late:
        await qhive.alice.call("answer", id=qid, answer="yes")
    assert late.value.code == "conflict"


async def test_agents_cannot_answer_operator_questions_or_ask_nobody(qhive: Hive) -> None:
    """An operator question is answered only on the host socket; asking a missing agent, a
    reserved name or oneself is refused before anything is stored (issue 4)."""
    qid = (await qhive.alice.call("ask", question="deploy on friday?"))["id"]
    for agent in (qhive.bob, qhive.manager, qhive.alice):
        with pytest.raises(RemoteError) as refused:
            await agent.call("answer", id=qid, answer="sure")
        assert refused.value.code == "forbidden"
    for to, code in (
        ("nobody", "not_found"),
        ("alice", "forbidden"),
        ("system", "invalid_name"),
        ("../x", "invalid_name"),
    ):
        with pytest.raises(RemoteError) as refused:
            await qhive.alice.call("ask", question="?", to=to)
        assert refused.value.code == code, to
    assert [q["id"] for q in (await qhive.s.questions.pending())] == [qid]
    explicit = (await qhive.alice.call("ask", question="?", to="operator"))["question"]  # same as no `to`
    assert explicit["target"] == "operator"


async def test_open_threads_are_the_callers_own_and_the_whole_hive_for_the_manager(qhive: Hive) -> None:
    """get_open_threads lists questions asked and owed (and, for the manager, every open question
    and pending approval in the hive) (issue 4)."""
    to_op = (await qhive.alice.call("ask", question="a?"))["id"]
    to_bob = (await qhive.alice.call("ask", question="b?", to="bob"))["id"]
    from_bob = (await qhive.bob.call("ask", question="c?"))["id"]
    approval = (await qhive.host.call("request_spawn", name="carol"))["approval"]["id"]

    def ids(threads: dict[str, Any]) -> dict[str, list[int]]:
        return {k: [x["id"] for x in threads[k]] for k in ("asked", "owed", "approvals")}

    assert ids(await qhive.alice.call("open_threads")) == {"asked": [to_op, to_bob], "owed": [], "approvals": []}
    assert ids(await qhive.bob.call("open_threads")) == {"asked": [from_bob], "owed": [to_bob], "approvals": []}
    manager = ids(await qhive.manager.call("open_threads"))
    assert manager == {"asked": [to_op, to_bob, from_bob], "owed": [], "approvals": [approval]}
    await qhive.bob.call("answer", id=to_bob, answer="done")
    assert ids(await qhive.bob.call("open_threads"))["owed"] == []
    assert ids(await qhive.alice.call("open_threads"))["asked"] == [to_op]


async def test_the_cli_lists_answers_and_cancels_questions(qhive: Hive) -> None:
    """`hive questions --json`, `hive answer ID TEXT`, `hive cancel-question ID` (architecture §12):
    one JSON document, exit 0, and a one-line reason with a non-zero exit on a bad id."""
    first = (await qhive.alice.call("ask", question="color?", options=["red", "blue"]))["id"]
    second = (await qhive.bob.call("ask", question="size?", ttl_seconds=600))["id"]
    listed = await qhive.hive("questions", "--json")
    assert listed.returncode == 0, listed.stderr
    questions = json.loads(listed.stdout)["questions"]
    assert [(q["id"], q["asker"], q["target"], q["options"]) for q in questions] == [
        (first, "alice", "operator", ["red", "blue"]), (second, "bob", "operator", [])
    ]  # fmt: skip
    assert questions[1]["deadline_at"] is not None
    answered = await qhive.hive("answer", str(first), "blue, with a stripe")
    assert (answered.returncode, answered.stdout.strip()) == (0, f"#{first} answered")
    assert qhive.events("alice", "question_answered")[0]["answer"] == "blue, with a stripe"
    cancelled = await qhive.hive("cancel-question", str(second))
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"#{second} cancelled")
    assert qhive.events("bob", "question_answered")[0]["answer"] == CANCELLED
    assert json.loads((await qhive.hive("questions", "--json")).stdout) == {"questions": []}
    again = await qhive.hive("answer", str(first), "red")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith("hive: ") and "already resolved" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

"""Dead letters (issue 9): a message whose turn fails every time is parked after `max_attempts`
deliveries instead of being retried forever, the operator and the manager are told, and the
operator lists, retries or discards it (host.sock verbs and the `hive` CLI). Nothing is dropped.

Driven through the public requeue path: the test speaks as a harness-less agent on its own
socket (recv, then requeue_inflight, as a harness does when a turn fails or it restarts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hivetest import ask_socket, make_config, run_hive, start_daemon, stop_daemon, system_events, wire_agent
from hyperhive.config import load_config
from hyperhive.core.daemon import Daemon
from hyperhive.errors import StartupError
from hyperhive.names import MANAGER, OPERATOR
from hyperhive.protocol import ErrorCode


async def call(path: Path, cmd: str, **fields: Any) -> dict[str, Any]:
    reply = await ask_socket(path, {"cmd": cmd, **fields})
    assert reply["ok"] is True, reply
    return reply


async def fail_turns(sock: Path, times: int) -> list[dict[str, Any]]:
    """As a harness whose turn fails: take the next message, then put it back; `times` times."""
    seen = []
    for _ in range(times):
        got = await call(sock, "recv", max=1)
        seen += got["messages"]
        await call(sock, "requeue_inflight")
    return seen


async def dead(daemon: Daemon) -> list[dict[str, Any]]:
    return list((await call(daemon.paths.host_socket, "dead_letters"))["dead_letters"])


async def test_a_message_that_fails_every_delivery_is_parked_and_both_are_told(hive: Daemon) -> None:
    """Three failed deliveries park the message: it leaves the queue, is listed with its
    attempts, and `dead_letter` reaches the operator's inbox and the manager."""
    worker = await wire_agent(hive, "worker")
    await wire_agent(hive, MANAGER)
    sent = await call(hive.paths.host_socket, "send", to="worker", body="fork bomb, please")
    seen = await fail_turns(worker, 3)
    assert [(m["id"], m["attempts"]) for m in seen] == [(sent["id"], 1), (sent["id"], 2), (sent["id"], 3)]
    after = await call(worker, "recv", max=5)
    assert after["messages"] == [] and after["unread"] == 0
    [row] = await dead(hive)
    assert (row["id"], row["recipient"], row["attempts"], row["body"]) == (sent["id"], "worker", 3, "fork bomb, please")
    assert row["dead_at"] is not None and row["acked_at"] is None
    assert hive.services is not None
    for to in (OPERATOR, MANAGER):
        [event] = system_events(hive.services, to, "dead_letter")
        assert (event["id"], event["recipient"], event["attempts"]) == (sent["id"], "worker", 3), to
    listed = await call(hive.paths.host_socket, "list")
    assert [a["unread"] for a in listed["agents"] if a["name"] == "worker"] == [0]


async def test_fewer_failures_than_the_cap_keep_the_message_in_the_queue(hive: Daemon) -> None:
    worker = await wire_agent(hive, "worker")
    sent = await call(hive.paths.host_socket, "send", to="worker", body="flaky")
    await fail_turns(worker, 2)
    assert await dead(hive) == []
    got = await call(worker, "recv")
    assert [(m["id"], m["redelivered"], m["attempts"]) for m in got["messages"]] == [(sent["id"], True, 3)]
    await call(worker, "ack_turn")
    await call(worker, "requeue_inflight")
    assert await dead(hive) == []


async def test_the_operator_retries_and_discards_dead_letters_from_the_cli(hive: Daemon) -> None:
    """`hive dead-letters --json` lists them; `hive retry-dead` puts one back (fresh attempts),
    `hive discard-dead` acknowledges the other without delivery; unknown ids are refused."""
    worker = await wire_agent(hive, "worker")
    host = hive.paths.host_socket
    one = (await call(host, "send", to="worker", body="one"))["id"]
    two = (await call(host, "send", to="worker", body="two"))["id"]
    await fail_turns(worker, 6)
    listed = await run_hive(hive.paths.run_dir, "dead-letters", "--json", ok=True)
    doc = json.loads(listed.stdout)
    assert [m["id"] for m in doc["dead_letters"]] == [one, two] and doc["max_attempts"] == 3
    text = await run_hive(hive.paths.run_dir, "dead-letters", ok=True)
    assert f"#{one} operator → worker, 3 attempts" in text.stdout

    retried = await run_hive(hive.paths.run_dir, "retry-dead", str(one), ok=True)
    assert retried.stdout.strip() == f"#{one} requeued for worker"
    got = await call(worker, "recv", max=5)
    assert [(m["id"], m["attempts"], m["redelivered"]) for m in got["messages"]] == [(one, 1, True)]
    await call(worker, "ack_turn")

    dropped = await run_hive(hive.paths.run_dir, "discard-dead", str(two), ok=True)
    assert dropped.stdout.strip() == f"#{two} for worker discarded"
    assert await dead(hive) == []
    assert (await call(worker, "recv", max=5))["messages"] == []

    for verb in ("retry-dead", "discard-dead"):
        refused = await run_hive(hive.paths.run_dir, verb, str(two))
        assert refused.returncode != 0 and f"no dead letter #{two}" in refused.stderr
    reply = await ask_socket(host, {"cmd": "retry_dead", "id": one})
    assert reply["ok"] is False and reply["code"] == ErrorCode.NOT_FOUND
    empty = await run_hive(hive.paths.run_dir, "dead-letters", ok=True)
    assert empty.stdout.strip() == "no dead letters"


async def test_agents_cannot_reach_the_dead_letter_verbs(hive: Daemon) -> None:
    worker = await wire_agent(hive, "worker")
    for req in ({"cmd": "dead_letters"}, {"cmd": "retry_dead", "id": 1}, {"cmd": "discard_dead", "id": 1}):
        reply = await ask_socket(worker, req)
        assert reply["ok"] is False and reply["code"] == ErrorCode.UNKNOWN_VERB, reply


async def test_a_dead_letter_for_the_manager_is_told_to_the_operator_only(hive: Daemon) -> None:
    manager = await wire_agent(hive, MANAGER)
    sent = await call(hive.paths.host_socket, "send", to=MANAGER, body="do it")
    await fail_turns(manager, 3)
    assert [m["id"] for m in await dead(hive)] == [sent["id"]]
    assert hive.services is not None
    assert [e["id"] for e in system_events(hive.services, OPERATOR, "dead_letter")] == [sent["id"]]
    assert system_events(hive.services, MANAGER, "dead_letter") == []


async def test_max_attempts_comes_from_hive_toml_and_dead_letters_survive_a_restart(
    tmp_path: Path, short_dir: Path
) -> None:
    """`[broker] max_attempts = 1` parks after one failed delivery; the dead letter is still
    listed after the daemon restarts on the same state."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "hive.toml").write_text("[broker]\nmax_attempts = 1\n")
    loaded = load_config(state_dir=state, run_dir=short_dir, environ={})
    assert loaded.max_attempts == 1
    config = make_config(tmp_path, short_dir, max_attempts=loaded.max_attempts)
    daemon, task = await start_daemon(config)
    try:
        worker = await wire_agent(daemon, "worker")
        sent = await call(daemon.paths.host_socket, "send", to="worker", body="once")
        await fail_turns(worker, 1)
        assert [m["id"] for m in await dead(daemon)] == [sent["id"]]
    finally:
        await stop_daemon(daemon, task)
    daemon, task = await start_daemon(config)
    try:
        [row] = await dead(daemon)
        assert (row["id"], row["attempts"]) == (sent["id"], 1)
    finally:
        await stop_daemon(daemon, task)


@pytest.mark.parametrize("bad", ["max_attempts = 0", 'max_attempts = "3"', "retries = 3"])
def test_a_bad_broker_section_is_a_clear_startup_error(tmp_path: Path, bad: str) -> None:
    (tmp_path / "hive.toml").write_text(f"[broker]\n{bad}\n")
    with pytest.raises(StartupError, match=r"\[broker\]"):
        load_config(state_dir=tmp_path, run_dir=tmp_path, environ={})

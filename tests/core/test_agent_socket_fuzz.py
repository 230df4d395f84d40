"""Fuzz an agent's socket and the manager's socket with hypothesis (issue 5 "How it is verified";
architecture §3): for every random or adversarial JSON line the daemon answers with a well-formed
reply (or closes that one connection cleanly), and clients already connected to the same
socket and to host.sock are still served. Also: no operator-only verb has an entry point on
either socket (issue 5 "The boundary"; docs/security.md).

The daemon runs in-process on its own event-loop thread so hypothesis drives it from plain sync
tests. Agents `a`, `b` and the manager are registered with their sockets open and no harness.
Verbs that would start real processes (the manager's start/restart/update/kill) are left out of
the generated `cmd`s; the sweep below proves every operator-only verb is refused.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fuzzkit
from fuzzkit import LiveDaemon, assert_well_formed, fuzz_settings, json_leaf, json_value, live_daemon, ping, raw_lines
from hivetest import sync
from hyperhive.names import MANAGER
from hyperhive.protocol import MAX_LINE_BYTES
from hyperhive.socketverbs import AGENT_VERBS, HOST_VERBS, MANAGER_VERBS

PROCESS_VERBS = {"start", "restart", "update", "kill"}  # would start or stop real cages
FUZZ_VERBS = {"agent": sorted(AGENT_VERBS), "manager": sorted(MANAGER_VERBS - PROCESS_VERBS)}
FIELDS = ["cmd", "to", "body", "name", "id", "in_reply_to", "wait_seconds", "max", "limit", "state", "model",
          "question", "options", "multi", "ttl_seconds", "answer", "after", "agent", "commit_ref", "description",
          "last_turn_ms", "purge", "note"]  # fmt: skip
TABLES = ("messages", "agents", "approvals", "questions")


class AgentLive(LiveDaemon):
    """The live daemon with a, b and the manager wired, its sockets by role, and row counts."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, ("a", "b", MANAGER), thread_name="agent-fuzz-daemon")
        paths = self.daemon.paths
        self.sockets = {"host": paths.host_socket, "agent": paths.agent("a").socket,
                        "manager": paths.agent(MANAGER).socket}  # fmt: skip

    def rows(self) -> dict[str, int]:
        assert self.daemon.services is not None
        counts = sync(self.daemon.services.store.check())["counts"]
        return {t: counts[t] for t in TABLES}


@pytest.fixture(scope="module")
def live() -> Iterator[AgentLive]:
    with live_daemon("hha-", AgentLive) as daemon:
        yield daemon


def exchange(path: Path, line: bytes) -> dict[str, Any] | None:
    """Send one line and half-close; the reply, or None if the daemon closed without one (also
    when it closed on us mid-line, over the line cap)."""
    return fuzzkit.exchange(path, line, cut_off_ok=True)


HOSTILE_VALUES = ["a", "b", "manager", "operator", "system", "*", "..", "a/b", "../b", "-x", "ü", "", "x" * 70,
                  "idle", "needs_login", "HEAD", "0" * 40, "--upload-pack=touch /tmp/x", 0, -1, 2**63, 1e308]  # fmt: skip


def request_lines(verbs: list[str]) -> st.SearchStrategy[bytes]:
    field = st.sampled_from(FIELDS) | st.text(max_size=10)
    value = json_value | st.sampled_from(HOSTILE_VALUES)
    cmd = st.sampled_from(verbs) | st.sampled_from(sorted(HOST_VERBS)) | st.text(max_size=12) | json_leaf

    def line(obj: dict[str, Any]) -> bytes:
        if obj.get("cmd") == "recv":
            obj.pop("wait_seconds", None)  # a long poll would only slow the fuzzing down
        return json.dumps(obj, allow_nan=True).encode() + b"\n"

    return st.builds(lambda extra, c: {**extra, "cmd": c}, st.dictionaries(field, value, max_size=5), cmd).map(line)


ADVERSARIAL = [
    b"{" * 10_000, b"[" * 300_000, b"\x00" * 64, b"\xef\xbb\xbf{\"cmd\":\"ping\"}", b'{"cmd":"ping"} trailing',
    b'{"cmd":"send","to":"b","body":"\\udfff"}', b'{"cmd":"send","to":"b","body":"x","to":"operator"}',
    b'{"cmd":"recv","max":1e400}', b'{"cmd":"report_state","state":"idle","last_turn_ms":1e999}',
    b'{"cmd":"ask","question":"' + b"q" * 70_000 + b'"}', b'{"cmd":"send","to":"b","body":"' + b"x" * (MAX_LINE_BYTES + 10) + b'"}',
    b'{"cmd":"request_apply_commit","agent":"b","commit_ref":"--output=/tmp/x"}', b'{"cmd":"approve","id":1}',
    b'{"cmd":"answer","id":1,"answer":"yes"}', b'{"cmd":"spawn","name":"zed"}', b'{"__proto__":{"cmd":"ping"}}',
]  # fmt: skip


def lines(verbs: list[str]) -> st.SearchStrategy[bytes]:
    return st.one_of(request_lines(verbs), raw_lines, st.sampled_from(ADVERSARIAL).map(lambda b: b + b"\n"))


def _fuzz_one(live: AgentLive, on: str, line: bytes) -> None:
    """Bystanders connect first (to the fuzzed socket and to host.sock), the line goes in on its
    own connection, then both bystanders are still served."""
    with socket.socket(socket.AF_UNIX) as same, socket.socket(socket.AF_UNIX) as host:
        for sock, path in ((same, live.sockets[on]), (host, live.sockets["host"])):
            sock.settimeout(10)
            sock.connect(str(path))
        assert_well_formed(exchange(live.sockets[on], line))
        assert ping(same)["pong"] is True
        assert ping(host)["pong"] is True


FUZZ_SETTINGS = fuzz_settings(300)


@FUZZ_SETTINGS
@given(line=lines(FUZZ_VERBS["agent"]))
def test_any_line_on_an_agent_socket_gets_a_well_formed_answer_and_others_are_still_served(
    live: AgentLive, line: bytes
) -> None:
    """Random and adversarial lines on agent a's mcp.sock never crash, hang or half-answer the
    daemon; a's other connection and host.sock keep being served (issue 5; architecture §3)."""
    _fuzz_one(live, "agent", line)


@FUZZ_SETTINGS
@given(line=lines(FUZZ_VERBS["manager"]))
def test_any_line_on_the_manager_socket_gets_a_well_formed_answer_and_others_are_still_served(
    live: AgentLive, line: bytes
) -> None:
    """The same on the manager's socket, with the manager's verbs (request_*, list) in the mix
    (issue 5; architecture §3)."""
    _fuzz_one(live, "manager", line)


OPERATOR_ONLY_ARGS: dict[str, dict[str, Any]] = {
    "approve": {"id": 1}, "deny": {"id": 1, "note": "n"}, "cancel_question": {"id": 1}, "spawn": {"name": "zed"},
    "destroy": {"name": "b", "purge": True}, "stop": {"name": "b"}, "start": {"name": "b"},
    "restart": {"name": "b"}, "revive": {"name": "zed"}, "events": {"name": "b"}, "inbox": {}, "pending": {},
    "questions": {}, "list": {}, "request_spawn": {"name": "zed"}, "subscribe": {"after": 0},
    "events_follow": {"name": "b"}, "kept": {}, "purge": {"name": "zed"}, "dead_letters": {},
    "retry_dead": {"id": 1}, "discard_dead": {"id": 1}, "config_show": {"name": "b"},
    "config_apply": {"name": "b", "agent_toml": "", "base_sha": "0" * 40}, "exec": {"name": "b", "argv": ["id"]},
    "shell": {"name": "b"}, "stats": {}, "sessions": {"revoke_all": True}, "nodes": {}, "manager_claim": {"force": True},
}  # fmt: skip


@pytest.mark.parametrize("on", ["agent", "manager"])
def test_operator_only_verbs_have_no_entry_point_on_agent_or_manager_sockets(live: AgentLive, on: str) -> None:
    """Every host verb the socket does not offer (approve, deny, cancel_question, spawn, destroy,
    stop, revive, …) is an unknown verb there, with well-formed arguments, and changes no row; an
    agent cannot answer an operator question either (issue 5 "The boundary"; docs/security.md)."""
    offered = AGENT_VERBS if on == "agent" else MANAGER_VERBS
    refused = sorted(HOST_VERBS - offered)
    assert {"approve", "deny", "cancel_question", "spawn", "destroy", "revive"} <= set(refused)
    assert set(refused) <= set(OPERATOR_ONLY_ARGS), "a new host verb: add its arguments above"
    before = live.rows()
    for cmd in refused:
        reply = exchange(live.sockets[on], json.dumps({"cmd": cmd, **OPERATOR_ONLY_ARGS[cmd]}).encode() + b"\n")
        assert reply is not None and reply["ok"] is False and reply["code"] == "unknown_verb", (cmd, reply)
    assert live.rows() == before
    asker = exchange(live.sockets["agent"], b'{"cmd":"ask","question":"for the operator?"}\n')
    assert asker is not None and asker["ok"], asker
    qid = asker["id"]
    for where in ("agent", "manager"):
        reply = exchange(
            live.sockets[where], json.dumps({"cmd": "answer", "id": qid, "answer": "yes"}).encode() + b"\n"
        )
        assert reply is not None and reply["code"] == "forbidden", (where, reply)
    assert live.daemon.services is not None
    assert sync(live.daemon.services.questions.get(qid))["answered_at"] is None

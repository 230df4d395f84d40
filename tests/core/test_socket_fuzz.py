"""Fuzz the real sockets with random and adversarial JSON lines (architecture §3, issue 2): for every
line the daemon answers with a well-formed reply (or closes that one connection cleanly), and a
bystander connection opened before the fuzzing is still served afterwards.

The daemon runs in-process on its own event loop thread so hypothesis can drive it from a plain
(sync) test; agents `a` and `b` have sockets but no harness. Lifecycle verbs are left out of
the generated `cmd`s on host.sock so a lucky example cannot spawn real processes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzkit import (
    LiveDaemon,
    assert_well_formed,
    exchange,
    fuzz_settings,
    json_leaf,
    json_value,
    live_daemon,
    ping,
    raw_lines,
)
from hyperhive.socketverbs import AGENT_VERBS, HOST_VERBS

SAFE_HOST_VERBS = sorted(HOST_VERBS - {"spawn", "start", "stop", "restart", "destroy", "revive"})
FIELDS = ["cmd", "to", "body", "name", "id", "in_reply_to", "wait_seconds", "max", "limit", "purge",
          "state", "question", "options", "note", "answer", "after", "diff_id", "agent", "commit_ref"]  # fmt: skip


@pytest.fixture(scope="module")
def live() -> Iterator[LiveDaemon]:
    with live_daemon("hhf-", lambda root: LiveDaemon(root, ("a", "b"), thread_name="fuzz-daemon")) as daemon:
        yield daemon


def request_objects(verbs: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    field = st.sampled_from(FIELDS) | st.text(max_size=10)
    value = json_value | st.sampled_from(["a", "b", "operator", "manager", "*", "..", "a/b", "-x", "ü", "", "x" * 70])
    cmd = st.sampled_from(verbs) | st.text(max_size=12) | json_leaf
    return st.fixed_dictionaries({"cmd": cmd}, optional={}).flatmap(
        lambda base: st.dictionaries(field, value, max_size=5).map(lambda extra: {**extra, **base})
    )


def tame(obj: dict[str, Any]) -> dict[str, Any]:
    """Keep a generated recv from long-polling the test away."""
    if obj.get("cmd") == "recv":
        obj.pop("wait_seconds", None)
    return obj


ADVERSARIAL = st.sampled_from(
    [
        b"{" * 10_000, b"[" * 300_000, b'{"cmd":"send","to":"b","body":"\\udfff"}', b'{"cmd":"ping"}' * 1000,
        b'{"cmd":"send","to":"b","body":"x","to":"c"}', b"\x00" * 64, b"\xef\xbb\xbf{\"cmd\":\"ping\"}",
        b'{"cmd":"recv","max":1e400}', b'{"cmd":"inbox","limit":1e999}', b'{"cmd":"ping"} trailing',
        b'{"__proto__":{"cmd":"ping"}}', b'{"cmd":"send","to":"b","body":"' + b"\\\\" * 40_000 + b'"}',
    ]
)  # fmt: skip


def lines() -> st.SearchStrategy[bytes]:
    def as_line(obj: dict[str, Any]) -> bytes:
        return json.dumps(tame(obj), allow_nan=True).encode() + b"\n"

    return st.one_of(
        request_objects(sorted(AGENT_VERBS)).map(as_line),
        request_objects(SAFE_HOST_VERBS).map(as_line),
        raw_lines,
        ADVERSARIAL.map(lambda b: b + b"\n"),
    )


@fuzz_settings(250)
@given(line=lines(), on=st.sampled_from(["host", "a", "b"]))
def test_any_line_gets_a_well_formed_answer_and_others_are_still_served(live: LiveDaemon, line: bytes, on: str) -> None:
    """Random and adversarial lines never crash, hang or half-answer the daemon; a bystander
    connection keeps being served (issue 2)."""
    paths = {"host": live.daemon.paths.host_socket, "a": live.daemon.paths.agent("a").socket,
             "b": live.daemon.paths.agent("b").socket}  # fmt: skip
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bystander:
        bystander.settimeout(10)
        bystander.connect(str(paths["host"]))
        assert_well_formed(exchange(paths[on], line))
        pong = ping(bystander)
    assert pong["ok"] is True and pong["pong"] is True

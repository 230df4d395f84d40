"""Fuzz the real sockets with random and adversarial JSON lines (DESIGN §3, issue 2): for every
line the daemon answers with a well-formed reply (or closes that one connection cleanly), and a
bystander connection opened before the fuzzing is still served afterwards.

The daemon runs in-process on its own event loop thread so hypothesis can drive it from a plain
(sync) test; agents `a` and `b` have sockets but no harness. Lifecycle verbs are left out of
the generated `cmd`s on host.sock so a lucky example cannot spawn real processes.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperhive.config import HiveConfig
from hyperhive.core.daemon import Daemon
from hyperhive.protocol import AGENT_VERBS, HOST_VERBS, MAX_LINE_BYTES, PROTOCOL_VERSION

SAFE_HOST_VERBS = sorted(HOST_VERBS - {"spawn", "start", "stop", "restart", "destroy", "revive"})
FIELDS = ["cmd", "to", "body", "name", "id", "in_reply_to", "wait_seconds", "max", "limit", "purge",
          "state", "question", "options", "note", "answer", "after", "diff_id", "agent", "commit_ref"]  # fmt: skip


class LiveDaemon:
    """A Daemon served on a private event loop in a thread."""

    def __init__(self, root: Path, run: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-daemon", daemon=True)
        self.thread.start()
        config = HiveConfig(state_dir=root / "state", run_dir=run, port=0, cage="process", manager=False)
        self.ready = threading.Event()
        self.daemon = Daemon(config, on_ready=lambda _d: self.ready.set())
        self.task = asyncio.run_coroutine_threadsafe(self.daemon.serve(), self.loop)
        if not self.ready.wait(60):
            raise AssertionError(f"daemon did not start: {self.task.exception(0) if self.task.done() else 'timeout'}")
        self.run(self._wire())

    async def _wire(self) -> None:
        assert self.daemon.services is not None
        for name in ("a", "b"):
            await self.daemon.services.lifecycle._register(name, None)
            await self.daemon._open_agent_socket(name, None)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.daemon.should_exit.set)
        self.task.result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveDaemon]:
    root = Path(tempfile.mkdtemp(prefix="hhf-", dir="/tmp"))
    root.chmod(0o711)
    run = root / "r"
    daemon = LiveDaemon(root, run)
    try:
        yield daemon
    finally:
        daemon.close()
        shutil.rmtree(root, ignore_errors=True)


def exchange(path: Path, line: bytes) -> dict[str, Any] | None:
    """Send one line and half-close; return the reply, or None if the daemon closed without one."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)  # a blank line gets no answer: EOF ends the exchange
        with sock.makefile("rb") as stream:
            try:
                reply = stream.readline(8 * MAX_LINE_BYTES)
            except ConnectionResetError:
                return None
    return json.loads(reply) if reply else None


def assert_well_formed(reply: dict[str, Any] | None) -> None:
    if reply is None:
        return  # a clean close is allowed (only past the line cap, in practice)
    assert reply["version"] == PROTOCOL_VERSION and isinstance(reply["ok"], bool), reply
    if not reply["ok"]:
        assert set(reply) == {"version", "ok", "error", "code"}, reply
        assert isinstance(reply["error"], str) and isinstance(reply["code"], str), reply
        assert reply["code"] != "internal", f"the daemon failed on input: {reply}"


json_leaf = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=40)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # noqa: E501


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

    raw = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ") + b"\n")
    return st.one_of(
        request_objects(sorted(AGENT_VERBS)).map(as_line),
        request_objects(SAFE_HOST_VERBS).map(as_line),
        raw,
        ADVERSARIAL.map(lambda b: b + b"\n"),
    )


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
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
        bystander.sendall(b'{"cmd":"ping"}\n')
        with bystander.makefile("rb") as stream:
            pong = json.loads(stream.readline())
    assert pong["ok"] is True and pong["pong"] is True

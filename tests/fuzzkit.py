"""Socket fuzzing helpers (importable as `fuzzkit`): a daemon served on its own event-loop
thread so hypothesis can drive it from plain sync tests, one-line exchanges, a bystander ping,
the well-formed-reply check and the shared JSON strategies."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hivetest import wire_agent
from hyperhive.config import HiveConfig
from hyperhive.core.daemon import Daemon
from hyperhive.protocol import MAX_LINE_BYTES, PROTOCOL_VERSION
from loopwatch import LoopWatch

L = TypeVar("L", bound="LiveDaemon")


class LiveDaemon:
    """A Daemon served on a private event loop in a thread, with `names` registered and their
    sockets open but no harness."""

    def __init__(self, root: Path, names: Iterable[str], *, thread_name: str) -> None:
        self.names = tuple(names)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=thread_name, daemon=True)
        self.thread.start()
        config = HiveConfig(state_dir=root / "state", run_dir=root / "r", port=0, cage="process", manager=False)
        self.ready = threading.Event()
        self.watch: LoopWatch = self.run(_watch_this_loop())  # issue 10: nothing holds the loop
        self.daemon = Daemon(config, on_ready=lambda _d: self.ready.set())
        self.task = asyncio.run_coroutine_threadsafe(self.daemon.serve(), self.loop)
        if not self.ready.wait(60):
            raise AssertionError(f"daemon did not start: {self.task.exception(0) if self.task.done() else 'timeout'}")
        self.run(self._wire())

    async def _wire(self) -> None:
        for name in self.names:
            await wire_agent(self.daemon, name)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.daemon.should_exit.set)
        try:
            self.task.result(60)
        finally:
            slow = self.watch.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
        if slow:
            raise AssertionError(self.watch.report())


async def _watch_this_loop() -> LoopWatch:
    watch = LoopWatch()  # made on the loop's own thread: that is the thread it watches
    watch.start()
    return watch


@contextmanager
def live_daemon(prefix: str, make: Callable[[Path], L]) -> Iterator[L]:
    """`make(root)` on a fresh short root under /tmp; closed and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o711)
    daemon = make(root)
    try:
        yield daemon
    finally:
        daemon.close()
        shutil.rmtree(root, ignore_errors=True)


def exchange(path: Path, line: bytes, *, cut_off_ok: bool = False) -> dict[str, Any] | None:
    """Send one line and half-close; the reply, or None if the daemon closed without one. With
    `cut_off_ok`, being closed on mid-line (over the line cap) also counts as a clean close."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        try:
            sock.sendall(line)
            sock.shutdown(socket.SHUT_WR)  # a blank line gets no answer: EOF ends the exchange
        except (BrokenPipeError, ConnectionResetError):
            if not cut_off_ok:
                raise
            return None
        with sock.makefile("rb") as stream:
            try:
                reply = stream.readline(8 * MAX_LINE_BYTES)
            except ConnectionResetError:
                return None
    return json.loads(reply) if reply else None


def ping(sock: socket.socket) -> dict[str, Any]:
    """A ping on a bystander connection opened before the fuzzing; its reply."""
    sock.sendall(b'{"cmd":"ping"}\n')
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, "a bystander connection was closed"
        data += chunk
    return json.loads(data)


def assert_well_formed(reply: dict[str, Any] | None) -> None:
    if reply is None:
        return  # a clean close is allowed (past the line cap, in practice)
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
)
raw_lines = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ") + b"\n")


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )

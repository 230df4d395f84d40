"""Shared test helpers (importable as `hivetest`): a real daemon on tmp dirs, short socket
paths, `require()` — a missing prerequisite fails under CI=true instead of skipping — and
`HiveRig`, a running daemon as the tests drive it (its services, the `hive` CLI, bounded waits
woken by the core's hub, failure diagnostics)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest

from hyperhive.config import HiveConfig
from hyperhive.core.daemon import Daemon
from hyperhive.core.hub import Hub
from hyperhive.core.services import Services
from hyperhive.offline_model.server import OfflineModelServer
from hyperhive.poolsettings import PoolSettings
from hyperhive.replies import Message
from hyperhive.store.base import Store
from hyperhive.store.open import open_store
from loopwatch import LoopWatch

T = TypeVar("T")

IN_CI = os.environ.get("CI") == "true"
CLAUDE_ENV_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")


def require(ok: bool, why: str) -> None:
    """Skip locally when a prerequisite is missing; under CI=true that is a failure."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"missing prerequisite under CI: {why}")
    pytest.skip(why)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed")
    assert path is not None
    return path


def require_sdk() -> None:
    """The claude CLI the harness runs comes bundled in claude-agent-sdk."""
    try:
        import claude_agent_sdk  # noqa: F401
    except ImportError:
        require(False, "claude-agent-sdk is not installed")


# The store the suite runs on: `pytest --store=postgresql` (or HYPERHIVE_TEST_STORE=postgresql)
# gives every test hive a fresh database in a throw-away cluster (tests/pgserver.py).
_STORE_URLS: dict[Path, str] = {}


def test_store() -> str:
    return os.environ.get("HYPERHIVE_TEST_STORE", "sqlite")


def pg_test_url() -> str:
    """A fresh database in the suite's throw-away PostgreSQL cluster (started on first use)."""
    from pgserver import find_bin, shared_cluster

    require(find_bin() is not None, "PostgreSQL server binaries are not installed (scripts/bootstrap installs them)")
    return shared_cluster().database()


class StoreUse:
    """Whether the running test opened a store of the run's kind (`--store`): tests/conftest.py
    records the files where one did, and `make test`'s PostgreSQL pass runs only those files
    (a test whose store does not depend on the pass would only run the same twice)."""

    opened = False


def store_url_for(state: Path) -> str | None:
    """The store URL for the hive whose state dir is `state` (the same one on a restart)."""
    StoreUse.opened = True
    if test_store() != "postgresql":
        return None
    if state not in _STORE_URLS:
        _STORE_URLS[state] = pg_test_url()
    return _STORE_URLS[state]


def open_test_store(tmp_path: Path) -> Store:
    """A store on its own, for tests of one core part: SQLite in `tmp_path` or a fresh database."""
    return open_store(store_url_for(tmp_path), tmp_path / "broker.sqlite")


# Host uids of this test process's root bwrap agents: a range of its own, so agents of two test
# runs at once (make test runs two) or of a test run beside `make demo` are never one host uid.
TEST_UID_BASE = 1_000_000 + (os.getpid() % 4096) * 65_536


def make_config(tmp_path: Path, run_dir: Path, **overrides: object) -> HiveConfig:
    state = tmp_path / "state"
    state.mkdir(parents=True, exist_ok=True)
    # the agents' uid must be able to traverse to their state dirs
    for parent in [tmp_path, *tmp_path.parents]:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    base: dict[str, object] = {"state_dir": state, "run_dir": run_dir, "port": 0, "cage": "process",
                               "manager": False, "stop_grace": 5.0, "uid_base": TEST_UID_BASE,
                               # a test hive's agents start no claude CLI before their first message
                               # (warm on start is tested in e2e/test_prewarm.py): hundreds of spawns
                               # in a run would each start one
                               "pool": PoolSettings(warm_on_start=False)}  # fmt: skip
    if "store_url" not in overrides:  # nodes tests name their shared PostgreSQL database
        base["store_url"] = store_url_for(state.resolve())
    base.update(overrides)
    return HiveConfig(**base)  # type: ignore[arg-type]


_watches: weakref.WeakKeyDictionary[asyncio.Task[None], LoopWatch] = weakref.WeakKeyDictionary()


async def start_daemon(config: HiveConfig) -> tuple[Daemon, asyncio.Task[None]]:
    ready = asyncio.Event()

    async def on_ready(_daemon: Daemon) -> None:
        ready.set()

    daemon = Daemon(config, on_ready=on_ready)
    watch = LoopWatch()  # fails the test if one callback holds the loop too long (issue 10)
    watch.start()
    task = asyncio.create_task(daemon.serve(), name="test-daemon")
    _watches[task] = watch
    try:
        async with asyncio.timeout(60):
            waiter = asyncio.create_task(ready.wait())
            done, _ = await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                waiter.cancel()
                task.result()  # raises the startup error
                raise AssertionError("daemon exited during startup")
    except BaseException:
        _watches.pop(task, None)
        watch.stop()  # a daemon that never came up leaves no watch behind for the next test
        raise
    return daemon, task


async def stop_daemon(daemon: Daemon, task: asyncio.Task[None]) -> None:
    daemon.should_exit.set()
    watch = _watches.pop(task, None)
    try:
        async with asyncio.timeout(60):
            await task
    finally:
        slow = watch.stop() if watch is not None else []
    if watch is not None and slow:
        raise AssertionError(watch.report())


# ---- driving a running daemon ------------------------------------------------------------------


async def wire_agent(daemon: Daemon, name: str, *, toml: str | None = None, seed: bool = True) -> Path:
    """Register agent `name` and open its socket with no harness running; the socket then
    answers as that agent (identity is the socket). Returns the socket's path. With `seed` the
    agent gets a real applied config first (`toml`, else the default template); without one its
    allow-list fails closed to the manager only."""
    assert daemon.services is not None
    if seed and not await daemon.services.repos.has_applied(name):
        await daemon.services.repos.seed(name, toml=toml)
    await daemon.services.lifecycle._register(name, None)
    if seed:  # what a start does: the applied config (allow-list, model, budget) is read once
        await daemon.services.lifecycle.refresh_config(name)
    await daemon._open_agent_socket(name, None)
    return daemon.paths.agent(name).socket


async def ask_socket(path: Path, request: dict[str, Any], bound: float = 10) -> dict[str, Any]:
    """One request on a fresh connection to a unix socket; returns the reply line, decoded."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(bound):
            reply: dict[str, Any] = json.loads(await reader.readline())
        return reply
    finally:
        writer.close()
        await writer.wait_closed()


async def until(
    hub: Hub, what: str, check: Callable[[], T | None], bound: float, *,
    explain: Callable[[], str], recheck: float | None = None,
) -> T:  # fmt: skip
    """Wait until `check()` returns a truthy value (and return it), woken by the core's live
    events and bounded by `bound` seconds; on timeout fail with `explain()`. `recheck` also
    rechecks every so many seconds, for a condition with no core event (a harness's own events db)."""
    sub = hub.subscribe()
    try:
        async with asyncio.timeout(bound):
            while not (value := check()):
                if sub.closed:  # dropped as a slow subscriber: listen again (check() reads the state)
                    sub = hub.subscribe()
                if recheck is None:
                    await sub.next()
                    continue
                try:
                    async with asyncio.timeout(recheck):
                        await sub.next()
                except TimeoutError:
                    pass
            return value
    except TimeoutError:
        raise AssertionError(f"timed out after {bound:.0f} s waiting for {what}\n{explain()}") from None
    finally:
        sub.close()


def sync(aw: Coroutine[Any, Any, T]) -> T:
    """Finish a coroutine that only reads the store (`broker.recent`, `approvals.pending`, …) from
    synchronous test code such as an `until` check: on a helper thread with its own loop, since
    the store's I/O runs on the store's own threads and needs nothing from the test's loop."""
    with ThreadPoolExecutor(1, thread_name_prefix="test-sync") as pool:
        return pool.submit(asyncio.run, aw).result()


async def message(s: Services, message_id: int) -> Message:
    """A message the test knows exists (broker.get, which answers None for an unknown id)."""
    found = await s.broker.get(message_id)
    assert found is not None, f"no message #{message_id}"
    return found


def system_events(s: Services, to: str, event: str | None = None) -> list[dict[str, Any]]:
    """The system events addressed to `to` (all, or those named `event`), oldest first, read from
    the broker's rows."""
    rows = [m for m in reversed(sync(s.broker.recent(to, 500))) if m.sender == "system"]
    bodies = [json.loads(m.body) for m in rows]
    return [b for b in bodies if event is None or b["event"] == event]


def diagnostics(s: Services, model: OfflineModelServer | None = None, *, approvals: int = 0, messages: int = 0,
                requests: int = 0, tail: int = 10) -> str:  # fmt: skip
    """What a timed-out wait prints: the agents' states, the last `approvals`, broker `messages`
    and model `requests`, and the last `tail` lines of each agent's cage output."""
    lines = [f"agents: {[(r.name, r.state, r.harness_state) for r in s.lifecycle.rows()]}"]
    if approvals:
        lines += [f"approval: {a}" for a in sync(s.approvals.recent(approvals))]
    if messages:
        lines += [f"msg #{m.id}: {m.sender}->{m.recipient}: {m.body[:300]}"
                  for m in sync(s.broker.recent(None, messages))]  # fmt: skip
    if model is not None and requests:
        lines += [f"model: {r['last_user_text'][:120]!r} -> {r['answer']}" for r in model.requests[-requests:]]
    for name, rt in s.lifecycle.agents.items():
        if rt.handle is not None:
            lines += [f"[{name}] {line}" for line in list(rt.handle.tail)[-tail:]]
        elif rt.last_exit is not None:
            lines += [f"[{name} exited] {line}" for line in rt.last_exit.last_lines[-tail:]]
    return "\n".join(lines)


async def run_hive(
    run_dir: Path, *args: str, bound: float = 60.0, ok: bool = False
) -> subprocess.CompletedProcess[str]:
    """The real `hive` command line, in its own process, against the daemon on `run_dir`; with
    `ok`, a non-zero exit fails the test."""
    env = {**os.environ, "HYPERHIVE_RUN_DIR": str(run_dir)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hyperhive", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(bound):
        out, err = await proc.communicate()
    done = subprocess.CompletedProcess(list(args), proc.returncode or 0, out.decode(), err.decode())
    if ok:
        assert done.returncode == 0, f"hive {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return done


@dataclass
class HiveRig:
    """A running daemon as a test drives it. Subclasses add their clients and helpers, and tune
    the class-level defaults below; `diagnostics()` is what a timed-out `until` prints."""

    daemon: Daemon

    UNTIL_BOUND: ClassVar[float] = 30.0  # seconds a plain `until` may wait
    RECHECK: ClassVar[float | None] = None  # see `until`
    HIVE_BOUND: ClassVar[float] = 60.0  # seconds a `hive` command may take
    HIVE_OK: ClassVar[bool] = False  # whether `hive` fails the test on a non-zero exit by default

    @property
    def s(self) -> Services:
        assert self.daemon.services is not None
        return self.daemon.services

    def diagnostics(self) -> str:
        return diagnostics(self.s)

    async def until(self, what: str, check: Callable[[], T | None], bound: float | None = None) -> T:
        """Wait (woken by the core's live events, bounded) until `check()` returns a truthy value."""
        return await until(self.s.hub, what, check, self.UNTIL_BOUND if bound is None else bound,
                           explain=self.diagnostics, recheck=self.RECHECK)  # fmt: skip

    async def hive(
        self, *args: str, ok: bool | None = None, bound: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `hive` command line in its own process against this daemon."""
        return await run_hive(self.daemon.paths.run_dir, *args, bound=self.HIVE_BOUND if bound is None else bound,
                              ok=self.HIVE_OK if ok is None else ok)  # fmt: skip

    def system_events(self, to: str, event: str | None = None) -> list[dict[str, Any]]:
        return system_events(self.s, to, event)

    def idle(self, name: str) -> bool:
        """`name` runs, its harness reports idle and nothing waits in its inbox."""
        rt = self.s.lifecycle.agents.get(name)
        running = rt is not None and rt.state == "running" and rt.harness_state == "idle"
        return running and not self.s.broker.unread(name)

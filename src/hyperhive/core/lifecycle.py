"""Agent lifecycle: spawn, start, stop, restart, destroy, the crash watch and the kicks.

Sandboxes are reached only through the `Cage` interface. The lifecycle owns every cage process
it starts, so it sees an exit the moment it happens: an exit it did not ask for is a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hyperhive.agentconfig import AgentConfig
from hyperhive.cages.base import CAGE_STATE, Bind, Cage, CageHandle, CageSpec, ExitInfo, Limits
from hyperhive.config import HiveConfig
from hyperhive.core.broker import Broker
from hyperhive.core.configrepo import ConfigRepos
from hyperhive.core.hub import Hub
from hyperhive.core.pool import Pool
from hyperhive.core.restarts import RESET_AFTER, Downtime, backoff, policy_of, wants_restart
from hyperhive.core.scheduler import Scheduler
from hyperhive.core.uidclaim import UID_RANGE
from hyperhive.errors import AgentNotFound, CageError, Conflict, HiveError, NotAllowed, NotFound
from hyperhive.fsutil import make_private, safe_rmtree
from hyperhive.harnesslog import HarnessLog
from hyperhive.names import MANAGER, OPERATOR, validate_agent_name
from hyperhive.paths import AgentPaths
from hyperhive.protocol import AgentRow
from hyperhive.store.base import Store

if TYPE_CHECKING:
    from hyperhive.core.nodes import Nodes

__all__ = ["AgentRuntime", "Lifecycle"]

log = logging.getLogger(__name__)
START_SLOT_BOUND = 60.0  # a harness that has not reported in by then no longer holds a start slot


@dataclass
class AgentRuntime:
    name: str
    id: int
    uid: int | None
    state: str = "stopped"  # running | stopped | crashed | starting | stopping
    state_since: float = field(default_factory=time.time)
    handle: CageHandle | None = None
    watcher: asyncio.Task[None] | None = None
    expected_exit: bool = False
    harness_state: str | None = None
    harness_since: float | None = None
    model: str | None = None
    last_turn_ms: int | None = None
    last_exit: ExitInfo | None = None
    crash_restarts: int = 0  # restarts in a row by the restart policy (core/restarts.py)
    started_at: float = 0.0
    down: Downtime | None = None  # the last unexpected exit: why, when, what the policy does
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set when the harness first reports in
    blocked: str | None = None  # set by the gateway: rate_limited | over_budget (shown as the state)
    blocked_until: float | None = None
    warm: bool = False  # the harness keeps its claude CLI between turns (core/pool.py)

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_since = time.time()


SocketOpener = Callable[[str, int | None], Awaitable[None]]
SocketCloser = Callable[[str], Awaitable[None]]


class Lifecycle:
    def __init__(
        self,
        config: HiveConfig,
        store: Store,
        broker: Broker,
        hub: Hub,
        cage: Cage,
        repos: ConfigRepos,
    ) -> None:
        self.config = config
        self.paths = config.paths
        self.store = store
        self.broker = broker
        self.hub = hub
        self.cage = cage
        self.repos = repos
        self.agents: dict[str, AgentRuntime] = {}
        self._configs: dict[str, AgentConfig] = {}
        self.open_socket: SocketOpener | None = None
        self.close_socket: SocketCloser | None = None
        self.gateway_env: Callable[[str, dict[str, str]], dict[str, str]] | None = None  # core/gateway_wiring.py
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.deploying: set[str] = set()  # an exit of these is reported by the deploy, not as a crash
        self.pool = Pool(config.pool, self.agents, lambda n: self.paths.agent(n).web_socket)
        self.scheduler = Scheduler(config.pool.turn_limit(), on_change=self._publish)
        # cages start in parallel up to the host's cores: a slot is held from the cage's start until
        # its harness reports in (the CPU-heavy part), so a spawn of many does not thrash the host
        self._start_gate = asyncio.Semaphore(max(1, os.cpu_count() or 1))
        self._kept: dict[str, float] = {}  # destroyed without purge: name -> destroyed_at
        self._kept_sizes: dict[str, int] = {}  # measured once (off the loop): a kept tree no longer changes
        self.nodes: Nodes | None = None  # core/nodes.py: which node runs an agent; the other nodes' rows

    async def load(self) -> None:
        """At daemon start: the registry from the store."""
        for rec in await self.store.agents():
            if rec["destroyed_at"] is None:
                self.agents[rec["name"]] = AgentRuntime(rec["name"], rec["id"], rec["uid"])
            else:
                self._kept[rec["name"]] = rec["destroyed_at"]

    # ---- queries -----------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self.agents)

    def get(self, name: str) -> AgentRuntime:
        name = validate_agent_name(name)
        runtime = self.agents.get(name)
        if runtime is None:
            raise AgentNotFound(f"no agent named {name!r}")
        return runtime

    def agent_config(self, name: str) -> AgentConfig:
        """The applied config the agent was last started on, from memory: nothing on the send path
        or a page render touches git. `refresh_config` reloads it (every start, so every deploy)."""
        cfg = self._configs.get(name)
        if cfg is None:
            raise HiveError(f"{name}'s applied config is not loaded (it could not be read at its last start)")
        return cfg

    async def refresh_config(self, name: str) -> AgentConfig:
        """Read the agent's applied config from git (off the loop) into the cache."""
        self._configs.pop(name, None)
        cfg = await self.repos.applied_config(name)
        self._configs[name] = cfg
        return cfg

    def allow_list(self, name: str) -> list[str]:
        try:
            return list(self.agent_config(name).allowed_recipients)
        except Exception:  # fail closed: a config that cannot be read reaches the manager only
            log.warning("%s: config unreadable; its allow-list is the manager only", name)
            return [MANAGER]

    def row(self, name: str, unread: dict[str, int] | None = None) -> AgentRow:
        rt = self.get(name)
        model = rt.model
        if model is None:
            with contextlib.suppress(HiveError, OSError):
                model = self.agent_config(name).model
        return AgentRow(
            name=name,
            cage=self.cage.kind,
            state=rt.state,  # type: ignore[arg-type]
            harness_state=(rt.blocked or rt.harness_state) if rt.state == "running" else None,
            blocked_until=rt.blocked_until if rt.blocked else None,
            warm=rt.warm and rt.state == "running",
            queued_since=self.scheduler.queued().get(name),
            model=model,
            pid=rt.handle.pid if rt.handle and rt.state == "running" else None,
            uid=rt.uid,
            unread=(unread if unread is not None else self.broker.unread_counts()).get(name, 0),
            last_turn_ms=rt.last_turn_ms,
            state_since=rt.harness_since if rt.state == "running" and rt.harness_since else rt.state_since,
            isolated=self.cage.isolated,
            limits=rt.handle.limits_status if rt.handle is not None else None,
            restarts=rt.crash_restarts,
            down=rt.down.to_json() if rt.down is not None else None,
        )

    def rows(self) -> list[AgentRow]:
        """The whole hive: this node's agents, then (several nodes) the others' from their heartbeats."""
        unread = self.broker.unread_counts()
        remote = self.nodes.remote_rows() if self.nodes is not None else []
        return [self.row(n, unread) for n in self.names()] + remote

    def kept_state(self) -> list[dict[str, Any]]:
        """Agents destroyed without purge whose state remains (names from the database)."""
        out = []
        for name, destroyed_at in sorted(self._kept.items()):
            ap = self.paths.agent(name)
            if not ap.root.exists():
                continue
            out.append(
                {
                    "name": name,
                    "destroyed_at": destroyed_at,
                    "size_bytes": self._kept_sizes.get(name, 0),
                    "has_credentials": _plain_file(ap.home, ".claude", ".credentials.json"),
                }
            )
        return out

    def publish_row(self, name: str) -> None:
        self._publish(name)

    def _publish(self, name: str) -> None:
        if name in self.agents:
            self.hub.publish("agent_changed", self.row(name).model_dump())

    # ---- spawn / destroy ---------------------------------------------------------------

    async def spawn(self, name: str, description: str | None = None, *, seed: bool = True) -> AgentRuntime:
        """Create (or re-create, reusing kept state and config) and start an agent."""
        name = validate_agent_name(name)
        if name in self.agents:
            raise Conflict(f"agent {name!r} already exists")
        ap = self.paths.agent(name)
        if seed and not await self.repos.has_applied(name):
            if ap.config.exists():
                raise Conflict(f"agent {name!r} has a proposed config awaiting its first approved commit")
            await self.repos.seed(name, description)
        runtime = await self._register(name, description)
        await asyncio.to_thread(self._prepare_dirs, runtime, ap)
        await asyncio.to_thread(self._grant_manager_repos)  # a repo seeded just now is root's until the manager gets it
        self.hub.publish("agent_added", {"name": name})
        await self.start(name, reason="spawned")
        if name != MANAGER:
            await self.broker.system_event(MANAGER, "spawned", agent=name)
        return runtime

    async def _register(self, name: str, description: str | None) -> AgentRuntime:
        if self.nodes is not None:
            await self.nodes.before_register(name)
        isolated_root = os.geteuid() == 0 and self.cage.isolated  # agents run as host uids
        rec = await self.store.register_agent(name, description, time.time(),
                                              uid_base=self.config.uid_base if isolated_root else None)  # fmt: skip
        if isolated_root and rec["id"] >= UID_RANGE:  # past the range this hive claimed (core/uidclaim.py)
            await self.store.delete_agent(name)
            raise Conflict(f"this hive has no host uid left for agent #{rec['id']} (its range holds {UID_RANGE - 1})")
        self._kept.pop(name, None)
        runtime = AgentRuntime(name, rec["id"], rec["uid"])
        self.agents[name] = runtime
        if self.nodes is not None:
            await self.nodes.after_register(name)
        return runtime

    def _prepare_dirs(self, rt: AgentRuntime, ap: AgentPaths) -> None:
        for d in (ap.state, ap.home, ap.run):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private_modes(ap)
        gitconfig = ap.home / ".gitconfig"
        if not gitconfig.exists() and not gitconfig.is_symlink():
            # git knows who the agent is; safe.directory lets the manager read root-owned /applied
            fd = os.open(gitconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"[user]\n\tname = {rt.name}\n\temail = {rt.name}@hyperhive.local\n[safe]\n\tdirectory = *\n")
        if rt.uid is not None:
            for d in (ap.state, ap.home, ap.run):
                _chown_tree(d, rt.uid)
            os.chown(ap.root, 0, 0)
        if rt.name == MANAGER:
            self._grant_manager_repos()

    def _grant_manager_repos(self) -> None:
        """The manager's uid owns every proposed repo, so its git works on them in its cage, and
        its gid may read (not write) the applied root it sees at /applied; nobody else may."""
        manager = self.agents.get(MANAGER)
        root = self.paths.proposed_root
        root.mkdir(parents=True, exist_ok=True)
        make_private(root, 0o700)
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    make_private(entry.path, 0o700)
        if manager is not None and manager.uid is not None:
            _chown_tree(root, manager.uid)
            applied = self.paths.applied_root
            applied.mkdir(parents=True, exist_ok=True)
            os.lchown(applied, 0, manager.uid)
            applied.chmod(0o750)

    async def init_config(self, name: str, description: str | None) -> str:
        """Two-step spawn, step one: seed only the proposed repo (after the operator approved)."""
        name = validate_agent_name(name, allow_manager=False)
        if name in self.agents:
            raise Conflict(f"agent {name!r} already exists")
        sha = await self.repos.init_proposed(name, description)
        await asyncio.to_thread(self._grant_manager_repos)
        return sha

    async def destroy(self, name: str, *, purge: bool = False) -> None:
        rt = self.get(name)
        if name == MANAGER:
            raise NotAllowed("the manager cannot be destroyed (stop it instead)")
        async with rt.lock:
            await self._stop_locked(rt)
            self.agents.pop(name, None)
            self._configs.pop(name, None)
            if self.close_socket:
                await self.close_socket(name)
            now = time.time()
            if purge:
                await self.store.delete_agent(name)
            else:
                await self.store.mark_destroyed(name, now)
                self._kept[name] = now
                self._kept_sizes[name] = await asyncio.to_thread(_tree_size, self.paths.agent(name).root)
        if purge:
            await self._purge_files(name)
        kept = None if purge else next((k for k in self.kept_state() if k["name"] == name), None)
        self.hub.publish("agent_removed", {"name": name, "purged": purge, "kept": kept})
        await self.broker.system_event(MANAGER, "destroyed", agent=name, purged=purge)

    async def purge_kept(self, name: str) -> None:
        """Purge an agent destroyed earlier without purge (the K3PT ST4T3 section)."""
        name = validate_agent_name(name)
        if name in self.agents:
            raise Conflict(f"agent {name!r} is live; destroy it first")
        if not await self.store.delete_agent(name):
            raise NotFound(f"no kept state for {name!r}")
        self._kept.pop(name, None)
        await self._purge_files(name)
        self.hub.publish("agent_removed", {"name": name, "purged": True})

    async def _purge_files(self, name: str) -> None:
        ap = self.paths.agent(name)
        for path in (ap.root, ap.run, ap.config.parent):
            within = self.paths.state_dir if path != ap.run else self.paths.run_dir
            await asyncio.to_thread(safe_rmtree, path, within=within)
        await self.repos.remove(name)

    # ---- start / stop ------------------------------------------------------------------

    def _spec(self, rt: AgentRuntime, cfg: AgentConfig) -> CageSpec:
        ap = self.paths.agent(rt.name)
        env = dict(self.config.agent_env)
        env["HYPERHIVE_AGENT_NAME"] = rt.name
        env.update(self.pool.cage_env())  # warm CLIs and the manager's digest (core/pool.py)
        if self.gateway_env is not None:
            env.update(self.gateway_env(rt.name, env))
        binds: list[Bind] = []
        if rt.name == MANAGER:
            binds.append(Bind(self.paths.proposed_root, "/agents", writable=True, env="HYPERHIVE_AGENTS_DIR"))
            binds.append(Bind(self.paths.applied_root, "/applied", writable=False, env="HYPERHIVE_APPLIED_DIR"))
        limits = Limits(memory_bytes=cfg.limits.memory, pids=cfg.limits.pids) if cfg.limits else Limits()
        return CageSpec(
            name=rt.name,
            argv=[sys.executable, "-m", "hyperhive", "agent", "serve"],
            state_dir=ap.state,
            home_dir=ap.home,
            run_dir=ap.run,
            env=env,
            config_env=dict(cfg.env),  # agent.toml [env]: reaches only the claude CLI in the cage
            binds=binds,
            uid=rt.uid,
            gid=rt.uid,
            network=cfg.network,
            limits=limits,
        )

    async def start(self, name: str, *, reason: str = "started") -> None:
        rt = self.get(name)
        async with rt.lock:
            if rt.state in ("running", "starting"):
                raise Conflict(f"agent {name!r} is already running")
            rt.crash_restarts = 0  # a start by hand begins a fresh count for the restart policy
            await self._start_locked(rt, reason)

    async def _start_locked(self, rt: AgentRuntime, reason: str) -> None:
        cfg = await self.refresh_config(rt.name)
        ap = self.paths.agent(rt.name)
        await asyncio.to_thread(self._prepare_dirs, rt, ap)  # the chown walk: off the loop
        if self.open_socket:
            await self.open_socket(rt.name, rt.uid)
        rt.set_state("starting")
        rt.expected_exit = False
        rt.ready = asyncio.Event()
        rt.harness_state = "starting"
        rt.harness_since = time.time()
        self._publish(rt.name)
        await self._start_gate.acquire()
        try:
            handle = await self.cage.start(self._spec(rt, cfg))
        except BaseException as exc:
            self._start_gate.release()
            if isinstance(exc, CageError):
                rt.set_state("crashed")
                self._publish(rt.name)
            raise
        self._spawn_task(self._free_start_slot(rt.ready), f"start-slot-{rt.name}")
        handle.on_line = HarnessLog(ap.root / "harness.log").write  # before any output is read
        rt.handle = handle
        rt.started_at = time.time()
        rt.set_state("running")
        rt.watcher = self._spawn_task(self._watch(rt, handle), f"watch-{rt.name}")
        await self.store.set_desired(rt.name, "running")
        self._publish(rt.name)
        await self._kick(rt.name, reason)

    async def _kick(self, name: str, reason: str) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        body = (
            f"you were {reason} at {when}. your durable notes are at {CAGE_STATE}/notes.md "
            "(read them if you have lost context); your previous session was resumed if it existed. "
            "wait for work with recv(wait_seconds=180)."
        )
        await self.broker.system_event(name, "kick", reason=reason, note=body)

    async def stop(self, name: str, *, desired: str = "stopped") -> None:
        rt = self.get(name)
        async with rt.lock:
            await self._stop_locked(rt)
            await self.store.set_desired(name, desired)

    async def _stop_locked(self, rt: AgentRuntime) -> None:
        handle = rt.handle
        if handle is None or rt.state not in ("running", "starting"):
            if rt.state == "crashed":
                rt.set_state("stopped")
                self._publish(rt.name)
            return
        rt.expected_exit = True
        rt.set_state("stopping")
        self._publish(rt.name)
        info = await handle.stop(self.config.stop_grace)
        if rt.watcher is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(rt.watcher, 5)
        rt.last_exit = info
        rt.handle = None
        rt.set_state("stopped")
        rt.harness_state = None
        self._publish(rt.name)

    async def restart(self, name: str, *, reason: str = "restarted") -> None:
        rt = self.get(name)
        async with rt.lock:
            rt.crash_restarts = 0  # as start(): a restart by hand begins a fresh count
            await self._stop_locked(rt)
            await self._start_locked(rt, reason)

    async def _free_start_slot(self, ready: asyncio.Event) -> None:
        try:
            async with asyncio.timeout(START_SLOT_BOUND):
                await ready.wait()  # the harness reported in, or its cage exited
        except TimeoutError:
            pass
        finally:
            self._start_gate.release()

    async def _watch(self, rt: AgentRuntime, handle: CageHandle) -> None:
        info = await handle.wait()
        self.scheduler.release(rt.name)  # a harness that exits holds no turn slot
        rt.warm = False
        rt.ready.set()
        if rt.handle is not handle:
            return
        rt.last_exit = info
        if rt.expected_exit or self._closing:
            return
        rt.handle = None
        if time.time() - rt.started_at > RESET_AFTER:
            rt.crash_restarts = 0
        policy = policy_of(rt.name, self._config_or_none(rt.name))
        rt.down = Downtime.of(info, policy)
        rt.set_state("crashed")
        rt.harness_state = None
        self._publish(rt.name)
        log.warning("agent %s exited unexpectedly: code=%s signal=%s", rt.name, info.exit_code, info.signal)
        if rt.name in self.deploying:
            return  # the approval that is deploying reports this exit as its failure
        event = {
            "agent": rt.name,
            "exit_code": info.exit_code,
            "signal": info.signal,
            "last_lines": info.last_lines[-15:],
        }
        self.hub.publish("container_crash", event)
        await self.broker.system_event(OPERATOR if rt.name == MANAGER else MANAGER, "container_crash", **event)
        if wants_restart(rt.down.policy, info):
            await self._apply_restart_policy(rt, rt.down)

    async def _apply_restart_policy(self, rt: AgentRuntime, down: Downtime) -> None:
        """agent.toml `restart`: after back-off, start it again, at most `restart_limit` times in a
        row (a run longer than RESET_AFTER starts the count again); else it stays crashed."""
        cfg = self._config_or_none(rt.name)
        limit, base = (cfg.restart_limit, cfg.restart_backoff) if cfg is not None else (3, 2.0)
        if rt.crash_restarts >= limit:
            down.gave_up = True
            self._publish(rt.name)
            log.warning("agent %s: gave up after %d restarts in a row", rt.name, rt.crash_restarts)
            return
        rt.crash_restarts += 1
        delay = backoff(base, rt.crash_restarts)
        down.next_restart_at = time.time() + delay
        self._publish(rt.name)
        await asyncio.sleep(delay)  # the restart back-off; cancelled when the daemon closes
        async with rt.lock:
            if rt.state != "crashed" or self._closing or rt.down is not down:
                return  # the operator acted meanwhile (start, stop, destroy)
            down.next_restart_at = None
            try:
                await self._start_locked(rt, f"restarted after a crash ({rt.crash_restarts} of {limit})")
            except HiveError as exc:
                down.reason = f"{down.reason}; the restart failed: {exc.message}"[:500]
                down.gave_up = True
                self._publish(rt.name)

    def _config_or_none(self, name: str) -> AgentConfig | None:
        try:
            return self.agent_config(name)
        except (HiveError, OSError):
            return None

    async def wait_healthy(self, name: str, timeout: float = 60.0) -> None:
        """Wait until the agent's harness reports in; raise CageError if its cage exits first
        or it stays silent for `timeout` seconds."""
        rt = self.get(name)
        try:
            await asyncio.wait_for(rt.ready.wait(), timeout)
        except TimeoutError:
            raise CageError(f"{name} did not report in within {timeout:.0f} s") from None
        if rt.state != "running" or rt.handle is None:
            info = rt.last_exit
            tail = " | ".join(info.last_lines[-5:]) if info else ""
            code = f"exit code {info.exit_code}, signal {info.signal}" if info else "no exit status"
            raise CageError(f"{name} exited while starting ({code}): {tail}"[:2000])

    # ---- harness reports ---------------------------------------------------------------

    async def report_state(
        self, name: str, state: str, model: str | None, last_turn_ms: int | None, *, warm: bool | None = None
    ) -> None:
        rt = self.get(name)
        previous = rt.harness_state
        if warm is not None:
            rt.warm = warm
        if state != previous:
            rt.harness_state = state
            rt.harness_since = time.time()
        if state != "starting":
            rt.ready.set()
        if model:
            rt.model = model
        if last_turn_ms is not None:
            rt.last_turn_ms = last_turn_ms
        self._publish(name)
        self.pool.rebalance()
        if state == "needs_login" and previous != "needs_login":
            await self.broker.system_event(MANAGER if name != MANAGER else OPERATOR, "needs_login", agent=name)
        elif previous == "needs_login" and state != "needs_login":
            await self.broker.system_event(MANAGER if name != MANAGER else OPERATOR, "logged_in", agent=name)

    # ---- daemon start / stop -----------------------------------------------------------

    async def start_all(self) -> None:
        """At daemon start: ensure the manager exists, then start every agent meant to run."""
        if self.config.manager and MANAGER not in self.agents:
            if not await self.repos.has_applied(MANAGER):
                await self.repos.seed(MANAGER, "the manager: coordinates the swarm")
            rt = await self._register(MANAGER, "the manager")
            await asyncio.to_thread(self._prepare_dirs, rt, self.paths.agent(MANAGER))
        for name in self.agents:  # stopped ones too: an old install had them world-readable
            await asyncio.to_thread(_private_modes, self.paths.agent(name))
            with contextlib.suppress(HiveError, OSError):  # a stopped agent's row shows its model
                await self.refresh_config(name)
        for name in list(self._kept):
            self._kept_sizes[name] = await asyncio.to_thread(_tree_size, self.paths.agent(name).root)
        desired = {rec["name"]: rec["desired"] for rec in await self.store.agents()}
        order = sorted(self.agents, key=lambda n: (n != MANAGER, n))  # the manager first
        for name in order:
            if desired.get(name, "running") != "running":
                continue
            try:
                await self.start(name, reason="started with the hive")
            except HiveError as exc:
                log.error("could not start %s: %s", name, exc)

    async def close(self) -> None:
        self._closing = True
        await self.pool.close()
        await asyncio.gather(
            *(self._stop_for_shutdown(rt) for rt in list(self.agents.values())), return_exceptions=True
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stop_for_shutdown(self, rt: AgentRuntime) -> None:
        if rt.handle is not None:
            rt.expected_exit = True
            with contextlib.suppress(CageError):
                await rt.handle.stop(self.config.stop_grace)

    def _spawn_task(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())


def _private_modes(ap: AgentPaths) -> None:
    """Nobody but the agent's uid (and root) reads its dirs or its event trail; also fixes an
    install from before everything was private. Links the agent planted are not followed."""
    for d in (ap.root, ap.state, ap.home, ap.run):  # the cage reaches state/home through its binds
        make_private(d, 0o700)
    for suffix in ("", "-wal", "-shm"):
        make_private(f"{ap.events_db}{suffix}", 0o600)


def _chown_tree(root: Path, uid: int) -> None:
    """chown a tree to uid:uid without following symlinks. An agent may plant links, and (the
    manager, whose repos are chowned while it runs) may swap a directory for a link during the
    walk: `fwalk` descends through directory fds it checked, and each entry is chowned relative
    to its directory's fd without following it."""
    os.lchown(root, uid, uid)
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        for entry in dirnames + filenames:
            with contextlib.suppress(FileNotFoundError):
                os.chown(entry, uid, uid, dir_fd=dirfd, follow_symlinks=False)


def _plain_file(root: Path, *parts: str) -> bool:
    """True if root/parts... is a regular file reached through real directories only (a link
    the agent planted is not followed, so it cannot make the core stat outside its tree)."""
    path = root
    for i, part in enumerate(parts):
        path = path / part
        try:
            mode = path.lstat().st_mode
        except OSError:
            return False
        if not (stat.S_ISREG(mode) if i == len(parts) - 1 else stat.S_ISDIR(mode)):
            return False
    return True


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for f in filenames:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / f).lstat().st_size
    return total

"""Agent lifecycle: spawn, start, stop, restart, destroy, and the daemon's start and shutdown.

Sandboxes are reached only through the `Cage` interface. The lifecycle owns every cage process
it starts, so it sees an exit the moment it happens: an exit it did not ask for is a crash
(`supervision`). The rooms around it: `registry` (who exists, their configs, kept state),
`agentfs` (their trees on the host), `cagespec` (what a cage gets), `kicks` (the first message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from hyperhive.agentconfig import AgentConfig
from hyperhive.cages.base import Cage, CageSpec
from hyperhive.config import HiveConfig
from hyperhive.core import agentfs
from hyperhive.core.broker import Broker
from hyperhive.core.cagespec import agent_spec
from hyperhive.core.configrepo import ConfigRepos
from hyperhive.core.hub import Hub
from hyperhive.core.kicks import kick_note
from hyperhive.core.pool import Pool
from hyperhive.core.registry import AgentRuntime, Registry
from hyperhive.core.scheduler import Scheduler
from hyperhive.core.supervision import Supervision
from hyperhive.core.uidclaim import UID_RANGE
from hyperhive.errors import CageError, Conflict, HiveError, NotAllowed, NotFound
from hyperhive.harnesslog import HarnessLog
from hyperhive.names import MANAGER, validate_agent_name
from hyperhive.replies import AgentRow
from hyperhive.store.base import Store

if TYPE_CHECKING:
    from hyperhive.core.nodes import Nodes

__all__ = ["AgentRuntime", "Lifecycle"]

log = logging.getLogger(__name__)
START_SLOT_BOUND = 60.0  # a harness that has not reported in by then no longer holds a start slot


SocketOpener = Callable[[str, int | None], Awaitable[None]]
SocketCloser = Callable[[str], Awaitable[None]]


class Lifecycle(Supervision):
    def __init__(
        self,
        config: HiveConfig,
        store: Store,
        broker: Broker,
        hub: Hub,
        cage: Cage,
        repos: ConfigRepos,
        registry: Registry | None = None,
    ) -> None:
        self.config = config
        self.paths = config.paths
        self.store = store
        self.broker = broker
        self.hub = hub
        self.cage = cage
        self.repos = repos
        self.registry = registry if registry is not None else Registry(repos)
        self.agents = self.registry.agents  # name -> AgentRuntime (the registry's own dict)
        self.open_socket: SocketOpener | None = None
        self.close_socket: SocketCloser | None = None
        self.gateway_env: Callable[[str, dict[str, str]], dict[str, str]] | None = None  # core/gateway_wiring.py
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.deploying: set[str] = set()  # an exit of these is reported by the deploy, not as a crash
        self.pool = Pool(config.pool, self.agents, lambda n: self.paths.agent(n).web_socket,
                         on_cooled=lambda: self.scheduler.dispatch())  # fmt: skip
        # pre-warms (warm on start) wait while any cage is starting: a spawn of many is not slowed
        self.scheduler = Scheduler(config.pool.turn_limit(), on_change=self._turns_changed, warm_room=self.pool.warm_room,
                                   hold_prewarms=lambda: self._starting > 0,
                                   cold_room=lambda agent, starting: self.pool.room_for_cold(
                                       agent, starting, self.scheduler.busy))  # fmt: skip
        # cages start in parallel up to the host's cores: a slot is held from the cage's start until
        # its harness reports in (the CPU-heavy part), so a spawn of many does not thrash the host
        self._start_gate = asyncio.Semaphore(max(1, os.cpu_count() or 1))
        self._starting = 0  # cages waiting for a start slot or holding one
        self.nodes: Nodes | None = None  # core/nodes.py: which node runs an agent; the other nodes' rows

    async def load(self) -> None:
        """At daemon start: the registry from the store."""
        for rec in await self.store.agents():
            if rec["destroyed_at"] is None:
                self.agents[rec["name"]] = AgentRuntime(rec["name"], rec["id"], rec["uid"])
            else:
                self.registry.kept[rec["name"]] = rec["destroyed_at"]

    # ---- queries -----------------------------------------------------------------------

    def names(self) -> list[str]:
        return self.registry.names()

    def get(self, name: str) -> AgentRuntime:
        return self.registry.get(name)

    def agent_config(self, name: str) -> AgentConfig:
        return self.registry.agent_config(name)

    async def refresh_config(self, name: str) -> AgentConfig:
        return await self.registry.refresh_config(name)

    def allow_list(self, name: str) -> list[str]:
        return self.registry.allow_list(name)

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
        for name, destroyed_at in sorted(self.registry.kept.items()):
            ap = self.paths.agent(name)
            if not ap.root.exists():
                continue
            out.append(
                {
                    "name": name,
                    "destroyed_at": destroyed_at,
                    "size_bytes": self.registry.kept_sizes.get(name, 0),
                    "has_credentials": agentfs.plain_file(ap.home, ".claude", ".credentials.json"),
                }
            )
        return out

    def publish_row(self, name: str) -> None:
        self._publish(name)

    def _publish(self, name: str) -> None:
        if name in self.agents:
            self.hub.publish("agent_changed", self.row(name).model_dump())

    def rebalance_pool(self) -> None:
        """Cool idle warm agents above the pool's limit, counting the CLIs being started."""
        self.pool.rebalance(busy=self.scheduler.busy(), starting=self.scheduler.starting_cold(),
                            wanted=self.scheduler.cold_wanted())  # fmt: skip

    def _turns_changed(self, name: str) -> None:
        self._publish(name)
        self.rebalance_pool()

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
        await self._prepare_dirs(runtime)
        await self._grant_manager_repos()  # a repo seeded just now is root's until the manager gets it
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
        runtime = AgentRuntime(name, rec["id"], rec["uid"])
        self.registry.add(runtime)
        if self.nodes is not None:
            await self.nodes.after_register(name)
        return runtime

    async def _prepare_dirs(self, rt: AgentRuntime) -> None:
        """The agent's dirs on the host (agentfs: a chown walk), off the loop."""
        await asyncio.to_thread(agentfs.prepare_dirs, self.paths, rt.name, rt.uid, self._manager_uid())

    async def _grant_manager_repos(self) -> None:
        await asyncio.to_thread(agentfs.grant_manager_repos, self.paths, self._manager_uid())

    def _manager_uid(self) -> int | None:
        manager = self.agents.get(MANAGER)
        return manager.uid if manager is not None else None

    async def init_config(self, name: str, description: str | None) -> str:
        """Two-step spawn, step one: seed only the proposed repo (after the operator approved)."""
        name = validate_agent_name(name, allow_manager=False)
        if name in self.agents:
            raise Conflict(f"agent {name!r} already exists")
        sha = await self.repos.init_proposed(name, description)
        await self._grant_manager_repos()
        return sha

    async def destroy(self, name: str, *, purge: bool = False) -> None:
        rt = self.get(name)
        if name == MANAGER:
            raise NotAllowed("the manager cannot be destroyed (stop it instead)")
        async with rt.lock:
            await self._stop_locked(rt)
            self.registry.remove(name)
            if self.close_socket:
                await self.close_socket(name)
            now = time.time()
            if purge:
                await self.store.delete_agent(name)
            else:
                await self.store.mark_destroyed(name, now)
                self.registry.kept[name] = now
                self.registry.kept_sizes[name] = await asyncio.to_thread(agentfs.tree_size, self.paths.agent(name).root)
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
        self.registry.kept.pop(name, None)
        await self._purge_files(name)
        self.hub.publish("agent_removed", {"name": name, "purged": True})

    async def _purge_files(self, name: str) -> None:
        await asyncio.to_thread(agentfs.purge_tree, self.paths, name)
        await self.repos.remove(name)

    # ---- start / stop ------------------------------------------------------------------

    def _spec(self, rt: AgentRuntime, cfg: AgentConfig) -> CageSpec:
        env = dict(self.config.agent_env)
        env["HYPERHIVE_AGENT_NAME"] = rt.name
        env.update(self.pool.cage_env())  # warm CLIs and the manager's digest (core/pool.py)
        if self.gateway_env is not None:
            env.update(self.gateway_env(rt.name, env))
        return agent_spec(self.paths, rt.name, rt.uid, cfg, env)

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
        await self._prepare_dirs(rt)  # the chown walk: off the loop
        if self.open_socket:
            await self.open_socket(rt.name, rt.uid)
        rt.set_state("starting")
        rt.expected_exit = False
        rt.ready = asyncio.Event()
        rt.harness_state = "starting"
        rt.harness_since = time.time()
        self._publish(rt.name)
        self._starting += 1
        try:
            await self._start_gate.acquire()
        except BaseException:
            self._start_finished()
            raise
        try:
            handle = await self.cage.start(self._spec(rt, cfg))
        except BaseException as exc:
            self._start_gate.release()
            self._start_finished()
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
        await self.broker.system_event(name, "kick", reason=reason, note=kick_note(reason))

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
            self._start_finished()

    def _start_finished(self) -> None:
        self._starting -= 1
        self.scheduler.dispatch()  # a pre-warm held while cages started may go now

    # ---- daemon start / stop -----------------------------------------------------------

    async def start_all(self) -> None:
        """At daemon start: ensure the manager exists, then start every agent meant to run."""
        if self.config.manager and MANAGER not in self.agents:
            if not await self.repos.has_applied(MANAGER):
                await self.repos.seed(MANAGER, "the manager: coordinates the swarm")
            rt = await self._register(MANAGER, "the manager")
            await self._prepare_dirs(rt)
        for name in self.agents:  # stopped ones too: an old install had them world-readable
            await asyncio.to_thread(agentfs.private_modes, self.paths.agent(name))
            with contextlib.suppress(HiveError, OSError):  # a stopped agent's row shows its model
                await self.refresh_config(name)
        for name in list(self.registry.kept):
            self.registry.kept_sizes[name] = await asyncio.to_thread(agentfs.tree_size, self.paths.agent(name).root)
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

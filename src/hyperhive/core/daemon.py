"""`hive serve`: startup → run → shutdown. Owns the tasks, the signals, the sockets and the
embedded uvicorn; holds no SQL and no verb logic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from hyperhive.cages import resolve_cage
from hyperhive.config import HiveConfig
from hyperhive.connlimits import HOST_SOCKET_CONNS, Budget, install_flood_log_filter, raise_nofile_limit
from hyperhive.core.approvals import Approvals
from hyperhive.core.broker import Broker
from hyperhive.core.configrepo import ConfigRepos
from hyperhive.core.eventlog import log_events
from hyperhive.core.gateway_wiring import GatewayService
from hyperhive.core.health import Health
from hyperhive.core.hub import Hub
from hyperhive.core.lifecycle import Lifecycle
from hyperhive.core.nodes import Nodes
from hyperhive.core.notify import Notifier
from hyperhive.core.questions import Questions
from hyperhive.core.registry import Registry
from hyperhive.core.sdnotify import sd_notify
from hyperhive.core.services import Services
from hyperhive.core.shell import Shells
from hyperhive.core.shell_trail import TrailRecorder
from hyperhive.core.sockets import Identity, SocketServer
from hyperhive.core.telemetry import Telemetry
from hyperhive.core.uidclaim import UidClaim, claim_uid_range
from hyperhive.core.verbs import Verbs
from hyperhive.core.websessions import sessions_of
from hyperhive.errors import HiveError, StartupError
from hyperhive.fsutil import read_or_create_secret
from hyperhive.names import MANAGER
from hyperhive.socketverbs import AGENT_VERBS, HOST_VERBS, MANAGER_VERBS
from hyperhive.store.base import Store
from hyperhive.store.open import describe, open_store
from hyperhive.webserver import DashboardLimits, EmbeddedServer, bind_listener, capped_http_protocol

__all__ = ["Daemon"]

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT = 30.0


class Daemon:
    def __init__(
        self, config: HiveConfig, *, on_ready: Callable[[Daemon], Awaitable[None] | None] | None = None
    ) -> None:
        self.config = config
        self.paths = config.paths
        self.on_ready = on_ready
        self.should_exit = asyncio.Event()
        self.services: Services | None = None
        self.host_server: SocketServer | None = None
        self.agent_servers: dict[str, SocketServer] = {}
        self.uvicorn: EmbeddedServer | None = None
        self.dashboard_url: str | None = None
        self.dashboard_base: str | None = None  # the URL without the login token (for links)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._store: Store | None = None
        self.budget: Budget | None = None
        self._listener: socket.socket | None = None
        self.health = Health()
        self.notifier: Notifier | None = None
        self.gateway: GatewayService | None = None
        self._uid_claim: UidClaim | None = None

    # ---- startup -----------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        p = self.paths
        # Nothing of the hive is readable by other local users. An agent's uid reaches its own
        # dirs through the cage's binds (bwrap re-exposes sources under a dir it cannot traverse).
        for d, mode in ((p.state_dir, 0o700), (p.agents_root, 0o700), (p.applied_root, 0o700),
                        (p.proposed_root, 0o700), (p.run_dir, 0o711), (p.agents_run_root, 0o711)):  # fmt: skip
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(mode)

    async def startup(self) -> None:
        log.info(
            "hive serve starting (pid %d), state %s, run %s", os.getpid(), self.paths.state_dir, self.paths.run_dir
        )
        try:
            cage, cage_reason = resolve_cage(self.config.cage)
        except HiveError as exc:
            raise StartupError(exc.message) from exc
        log.info("cage backend: %s", cage_reason)
        self._prepare_dirs()
        if self.paths.host_socket.exists() and await _socket_answers(self.paths.host_socket):
            raise StartupError(f"another hive serve is running (it answers on {self.paths.host_socket})")
        if os.geteuid() == 0 and cage.isolated:  # agents run as host uids: no other hive may share them
            self._uid_claim = await asyncio.to_thread(claim_uid_range, self.paths.state_dir, self.config.uid_base)
        try:  # opening migrates (and may reach a server): off the event loop
            db = await asyncio.to_thread(open_store, self.config.store_url, self.paths.broker_db)
        except HiveError as exc:
            raise StartupError(exc.message) from exc
        self._store = db
        log.info("store: %s", describe(self.config.store_url, self.paths.broker_db))
        hub = Hub()
        repos = ConfigRepos(self.paths)
        if self.config.gateway:
            repos.default_network = "none"  # new agents reach the model through the core alone
        registry = Registry(repos)  # who exists and their allow-lists: the broker asks it
        broker = Broker(
            db, hub, agents=registry.hive_names, allow_list=registry.allow_list, max_attempts=self.config.max_attempts
        )
        lifecycle = Lifecycle(self.config, db, broker, hub, cage, repos, registry=registry)
        nodes = Nodes(self.config.node, db, hub, lifecycle)
        lifecycle.nodes = nodes
        registry.remote_names = lambda: nodes.remote  # every node's agents: a send reaches any of them
        await lifecycle.load()
        await nodes.adopt()  # only this node's agents stay in the lifecycle (core/nodes.py)
        await broker.load()
        questions = Questions(db, broker, hub)
        nodes.relayed.append(lambda kind: questions.poke() if kind.startswith("question_") else None)
        approvals = Approvals(db, broker, hub, lifecycle, repos)
        self.services = Services(self.config, db, hub, broker, lifecycle, repos, approvals, questions, cage_reason)
        self.health.services = self.services
        self.services.shells = Shells(lifecycle, hub)
        self.services.shells.recorders.append(TrailRecorder(self.paths))
        verbs = Verbs(self.services)
        lifecycle.open_socket = self._open_agent_socket
        if self.config.gateway:
            self.gateway = GatewayService(self.config, lifecycle, db, hub, broker, questions)
            self.gateway.start()
            self.services.gateway = self.gateway
        self.services.telemetry = Telemetry(self.services, self.config.api.stats_retention_days)
        self._spawn(self.services.telemetry.run(), "telemetry")
        lifecycle.close_socket = self._close_agent_socket
        self._verbs = verbs
        nodes.handle = verbs.handle

        raise_nofile_limit()
        install_flood_log_filter()
        self.budget = Budget.for_this_process()  # agent sockets + dashboard; host.sock stays outside
        self.host_server = SocketServer(
            self.paths.host_socket, Identity("operator", "operator"), verbs.handle, HOST_VERBS,
            max_conns=HOST_SOCKET_CONNS,
        )  # fmt: skip
        await self.host_server.start(mode=0o600)
        self._spawn(broker.run_vacuum(), "broker-vacuum")
        self._spawn(questions.run_watchdog(), "question-watchdog")
        self._spawn(log_events(hub), "event-log")
        if self.config.notify.enabled:
            self.notifier = Notifier(self.config.notify, hub, lambda: self.dashboard_base)
            self.health.notify_failing = lambda: self.notifier.failing if self.notifier else []
            self._spawn(self.notifier.run(), "notify")
        # reading (or creating) the signing key is file I/O: off the loop, once, before any cookie
        web_sessions = await asyncio.to_thread(sessions_of, self.services)
        await web_sessions.load_live()  # before the dashboard honours any cookie
        await self._start_dashboard()
        nodes.dashboard_url = self.dashboard_base
        self._spawn(nodes.run(), "nodes")
        for aid in await approvals.recover(skip=await nodes.busy_approvals()):
            log.warning("approval #%d was interrupted by a restart: marked failed", aid)
        await lifecycle.start_all()
        log.info("hive serve ready: host socket %s", self.paths.host_socket)

    async def _open_agent_socket(self, name: str, uid: int | None) -> None:
        if name not in self.agent_servers:
            await self._open_mcp_socket(name, uid)
        if self.gateway is not None:  # a fresh token for each cage start
            await self.gateway.open(name, self.paths.agent(name).run, uid)

    async def _open_mcp_socket(self, name: str, uid: int | None) -> None:
        ap = self.paths.agent(name)
        kind = "manager" if name == MANAGER else "agent"
        server = SocketServer(ap.socket, Identity(kind, name), self._verbs.handle,
                              MANAGER_VERBS if name == MANAGER else AGENT_VERBS, budget=self.budget)  # fmt: skip
        await server.start(mode=0o600, owner=uid)
        self.agent_servers[name] = server

    async def _close_agent_socket(self, name: str) -> None:
        if self.gateway is not None:
            await self.gateway.close(name)
        server = self.agent_servers.pop(name, None)
        if server is not None:
            await server.close()

    async def _start_dashboard(self) -> None:
        from hyperhive.dashboard.app import create_app, login_url

        assert self.services is not None
        # creating the login token is a write that can stall on a busy disk: in a thread, before
        # create_app and login_url only read it
        await asyncio.to_thread(read_or_create_secret, self.services.config.paths.token_file)
        app = create_app(self.services, health=self.health)
        config = uvicorn.Config(
            app, host=self.config.host, port=self.config.port, log_level="warning", lifespan="off",
            access_log=False, timeout_graceful_shutdown=5, ws="auto", proxy_headers=False, server_header=False,
            http=capped_http_protocol(DashboardLimits(budget=self.budget)),
        )  # fmt: skip
        server = EmbeddedServer(config)
        assert self._listener is not None
        task = self._spawn(server.serve(sockets=[self._listener]), "dashboard")
        self.uvicorn = server
        while not server.started:
            if task.done():
                exc = task.exception()
                raise StartupError(f"the dashboard could not listen on {self.config.host}:{self.config.port}: {exc}")
            await asyncio.sleep(0.02)
        port = self._listener.getsockname()[1]
        self.dashboard_url = login_url(self.services, self.config.host, port)
        self.services.dashboard_url = self.dashboard_url
        self.dashboard_base = self.dashboard_url.split("/login?", 1)[0] + "/"
        log.info("dashboard listening on %s", self.dashboard_base)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- run ---------------------------------------------------------------------------

    async def serve(self) -> None:
        # Bound before anything else happens or logs: a busy port is one line and nothing to undo.
        self._listener = bind_listener(self.config.host, self.config.port)
        restore = self._capture_signals()
        try:
            await self.startup()
            self.health.ready = True
            sd_notify(f"READY=1\nSTATUS=serving the dashboard on {self.dashboard_base}")
            if self.on_ready is not None:
                result = self.on_ready(self)
                if asyncio.iscoroutine(result):
                    await result
            await self.should_exit.wait()
        finally:
            await self.shutdown()
            restore()

    def _capture_signals(self) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        count = {"n": 0}

        def handle(sig: int) -> None:
            count["n"] += 1
            if count["n"] > 1:
                log.warning("second signal: exiting now")
                os._exit(1)
            log.info("signal %d: shutting down", sig)
            self.should_exit.set()

        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError):  # not the main thread (a daemon run in a thread)
                loop.add_signal_handler(sig, handle, sig)
                installed.append(sig)

        def restore() -> None:
            for sig in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

        return restore

    # ---- shutdown ----------------------------------------------------------------------

    async def shutdown(self) -> None:
        log.info("hive serve shutting down (pid %d)", os.getpid())
        self.health.stopping = True
        sd_notify("STOPPING=1")
        if self.host_server is not None:
            await self.host_server.close()
        if self.services is not None:
            if self.services.shells is not None:
                await self.services.shells.close()
            running = sorted(n for n, rt in self.services.lifecycle.agents.items() if rt.handle is not None)
            try:
                await asyncio.wait_for(self.services.lifecycle.close(), SHUTDOWN_TIMEOUT)
                log.info("agents stopped: %s", ", ".join(running) or "none was running")
            except TimeoutError:
                log.error("agents did not stop within %.0f s", SHUTDOWN_TIMEOUT)
        for name in list(self.agent_servers):
            await self._close_agent_socket(name)
        if self.gateway is not None:
            await self.gateway.aclose()
        if self.uvicorn is not None:
            self.uvicorn.should_exit = True
        tasks = [t for t in self._tasks if t.get_name() == "dashboard"]
        if tasks:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait(tasks, timeout=8)
        for task in list(self._tasks):
            task.cancel(msg="hive serve is shutting down")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._store is not None:
            nodes = self.services.lifecycle.nodes if self.services is not None else None
            if nodes is not None:
                with contextlib.suppress(Exception):  # the store may be what failed
                    await nodes.leave()
            await self._store.close()
        if self._uid_claim is not None:
            await asyncio.to_thread(self._uid_claim.release)
        if self._listener is not None:
            self._listener.close()
        log.info("hive serve stopped (pid %d)", os.getpid())


async def _socket_answers(path: os.PathLike[str]) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1)
    except (TimeoutError, OSError):
        return False
    try:
        writer.write(b'{"cmd":"ping"}\n')
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 2)
        return bool(line)
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

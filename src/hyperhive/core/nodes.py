"""Several hosts, one hive: `hive serve --node NAME` processes on one PostgreSQL (docs/nodes.md).

Each node runs the cages of the agents the registry gives it (`agents.node`); messages, the
inbox, questions, approvals and stats are rows every node reads. This module adds what the
store alone does not:

- a heartbeat (`nodes` row, with the node's dashboard URL and its agents' rows) every
  HEARTBEAT s; a node whose heartbeat has not moved for DEAD_AFTER s (timed on this host's
  clock, so clock skew does not matter) is unreachable, and so are its agents;
- core-to-core requests through the store: a host verb on an agent of another node (spawn
  --node, start, stop, restart, kill, update, destroy) is a `node_requests` row that node runs
  with the caller's identity, its reply written back;
- the live event stream relayed through the store: every event this node's hub publishes goes
  into `node_events` in batches; the other nodes publish it on their hubs (payload `_node`).

Wake-ups between nodes are NOTIFY hints only (store/postgres.py); every loop here also polls on
a bounded interval, so a lost hint costs latency, never a request or an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hyperhive.core.hub import Hub
from hyperhive.core.nodeconfig import CONFIG_FILES, NodeConfigs
from hyperhive.core.sockets import Identity
from hyperhive.errors import Conflict, ErrorCode, HiveError, NotFound
from hyperhive.names import MANAGER, OPERATOR
from hyperhive.replies import AgentRow
from hyperhive.requestcodec import ProtocolFailure, decode_request
from hyperhive.store.base import Store
from hyperhive.store.node_base import NodeRow
from hyperhive.store.nodes import HUB_HINT, node_hint

if TYPE_CHECKING:
    from hyperhive.core.lifecycle import Lifecycle

__all__ = ["NodeUnreachable", "Nodes"]

log = logging.getLogger(__name__)
HEARTBEAT = 2.0
DEAD_AFTER = 10.0
POLL = 1.0  # requests and relayed events are polled at least this often, whatever the hints do
FORWARD_BOUND = 120.0  # a forwarded request not answered by then fails (spawn may build a cage)
REQUEST_TTL = 60.0  # a request found older than this (its node was down) is refused, not run late
# host verbs on an agent that its own node runs; config_apply carries the edited tree through the
# store to the agent's node, which commits and deploys it in its own applied repo (operator/<id>)
FORWARDED = frozenset({"start", "stop", "restart", "kill", "update", "destroy", "config_show", "config_apply"})
RELAY_OVERLAP = 200  # ids re-read below the last seen one: a concurrent commit may land late
KEEP_EVENTS = 3600.0


class NodeUnreachable(HiveError):
    code = ErrorCode.NODE_UNREACHABLE


class Nodes:
    def __init__(self, name: str, store: Store, hub: Hub, lifecycle: Lifecycle) -> None:
        self.name = name
        self.store = store
        self.hub = hub
        self.lifecycle = lifecycle
        self.multi = store.backend != "sqlite"  # SQLite has one writer: a one-node hive
        self.remote: dict[str, str | None] = {}  # agent -> its node, for agents of other nodes
        self.dashboard_url: str | None = None
        self.handle: Any = None  # Verbs.handle, set by the daemon
        self._nodes: dict[str, NodeRow] = {}
        self._moved: dict[str, tuple[float, float]] = {}  # node -> (its heartbeat_at, our monotonic then)
        self._remote_states: dict[str, str] = {}
        self._events_wake = asyncio.Event()
        self._requests_wake = asyncio.Event()
        self._beat_wake = asyncio.Event()
        self._replies: dict[int, asyncio.Event] = {}
        self._running: set[int] = set()
        self._approving: set[int] = set()  # approvals this node is deploying (from its own hub)
        self.relayed: list[Callable[[str], None]] = []  # told the kind of each event another node relayed
        self._seen: deque[int] = deque(maxlen=4 * RELAY_OVERLAP)
        self.configs = NodeConfigs(self)
        self._seeding: asyncio.Task[None] | None = None
        self._seen_set: set[int] = set()

    # ---- start ------------------------------------------------------------------------------

    async def adopt(self) -> None:
        """After the lifecycle loaded the registry, before it starts anything: keep only this
        node's agents. Agents recorded before nodes existed become this node's (on SQLite,
        every agent is: there is one node)."""
        await self.store.adopt_agents(self.name, all_agents=not self.multi)
        owners = await self.store.agent_nodes()
        for name, node in owners.items():
            if node != self.name:
                self.lifecycle.agents.pop(name, None)
                self.remote[name] = node
        if MANAGER in self.remote and self.lifecycle.config.manager:
            log.info("the manager runs on node %s (hive manager claim moves it here)", self.remote[MANAGER])
            self.lifecycle.config = dataclasses.replace(self.lifecycle.config, manager=False)
        await self.store.subscribe_wakeups(self._hinted)

    async def before_register(self, name: str) -> None:
        """Lifecycle hook: an agent (or its kept state) that belongs to another node is spawned there."""
        owner = (await self.store.agent_nodes(include_destroyed=True)).get(name)
        if owner not in (None, self.name):
            raise Conflict(f"agent {name!r} belongs to node {owner}: spawn it there (hive spawn {name} --node {owner})")

    async def after_register(self, name: str) -> None:
        if not await self.store.set_agent_node(name, self.name, only_from=self.name, claim_unset=True):
            self.lifecycle.agents.pop(name, None)
            raise Conflict(f"agent {name!r} was placed on another node meanwhile")
        self.remote.pop(name, None)

    def _hinted(self, recipient: str) -> None:
        if recipient == HUB_HINT:
            self._events_wake.set()
        elif recipient == node_hint(self.name):
            self._requests_wake.set()
        elif recipient.startswith("#reply:"):
            with contextlib.suppress(ValueError):
                event = self._replies.get(int(recipient[7:]))
                if event is not None:
                    event.set()

    async def run(self) -> None:
        """The node's loops; cancelled when the daemon stops."""
        loops = [self._heartbeat_loop()]
        if self.multi:
            loops += [self._requests_loop(), self._export_loop(), self._import_loop()]
        try:
            await asyncio.gather(*loops)
        finally:
            if self._seeding is not None:
                self._seeding.cancel()

    # ---- heartbeat, the whole hive's rows ------------------------------------------------------

    def alive(self, node: str | None) -> bool:
        if node == self.name:
            return True
        seen = self._moved.get(node or "")
        return seen is not None and time.monotonic() - seen[1] < DEAD_AFTER

    async def beat(self) -> None:
        rows = [self.lifecycle.row(n).model_dump() for n in self.lifecycle.names()]
        await self.store.node_heartbeat(self.name, self.dashboard_url, rows, time.time(), self._approving)
        if not self.multi:
            return
        now = time.monotonic()
        self._nodes = {n["name"]: n for n in await self.store.nodes()}
        for node in self._nodes.values():
            seen = self._moved.get(node["name"])
            if node["heartbeat_at"] == 0:  # it left (a clean stop): unreachable at once
                self._moved[node["name"]] = (0.0, now - DEAD_AFTER)
            elif seen is None:  # first sight: trust its timestamp once; from then on only whether it moves
                fresh = abs(time.time() - node["heartbeat_at"]) < DEAD_AFTER
                self._moved[node["name"]] = (node["heartbeat_at"], now if fresh else now - DEAD_AFTER)
            elif seen[0] != node["heartbeat_at"]:
                self._moved[node["name"]] = (node["heartbeat_at"], now)
        owners = await self.store.agent_nodes()
        for name in list(self.lifecycle.agents):
            owner = owners.get(name)
            if owner is not None and owner != self.name:
                await self._release(name, owner)
        self.remote = {n: node for n, node in owners.items() if node != self.name and n not in self.lifecycle.agents}
        for row in self.remote_rows():
            if self._remote_states.get(row.name) != row.state:
                self._remote_states[row.name] = row.state
                self.hub.publish("agent_changed", {**row.model_dump(), "_node": row.node})
        for gone in set(self._remote_states) - set(self.remote):
            del self._remote_states[gone]

    async def _release(self, name: str, owner: str) -> None:
        """Another node took this agent (hive manager claim while this node was away): stop our copy."""
        log.warning("agent %s now runs on node %s: stopping it here", name, owner)
        rec = await self.store.get_agent(name)
        with contextlib.suppress(HiveError):
            await self.lifecycle.stop(name, desired=rec["desired"] if rec else "running")
        self.lifecycle.agents.pop(name, None)
        if self.lifecycle.close_socket is not None:
            await self.lifecycle.close_socket(name)

    async def busy_approvals(self) -> set[int]:
        """At start, before recovering approvals cut off by a crash: those another live node is
        deploying right now are not this node's to fail."""
        if not self.multi:
            return set()
        await self.beat()
        return {aid for n in self._nodes.values() if n["name"] != self.name and self.alive(n["name"])
                for aid in n["approving"]}  # fmt: skip

    async def leave(self) -> None:
        """A clean stop: the other nodes show this node's agents unreachable at once."""
        rows = [self.lifecycle.row(n).model_dump() for n in self.lifecycle.names()]
        await self.store.node_heartbeat(self.name, self.dashboard_url, rows, 0.0)

    def remote_rows(self) -> list[AgentRow]:
        out = []
        for name, node in sorted(self.remote.items()):
            info = self._nodes.get(node or "")
            found = next((r for r in info["rows"] if r.get("name") == name), None) if info else None
            row: dict[str, Any] = dict(found) if found else {"name": name, "cage": "?", "state": "stopped"}
            if not self.alive(node):
                row.update(state="unreachable", harness_state=None, pid=None)
            row.update(node=node, node_url=info["dashboard_url"] if info else None)
            with contextlib.suppress(ValueError):
                out.append(AgentRow.model_validate(row))
        return out

    def node_rows(self) -> list[dict[str, Any]]:
        if not self.multi:
            return [{"name": self.name, "dashboard_url": self.dashboard_url, "alive": True,
                     "agents": len(self.lifecycle.agents), "here": True}]  # fmt: skip
        return [{"name": n["name"], "dashboard_url": n["dashboard_url"], "alive": self.alive(n["name"]),
                 "agents": len(n["rows"]), "here": n["name"] == self.name} for n in self._nodes.values()]  # fmt: skip

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.beat()
                if self.multi:
                    await self.store.node_housekeeping(time.time() - KEEP_EVENTS, time.time() - KEEP_EVENTS)
                    if self._seeding is None or self._seeding.done():  # it may wait on other nodes
                        self._seeding = asyncio.ensure_future(self.configs.seed_proposed())
            except Exception:
                log.exception("node heartbeat failed; retrying")
            self._beat_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beat_wake.wait(), HEARTBEAT)

    # ---- core-to-core requests ---------------------------------------------------------------

    async def route(self, who: Identity, req: Any) -> dict[str, Any] | None:
        """A host or manager verb that another node must run: its reply; None: run it here."""
        if req.cmd == "approve" and self.multi:
            return await self.configs.route_approve(who, req)
        if req.cmd == "spawn":
            node = getattr(req, "node", None)
            if node is None or node == self.name:
                if req.name in self.remote:
                    raise Conflict(f"agent {req.name!r} already exists on node {self.remote[req.name]}")
                return None
            return await self.forward(node, req.model_dump(exclude={"node"}, exclude_none=True), who)
        if req.cmd in FORWARDED and getattr(req, "name", None) in self.remote:
            return await self.forward(self.remote[req.name] or "?", req.model_dump(exclude_none=True), who)
        return None

    async def forward(self, node: str, request: dict[str, Any], who: Identity) -> dict[str, Any]:
        if not self.multi:
            raise Conflict("this hive has one node (its store is SQLite): nodes need a PostgreSQL store")
        if node not in self._nodes:
            await self.beat()
        if node not in self._nodes:
            raise NotFound(f"no node named {node!r} (nodes: {', '.join(sorted(self._nodes))})")
        if not self.alive(node):
            raise NodeUnreachable(f"node {node} is unreachable (no heartbeat for {DEAD_AFTER:.0f} s or more)")
        event = asyncio.Event()
        rid = await self.store.node_request(node, request, who.name, time.time())
        self._replies[rid] = event
        try:
            async with asyncio.timeout(FORWARD_BOUND):
                while True:
                    done = await self.store.node_request_get(rid)
                    if done is not None and done["reply"] is not None:
                        break
                    event.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(event.wait(), POLL / 4)
        except TimeoutError:
            raise NodeUnreachable(
                f"node {node} did not answer {request.get('cmd')} within {FORWARD_BOUND:.0f} s"
            ) from None
        finally:
            self._replies.pop(rid, None)
        self._beat_wake.set()  # the registry may have changed (a spawn, a destroy)
        reply = done["reply"]
        if not reply.get("ok"):
            err = HiveError(f"node {node}: {reply.get('error')}")
            err.code = str(reply.get("code") or ErrorCode.ERROR)
            raise err
        result: dict[str, Any] = reply["result"]
        return result

    async def _requests_loop(self) -> None:
        while True:
            try:
                for r in await self.store.node_requests_open(self.name):
                    if r["id"] not in self._running:
                        self._running.add(r["id"])
                        task = asyncio.ensure_future(self._execute(r["id"], r["request"], r["caller"], r["created_at"]))
                        task.add_done_callback(self._done_callback(r["id"]))
            except Exception:
                log.exception("reading node requests failed; retrying")
            self._requests_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requests_wake.wait(), POLL)

    def _done_callback(self, rid: int) -> Any:
        return lambda _task: self._running.discard(rid)

    async def _execute(self, rid: int, request: dict[str, Any], caller: str, created_at: float) -> None:
        import json

        who = Identity("operator", OPERATOR) if caller == OPERATOR else Identity("manager", MANAGER)
        try:
            if time.time() - created_at > REQUEST_TTL:
                raise NodeUnreachable(f"the request waited {REQUEST_TTL:.0f} s for node {self.name}; not run late")
            if request.get("cmd") == CONFIG_FILES:
                files = await self.configs.files(str(request["agent"]), int(request["id"]))
                await self.store.node_request_done(rid, {"ok": True, "result": {"files": files}}, time.time())
                return
            req = decode_request(json.dumps(request))
            if req.cmd not in FORWARDED | {"spawn", "approve"}:
                raise Conflict(f"{req.cmd} is not run for another node")
            if req.cmd not in ("spawn", "approve") and req.name not in self.lifecycle.agents:  # never passed on again
                raise NotFound(f"agent {req.name!r} does not run on node {self.name}")
            reply = {"ok": True, "result": await self.handle(who, req)}
        except ProtocolFailure as exc:
            reply = {"ok": False, "error": str(exc), "code": exc.code}
        except HiveError as exc:
            reply = {"ok": False, "error": exc.message, "code": exc.code}
        except Exception:
            log.exception("node request #%d (%s) failed", rid, request.get("cmd"))
            reply = {"ok": False, "error": f"node {self.name} failed running it; see its log", "code": "internal"}
        await self.store.node_request_done(rid, reply, time.time())
        self._beat_wake.set()

    # ---- the manager ---------------------------------------------------------------------------

    async def claim_manager(self, force: bool) -> dict[str, Any]:
        """`hive manager claim`: run the manager on this node. Its node must be unreachable
        unless `force` (the operator stopped it there, or knows it is gone)."""
        owner = (await self.store.agent_nodes()).get(MANAGER)
        if owner == self.name:
            return {"manager": self.name, "moved": False}
        if not self.multi:
            raise Conflict("this hive has one node (its store is SQLite)")
        await self.beat()
        if owner is not None and self.alive(owner) and not force:
            raise Conflict(f"the manager runs on node {owner}, which is alive; stop the manager there first "
                           "or claim with --force")  # fmt: skip
        if owner is not None and not await self.store.set_agent_node(MANAGER, self.name, only_from=owner):
            raise Conflict("another node claimed the manager meanwhile")
        self.remote.pop(MANAGER, None)
        self.lifecycle.config = dataclasses.replace(self.lifecycle.config, manager=True)
        await self.lifecycle.spawn(MANAGER, "the manager")
        self._beat_wake.set()
        return {"manager": self.name, "moved": True, "from": owner}

    # ---- the live stream across nodes ------------------------------------------------------------

    async def _export_loop(self) -> None:
        sub = self.hub.subscribe()
        try:
            while True:
                first = await sub.next()
                if first is None:  # fell behind: the hub dropped us; the other nodes miss that stretch
                    sub = self.hub.subscribe()
                    continue
                batch = [first, *sub.drain()]
                for e in batch:
                    if e.kind == "approval_resolving" and "_node" not in e.payload:
                        self._approving.add(int(e.payload["id"]))
                        self._beat_wake.set()  # tell the other nodes now, not at the next beat
                    elif e.kind == "approval_resolved":
                        self._approving.discard(int(e.payload["id"]))
                events = [(e.ts, e.kind, e.payload) for e in batch if "_node" not in e.payload]
                if events:
                    try:
                        await self.store.node_events_insert(self.name, events)
                    except Exception:
                        log.exception("relaying %d live events failed", len(events))
                await asyncio.sleep(0.05)  # batch what arrives meanwhile into one transaction
        finally:
            sub.close()

    async def _import_loop(self) -> None:
        last = floor = await self.store.node_events_last_id()  # events from before this start are history
        while True:
            try:
                for e in await self.store.node_events_after(max(floor, last - RELAY_OVERLAP), self.name):
                    last = max(last, e["id"])
                    if e["id"] in self._seen_set:
                        continue
                    if len(self._seen) == self._seen.maxlen:
                        self._seen_set.discard(self._seen[0])
                    self._seen.append(e["id"])
                    self._seen_set.add(e["id"])
                    payload = {**e["payload"], "_node": e["node"]}
                    if e["kind"] == "agent_changed":  # a row of that node's agent: say where it runs
                        info = self._nodes.get(e["node"])
                        payload.update(node=e["node"], node_url=info["dashboard_url"] if info else None)
                    self.hub.publish(e["kind"], payload)
                    for hook in self.relayed:
                        hook(e["kind"])
                    if e["kind"] in ("agent_added", "agent_removed"):
                        self._beat_wake.set()
            except Exception:
                log.exception("reading relayed live events failed; retrying")
            self._events_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._events_wake.wait(), POLL)

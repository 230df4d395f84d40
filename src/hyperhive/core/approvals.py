"""The approval queue: spawn, init_config and apply_commit requests, resolved only by the
operator. The state machine lives here; git lives in ConfigRepos; cages in Lifecycle.

pending → approving → approved | deployed | failed;  pending → denied.
The pending → approving step is one atomic store transition, so two racing approvals cannot both win.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from hyperhive.core.broker import Broker
from hyperhive.core.configrepo import ConfigRepos
from hyperhive.core.hub import Hub
from hyperhive.core.lifecycle import Lifecycle
from hyperhive.errors import Conflict, HiveError, NotFound
from hyperhive.names import MANAGER, validate_agent_name
from hyperhive.store.base import ApprovalKind, ApprovalRow, ApprovalStatus, Store

__all__ = ["Approvals"]

log = logging.getLogger(__name__)
HEALTH_TIMEOUT = 60.0


IN_FLIGHT: tuple[ApprovalStatus, ...] = ("proposing", "approving", "denying")


def _row(row: ApprovalRow) -> dict[str, Any]:
    return dict(row)


class Approvals:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        hub: Hub,
        lifecycle: Lifecycle,
        repos: ConfigRepos,
        *,
        clock: Callable[[], float] = time.time,
        health_timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        self.store = store
        self.broker = broker
        self.hub = hub
        self.lifecycle = lifecycle
        self.repos = repos
        self.clock = clock
        self.health_timeout = health_timeout

    async def recover(self, skip: Collection[int] = ()) -> list[int]:
        """At daemon start: a request cut off mid-flight by a crash (proposing, approving,
        denying) is marked failed, and a deploy left half-done is rolled back in git. `skip`:
        approvals another live node is deploying right now (core/nodes.py)."""
        rows = await self.store.approvals(statuses=IN_FLIGHT)
        recovered = []
        for row in rows:
            a = _row(row)
            if a["id"] in skip:
                continue
            if a["kind"] == "apply_commit":
                try:
                    if await self.repos.deploying(a["agent"]) == a["id"]:
                        await self.repos.fail_deploy(a["agent"], a["id"], "interrupted")
                except HiveError as exc:
                    log.warning("recovering approval #%d: %s", a["id"], exc.message)
            await self._finish(a["id"], "failed", note="interrupted by a daemon restart; request it again")
            recovered.append(a["id"])
        return recovered

    # ---- reads -------------------------------------------------------------------------

    async def get(self, aid: int) -> dict[str, Any]:
        row = await self.store.get_approval(aid)
        if row is None:
            raise NotFound(f"no approval #{aid}")
        return _row(row)

    async def pending(self) -> list[dict[str, Any]]:
        return [_row(r) for r in await self.store.approvals(statuses=("pending", "approving"))]

    async def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        return [_row(r) for r in await self.store.approvals(limit=limit)]

    async def diff(self, aid: int) -> str:
        a = await self.get(aid)
        if a["kind"] != "apply_commit":
            return ""
        return await self.repos.diff(a["agent"], aid)

    # ---- requests ----------------------------------------------------------------------

    async def _insert(self, kind: ApprovalKind, agent: str, description: str | None, requested_by: str,
                      status: ApprovalStatus = "pending", commit_ref: str | None = None) -> int:  # fmt: skip
        row = await self.store.insert_approval(kind, agent, description, requested_by, self.clock(), status=status,
                                               commit_ref=commit_ref)  # fmt: skip
        return row["id"]

    async def _insert_once(self, kind: ApprovalKind, agent: str, description: str | None, requested_by: str) -> int:
        row, created = await self.store.insert_approval_once(kind, agent, description, requested_by, self.clock())
        if not created:
            raise Conflict(f"a {kind} request for {agent!r} is already pending (#{row['id']})")
        return row["id"]

    async def request_spawn(self, name: str, description: str | None, *, requested_by: str) -> dict[str, Any]:
        name = validate_agent_name(name, allow_manager=False)
        if name in self.lifecycle.agents:
            raise Conflict(f"agent {name!r} already exists")
        aid = await self._insert_once("spawn", name, description, requested_by)
        return await self._added(aid)

    async def request_init_config(self, name: str, description: str | None, *, requested_by: str) -> dict[str, Any]:
        name = validate_agent_name(name, allow_manager=False)
        if name in self.lifecycle.agents:
            raise Conflict(f"agent {name!r} already exists")
        if self.lifecycle.paths.agent(name).config.exists():
            raise Conflict(f"{name!r} already has a proposed config repo; edit it and request_apply_commit")
        aid = await self._insert_once("init_config", name, description, requested_by)
        return await self._added(aid)

    async def request_apply_commit(
        self, agent: str, commit_ref: str, description: str | None, *, requested_by: str
    ) -> dict[str, Any]:
        """Resolve and freeze the commit (tag proposal/<id>) before it becomes pending; a config
        that fails validation is recorded as failed and never shown as pending."""
        agent = validate_agent_name(agent)
        if not self.lifecycle.paths.agent(agent).config.exists():
            raise NotFound(f"{agent!r} has no proposed config repo (request_init_config first)")
        aid = await self._insert(
            "apply_commit", agent, description, requested_by, status="proposing", commit_ref=commit_ref
        )
        try:
            proposal = await self.repos.propose(agent, commit_ref, aid)
        except HiveError as exc:
            await self._finish(aid, "failed", note=exc.message)
            raise
        await self.store.transition_approval(aid, ["proposing"], "pending", sha=proposal.sha, tag=f"proposal/{aid}")
        return await self._added(aid)

    async def apply_operator_edit(
        self, agent: str, files: dict[str, str], base_sha: str, *, requested_by: str
    ) -> dict[str, Any]:
        """The operator's direct config edit: recorded as an apply_commit approval, committed by
        the core on applied main (tagged operator/<id>), then approved at once, so it takes the
        same validation, deploy, health check and rollback as any approved commit."""
        agent = validate_agent_name(agent)
        aid = await self._insert("apply_commit", agent, "operator edit (hive config edit)", requested_by,
                                 status="proposing")  # fmt: skip
        try:
            proposal = await self.repos.commit_operator_edit(agent, files, base_sha, aid)
        except HiveError as exc:
            await self._finish(aid, "failed", note=exc.message)
            raise
        await self.store.transition_approval(aid, ["proposing"], "pending", commit_ref=proposal.sha, sha=proposal.sha,
                                             tag=f"operator/{aid}")  # fmt: skip
        await self._added(aid)
        return await self.approve(aid)

    async def _added(self, aid: int) -> dict[str, Any]:
        a = await self.get(aid)
        self.hub.publish("approval_added", a)
        return a

    # ---- resolution --------------------------------------------------------------------

    async def _claim(self, aid: int, to_status: ApprovalStatus) -> dict[str, Any]:
        row = await self.store.transition_approval(aid, ["pending"], to_status)
        if row is None:
            current = await self.store.get_approval(aid)
            if current is None:
                raise NotFound(f"no approval #{aid}")
            raise Conflict(f"approval #{aid} is already {current['status']}")
        return {**_row(row), "status": "pending"}  # as it was when claimed

    async def _finish(
        self, aid: int, status: ApprovalStatus, *, note: str | None = None, tag: str | None = None
    ) -> dict[str, Any]:
        # A request refused while proposing never became pending: the manager got the error as
        # the reply to its request, so it gets no approval_resolved for it.
        before = await self.get(aid)
        was_proposing = before["status"] == "proposing"
        fields: dict[str, Any] = {"resolved_at": self.clock()}
        if note is not None:
            fields["note"] = note
        if tag is not None:
            fields["tag"] = tag
        row = await self.store.transition_approval(aid, IN_FLIGHT, status, **fields)
        if row is None:  # resolved meanwhile (another node's recovery): say so, change nothing
            raise Conflict(f"approval #{aid} is already {(await self.get(aid))['status']}")
        a = _row(row)
        self.hub.publish("approval_resolved", a)
        if not was_proposing:
            await self.broker.system_event(
                MANAGER, "approval_resolved", id=aid, kind=a["kind"], agent=a["agent"], status=status,
                sha=a["sha"], tag=a["tag"], note=a["note"],
            )  # fmt: skip
        return a

    async def deny(self, aid: int, note: str | None = None) -> dict[str, Any]:
        a = await self._claim(aid, "denying")
        tag = None
        if a["kind"] == "apply_commit":
            await self.repos.deny(a["agent"], aid, note or "")
            tag = f"denied/{aid}"
        return await self._finish(aid, "denied", note=note or "denied by the operator", tag=tag)

    async def approve(self, aid: int) -> dict[str, Any]:
        a = await self._claim(aid, "approving")
        self.hub.publish("approval_resolving", {"id": aid})
        try:
            if a["kind"] == "spawn":
                await self.lifecycle.spawn(a["agent"], a["description"])
                return await self._finish(aid, "approved")
            if a["kind"] == "init_config":
                await self.lifecycle.init_config(a["agent"], a["description"])
                result = await self._finish(aid, "approved")
                path = f"/agents/{a['agent']}/config"
                await self.broker.system_event(MANAGER, "config_ready", agent=a["agent"], path=path)
                return result
            return await self._deploy(a)
        except HiveError as exc:
            log.warning("approval #%d failed: %s", aid, exc.message)
            return await self._finish(aid, "failed", note=exc.message)

    async def _deploy(self, a: dict[str, Any]) -> dict[str, Any]:
        aid, agent = a["id"], a["agent"]
        await self.repos.tag_approved(agent, aid)
        first = agent not in self.lifecycle.agents
        await self.repos.begin_deploy(agent, aid)
        self.lifecycle.deploying.add(agent)
        try:
            return await self._deploy_and_check(a, first)
        finally:
            self.lifecycle.deploying.discard(agent)

    async def _deploy_and_check(self, a: dict[str, Any], first: bool) -> dict[str, Any]:
        aid, agent = a["id"], a["agent"]
        try:
            if first:
                await self.lifecycle.spawn(agent, a["description"], seed=False)
            else:
                await self.lifecycle.restart(agent, reason=f"restarted on approved config #{aid}")
            await self.lifecycle.wait_healthy(agent, self.health_timeout)
        except HiveError as exc:
            await self.repos.fail_deploy(agent, aid, exc.message)
            if first:
                if agent in self.lifecycle.agents:
                    await self.lifecycle.destroy(agent)
            else:
                await self.lifecycle.restart(agent, reason=f"restored after failed config #{aid}")
            return await self._finish(aid, "failed", note=exc.message, tag=f"failed/{aid}")
        await self.repos.finish_deploy(agent, aid)
        return await self._finish(aid, "deployed", tag=f"deployed/{aid}")

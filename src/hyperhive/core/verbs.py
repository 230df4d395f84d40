"""Host, agent and manager verbs: a typed request in, a reply dict out. No socket code.

Who may do what is decided here from the caller's Identity (its socket): operator-only
actions (approve, deny, answering the operator's questions) have no agent entry point.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from hyperhive import __version__
from hyperhive import protocol as p
from hyperhive.core import eventfollow, operator_config
from hyperhive.core import websessions as web_sessions
from hyperhive.core.hub import HubEvent
from hyperhive.core.scheduler import PrewarmRefused
from hyperhive.core.sockets import Identity, StreamReply, Takeover, peer_gone
from hyperhive.errors import AgentNotFound, Conflict, NotAllowed
from hyperhive.livefeed import Missed, replay
from hyperhive.names import MANAGER, OPERATOR

if TYPE_CHECKING:
    from hyperhive.core.services import Services
    from hyperhive.core.shell import Shells

__all__ = ["Verbs"]


class Verbs:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def handle(self, who: Identity, req: Any) -> dict[str, Any]:
        nodes = self.s.lifecycle.nodes
        if nodes is not None and who.kind in ("operator", "manager"):
            routed = await nodes.route(who, req)  # an agent of another node: that node runs it
            if routed is not None:
                return routed
        method = getattr(self, f"v_{req.cmd}")
        result: dict[str, Any] = await method(who, req)
        return result

    # ---- everyone ----------------------------------------------------------------------

    async def v_ping(self, who: Identity, req: p.PingReq) -> dict[str, Any]:
        reply: dict[str, Any] = {"pong": True, "as": who.name, "hyperhive": __version__}
        if who.kind == "operator":  # the login URL carries the dashboard token: operator only
            reply["dashboard_url"] = self.s.dashboard_url
            reply["state_dir"] = str(self.s.config.state_dir)  # where `hive logs` / `hive backup` read
        return reply

    async def v_send(self, who: Identity, req: p.SendReq) -> dict[str, Any]:
        ids = await self.s.broker.send(who.name, req.to, req.body, req.in_reply_to)
        return {"id": ids[0] if ids else None, "ids": ids, "recipients": len(ids)}

    async def v_answer(self, who: Identity, req: p.AnswerReq) -> dict[str, Any]:
        q = await self.s.questions.answer(req.id, req.answer, answerer=who.name, as_operator=who.kind == "operator")
        return {"question": q}

    # ---- operator (host.sock) -------------------------------------------------------------

    async def v_list(self, who: Identity, req: p.ListReq) -> dict[str, Any]:
        return {
            "agents": [r.model_dump() for r in self.s.lifecycle.rows()],
            "cage": self.s.lifecycle.cage.kind,
            "cage_reason": self.s.cage_reason,
        }

    async def v_nodes(self, who: Identity, req: p.NodesReq) -> dict[str, Any]:
        nodes = self.s.lifecycle.nodes
        assert nodes is not None
        await nodes.beat()
        return {"node": nodes.name, "nodes": nodes.node_rows(), "multi": nodes.multi}

    async def v_manager_claim(self, who: Identity, req: p.ManagerClaimReq) -> dict[str, Any]:
        nodes = self.s.lifecycle.nodes
        assert nodes is not None
        return await nodes.claim_manager(req.force)

    async def v_spawn(self, who: Identity, req: p.SpawnReq) -> dict[str, Any]:
        # kept state = a destroyed agent's tree still on disk (a purge removes it)
        revived = req.name not in self.s.lifecycle.agents and self.s.lifecycle.paths.agent(req.name).root.exists()
        await self.s.lifecycle.spawn(req.name)
        if req.wait:  # hive spawn --wait: until its harness reports in (a CageError if it exits first)
            await self.s.lifecycle.wait_healthy(req.name)
        return {"agent": self.s.lifecycle.row(req.name).model_dump(), "revived": revived}

    def _not_self(self, who: Identity, name: str) -> None:
        if who.kind != "operator" and name == who.name:
            raise NotAllowed(f"{who.name} cannot stop, start or restart itself")

    async def v_start(self, who: Identity, req: p.StartReq) -> dict[str, Any]:
        self._not_self(who, req.name)
        await self.s.lifecycle.start(req.name, reason="started by " + who.name)
        return {"agent": self.s.lifecycle.row(req.name).model_dump()}

    async def v_stop(self, who: Identity, req: p.StopReq) -> dict[str, Any]:
        self._not_self(who, req.name)
        await self.s.lifecycle.stop(req.name)
        return {"agent": self.s.lifecycle.row(req.name).model_dump()}

    async def v_kill(self, who: Identity, req: p.KillReq) -> dict[str, Any]:
        self._not_self(who, req.name)
        await self.s.lifecycle.stop(req.name)
        await self.s.broker.system_event(MANAGER, "killed", agent=req.name, by=who.name)
        return {"agent": self.s.lifecycle.row(req.name).model_dump()}

    async def v_restart(self, who: Identity, req: p.RestartReq) -> dict[str, Any]:
        self._not_self(who, req.name)
        await self.s.lifecycle.restart(req.name, reason="restarted by " + who.name)
        return {"agent": self.s.lifecycle.row(req.name).model_dump()}

    async def v_update(self, who: Identity, req: p.UpdateReq) -> dict[str, Any]:
        self._not_self(who, req.name)
        await self.s.lifecycle.restart(req.name, reason="updated (restarted on its applied config) by " + who.name)
        return {"agent": self.s.lifecycle.row(req.name).model_dump()}

    async def v_destroy(self, who: Identity, req: p.DestroyReq) -> dict[str, Any]:
        await self.s.lifecycle.destroy(req.name, purge=req.purge)
        return {"destroyed": req.name, "purged": req.purge}

    def _kept(self, name: str) -> dict[str, Any]:
        kept = {k["name"]: k for k in self.s.lifecycle.kept_state()}
        if name not in kept:
            raise AgentNotFound(f"no kept state for {name!r} (hive kept lists it)")
        return kept[name]

    async def v_revive(self, who: Identity, req: p.RevivReq) -> dict[str, Any]:
        if req.name in self.s.lifecycle.agents:
            raise Conflict(f"agent {req.name!r} is live; nothing to revive")
        self._kept(req.name)
        approval = await self.s.approvals.request_spawn(
            req.name, f"revive {req.name} from its kept state (config and credentials reused)", requested_by=who.name
        )
        return {"approval": approval}

    async def v_kept(self, who: Identity, req: p.KeptReq) -> dict[str, Any]:
        return {"kept": self.s.lifecycle.kept_state()}

    async def v_purge(self, who: Identity, req: p.PurgeReq) -> dict[str, Any]:
        if req.name in self.s.lifecycle.agents:
            raise Conflict(f"agent {req.name!r} is live; use hive destroy {req.name} --purge")
        self._kept(req.name)
        await self.s.lifecycle.purge_kept(req.name)
        return {"purged": req.name}

    async def v_config_show(self, who: Identity, req: p.ConfigShowReq) -> dict[str, Any]:
        return await operator_config.show(self.s, req.name)

    async def v_config_apply(self, who: Identity, req: p.ConfigApplyReq) -> dict[str, Any]:
        approval = await operator_config.apply(self.s, req.name, req.agent_toml, req.base_sha, req.instructions)
        return {"approval": approval}

    async def v_sessions(self, who: Identity, req: p.SessionsReq) -> dict[str, Any]:
        return await web_sessions.operator_verb(self.s, revoke=req.revoke, revoke_all=req.revoke_all)

    async def v_inbox(self, who: Identity, req: p.InboxReq) -> dict[str, Any]:
        messages = await self.s.broker.recent(OPERATOR, req.limit)
        return {"messages": [m.model_dump() for m in messages]}

    async def v_pending(self, who: Identity, req: p.PendingReq) -> dict[str, Any]:
        if req.diff_id is not None:
            return {"diff": await self.s.approvals.diff(req.diff_id)}
        return {"approvals": await self.s.approvals.pending()}

    async def v_approve(self, who: Identity, req: p.ApproveReq) -> dict[str, Any]:
        return {"approval": await self.s.approvals.approve(req.id)}

    async def v_deny(self, who: Identity, req: p.DenyReq) -> dict[str, Any]:
        return {"approval": await self.s.approvals.deny(req.id, req.note)}

    async def v_questions(self, who: Identity, req: p.QuestionsReq) -> dict[str, Any]:
        return {"questions": await self.s.questions.pending()}

    async def v_cancel_question(self, who: Identity, req: p.CancelQuestionReq) -> dict[str, Any]:
        return {"question": await self.s.questions.cancel(req.id)}

    async def v_dead_letters(self, who: Identity, req: p.DeadLettersReq) -> dict[str, Any]:
        return {"dead_letters": [m.model_dump() for m in await self.s.broker.dead_letters(req.limit)],
                "max_attempts": self.s.broker.max_attempts}  # fmt: skip

    async def v_retry_dead(self, who: Identity, req: p.RetryDeadReq) -> dict[str, Any]:
        return {"message": (await self.s.broker.retry_dead(req.id)).model_dump()}

    async def v_discard_dead(self, who: Identity, req: p.DiscardDeadReq) -> dict[str, Any]:
        return {"message": (await self.s.broker.discard_dead(req.id)).model_dump()}

    async def v_events(self, who: Identity, req: p.EventsReq) -> dict[str, Any]:
        events = await asyncio.to_thread(self.s.read_agent_events, req.name, after=req.after, limit=req.limit)
        return {"events": events}

    async def v_events_follow(self, who: Identity, req: p.EventsFollowReq) -> StreamReply:
        """The agent's live trail after `after`, relayed from its page (core/eventfollow.py)."""
        self.s.lifecycle.get(req.name)
        events = eventfollow.follow(self.s.lifecycle, self.s.hub, req.name, req.after)
        return StreamReply({"following": req.name, "after": req.after}, events)

    async def v_subscribe(self, who: Identity, req: p.SubscribeReq) -> StreamReply:
        """The core's live events as a stream: the ring after `after`, then live, each seq once
        (the resume step of the SSE streams, `livefeed.replay`). An `epoch` from an earlier
        daemon run gets one `reset` event and the stream ends; a resume the ring no longer
        reaches gets a `missed` event first."""
        hub = self.s.hub
        sub = hub.subscribe()  # before reading the ring, so nothing falls between the two
        kinds = set(req.kinds) if req.kinds else None
        first = {"subscribed": True, "seq": hub.seq, "epoch": hub.epoch}
        if req.epoch is not None and req.epoch != hub.epoch:
            sub.close()
            return StreamReply(first, _one({"kind": "reset", "data": {"epoch": hub.epoch}}), sub.close)
        if req.after is None:
            backlog: list[HubEvent | Missed] = []
            last = hub.seq
        else:
            backlog, last = await replay(hub.history(after=req.after), req.after)

        async def events() -> AsyncIterator[dict[str, Any]]:
            nonlocal last
            for item in backlog:
                if isinstance(item, Missed):
                    yield {"kind": "missed", "data": item.to_json()}
                elif kinds is None or item.kind in kinds:
                    yield item.to_json()
            async for event in sub:
                if event.id <= last:
                    continue
                last = event.id
                if kinds is None or event.kind in kinds:
                    yield event.to_json()

        return StreamReply(first, events(), sub.close)

    async def v_exec(self, who: Identity, req: p.ExecReq) -> Takeover:
        """A command inside the agent's cage; host.sock only (not in AGENT/MANAGER_VERBS)."""
        from hyperhive.core.shell_socket import exec_takeover

        return await exec_takeover(self._shells(), req, by=f"{who.name} (cli)")

    async def v_shell(self, who: Identity, req: p.ShellReq) -> Takeover:
        from hyperhive.core.shell_socket import shell_takeover

        return await shell_takeover(self._shells(), req, by=f"{who.name} (cli)")

    def _shells(self) -> Shells:
        if self.s.shells is None:
            raise NotAllowed("shells are not available in this daemon")
        return self.s.shells

    async def v_request_spawn(self, who: Identity, req: p.RequestSpawnReq) -> dict[str, Any]:
        return {"approval": await self.s.approvals.request_spawn(req.name, req.description, requested_by=who.name)}

    # ---- agents (agents/<name>/mcp.sock) ---------------------------------------------------

    async def v_stats(self, who: Identity, req: p.StatsReq) -> dict[str, Any]:
        import time

        from hyperhive.names import validate_agent_name

        agent = None if req.agent is None else validate_agent_name(req.agent)
        if agent is not None and agent not in self.s.lifecycle.agents:
            raise AgentNotFound(f"no agent named {agent!r}")
        assert self.s.telemetry is not None
        since = time.time() - 86400 if req.since is None else req.since
        return {"stats": await self.s.telemetry.series(agent, since)}

    async def v_recv(self, who: Identity, req: p.RecvReq) -> dict[str, Any]:
        gateway = self.s.gateway
        if gateway is not None and await gateway.hold_recv(who.name, req.wait_seconds):
            return {"messages": [], "unread": self.s.broker.unread(who.name), "paused": "over budget"}
        messages = await self.s.broker.recv(who.name, req.wait_seconds, req.max, abandon=peer_gone())
        return {"messages": [m.model_dump() for m in messages], "unread": self.s.broker.unread(who.name)}

    async def v_ack_turn(self, who: Identity, req: p.AckTurnReq) -> dict[str, Any]:
        return {"acked": await self.s.broker.ack_turn(who.name)}

    async def v_requeue_inflight(self, who: Identity, req: p.RequeueInflightReq) -> dict[str, Any]:
        return {"requeued": await self.s.broker.requeue_inflight(who.name)}

    async def v_status(self, who: Identity, req: p.StatusReq) -> dict[str, Any]:
        return {"unread": self.s.broker.unread(who.name)}

    async def v_whoami(self, who: Identity, req: p.WhoamiReq) -> dict[str, Any]:
        return {
            "name": who.name,
            "role": "manager" if who.is_manager else "agent",
            "cage": self.s.lifecycle.cage.kind,
            "hyperhive": __version__,
        }

    async def v_agent_config(self, who: Identity, req: p.AgentConfigReq) -> dict[str, Any]:
        cfg = self.s.lifecycle.agent_config(who.name)
        instructions = await self.s.read_instructions(who.name, cfg)
        return {"config": cfg.model_dump(mode="json"), "instructions_text": instructions}

    async def v_recent(self, who: Identity, req: p.RecentReq) -> dict[str, Any]:
        messages = await self.s.broker.recent(who.name, req.limit)
        return {"messages": [m.model_dump() for m in messages]}

    async def v_turn_admit(self, who: Identity, req: p.TurnAdmitReq) -> dict[str, Any]:
        sched = self.s.lifecycle.scheduler
        try:
            admitted = await sched.admit(
                who.name, sent_at=req.sent_at, warm=req.warm, wait=req.wait_seconds, prewarm=req.prewarm
            )
        except PrewarmRefused as exc:
            return {"admitted": False, "refused": str(exc)}
        return {"admitted": admitted}

    async def v_turn_release(self, who: Identity, req: p.TurnReleaseReq) -> dict[str, Any]:
        self.s.lifecycle.scheduler.release(who.name, prewarm=req.prewarm)
        return {}

    async def v_report_state(self, who: Identity, req: p.ReportStateReq) -> dict[str, Any]:
        await self.s.lifecycle.report_state(who.name, req.state, req.model, req.last_turn_ms, warm=req.warm)
        return {}

    async def v_ask(self, who: Identity, req: p.AskReq) -> dict[str, Any]:
        if req.to is not None and req.to not in self.s.lifecycle.agents:
            raise AgentNotFound(f"no agent named {req.to!r}")
        if req.to == who.name:
            raise NotAllowed("an agent cannot ask itself")
        q = await self.s.questions.ask(
            who.name, req.question, options=list(req.options), multi=req.multi, ttl_seconds=req.ttl_seconds, to=req.to
        )
        return {"id": q["id"], "question": q}

    async def v_open_threads(self, who: Identity, req: p.OpenThreadsReq) -> dict[str, Any]:
        return await self.s.open_threads(who.name, whole_hive=who.is_manager)

    # ---- manager ---------------------------------------------------------------------------

    async def v_request_init_config(self, who: Identity, req: p.RequestInitConfigReq) -> dict[str, Any]:
        return {
            "approval": await self.s.approvals.request_init_config(req.name, req.description, requested_by=who.name)
        }

    async def v_request_apply_commit(self, who: Identity, req: p.RequestApplyCommitReq) -> dict[str, Any]:
        approval = await self.s.approvals.request_apply_commit(
            req.agent, req.commit_ref, req.description, requested_by=who.name
        )
        return {"approval": approval}


async def _one(item: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    yield item

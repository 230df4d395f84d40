"""Which verbs each socket offers (architecture §3): host.sock takes the operator's verbs, an
agent's mcp.sock the agent's, the manager's its own on top. A verb's request shape is in
`protocol.py`; this is who may send it, which changes for other reasons."""

from __future__ import annotations

__all__ = ["AGENT_VERBS", "HOST_VERBS", "MANAGER_VERBS"]

HOST_VERBS = frozenset(
    {
        "ping", "list", "spawn", "start", "stop", "restart", "destroy", "revive", "send", "inbox",
        "pending", "approve", "deny", "questions", "answer", "cancel_question", "events", "events_follow",
        "request_spawn", "subscribe", "exec", "shell", "kept", "purge", "config_show", "config_apply",
        "sessions", "dead_letters", "retry_dead", "discard_dead", "stats", "nodes", "manager_claim",
    }
)  # fmt: skip
AGENT_VERBS = frozenset(
    {
        "ping", "send", "recv", "ack_turn", "requeue_inflight", "status", "whoami", "agent_config",
        "recent", "report_state", "ask", "answer", "open_threads", "turn_admit", "turn_release",
    }
)  # fmt: skip
MANAGER_VERBS = AGENT_VERBS | frozenset(
    {"request_spawn", "request_init_config", "request_apply_commit", "kill", "start", "restart",
     "update", "list"}
)  # fmt: skip

"""The SQL of every `Store` operation, written once for both backends over a small `Tx`.

Statements use `?` placeholders (the PostgreSQL `Tx` turns them into `%s`) and `RETURNING`
(SQLite ≥ 3.35). Where the backends must differ (a claim's row locks) the `Tx` says which one it
is. Each function runs inside one transaction that the backend opens and commits.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Literal, Protocol, cast

from hyperhive.store.base import AgentRecord, ApprovalRow, MessageRow, QuestionRow, SessionRow

__all__ = ["Tx"]


class Tx(Protocol):
    dialect: Literal["sqlite", "postgresql"]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...


def _one(tx: Tx, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    rows = tx.rows(sql, params)
    return rows[0] if rows else None


def _marks(n: int) -> str:
    return ",".join("?" * n)


# ---- messages ------------------------------------------------------------------------------

MSG_COLS = ("id, sender, recipient, body, sent_at, in_reply_to, broadcast, delivered_at, acked_at, redelivered, "
            "attempts, dead_at")  # fmt: skip


def message(r: dict[str, Any]) -> MessageRow:
    return MessageRow(
        id=int(r["id"]), sender=r["sender"], recipient=r["recipient"], body=r["body"], sent_at=r["sent_at"],
        in_reply_to=r["in_reply_to"], broadcast=bool(r["broadcast"]), delivered_at=r["delivered_at"],
        acked_at=r["acked_at"], redelivered=bool(r["redelivered"]), attempts=int(r["attempts"]), dead_at=r["dead_at"],
    )  # fmt: skip


def _messages(rows: list[dict[str, Any]]) -> list[MessageRow]:
    return sorted((message(r) for r in rows), key=lambda m: m["id"])


def insert_messages(tx: Tx, sender: str, recipients: Sequence[str], body: str, now: float,
                    in_reply_to: int | None, broadcast: bool, settled: Collection[str]) -> list[int]:  # fmt: skip
    ids = []
    for recipient in recipients:
        done = now if recipient in settled else None
        row = tx.rows(
            "INSERT INTO messages (sender, recipient, body, sent_at, in_reply_to, broadcast, delivered_at, acked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (sender, recipient, body, now, in_reply_to, int(broadcast), done, done),
        )
        ids.append(int(row[0]["id"]))
    return ids


def claim_pending(tx: Tx, agent: str, limit: int, now: float) -> list[MessageRow]:
    # One statement: the rows picked are the rows marked. On PostgreSQL a concurrent claim skips
    # the rows this one has locked; SQLite has one writer, so nothing can interleave.
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
    rows = tx.rows(
        f"UPDATE messages SET delivered_at = ?, attempts = attempts + 1 WHERE id IN (SELECT id FROM messages "
        f"WHERE recipient = ? AND delivered_at IS NULL AND dead_at IS NULL ORDER BY id LIMIT ?{lock}) "
        f"RETURNING {MSG_COLS}",
        (now, agent, limit),
    )
    return _messages(rows)


def ack(tx: Tx, agent: str, now: float) -> int:
    return tx.run(
        "UPDATE messages SET acked_at = ? WHERE recipient = ? AND delivered_at IS NOT NULL AND acked_at IS NULL",
        (now, agent),
    )


def requeue_inflight(tx: Tx, agent: str, max_attempts: int, now: float) -> tuple[int, list[MessageRow]]:
    inflight = "recipient = ? AND delivered_at IS NOT NULL AND acked_at IS NULL AND dead_at IS NULL"
    parked = tx.rows(
        f"UPDATE messages SET dead_at = ?, delivered_at = NULL WHERE {inflight} AND attempts >= ? RETURNING {MSG_COLS}",
        (now, agent, max_attempts),
    )
    requeued = tx.run(f"UPDATE messages SET delivered_at = NULL, redelivered = 1 WHERE {inflight}", (agent,))
    return requeued, _messages(parked)


def unread(tx: Tx, agent: str) -> int:
    r = _one(tx, "SELECT COUNT(*) AS n FROM messages WHERE recipient = ? AND delivered_at IS NULL AND dead_at IS NULL",
             (agent,))  # fmt: skip
    return int(r["n"]) if r else 0


def unread_counts(tx: Tx) -> dict[str, int]:
    rows = tx.rows("SELECT recipient, COUNT(*) AS n FROM messages WHERE delivered_at IS NULL AND dead_at IS NULL "
                   "GROUP BY recipient")  # fmt: skip
    return {r["recipient"]: int(r["n"]) for r in rows}


def get_message(tx: Tx, message_id: int) -> MessageRow | None:
    r = _one(tx, f"SELECT {MSG_COLS} FROM messages WHERE id = ?", (message_id,))
    return message(r) if r else None


def recent_messages(tx: Tx, recipient: str | None, involving: str | None, limit: int) -> list[MessageRow]:
    if recipient is not None:
        rows = tx.rows(f"SELECT {MSG_COLS} FROM messages WHERE recipient = ? ORDER BY id DESC LIMIT ?",
                       (recipient, limit))  # fmt: skip
    elif involving is not None:
        rows = tx.rows(f"SELECT {MSG_COLS} FROM messages WHERE recipient = ? OR sender = ? ORDER BY id DESC LIMIT ?",
                       (involving, involving, limit))  # fmt: skip
    else:
        rows = tx.rows(f"SELECT {MSG_COLS} FROM messages ORDER BY id DESC LIMIT ?", (limit,))
    return [message(r) for r in rows]


def vacuum_messages(tx: Tx, acked_before: float) -> int:
    return tx.run("DELETE FROM messages WHERE acked_at IS NOT NULL AND acked_at < ?", (acked_before,))


def dead_letters(tx: Tx, limit: int) -> list[MessageRow]:
    rows = tx.rows(f"SELECT {MSG_COLS} FROM messages WHERE dead_at IS NOT NULL AND acked_at IS NULL "
                   "ORDER BY id LIMIT ?", (limit,))  # fmt: skip
    return [message(r) for r in rows]


def retry_dead(tx: Tx, message_id: int) -> MessageRow | None:
    r = _one(tx, "UPDATE messages SET dead_at = NULL, delivered_at = NULL, attempts = 0, redelivered = 1 "
                 f"WHERE id = ? AND dead_at IS NOT NULL AND acked_at IS NULL RETURNING {MSG_COLS}",
             (message_id,))  # fmt: skip
    return message(r) if r else None


def discard_dead(tx: Tx, message_id: int, now: float) -> MessageRow | None:
    r = _one(tx, f"UPDATE messages SET acked_at = ? WHERE id = ? AND dead_at IS NOT NULL AND acked_at IS NULL "
                 f"RETURNING {MSG_COLS}", (now, message_id))  # fmt: skip
    return message(r) if r else None


# ---- agents --------------------------------------------------------------------------------

AGENT_COLS = "name, id, created_at, desired, uid, description, destroyed_at"


def agent(r: dict[str, Any]) -> AgentRecord:
    return AgentRecord(name=r["name"], id=int(r["id"]), created_at=r["created_at"], desired=r["desired"],
                       uid=r["uid"], description=r["description"], destroyed_at=r["destroyed_at"])  # fmt: skip


def register_agent(tx: Tx, name: str, description: str | None, now: float, uid_base: int | None) -> AgentRecord:
    r = _one(tx, "UPDATE agents SET destroyed_at = NULL, desired = 'running', description = COALESCE(?, description) "
                 f"WHERE name = ? RETURNING {AGENT_COLS}", (description, name))  # fmt: skip
    if r is not None:
        return agent(r)
    # the counter row is locked by this UPDATE until commit: two registrations never share an id
    counter = tx.rows("UPDATE counters SET value = value + 1 WHERE name = 'agent_id' RETURNING value")
    new_id = int(counter[0]["value"])
    uid = None if uid_base is None else uid_base + new_id
    r = _one(tx, f"INSERT INTO agents (name, id, created_at, desired, uid, description) VALUES (?, ?, ?, 'running', "
                 f"?, ?) ON CONFLICT (name) DO UPDATE SET destroyed_at = NULL RETURNING {AGENT_COLS}",
             (name, new_id, now, uid, description))  # fmt: skip
    assert r is not None
    return agent(r)


def agents(tx: Tx, destroyed: bool | None) -> list[AgentRecord]:
    where = "" if destroyed is None else f" WHERE destroyed_at IS {'NOT ' if destroyed else ''}NULL"
    return [agent(r) for r in tx.rows(f"SELECT {AGENT_COLS} FROM agents{where} ORDER BY id")]


def get_agent(tx: Tx, name: str) -> AgentRecord | None:
    r = _one(tx, f"SELECT {AGENT_COLS} FROM agents WHERE name = ?", (name,))
    return agent(r) if r else None


def set_desired(tx: Tx, name: str, desired: str) -> None:
    tx.run("UPDATE agents SET desired = ? WHERE name = ?", (desired, name))


def mark_destroyed(tx: Tx, name: str, now: float) -> None:
    tx.run("UPDATE agents SET destroyed_at = ?, desired = 'stopped' WHERE name = ?", (now, name))


def delete_agent(tx: Tx, name: str) -> bool:
    return tx.run("DELETE FROM agents WHERE name = ?", (name,)) > 0


# ---- approvals -----------------------------------------------------------------------------

APPROVAL_COLS = ("id, kind, agent, commit_ref, sha, description, requested_by, requested_at, status, resolved_at, "
                 "note, tag")  # fmt: skip
APPROVAL_FIELDS = frozenset({"sha", "tag", "commit_ref", "note", "resolved_at"})


def approval(r: dict[str, Any]) -> ApprovalRow:
    return cast(ApprovalRow, {**r, "id": int(r["id"])})


def insert_approval(tx: Tx, kind: str, agent: str, description: str | None, requested_by: str, now: float,
                    status: str, commit_ref: str | None) -> ApprovalRow:  # fmt: skip
    r = _one(tx, "INSERT INTO approvals (kind, agent, commit_ref, description, requested_by, requested_at, status) "
                 f"VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {APPROVAL_COLS}",
             (kind, agent, commit_ref, description, requested_by, now, status))  # fmt: skip
    assert r is not None
    return approval(r)


def insert_approval_once(tx: Tx, kind: str, agent: str, description: str | None, requested_by: str,
                         now: float) -> tuple[ApprovalRow, bool]:  # fmt: skip
    """A pending request unless one of this kind for this agent is open: (that one, False)."""
    if tx.dialect == "postgresql":  # serialize the check-then-insert across writers for this key
        tx.rows("SELECT pg_advisory_xact_lock(hashtext(?))", (f"approval:{kind}:{agent}",))
    open_ = _one(tx, f"SELECT {APPROVAL_COLS} FROM approvals WHERE kind = ? AND agent = ? "
                     "AND status IN ('pending', 'approving') ORDER BY id LIMIT 1", (kind, agent))  # fmt: skip
    if open_ is not None:
        return approval(open_), False
    return insert_approval(tx, kind, agent, description, requested_by, now, "pending", None), True


def get_approval(tx: Tx, aid: int) -> ApprovalRow | None:
    r = _one(tx, f"SELECT {APPROVAL_COLS} FROM approvals WHERE id = ?", (aid,))
    return approval(r) if r else None


def approvals(tx: Tx, statuses: Collection[str] | None, limit: int) -> list[ApprovalRow]:
    if statuses is not None:
        st = list(statuses)
        rows = tx.rows(f"SELECT {APPROVAL_COLS} FROM approvals WHERE status IN ({_marks(len(st))}) ORDER BY id", st)
    elif limit > 0:
        rows = tx.rows(f"SELECT {APPROVAL_COLS} FROM approvals ORDER BY id DESC LIMIT ?", (limit,))
    else:
        rows = tx.rows(f"SELECT {APPROVAL_COLS} FROM approvals ORDER BY id DESC")
    return [approval(r) for r in rows]


def transition_approval(tx: Tx, aid: int, from_statuses: Collection[str], to: str,
                        fields: dict[str, Any]) -> ApprovalRow | None:  # fmt: skip
    unknown = set(fields) - APPROVAL_FIELDS
    if unknown:
        raise ValueError(f"not an approval field: {', '.join(sorted(unknown))}")
    names = sorted(fields)
    sets = "".join(f", {n} = ?" for n in names)
    st = list(from_statuses)
    r = _one(tx, f"UPDATE approvals SET status = ?{sets} WHERE id = ? AND status IN ({_marks(len(st))}) "
                 f"RETURNING {APPROVAL_COLS}", (to, *(fields[n] for n in names), aid, *st))  # fmt: skip
    return approval(r) if r else None


# ---- questions -----------------------------------------------------------------------------

QUESTION_COLS = "id, asker, target, question, options_json, multi, asked_at, deadline_at, answered_at, answer, answerer"


def question(r: dict[str, Any]) -> QuestionRow:
    return QuestionRow(
        id=int(r["id"]), asker=r["asker"], target=r["target"], question=r["question"],
        options=list(json.loads(r["options_json"])), multi=bool(r["multi"]), asked_at=r["asked_at"],
        deadline_at=r["deadline_at"], answered_at=r["answered_at"], answer=r["answer"], answerer=r["answerer"],
    )  # fmt: skip


def insert_question(tx: Tx, asker: str, target: str | None, text: str, options: list[str], multi: bool, now: float,
                    deadline_at: float | None) -> QuestionRow:  # fmt: skip
    r = _one(tx, "INSERT INTO questions (asker, target, question, options_json, multi, asked_at, deadline_at) "
                 f"VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {QUESTION_COLS}",
             (asker, target, text, json.dumps(list(options)), int(multi), now, deadline_at))  # fmt: skip
    assert r is not None
    return question(r)


def get_question(tx: Tx, qid: int) -> QuestionRow | None:
    r = _one(tx, f"SELECT {QUESTION_COLS} FROM questions WHERE id = ?", (qid,))
    return question(r) if r else None


def open_questions(tx: Tx) -> list[QuestionRow]:
    return [
        question(r) for r in tx.rows(f"SELECT {QUESTION_COLS} FROM questions WHERE answered_at IS NULL ORDER BY id")
    ]


def resolve_question(tx: Tx, qid: int, answer: str, answerer: str, now: float) -> QuestionRow | None:
    r = _one(tx, "UPDATE questions SET answered_at = ?, answer = ?, answerer = ? WHERE id = ? AND answered_at IS NULL "
                 f"RETURNING {QUESTION_COLS}", (now, answer, answerer, qid))  # fmt: skip
    return question(r) if r else None


def due_questions(tx: Tx, now: float) -> list[int]:
    rows = tx.rows("SELECT id FROM questions WHERE answered_at IS NULL AND deadline_at IS NOT NULL "
                   "AND deadline_at <= ? ORDER BY id", (now,))  # fmt: skip
    return [int(r["id"]) for r in rows]


def next_question_deadline(tx: Tx) -> float | None:
    r = _one(tx, "SELECT MIN(deadline_at) AS d FROM questions WHERE answered_at IS NULL AND deadline_at IS NOT NULL")
    return None if r is None or r["d"] is None else float(r["d"])


# ---- dashboard sessions --------------------------------------------------------------------


def session_create(tx: Tx, sid: str, now: float, client: str, user_agent: str, forget_before: float) -> None:
    tx.run("DELETE FROM web_sessions WHERE created_at < ?", (forget_before,))
    tx.run("INSERT INTO web_sessions (sid, created_at, last_seen, client, user_agent) VALUES (?, ?, ?, ?, ?)",
           (sid, now, now, client, user_agent))  # fmt: skip


def session_touch(tx: Tx, sid: str, now: float) -> None:
    tx.run("UPDATE web_sessions SET last_seen = ? WHERE sid = ? AND revoked_at IS NULL", (now, sid))


def session_revoke(tx: Tx, sid: str, now: float) -> int:
    return tx.run("UPDATE web_sessions SET revoked_at = ? WHERE sid = ? AND revoked_at IS NULL", (now, sid))


def session_revoke_all(tx: Tx, now: float) -> int:
    return tx.run("UPDATE web_sessions SET revoked_at = ? WHERE revoked_at IS NULL", (now,))


def sessions_active(tx: Tx, since: float) -> list[SessionRow]:
    rows = tx.rows("SELECT sid, created_at, last_seen, client, user_agent FROM web_sessions "
                   "WHERE revoked_at IS NULL AND created_at >= ? ORDER BY created_at", (since,))  # fmt: skip
    return [cast(SessionRow, r) for r in rows]


# ---- usage, grants, stats ------------------------------------------------------------------

USAGE_KEYS = ("agent", "ts", "model", "request_id", "input_tokens", "output_tokens", "cache_read_tokens",
              "cache_write_tokens", "cost_usd", "status", "duration_ms")  # fmt: skip
_USAGE_DEFAULTS: dict[str, Any] = {"request_id": "", "input_tokens": 0, "output_tokens": 0, "cache_read_tokens": 0,
                                   "cache_write_tokens": 0, "cost_usd": 0.0, "status": 200, "duration_ms": 0}  # fmt: skip
SUMS = (
    "COUNT(*) AS requests, COALESCE(SUM(input_tokens), 0) AS input_tokens, "
    "COALESCE(SUM(output_tokens), 0) AS output_tokens, COALESCE(SUM(cache_read_tokens), 0) AS cache_read_tokens, "
    "COALESCE(SUM(cache_write_tokens), 0) AS cache_write_tokens, COALESCE(SUM(cost_usd), 0) AS cost_usd"
)
_INT_SUMS = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def _sums(r: dict[str, Any]) -> dict[str, Any]:
    out = dict(r)
    for k in _INT_SUMS:
        if k in out:
            out[k] = int(out[k])
    if "cost_usd" in out:
        out["cost_usd"] = float(out["cost_usd"])
    return out


def stats_insert(tx: Tx, rows: Iterable[tuple[str, float, str, float]]) -> None:
    for row in rows:
        tx.run("INSERT INTO stats (agent, ts, key, value) VALUES (?, ?, ?, ?)", row)


def record_usage(tx: Tx, row: dict[str, Any], stats: Iterable[tuple[str, float, str, float]]) -> int:
    stats_insert(tx, stats)
    full = {**_USAGE_DEFAULTS, **row}
    r = tx.rows(f"INSERT INTO usage ({', '.join(USAGE_KEYS)}) VALUES ({_marks(len(USAGE_KEYS))}) RETURNING id",
                [full[k] for k in USAGE_KEYS])  # fmt: skip
    return int(r[0]["id"])


def usage_sums(tx: Tx, agent: str | None, since: float, until: float | None) -> dict[str, Any]:
    where = "ts >= ?"
    params: list[Any] = [since]
    if agent is not None:
        where, params = "agent = ? AND " + where, [agent, since]
    if until is not None:
        where += " AND ts < ?"
        params.append(until)
    r = _one(tx, f"SELECT {SUMS} FROM usage WHERE {where}", params)
    assert r is not None
    return _sums(r)


def usage_by(tx: Tx, field: str, since: float, agent: str | None) -> dict[str, dict[str, Any]]:
    if field not in ("agent", "model"):
        raise ValueError(f"usage cannot be grouped by {field!r}")
    if agent is None:
        rows = tx.rows(f"SELECT {field}, {SUMS} FROM usage WHERE ts >= ? GROUP BY {field}", (since,))
    else:
        rows = tx.rows(f"SELECT {field}, {SUMS} FROM usage WHERE agent = ? AND ts >= ? GROUP BY {field}",
                       (agent, since))  # fmt: skip
    return {r[field]: _sums({k: v for k, v in r.items() if k != field}) for r in rows}


def usage_recent(tx: Tx, agent: str, limit: int) -> list[dict[str, Any]]:
    return tx.rows(f"SELECT id, {', '.join(USAGE_KEYS)} FROM usage WHERE agent = ? ORDER BY id DESC LIMIT ?",
                   (agent, limit))  # fmt: skip


def add_grant(tx: Tx, agent: str, at: float, kind: str, usd: float, tokens: int) -> int:
    r = tx.rows("INSERT INTO budget_grants (agent, granted_at, kind, usd, tokens) VALUES (?, ?, ?, ?, ?) RETURNING id",
                (agent, at, kind, usd, tokens))  # fmt: skip
    return int(r[0]["id"])


def grants_since(tx: Tx, agent: str, since: float) -> list[dict[str, Any]]:
    return tx.rows("SELECT id, agent, granted_at, kind, usd, tokens, used FROM budget_grants "
                   "WHERE agent = ? AND granted_at >= ? ORDER BY id", (agent, since))  # fmt: skip


def use_grant(tx: Tx, grant_id: int) -> None:
    tx.run("UPDATE budget_grants SET used = 1 WHERE id = ?", (grant_id,))


def stats_series(tx: Tx, agent: str | None, since: float, limit: int) -> list[dict[str, Any]]:
    if agent is None:
        return tx.rows("SELECT agent, ts, key, value FROM stats WHERE ts >= ? ORDER BY ts LIMIT ?", (since, limit))
    return tx.rows("SELECT agent, ts, key, value FROM stats WHERE agent = ? AND ts >= ? ORDER BY ts LIMIT ?",
                   (agent, since, limit))  # fmt: skip


def stats_last_ts(tx: Tx, agent: str, key: str) -> float:
    r = _one(tx, "SELECT MAX(ts) AS t FROM stats WHERE agent = ? AND key = ?", (agent, key))
    return float(r["t"] or 0.0) if r else 0.0


def purge_usage_and_stats(tx: Tx, before: float) -> int:
    return tx.run("DELETE FROM stats WHERE ts < ?", (before,)) + tx.run("DELETE FROM usage WHERE ts < ?", (before,))


# ---- check and copy ------------------------------------------------------------------------

TABLES = ("messages", "agents", "approvals", "questions", "web_sessions", "usage", "budget_grants", "stats", "counters")
# the key a copy pages through each table by (stats has none: it pages by offset, the daemon stopped)
KEYS = {"messages": "id", "agents": "name", "approvals": "id", "questions": "id", "web_sessions": "sid",
        "usage": "id", "budget_grants": "id", "counters": "name"}  # fmt: skip


def _columns(tx: Tx, table: str) -> list[str]:
    if table not in TABLES:
        raise ValueError(f"not a store table: {table!r}")
    if tx.dialect == "sqlite":
        return [r["name"] for r in tx.rows(f"PRAGMA table_info({table})")]
    return [r["column_name"] for r in tx.rows("SELECT column_name FROM information_schema.columns WHERE "
                                              "table_schema = current_schema() AND table_name = ? "
                                              "ORDER BY ordinal_position", (table,))]  # fmt: skip


def export_rows(tx: Tx, table: str, after: Any, limit: int) -> list[dict[str, Any]]:
    """Rows of `table` in key order after `after` (None: from the start; for stats, an offset):
    one page of a copy."""
    cols = ", ".join(_columns(tx, table))
    if table == "stats":
        return tx.rows(f"SELECT {cols} FROM stats ORDER BY ts, agent, key, value LIMIT ? OFFSET ?", (limit, after or 0))
    key = KEYS[table]
    where, params = ("", [limit]) if after is None else (f" WHERE {key} > ?", [after, limit])
    return tx.rows(f"SELECT {cols} FROM {table}{where} ORDER BY {key} LIMIT ?", params)


def import_rows(tx: Tx, table: str, rows: list[dict[str, Any]]) -> int:
    """Insert rows as they are (ids included); a counter row replaces the one there."""
    if not rows:
        return 0
    cols = [c for c in _columns(tx, table) if c in rows[0]]
    conflict = " ON CONFLICT (name) DO UPDATE SET value = excluded.value" if table == "counters" else ""
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({_marks(len(cols))}){conflict}"
    for row in rows:
        tx.run(sql, [row[c] for c in cols])
    return len(rows)


def finish_import(tx: Tx) -> None:
    """After rows came in with their ids: identities continue past them (PostgreSQL)."""
    if tx.dialect != "postgresql":
        return
    for table in ("messages", "approvals", "questions", "usage", "budget_grants"):
        tx.rows(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1,"
                " false)")  # fmt: skip


def counts(tx: Tx) -> dict[str, int]:
    out = {}
    for table in TABLES:
        r = _one(tx, f"SELECT COUNT(*) AS n FROM {table}")
        out[table] = int(r["n"]) if r else 0
    return out

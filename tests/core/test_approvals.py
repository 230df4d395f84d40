"""The approval queue under bad input (issue 4 "How it is verified"; architecture §7, §3): each bad
request gets a clear error through the real socket, leaves no half-applied state (db rows and
git tags agree), and the daemon still serves the next good request.

The daemon runs with the manager registered but its harness stopped: its socket stays open
(the test speaks as the manager) and its inbox rows stay unread for the test to inspect. The
agents deployed here have no model to talk to; the harness reports in before any model call,
which is all `wait_healthy` needs."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import HiveRig, make_config, start_daemon, stop_daemon
from hyperhive.client import HiveClient, RemoteError
from hyperhive.names import MANAGER

GIT = ["git", "-c", "user.name=manager", "-c", "user.email=manager@hyperhive.local"]
NO_MODEL = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": "none"}  # refused at once


@dataclass
class Hive(HiveRig):
    host: HiveClient
    host2: HiveClient
    manager: HiveClient
    alice: HiveClient

    def repo(self, name: str) -> Path:
        return self.daemon.paths.agent(name).config

    def commit(self, name: str, edit: str, message: str = "edit") -> str:
        """As the manager's git would: rewrite agent.toml's `key = …` line(s) and commit."""
        path = self.repo(name) / "agent.toml"
        lines = path.read_text(encoding="utf-8").splitlines()
        key = edit.split("=", 1)[0].strip()
        lines = [edit if line.split("=", 1)[0].strip() == key else line for line in lines]
        if edit not in lines:
            lines.insert(0, edit)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        repo = str(self.repo(name))
        subprocess.run([*GIT, "-C", repo, "commit", "-qam", message], check=True, timeout=30)
        return subprocess.run([*GIT, "-C", repo, "rev-parse", "HEAD"], check=True, timeout=30,
                              capture_output=True, text=True).stdout.strip()  # fmt: skip

    async def tags(self, name: str) -> list[str]:
        return await self.s.repos.tags(name)

    def resolved(self) -> list[dict[str, Any]]:
        return self.system_events(MANAGER, "approval_resolved")

    async def init(self, name: str) -> None:
        """Two-step spawn, step one: the manager asks, the operator approves."""
        aid = (await self.manager.call("request_init_config", name=name))["approval"]["id"]
        assert (await self.host.call("approve", id=aid))["approval"]["status"] == "approved"

    async def propose(self, name: str, edit: str) -> dict[str, Any]:
        sha = self.commit(name, edit)
        approval: dict[str, Any] = (await self.manager.call("request_apply_commit", agent=name, commit_ref=sha))[
            "approval"
        ]
        assert approval["status"] == "pending" and approval["sha"] == sha
        return approval


@pytest.fixture
async def ahive(tmp_path: Path, short_dir: Path) -> AsyncIterator[Hive]:
    daemon, task = await start_daemon(make_config(tmp_path, short_dir, manager=True, agent_env=NO_MODEL))
    clients: list[HiveClient] = []
    try:
        s = daemon.services
        assert s is not None
        await s.lifecycle.stop(MANAGER)
        await s.lifecycle.spawn("alice")
        await s.lifecycle.stop("alice")

        def client(path: Path) -> HiveClient:
            clients.append(HiveClient(path, timeout=90))
            return clients[-1]

        hs = daemon.paths.host_socket
        yield Hive(daemon, client(hs), client(hs), client(daemon.paths.agent(MANAGER).socket),
                   client(daemon.paths.agent("alice").socket))  # fmt: skip
    finally:
        for c in clients:
            await c.close()
        await stop_daemon(daemon, task)


async def refused(client: HiveClient, cmd: str, **fields: Any) -> RemoteError:
    with pytest.raises(RemoteError) as exc:
        await client.call(cmd, **fields)
    return exc.value


# ---- request_apply_commit: refs and names -----------------------------------------------------


async def test_bad_commit_refs_and_agent_names_are_refused_and_leave_nothing_pending(ahive: Hive) -> None:
    """A missing sha, a branch or tag name, too few hex digits, a path-traversal or reserved agent
    name, an agent without a repo: each a clear error; no pending row, no tag; then a good request
    still works (issue 4 bad input; STYLE §11 bad-then-good)."""
    await ahive.init("scout")
    good = ahive.commit("scout", 'description = "scout"')
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"agent": "scout", "commit_ref": "deadbeefdeadbeefdeadbeefdeadbeefdeadbeef"}, "bad_request", "not a commit"),
        ({"agent": "scout", "commit_ref": "main"}, "bad_request", "not a branch or tag name"),
        ({"agent": "scout", "commit_ref": "HEAD"}, "bad_request", "not a branch or tag name"),
        ({"agent": "scout", "commit_ref": "proposal/1"}, "bad_request", "not a branch or tag name"),
        ({"agent": "scout", "commit_ref": good[:6]}, "bad_request", "7-40 hex"),
        ({"agent": "scout", "commit_ref": good + "0"}, "bad_request", "7-40 hex"),
        ({"agent": "../scout", "commit_ref": good}, "invalid_name", "not a valid agent name"),
        ({"agent": "scout/../../applied", "commit_ref": good}, "invalid_name", "not a valid agent name"),
        ({"agent": "operator", "commit_ref": good}, "invalid_name", "reserved"),
        ({"agent": "ghost", "commit_ref": good}, "not_found", "no proposed config repo"),
    ]
    for fields, code, words in cases:
        err = await refused(ahive.manager, "request_apply_commit", **fields)
        assert (err.code, words in err.message) == (code, True), (fields, err.code, err.message)
        assert (await ahive.s.approvals.pending()) == []
        assert await ahive.tags("scout") == []
    assert ahive.resolved()[-1]["kind"] == "init_config"  # no approval_resolved for a refused request
    ok = (await ahive.manager.call("request_apply_commit", agent="scout", commit_ref=good[:12]))["approval"]
    assert (ok["status"], ok["sha"]) == ("pending", good)  # a short sha resolves to the full one
    assert await ahive.tags("scout") == [f"proposal/{ok['id']}"]


async def test_an_invalid_agent_toml_never_becomes_pending_and_the_manager_gets_the_error(ahive: Hive) -> None:
    """A commit whose agent.toml does not validate is refused at request time with the field
    named; it is recorded failed for the audit trail, never pending, never tagged (issue 4)."""
    await ahive.init("scout")
    sha = ahive.commit("scout", 'network = "moon"')
    err = await refused(ahive.manager, "request_apply_commit", agent="scout", commit_ref=sha)
    assert err.code == "config_invalid" and "`network`" in err.message
    assert (await ahive.s.approvals.pending()) == []
    (row,) = [a for a in (await ahive.s.approvals.recent()) if a["kind"] == "apply_commit"]
    assert (row["status"], row["commit_ref"], row["tag"]) == ("failed", sha, None)
    assert "`network`" in row["note"]
    assert await ahive.tags("scout") == []
    assert [e["kind"] for e in ahive.resolved()] == ["init_config"]
    fixed = await ahive.propose("scout", 'network = "none"')
    assert await ahive.tags("scout") == [f"proposal/{fixed['id']}"]


async def test_a_proposal_is_frozen_whatever_the_manager_does_to_its_repo(ahive: Hive) -> None:
    """After request_apply_commit the request is the tagged sha: amending the proposed repo
    changes nothing about it (issue 4 "immutable")."""
    await ahive.init("scout")
    approval = await ahive.propose("scout", 'description = "first"')
    subprocess.run([*GIT, "-C", str(ahive.repo("scout")), "reset", "-q", "--hard", "HEAD~1"], check=True, timeout=30)
    ahive.commit("scout", 'description = "rewritten"')
    diff = (await ahive.host.call("pending", diff_id=approval["id"]))["diff"]
    assert '+description = "first"' in diff and "rewritten" not in diff


# ---- init_config / spawn ----------------------------------------------------------------------


async def test_init_config_is_refused_for_an_existing_agent_a_seeded_repo_or_a_duplicate(ahive: Hive) -> None:
    """request_init_config for a live agent, for a name whose proposed repo exists, or while one is
    pending: a conflict and no new row; a bad name: invalid_name (issue 4; upstream §2.2)."""
    before = len(await ahive.s.approvals.recent())
    assert (await refused(ahive.manager, "request_init_config", name="alice")).code == "conflict"
    assert (await refused(ahive.manager, "request_init_config", name="manager")).code == "invalid_name"
    assert (await refused(ahive.manager, "request_init_config", name="../etc")).code == "invalid_name"
    first = (await ahive.manager.call("request_init_config", name="scout"))["approval"]
    assert (await refused(ahive.manager, "request_init_config", name="scout")).code == "conflict"
    await ahive.host.call("approve", id=first["id"])
    err = await refused(ahive.manager, "request_init_config", name="scout")
    assert err.code == "conflict" and "already has a proposed config repo" in err.message
    assert len(await ahive.s.approvals.recent()) == before + 1
    assert (await refused(ahive.manager, "request_spawn", name="alice")).code == "conflict"


# ---- resolving ----------------------------------------------------------------------------------


async def test_resolving_an_unknown_or_already_resolved_approval_is_refused(ahive: Hive) -> None:
    """approve/deny of a missing id → not_found; of a resolved one → conflict, and neither the row
    nor the tags change (issue 4)."""
    await ahive.init("scout")
    approval = await ahive.propose("scout", 'model = "haiku"')
    aid = approval["id"]
    assert (await ahive.host.call("deny", id=aid, note="no"))["approval"]["status"] == "denied"
    row, tags = (await ahive.s.approvals.get(aid)), await ahive.tags("scout")
    for cmd, fields in (("approve", {}), ("deny", {"note": "again"})):
        err = await refused(ahive.host, cmd, id=aid, **fields)
        assert err.code == "conflict" and "already denied" in err.message
    assert (await refused(ahive.host, "approve", id=aid + 1000)).code == "not_found"
    assert (await refused(ahive.host, "approve", id=0)).code == "bad_request"
    assert (await ahive.s.approvals.get(aid)) == row and await ahive.tags("scout") == tags == [
        f"proposal/{aid}",
        f"denied/{aid}",
    ]
    assert [(e["id"], e["status"]) for e in ahive.resolved()][-1] == (aid, "denied")
    assert len([e for e in ahive.resolved() if e["id"] == aid]) == 1


async def test_two_racing_approvals_of_one_request_deploy_it_once(ahive: Hive) -> None:
    """Two approve calls on two connections at once: exactly one wins (the deploy), the other gets
    a conflict; the db, the tags and applied main agree, one approval_resolved (issue 4)."""
    await ahive.init("scout")
    approval = await ahive.propose("scout", 'description = "racing"')
    aid = approval["id"]
    results = await asyncio.gather(
        ahive.host.call("approve", id=aid), ahive.host2.call("approve", id=aid), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, dict)]
    losses = [r for r in results if isinstance(r, RemoteError)]
    assert len(wins) == 1 and len(losses) == 1, results
    assert losses[0].code == "conflict" and "already approving" in losses[0].message
    assert wins[0]["approval"]["status"] == "deployed", wins[0]
    assert (await ahive.s.approvals.get(aid))["status"] == "deployed"
    assert await ahive.tags("scout") == [f"proposal/{aid}", f"approved/{aid}", f"deployed/{aid}"]
    assert await ahive.s.repos.applied_sha("scout") == approval["sha"]
    assert ahive.s.lifecycle.agents["scout"].state == "running"
    assert [(e["id"], e["status"]) for e in ahive.resolved() if e["id"] == aid] == [(aid, "deployed")]


async def test_an_approve_racing_a_deny_resolves_the_request_one_way_only(ahive: Hive) -> None:
    """approve and deny at once on a running agent's change: one wins; if the deny won, nothing
    restarts and the tags say denied; if the approve won, deployed (issue 4)."""
    await ahive.init("scout")
    first = await ahive.propose("scout", 'description = "v1"')
    await ahive.host.call("approve", id=first["id"])
    pid = ahive.s.lifecycle.agents["scout"].handle.pid  # type: ignore[union-attr]
    second = await ahive.propose("scout", 'description = "v2"')
    aid = second["id"]
    results = await asyncio.gather(
        ahive.host.call("approve", id=aid), ahive.host2.call("deny", id=aid, note="raced"), return_exceptions=True
    )
    wins = [r["approval"]["status"] for r in results if isinstance(r, dict)]
    assert len(wins) == 1 and sum(isinstance(r, RemoteError) and r.code == "conflict" for r in results) == 1
    (status,) = wins
    assert (await ahive.s.approvals.get(aid))["status"] == status
    if status == "denied":
        assert (await ahive.tags("scout"))[-2:] == [f"proposal/{aid}", f"denied/{aid}"]
        assert await ahive.s.repos.applied_sha("scout") == first["sha"]
        assert ahive.s.lifecycle.agents["scout"].handle.pid == pid  # type: ignore[union-attr]
    else:
        assert status == "deployed"
        assert (await ahive.tags("scout"))[-3:] == [f"proposal/{aid}", f"approved/{aid}", f"deployed/{aid}"]
        assert await ahive.s.repos.applied_sha("scout") == second["sha"]
    assert len([e for e in ahive.resolved() if e["id"] == aid]) == 1


# ---- who may do what ------------------------------------------------------------------------------


async def test_operator_only_verbs_are_refused_on_agent_and_manager_sockets(ahive: Hive) -> None:
    """approve, deny, pending, cancel_question and questions exist only on host.sock; the
    manager's verbs only on the manager's socket; the manager cannot kill itself (issue 4)."""
    aid = (await ahive.host.call("request_spawn", name="carol"))["approval"]["id"]
    qid = (await ahive.alice.call("ask", question="ok?"))["id"]
    operator_only = [("approve", {"id": aid}), ("deny", {"id": aid}), ("pending", {}), ("questions", {}),
                     ("cancel_question", {"id": qid}), ("destroy", {"name": "alice"}), ("inbox", {})]  # fmt: skip
    for client in (ahive.alice, ahive.manager):
        for cmd, fields in operator_only:
            assert (await refused(client, cmd, **fields)).code == "unknown_verb", (cmd, client.socket_path)
    for cmd, fields in (("request_apply_commit", {"agent": "alice", "commit_ref": "a" * 40}),
                        ("request_init_config", {"name": "dave"}), ("request_spawn", {"name": "dave"}),
                        ("kill", {"name": "alice"}), ("restart", {"name": "manager"})):  # fmt: skip
        assert (await refused(ahive.alice, cmd, **fields)).code == "unknown_verb", cmd
    for agent in (ahive.alice, ahive.manager):
        assert (await refused(agent, "answer", id=qid, answer="yes")).code == "forbidden"
    assert (await refused(ahive.manager, "kill", name=MANAGER)).code == "forbidden"
    assert (await ahive.s.approvals.get(aid))["status"] == "pending"
    assert (await ahive.s.questions.get(qid))["answered_at"] is None


async def test_a_proposed_repo_linking_to_a_root_only_repo_is_refused_over_the_socket(
    ahive: Hive, tmp_path: Path
) -> None:
    """The manager links its repo's objects/pack to a root-only repo's packs and asks for a commit
    only that repo has (issue 9 item 3): refused as forbidden, the same answer as for a sha that
    exists nowhere, nothing pending, and the commit never reaches the applied repo."""
    await ahive.init("scout")
    repo = ahive.repo("scout")
    secret = tmp_path / "secret"
    subprocess.run(["cp", "-a", str(repo), str(secret)], check=True, timeout=30)
    (secret / "agent.toml").write_text((secret / "agent.toml").read_text() + "# root only\n")
    subprocess.run([*GIT, "-C", str(secret), "commit", "-qam", "secret"], check=True, timeout=30)
    subprocess.run([*GIT, "-C", str(secret), "repack", "-adq"], check=True, timeout=30)
    sha = subprocess.run([*GIT, "-C", str(secret), "rev-parse", "HEAD"], check=True, timeout=30,
                         capture_output=True, text=True).stdout.strip()  # fmt: skip
    secret.chmod(0o700)
    pack = repo / ".git" / "objects" / "pack"
    subprocess.run(["rm", "-rf", str(pack)], check=True, timeout=30)
    pack.symlink_to(secret / ".git" / "objects" / "pack")
    answers = []
    for ref in (sha, "deadbeef" * 5):
        err = await refused(ahive.manager, "request_apply_commit", agent="scout", commit_ref=ref)
        answers.append((err.code, err.message))
    assert answers[0] == answers[1] and answers[0][0] == "forbidden", answers
    assert (await ahive.s.approvals.pending()) == []
    assert await ahive.tags("scout") == []
    applied = ahive.daemon.paths.agent("scout").applied
    if applied.exists():
        found = subprocess.run(["git", "-C", str(applied), "cat-file", "-e", sha], capture_output=True, timeout=30)
        assert found.returncode != 0

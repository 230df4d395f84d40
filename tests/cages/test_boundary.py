"""The boundary holds with REAL bubblewrap cages run by the REAL daemon (issue 5 "The boundary"
and "How it is verified"; architecture §8).

Every probe runs "as the agent would run it": the operator sends the agent `bash <command>`,
the offline model (a scripted stand-in for the Anthropic API) turns that into a Bash tool call,
the real claude CLI runs it in the agent's bwrap cage, and the test reads the tool result from
the agent's event trail. The probe agents get `bash = ["*"]` — the most a config can grant —
because the claim is that the cage, not the Bash allow-list, is the boundary; the allow-list
itself is proven separately with a narrow list.

Runs as root (each agent is its own host uid `uid_base + id`); without bwrap, root or the SDK
the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import (
    HiveRig,
    diagnostics,
    make_config,
    require,
    require_sdk,
    require_tool,
    start_daemon,
    stop_daemon,
)
from hyperhive.agentconfig import default_agent_toml, manager_agent_toml
from hyperhive.client import HiveClient
from hyperhive.core.configrepo import ConfigRepos
from hyperhive.names import MANAGER
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.cage

TURN_BOUND = 90.0  # one real CLI turn, generous for a loaded CI machine


def _prerequisites() -> None:
    require_tool("bwrap")
    from hyperhive.cages.bwrap import BwrapCage

    ok, why = BwrapCage.available()
    require(ok, f"bwrap does not work here: {why}")
    require(os.geteuid() == 0, "the per-agent host uid needs a root daemon")
    require_sdk()


def toml_for(name: str, *, bash: list[str], allowed: list[str] | None = None) -> str:
    base = manager_agent_toml() if name == MANAGER else default_agent_toml(name)
    lines = []
    for line in base.splitlines():
        if line.startswith("bash ="):
            line = f"bash = {json.dumps(bash)}"
        elif line.startswith("allowed_recipients =") and allowed is not None:
            line = f"allowed_recipients = {json.dumps(allowed)}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class BashResult:
    text: str
    is_error: bool


@dataclass
class Rig(HiveRig):
    """`until` is woken by the core's live events (the harness reports its state to the core) and
    rechecks every 0.2 s (the events db has no core event)."""

    model: OfflineModelServer

    UNTIL_BOUND = TURN_BOUND
    RECHECK = 0.2

    def ap(self, name: str) -> Any:
        return self.daemon.paths.agent(name)

    async def spawn(self, name: str, *, bash: list[str], allowed: list[str] | None = None) -> None:
        """Seed the agent's config (so spawn skips its own seeding), spawn it in a bwrap cage and
        wait until its harness reports in."""
        await self.s.repos.seed(name, toml=toml_for(name, bash=bash, allowed=allowed))
        await self.s.lifecycle.spawn(name)
        await self.s.lifecycle.wait_healthy(name)

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, requests=6, tail=8)

    def turn_events(self, name: str, msg_id: int) -> list[dict[str, Any]] | None:
        """The events of the turn that handled message `msg_id`, once it has ended."""
        events = self.s.read_agent_events(name)
        start = next(
            (i for i, e in enumerate(events) if e["kind"] == "turn_start" and e["payload"].get("id") == msg_id), None
        )
        if start is None:
            return None
        for j in range(start + 1, len(events)):
            if events[j]["kind"] == "turn_end":
                return events[start : j + 1]
        return None

    async def turn(self, name: str, body: str) -> list[dict[str, Any]]:
        """The operator sends `body`; returns the events of the turn that handled it."""
        (msg_id,) = await self.s.broker.send("operator", name, body)
        return await self.until(f"{name}'s turn on {body[:60]!r}", lambda: self.turn_events(name, msg_id))

    async def bash(self, name: str, command: str) -> BashResult:
        """Run `command` through the agent's real Bash tool; the tool result from its trail."""
        events = await self.turn(name, "bash " + command)
        results = tool_results(events)
        assert len(results) == 1, f"expected one Bash tool result, got {events}"
        (result,) = results
        return BashResult(_content_text(result["content"]), bool(result.get("is_error")))


def tool_results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for e in events if e["kind"] == "stream" and e["payload"].get("type") == "user"
            for b in e["payload"].get("content") or [] if isinstance(b, dict) and b.get("type") == "tool_result"]  # fmt: skip


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(str(b.get("text", "")) for b in content or [] if isinstance(b, dict))


def probe_script(probes: dict[str, str]) -> str:
    """One shell command running each probe and printing `<key> rc=<exit code>` after its output."""
    parts = [f"{{ {cmd} ; }} 2>&1; echo {key} rc=$?" for key, cmd in probes.items()]
    return "sh -c " + shlex.quote("; ".join(parts))


def probe_rcs(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rc = line.rpartition(" rc=")
        if sep and rc.isdigit():
            out[key.split()[-1]] = int(rc)
    return out


def connect_cmd(path: Path | str) -> str:
    """Connect to a unix socket and send a ping, with the cage's (read-only bound) interpreter."""
    code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1]); "
            "s.sendall(b'{\"cmd\":\"ping\"}\\n'); print(s.recv(200).decode().strip())")  # fmt: skip
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {shlex.quote(str(path))}"


@pytest.fixture
async def model() -> AsyncIterator[OfflineModelServer]:
    _prerequisites()
    async with OfflineModelServer() as server:
        yield server


async def _rig(tmp_path: Path, run_dir: Path, model: OfflineModelServer, *, manager: bool) -> AsyncIterator[Rig]:
    env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "offline-model-stand-in"}
    config = make_config(tmp_path, run_dir, cage="bwrap", manager=manager, agent_env=env)
    if manager:  # the manager probes with every command too; its cage is what limits it
        await ConfigRepos(config.paths).seed(MANAGER, toml=toml_for(MANAGER, bash=["*"]))
    daemon, task = await start_daemon(config)
    try:
        rig = Rig(daemon, model)
        if manager:
            await rig.s.lifecycle.wait_healthy(MANAGER)
        yield rig
    finally:
        await stop_daemon(daemon, task)


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path, model: OfflineModelServer) -> AsyncIterator[Rig]:
    """A real daemon with bwrap cages and no manager; agents talk to the offline model."""
    async for r in _rig(tmp_path, short_dir, model, manager=False):
        yield r


@pytest.fixture
async def mrig(tmp_path: Path, short_dir: Path, model: OfflineModelServer) -> AsyncIterator[Rig]:
    """The same with the manager running (in its own bwrap cage, `bash = ["*"]`)."""
    async for r in _rig(tmp_path, short_dir, model, manager=True):
        yield r


# ---- what an agent's cage reaches ------------------------------------------------------------


async def test_an_agent_cannot_reach_another_agents_state_the_broker_host_sock_or_the_applied_repos(rig: Rig) -> None:
    """From inside a's cage (its real Bash tool): b's state dir, broker.sqlite, host.sock, b's
    mcp.sock, the applied repos and the hive state root are not there; a's own socket and state
    are (the positive control) (issue 5; architecture §8)."""
    await rig.spawn("a", bash=["*"])
    await rig.spawn("b", bash=[])
    b = rig.ap("b")
    (b.state / "secret").write_text("b's secret\n")
    paths = rig.daemon.paths
    probes = {
        "own-state": "cat /state/mine",
        "own-socket": connect_cmd("/run/hive/mcp.sock"),
        "b-state": f"ls {shlex.quote(str(b.state))}",
        "b-secret": f"cat {shlex.quote(str(b.state / 'secret'))}",
        "b-home": f"ls {shlex.quote(str(b.home))}",
        "state-root": f"ls {shlex.quote(str(paths.state_dir))}",
        "broker": f"cat {shlex.quote(str(paths.broker_db))}",
        "host-sock": connect_cmd(paths.host_socket),
        "b-sock": connect_cmd(b.socket),
        "b-run": f"ls {shlex.quote(str(b.run))}",
        "applied": f"ls {shlex.quote(str(paths.applied_root))}",
        "applied-cage": "ls /applied",
        "agents-cage": "ls /agents",
        "b-sock-guess": "ls /run/hive/../b /run/b",
    }
    (rig.ap("a").state / "mine").write_text("a's own\n")
    result = await rig.bash("a", probe_script(probes))
    rcs = probe_rcs(result.text)
    assert set(rcs) == set(probes), result.text
    assert rcs["own-state"] == 0 and "a's own" in result.text, result.text
    assert rcs["own-socket"] == 0 and '"pong"' in result.text, result.text
    unreachable = {k: v for k, v in rcs.items() if not k.startswith("own-")}
    assert all(rc != 0 for rc in unreachable.values()), result.text
    assert "b's secret" not in result.text
    assert result.text.count("No such file or directory") >= len(unreachable), result.text


async def test_writes_outside_state_home_and_tmp_fail_and_files_belong_to_the_agents_own_host_uid(rig: Rig) -> None:
    """Inside, the agent is uid 1000 and writes only /state, $HOME and the cage's private tmpfs
    (/tmp, /dev); on the host the file it wrote belongs to uid_base + its id — an ordinary uid,
    not root (issue 5; architecture §8)."""
    await rig.spawn("a", bash=["*"])
    token = f"probe-{os.getpid()}"
    writable = ["/state", "/home/agent", "/tmp", "/dev/shm", "/dev"]  # the last three: tmpfs private to the cage
    refused = [
        "",
        "/usr",
        "/etc",
        "/run",
        "/run/hive/..",
        "/bin",
        "/proc",
        "/sys",
        shlex.quote(sys.prefix),
        shlex.quote(str(Path(sys.executable).resolve().parent)),
        shlex.quote(str(rig.daemon.paths.state_dir)),
    ]
    writes = {f"w{i}": f"touch {d}/{token}" for i, d in enumerate(writable + refused)}  # fmt: skip
    result = await rig.bash("a", "id -u && id -g && " + probe_script(writes))
    first, second, *_ = result.text.splitlines()
    assert (first, second) == ("1000", "1000"), result.text
    rcs = probe_rcs(result.text)
    assert [rcs[f"w{i}"] == 0 for i in range(len(writes))] == [True] * len(writable) + [False] * len(refused), (
        result.text
    )
    rt = rig.s.lifecycle.get("a")
    assert rt.uid == rig.daemon.config.uid_base + rt.id and rt.uid != 0
    for where in (rig.ap("a").state, rig.ap("a").home):
        st = os.lstat(where / token)
        assert (st.st_uid, st.st_gid) == (rt.uid, rt.uid), where
    for host_dir in ("/tmp", "/dev/shm", "/dev", "/", "/usr", "/etc", "/run", sys.prefix, rig.daemon.paths.state_dir):
        assert not Path(host_dir, token).exists(), host_dir


async def test_no_process_of_another_cage_or_of_the_host_is_visible(rig: Rig) -> None:
    """a's cage sees its own pid namespace only: bwrap as pid 1, one harness (its own), all uid
    1000 — not b's harness, not the daemon (issue 5; architecture §8)."""
    await rig.spawn("a", bash=["*"])
    await rig.spawn("b", bash=[])
    b_handle = rig.s.lifecycle.get("b").handle
    assert b_handle is not None
    b_pid = b_handle.pid
    os.kill(b_pid, 0)  # b's cage is running on the host
    result = await rig.bash("a", "ps -e -o pid=,uid=,args=")
    procs = [line.split(None, 2) for line in result.text.splitlines() if line.strip()]
    assert procs and {uid for _, uid, _ in procs} == {"1000"}, result.text
    assert [cmd for pid, _, cmd in procs if pid == "1"][0].startswith("bwrap"), result.text
    harnesses = [cmd for _, _, cmd in procs if cmd.endswith("-m hyperhive.harness") and not cmd.startswith("bwrap")]
    assert len(harnesses) == 1, result.text  # a's own; b's would be a second
    assert len([cmd for _, _, cmd in procs if cmd.startswith("bwrap")]) == 1, result.text  # and b's bwrap
    assert not any("/agents/b/" in cmd for _, _, cmd in procs), result.text
    daemon_args = (
        Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    )  # the core: this test process
    assert not any(cmd.strip() == daemon_args for _, _, cmd in procs), result.text
    assert len(procs) < 12, result.text  # bwrap, env?, the harness, claude, the Bash shell, ps


async def test_the_managers_cage_sees_proposed_repos_rw_applied_ro_and_no_agent_state(mrig: Rig) -> None:
    """The manager's cage has every proposed repo at /agents/<name>/config (writable), every
    applied repo at /applied/<name> (read-only) and nothing of the agents' state (issue 5)."""
    await mrig.spawn("b", bash=[])
    b = mrig.ap("b")
    (b.state / "secret").write_text("b's secret\n")
    probes = {
        "agents-ls": "ls /agents",
        "config-write": "touch /agents/b/config/probe-from-manager",
        "config-read": "cat /agents/b/config/agent.toml",
        "applied-read": "cat /applied/b/agent.toml",
        "applied-write": "touch /applied/b/probe",
        "applied-git-write": "touch /applied/b/.git/probe",
        "b-state": f"ls {shlex.quote(str(b.state))}",
        "b-home": f"ls {shlex.quote(str(b.home))}",
        "agents-root": f"ls {shlex.quote(str(mrig.daemon.paths.agents_root))}",
        "broker": f"cat {shlex.quote(str(mrig.daemon.paths.broker_db))}",
        "host-sock": connect_cmd(mrig.daemon.paths.host_socket),
        "b-sock": connect_cmd(b.socket),
        "depth": "find /agents /applied -maxdepth 2 -mindepth 2",
    }
    result = await mrig.bash(MANAGER, probe_script(probes))
    rcs = probe_rcs(result.text)
    assert set(rcs) == set(probes), result.text
    for ok in ("agents-ls", "config-write", "config-read", "applied-read", "depth"):
        assert rcs[ok] == 0, (ok, result.text)
    for refused in (
        "applied-write",
        "applied-git-write",
        "b-state",
        "b-home",
        "agents-root",
        "broker",
        "host-sock",
        "b-sock",
    ):
        assert rcs[refused] != 0, (refused, result.text)
    assert "Read-only file system" in result.text and "b's secret" not in result.text
    second_level = {line for line in result.text.splitlines() if line.startswith(("/agents/", "/applied/"))}
    assert {p for p in second_level if p.startswith("/agents/")} <= {"/agents/b/config", "/agents/manager/config"}
    assert "/agents/b/config" in second_level
    assert (b.config / "probe-from-manager").exists() and not (b.applied / "probe").exists()


# ---- the Bash allow-list and the send allow-list ---------------------------------------------


async def test_bash_outside_the_allow_list_is_denied_in_a_real_turn_and_inside_it_runs(rig: Rig) -> None:
    """With `bash = ["echo *"]`, `echo` runs in the bwrap cage and `touch` is denied (not run);
    both show in `hive events` (issue 5 "Tools inside the cage")."""
    await rig.spawn("c", bash=["echo *"])
    allowed = await rig.bash("c", "echo inside-the-list")
    assert (allowed.text.strip(), allowed.is_error) == ("inside-the-list", False)
    denied = await rig.bash("c", "touch /state/denied-marker")
    assert denied.is_error and "denied" in denied.text.lower(), denied
    assert not (rig.ap("c").state / "denied-marker").exists()
    out = await rig.hive("events", "c", "--json")
    assert out.returncode == 0, out.stderr
    trail = json.loads(out.stdout)
    events = trail["events"] if isinstance(trail, dict) else trail
    streamed = json.dumps([e for e in events if e["kind"] == "stream"])
    assert "inside-the-list" in streamed and "touch /state/denied-marker" in streamed
    denials = [r for e in events if e["kind"] == "stream" and e["payload"].get("type") == "result"
               for r in e["payload"].get("permission_denials") or []]  # fmt: skip
    assert [d["tool_input"]["command"] for d in denials] == ["touch /state/denied-marker"], denials


async def test_send_outside_allowed_recipients_is_refused_with_a_reason_and_manager_is_reachable(mrig: Rig) -> None:
    """The core refuses a's send to b (not in `allowed_recipients`) and the tool result says why;
    a send to the manager goes through (issue 5; architecture §4)."""
    await mrig.spawn("b", bash=[])
    await mrig.spawn("a", bash=[], allowed=["operator"])
    refused = tool_results(await mrig.turn("a", "relay psst to b"))
    assert len(refused) == 1 and refused[0].get("is_error"), refused
    reason = _content_text(refused[0]["content"])
    assert "may not send to 'b'" in reason and "allowed recipients are operator" in reason, reason
    assert not [m for m in (await mrig.s.broker.recent("b", 50)) if m.sender == "a"]
    sent = tool_results(await mrig.turn("a", "relay status-ok to manager"))
    assert len(sent) == 1 and not sent[0].get("is_error"), sent
    assert [m.body for m in (await mrig.s.broker.recent(MANAGER, 50)) if m.sender == "a"] == ["status-ok"]


# ---- planted symlinks -------------------------------------------------------------------------


def snapshot(path: Path) -> tuple[int, int, int, bytes | None]:
    st = os.lstat(path)
    data = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), data


async def test_planted_symlinks_do_not_make_restart_events_kept_state_revive_or_purge_touch_their_targets(
    rig: Rig, tmp_path: Path
) -> None:
    """a plants links from its state and home to /etc, to b's state, to a root-owned file and
    dir, and swaps its events db for a link to b's: restart (chown), `hive events`, the kept-state
    listing, revive and `destroy --purge` leave every target as it was (issue 5; docs/security.md)."""
    await rig.spawn("a", bash=["*"])
    await rig.spawn("b", bash=[])
    b = rig.ap("b")
    b_turn = await rig.turn("b", "echo b-private-token")
    assert b_turn[-1]["payload"]["ok"], b_turn
    victims = tmp_path / "victims"
    victims.mkdir()
    victims.chmod(0o755)
    shadow = victims / "shadow"
    shadow.write_bytes(b"root:secret\n" * 50_000)  # 600 KB: a size walk that follows links would count it
    shadow.chmod(0o600)
    vdir = victims / "dir"
    vdir.mkdir()
    (vdir / "file").write_text("keep me\n")
    (b.state / "secret").write_text("b's secret\n")
    targets = [shadow, vdir, vdir / "file", b.state, b.state / "secret", b.events_db, Path("/etc"), Path("/etc/passwd")]
    before = {p: snapshot(p) for p in targets}

    plant = " && ".join([
        "ln -s /etc /state/etc-link",
        f"ln -s {shlex.quote(str(b.state))} /state/b-state",
        f"ln -s {shlex.quote(str(shadow))} /state/evil",
        f"ln -s {shlex.quote(str(vdir))} /home/agent/evil-dir",
        "mkdir -p /state/deep/er /home/agent/.claude",
        f"ln -s {shlex.quote(str(shadow))} /state/deep/er/evil",
        f"ln -s {shlex.quote(str(shadow))} /home/agent/.claude/.credentials.json",
        "echo planted",
    ])  # fmt: skip
    planted = await rig.bash("a", f"sh -c {shlex.quote(plant)}")
    assert planted.text.strip() == "planted", planted
    a = rig.ap("a")
    assert (a.state / "evil").readlink() == shadow

    def unchanged() -> None:
        for p in targets:
            assert snapshot(p) == before[p], f"{p} changed"

    # restart: the core chowns a's dirs to its uid again, without following the links
    await rig.s.lifecycle.restart("a")
    await rig.s.lifecycle.wait_healthy("a")
    unchanged()
    assert os.lstat(a.state / "evil").st_uid == rig.s.lifecycle.get("a").uid  # the link itself was chowned

    # the events db replaced by a link to b's: `hive events a` must not read b's trail
    # (the trail of this very turn lands in the unlinked db, so wait on the host's view instead)
    swap = (
        f"rm -f /state/hyperhive-events.sqlite && ln -s {shlex.quote(str(b.events_db))} /state/hyperhive-events.sqlite"
    )
    await rig.s.broker.send("operator", "a", "bash " + swap)
    await rig.until("a's events db to become a symlink", a.events_db.is_symlink)
    out = await rig.hive("events", "a", "--json")
    assert "b-private-token" not in out.stdout + out.stderr
    unchanged()

    # destroy, keeping state: the dashboard's K3PT ST4T3 listing sizes a's tree without following links
    await rig.s.lifecycle.destroy("a")
    (kept,) = [k for k in rig.s.lifecycle.kept_state() if k["name"] == "a"]
    assert kept["size_bytes"] < shadow.stat().st_size, kept
    assert kept["has_credentials"] is False, kept  # .credentials.json is a planted link, not credentials
    out = await rig.hive("events", "a", "--json")
    assert "b-private-token" not in out.stdout + out.stderr
    unchanged()

    # revive through the operator's approval: spawn on the kept state chowns it again
    async with HiveClient(rig.daemon.paths.host_socket) as host:
        approval = (await host.call("revive", name="a"))["approval"]
        await host.call("approve", id=approval["id"])
    await rig.s.lifecycle.wait_healthy("a")
    assert (a.state / "evil").is_symlink()
    unchanged()

    # purge: the links are removed, never followed
    out = await rig.hive("destroy", "a", "--purge", "--yes")
    assert out.returncode == 0, out.stderr
    assert not a.root.exists() and not a.run.exists()
    unchanged()
    assert b.state.is_dir() and "b-private-token" in json.dumps(rig.s.read_agent_events("b"))


async def test_a_hostile_events_db_planted_by_the_agent_neither_hangs_nor_fails_the_core(rig: Rig) -> None:
    """a replaces its events db with one whose `events` is a view over an endless query, then
    with one holding a malformed row: `hive events a` answers with a one-line reason in bounded
    time and the daemon keeps serving (issue 5; architecture §3 "never hangs on a client")."""
    await rig.spawn("a", bash=["*"])
    a = rig.ap("a")
    hostile = {
        "view": "CREATE VIEW events AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) "
                "SELECT x AS id, 0 AS ts, 'k' AS kind, '{}' AS payload FROM c",
        "row": "CREATE TABLE events(id INTEGER PRIMARY KEY, ts REAL, kind TEXT, payload TEXT); "
               "INSERT INTO events VALUES (1, 0, 'stream', 'not json {')",
    }  # fmt: skip
    for key, sql in hostile.items():
        # (the harness's -wal would shadow the planted file, so it goes too)
        code = ("import os,sqlite3; p='/state/hyperhive-events.sqlite'; n=p+'.new'; c=sqlite3.connect(n); "
                f"c.executescript({sql!r}); c.close(); [os.unlink(p+x) for x in ('-wal','-shm') if os.path.exists(p+x)]; "
                "os.replace(n, p); print('planted')")  # fmt: skip
        planted_before = a.events_db.stat().st_ino
        await rig.s.broker.send("operator", "a", f"bash {shlex.quote(sys.executable)} -c {shlex.quote(code)}")
        # this turn's own trail goes to the replaced file, so wait on the host's view

        def planted(ino: int = planted_before) -> bool:
            return a.events_db.stat().st_ino != ino

        await rig.until(f"the {key} db to be planted", planted)
        out = await rig.hive("events", "a", "--json")
        assert out.returncode != 0, (key, out)
        assert "could not read a's events" in out.stderr or "no events table" in out.stderr, (key, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        async with HiveClient(rig.daemon.paths.host_socket) as host:
            assert (await host.call("ping"))["ok"]


def test_a_directory_swapped_for_a_link_during_the_chown_walk_is_not_followed(tmp_path: Path) -> None:
    """The manager's repos are chowned to it while it runs (init_config, spawn): swapping a
    directory in them for a link to another tree, racing the walk, never gets that tree chowned
    (issue 5; docs/security.md "ownership changes ... never follow"). Bounded by rounds, not time."""
    require(os.geteuid() == 0, "chowning to another uid needs root")
    from hyperhive.core.agentfs import chown_tree as _chown_tree

    tree, victim = tmp_path / "proposed", tmp_path / "victim"
    tree.mkdir()
    victim.mkdir()
    for i in range(200):  # siblings widen the window between listing `swap` and entering it
        (tree / f"pad{i}").mkdir()
    for i in range(20):
        (victim / f"f{i}").write_text("x")
    swap, stop = tree / "swap", threading.Event()

    def swapper() -> None:  # what a malicious manager would run in its cage
        fresh = tree / "fresh"
        while not stop.is_set():
            with contextlib.suppress(OSError):
                fresh.mkdir()
                fresh.rename(swap)  # a real directory appears at once ...
                for _ in range(3):  # ... and stays while the walk lists it
                    tree.stat()
                swap.rmdir()
                swap.symlink_to(victim)  # then the link takes its place
                swap.unlink()

    thread = threading.Thread(target=swapper, name="swapper")
    thread.start()
    try:
        for _ in range(1000):  # a stress test: the os.walk version lost within 500 rounds in 3 of 5 runs
            _chown_tree(tree, 4242)
            assert all(p.lstat().st_uid == 0 for p in [victim, *victim.iterdir()]), "the walk followed a link"
    finally:
        stop.set()
        thread.join(10)

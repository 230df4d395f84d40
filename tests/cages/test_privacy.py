"""Nothing of the hive is readable by another local user, and agent.toml `[env]` reaches only the
inside of the cage (issue 9, item 6 and "Also close"). A real root daemon with real bwrap cages,
the real claude CLI against the offline model.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_boundary import Rig, _prerequisites, _rig, probe_rcs, probe_script, toml_for

from hivetest import make_config, require, start_daemon, stop_daemon, wire_agent
from hyperhive.errors import HiveError
from hyperhive.names import MANAGER
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.cage

MARKER = "in-cage-only-5d1e"


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    _prerequisites()
    async with OfflineModelServer() as model:
        async for r in _rig(tmp_path, short_dir, model, manager=False):
            yield r


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def world_or_group_readable(root: Path) -> list[str]:
    """Entries below `root` that a user other than the owner could read (links excepted)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o044:
                out.append(f"{p} {oct(stat.S_IMODE(st.st_mode))}")
    return out


async def test_after_a_real_start_the_state_databases_and_agent_dirs_are_private(rig: Rig) -> None:
    toml = toml_for("alpha", bash=["*"]).replace("\n[env]", f'\n[env]\nAPP_MARKER = "{MARKER}"', 1)
    s = rig.s
    await s.repos.seed("alpha", toml=toml)
    await s.lifecycle.spawn("alpha")
    await s.lifecycle.wait_healthy("alpha")
    result = await rig.bash("alpha", 'echo "marker=$APP_MARKER"; umask')
    assert f"marker={MARKER}" in result.text and "0077" in result.text, result.text

    paths = rig.daemon.paths
    ap = paths.agent("alpha")
    uid = s.lifecycle.get("alpha").uid
    assert uid is not None and uid != 0
    for d in (paths.state_dir, paths.agents_root, paths.applied_root, paths.proposed_root, ap.root):
        assert (mode(d), d.stat().st_uid) == (0o700, 0), d
    for d in (ap.state, ap.home, ap.run):
        assert (mode(d), d.stat().st_uid) == (0o700, uid), d
    dbs = [ap.events_db] + ([paths.broker_db] if rig.daemon.config.store_url is None else [])  # SQLite store
    assert all(db.exists() for db in dbs)
    for db in dbs:
        for suffix in ("", "-wal", "-shm"):
            f = Path(f"{db}{suffix}")
            if f.exists():
                assert mode(f) == 0o600, f
    # what the harness and the claude CLI wrote in the cage (umask 077 there too)
    assert world_or_group_readable(ap.home) == []
    assert world_or_group_readable(ap.state) == []

    handle = s.lifecycle.get("alpha").handle
    assert handle is not None  # the host-side setpriv → bwrap process never sees the config env
    host_side = Path(f"/proc/{handle.pid}")
    assert b"bwrap" in (host_side / "cmdline").read_bytes()
    for part in ("environ", "cmdline"):
        assert MARKER.encode() not in (host_side / part).read_bytes(), part


async def test_an_old_world_readable_install_is_made_private_on_start(tmp_path: Path, short_dir: Path) -> None:
    """A hive from before: state 0755, broker.sqlite and its WAL 0644, an agent's dirs 0755 and
    events db 0644. The next `hive serve` fixes every one."""
    config = make_config(tmp_path, short_dir, store_url=None)  # an old hive: its SQLite store
    daemon, task = await start_daemon(config)
    try:
        await wire_agent(daemon, "alpha")
        assert daemon.services is not None
        await daemon.services.lifecycle.stop("alpha")  # registered, not running
    finally:
        await stop_daemon(daemon, task)
    paths = config.paths
    ap = paths.agent("alpha")
    for d in (ap.state, ap.home):
        d.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(ap.events_db) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    files = [paths.broker_db, Path(f"{paths.broker_db}-wal"), ap.events_db]
    dirs = [paths.state_dir, paths.agents_root, paths.proposed_root, ap.root, ap.state, ap.home]
    for f in files:
        f.touch()
        f.chmod(0o644)
    for d in dirs:
        d.chmod(0o755)

    daemon, task = await start_daemon(config)
    try:
        assert {str(f): mode(f) for f in files} == {str(f): 0o600 for f in files}
        assert {str(d): mode(d) for d in dirs} == {str(d): 0o700 for d in dirs}
    finally:
        await stop_daemon(daemon, task)


@pytest.fixture
async def umask_rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    """A hive with a manager, run under the umask `hive serve` sets (077)."""
    _prerequisites()
    old = os.umask(0o077)
    try:
        async with OfflineModelServer() as model:
            async for r in _rig(tmp_path, short_dir, model, manager=True):
                yield r
    finally:
        os.umask(old)


async def test_under_umask_077_the_manager_still_reads_the_applied_repos_and_nobody_else_can(umask_rig: Rig) -> None:
    await umask_rig.spawn("b", bash=[])
    probes = {
        "applied-read": "cat /applied/b/agent.toml",
        "applied-git": "git -C /applied/b log --oneline -1",
        "proposed-git": "git -C /agents/b/config log --oneline -1",
    }
    result = await umask_rig.bash(MANAGER, probe_script(probes))
    rcs = probe_rcs(result.text)
    assert rcs == dict.fromkeys(probes, 0), result.text
    paths = umask_rig.daemon.paths
    for d in (paths.applied_root, paths.proposed_root, paths.state_dir):
        assert mode(d) & 0o007 == 0, d  # other local users: nothing


@pytest.mark.parametrize("kind", ["bwrap", "nspawn"])
async def test_a_cage_started_under_umask_077_works_and_gets_its_config_env(kind: str, tmp_path: Path) -> None:
    """`hive serve` runs with umask 077: every scaffold a backend builds for the agent's uid (the
    bwrap re-exposed parents, the nspawn root, the env files) is still readable by that uid."""
    from hyperhive.cages import resolve_cage
    from hyperhive.cages.base import CageSpec

    require(os.geteuid() == 0, "an agent uid needs a root daemon")
    try:
        cage, _ = resolve_cage(kind)
    except HiveError as exc:
        require(False, f"{kind}: {exc}")
    root = tmp_path / "hive"
    root.mkdir(mode=0o700)  # like the state dir: the agent's uid cannot traverse it
    dirs = [root / "state", root / "home", root / "run"]
    uid = 64999
    for d in dirs:
        d.mkdir()
        os.chown(d, uid, uid)
    code = ("import json, os; print('passwd', open('/etc/passwd').read().count(':') > 0); "
            "print('config', json.load(open(os.environ['HYPERHIVE_CONFIG_ENV_FILE']))['APP_X']); "
            "print('secret', os.environ.get('SECRET_X')); print('state', os.listdir('/state'))")  # fmt: skip
    spec = CageSpec(name="umask", argv=[sys.executable, "-c", code], state_dir=dirs[0], home_dir=dirs[1],
                    run_dir=dirs[2], uid=uid, gid=uid, env={"SECRET_X": "s3"}, config_env={"APP_X": "cfg"})  # fmt: skip
    old = os.umask(0o077)
    try:
        handle = await cage.start(spec)
    finally:
        os.umask(old)
    async with asyncio.timeout(60):
        info = await handle.wait()
    text = "\n".join(info.last_lines)
    assert info.exit_code == 0, text
    assert "passwd True" in text and "config cfg" in text and "secret s3" in text and "state []" in text, text


async def test_the_instructions_reach_the_model_but_no_command_line_in_a_caged_turn(rig: Rig) -> None:
    """The agent's instructions (part of its system prompt) are on no process's command line while
    its real claude CLI runs a turn in its bwrap cage; the same /proc a local user reads."""
    marker = "PRIVATE-INSTRUCTIONS-c41b"
    s = rig.s
    await s.repos.seed("alpha", marker, toml=toml_for("alpha", bash=["*"]))
    await s.lifecycle.spawn("alpha")
    await s.lifecycle.wait_healthy("alpha")
    ap = rig.ap("alpha")
    uid = s.lifecycle.get("alpha").uid
    assert uid is not None
    for name, text in (("p-marker", marker), ("p-cli", "--system-prompt-file /proc/")):
        (ap.state / name).write_text(text + "\n")  # patterns from files: the probe's own argv holds neither
        os.chown(ap.state / name, uid, uid)
    listing = "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done"
    result = await rig.bash(
        "alpha",
        f"echo marker=$({listing} | grep -c -F -f /state/p-marker); echo cli=$({listing} | grep -c -F -f /state/p-cli)",
    )
    assert "marker=0" in result.text and "cli=0" not in result.text and "cli=" in result.text, result.text
    assert any(marker in r["system"] for r in rig.model.requests)  # it did reach the model

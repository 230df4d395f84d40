"""`hive backup DEST` copies a running hive's state consistently (SQLite's online backup for every
database, links kept as links), and `hive logs NAME` shows an agent's harness output, kept on the
host outside its cage (issue 15)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from hivetest import until
from hyperhive.core.daemon import Daemon
from servekit import HIVE


async def hive_cmd(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(HIVE, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)  # fmt: skip
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _check(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return conn


async def test_backup_of_a_running_hive_is_consistent_and_keeps_links_as_links(hive: Daemon, tmp_path: Path) -> None:
    assert hive.services is not None
    s = hive.services
    await s.lifecycle.spawn("worker", "backs up")
    events_db = hive.paths.agent("worker").events_db
    await until(s.hub, "the worker's events db", events_db.exists, 60, explain=lambda: "no events db", recheck=0.2)
    for n in range(50):
        await s.broker.send("operator", "worker", f"message {n} to keep")
    planted = hive.paths.agent("worker").state / "shadow-link"
    planted.symlink_to("/etc/shadow")
    dest = tmp_path / "backup"
    code, out, err = await hive_cmd("backup", str(dest), "--state-dir", str(hive.paths.state_dir))
    assert code == 0, err
    assert out.startswith(f"backed up {hive.paths.state_dir.resolve()} to {dest}: ")
    assert dest.stat().st_mode & 0o777 == 0o700
    if hive.config.store_url is None:  # a SQLite store lives in the state dir (PostgreSQL: pg_dump, docs/store.md)
        bodies = {r[0] for r in _check(dest / "broker.sqlite").execute("SELECT body FROM messages")}
        assert {f"message {n} to keep" for n in range(50)} <= bodies
    _check(dest / "agents" / "worker" / "state" / "hyperhive-events.sqlite")
    copied_link = dest / "agents" / "worker" / "state" / "shadow-link"
    assert copied_link.is_symlink() and str(copied_link.readlink()) == "/etc/shadow"
    assert (dest / "dashboard-token").stat().st_mode & 0o777 == 0o600

    code, out, err = await hive_cmd("backup", str(dest), "--state-dir", str(hive.paths.state_dir))
    assert code == 1 and out == "" and err == f"hive: {dest} already exists: back up to a new path\n"
    code, out, err = await hive_cmd("backup", str(tmp_path / "b2"), "--state-dir", str(tmp_path / "nothing"))
    assert code == 1 and "holds no hive" in err and len(err.splitlines()) == 1


async def test_hive_logs_name_shows_the_harness_output(hive: Daemon) -> None:
    assert hive.services is not None
    s = hive.services
    await s.lifecycle.spawn("chatty", "logs")
    log = hive.paths.agent("chatty").root / "harness.log"
    await until(s.hub, "the harness to write its log", lambda: log.exists() and log.stat().st_size > 0, 60,
                explain=lambda: "no harness.log", recheck=0.2)  # fmt: skip
    assert log.stat().st_mode & 0o777 == 0o600
    code, out, err = await hive_cmd("logs", "chatty", "--state-dir", str(hive.paths.state_dir))
    assert code == 0, err
    assert out.strip() and out.splitlines()[0][:4].isdigit()  # stamped lines
    code, by_daemon, err = await hive_cmd("logs", "chatty", "--run-dir", str(hive.paths.run_dir))
    assert code == 0 and by_daemon.splitlines()[0] == out.splitlines()[0], err  # the daemon names its state dir
    code, out, err = await hive_cmd("logs", "ghost", "--state-dir", str(hive.paths.state_dir))
    assert code == 1 and err.startswith("hive: ghost has no harness log at ") and len(err.splitlines()) == 1
    code, out, err = await hive_cmd("logs", "../etc", "--state-dir", str(hive.paths.state_dir))
    assert code == 1 and "not a valid agent name" in err

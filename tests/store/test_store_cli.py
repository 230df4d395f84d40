"""`hive store check|migrate|copy` through the real command line: a one-host hive's SQLite store
moves to PostgreSQL with every row counted and checked, ids continue past the copied ones, and
the refusals (daemon running, destination in use, a password in argv) change nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from hivetest import pg_test_url
from hyperhive.store.open import open_store
from hyperhive.store.sqlite_store import SqliteStore


def hive(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HYPERHIVE_STORE"}
    out = subprocess.run([sys.executable, "-m", "hyperhive", *args], capture_output=True, text=True, timeout=120,
                         env=env, check=False)  # fmt: skip
    assert (out.returncode == 0) == ok, (out.returncode, out.stdout, out.stderr)
    return out


async def _fill(state: Path) -> None:
    s = SqliteStore(state / "broker.sqlite")
    try:
        for i in range(0, 2400, 200):
            await s.insert_messages("a", ["b"] * 200, f"m{i}", float(i))
        await s.claim_pending("b", 5, 1.0)
        await s.register_agent("scout", "kept", 1.0, uid_base=1000)
        await s.insert_approval("spawn", "other", None, "manager", 1.0)
        await s.insert_question("a", None, "ok?", ["y"], False, 1.0, None)
        await s.stats_insert([("a", 5.0, "turn", 1.0)] * 1200)  # equal timestamps across pages
        await s.session_create("sid1", 1.0, "c", "ua", forget_before=0.0)
    finally:
        await s.close()


async def test_copy_moves_every_row_and_ids_continue(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    await _fill(state)
    url = pg_test_url()
    report = json.loads(hive("store", "check", "--state-dir", str(state), "--json").stdout)
    assert report["missing"] == [] and report["counts"]["messages"] == 2400

    copied = json.loads(hive("store", "copy", "--state-dir", str(state), "--to", url, "--json").stdout)["copied"]
    assert copied == report["counts"]
    after = json.loads(hive("store", "check", "--state-dir", str(state), "--store", url, "--json").stdout)
    assert after["counts"] == report["counts"] and after["missing"] == []

    dest = open_store(url, tmp_path / "unused.sqlite")
    try:
        delivered = await dest.recent_messages(recipient="b", limit=2400)
        assert sum(1 for m in delivered if m["delivered_at"] is not None) == 5
        (new_id,) = await dest.insert_messages("a", ["b"], "after the move", 9.0)
        assert new_id == 2401
        agent = await dest.register_agent("fresh", None, 9.0)
        assert agent["id"] == 2  # the counter came along: scout keeps 1
        assert [s["sid"] for s in await dest.sessions_active(0.0)] == ["sid1"]
    finally:
        await dest.close()

    again = hive("store", "copy", "--state-dir", str(state), "--to", url, ok=False)
    assert "already holds a hive" in again.stderr


async def test_copy_refuses_while_the_daemon_answers_and_a_password_in_argv(tmp_path: Path, short_dir: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    await _fill(state)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # stands where hive serve listens
    listener.bind(str(short_dir / "host.sock"))
    listener.listen(1)
    try:
        env_run = ["--state-dir", str(state)]
        os.environ["HYPERHIVE_RUN_DIR"] = str(short_dir)
        out = hive("store", "copy", *env_run, "--to", "postgresql:///nowhere?host=/nonexistent", ok=False)
        assert "hive serve is running" in out.stderr
    finally:
        os.environ.pop("HYPERHIVE_RUN_DIR", None)
        listener.close()
    out = hive("store", "check", "--state-dir", str(state), "--store", "postgresql://u:secret@localhost/db", ok=False)
    assert "password out of the command line" in out.stderr and "secret" not in out.stderr
    out = hive("serve", "--state-dir", str(state), "--store", "postgresql://u:secret@localhost/db", ok=False)
    assert "password out of the command line" in out.stderr


def test_check_names_a_missing_store(tmp_path: Path) -> None:
    out = hive("store", "check", "--state-dir", str(tmp_path), ok=False)
    assert "no store at" in out.stderr


def test_an_unknown_or_unreachable_store_is_one_clear_line(tmp_path: Path, short_dir: Path) -> None:
    out = hive("store", "check", "--state-dir", str(tmp_path), "--store", "mysql://db/hive", ok=False)
    assert out.stderr.strip() == "hive: unknown store 'mysql': give postgresql://… or leave it unset for SQLite"
    gone = f"postgresql:///hive?host={short_dir}"  # a socket dir with no server in it
    out = hive("store", "check", "--state-dir", str(tmp_path), "--store", gone, ok=False)
    assert (
        out.stderr.startswith("hive: cannot open the store at postgresql: dbname=hive")
        and len(out.stderr.strip().splitlines()) == 1
    ), out.stderr

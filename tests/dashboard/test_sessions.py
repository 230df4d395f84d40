"""Dashboard sessions kept server-side (issue 9, item 5) and the login brute-force bound (issue 9,
"also close"): a logout, a `hive sessions --revoke-all` and the dashboard's "log out everywhere"
hold across a real daemon restart; failed logins per client are bounded with 429 + Retry-After."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from dashkit import Dash, dash_of, logged_in

from hivetest import make_config, run_hive, start_daemon, stop_daemon
from hyperhive.dashboard.auth import LOGIN_FAILURES, LoginLimiter


class Restartable:
    """A real daemon on fixed state/run dirs that the test can stop and start again."""

    def __init__(self, tmp_path: Path, run_dir: Path) -> None:
        self.config = make_config(tmp_path, run_dir)
        self.run_dir = run_dir
        self.running: tuple[object, object] | None = None

    async def start(self) -> Dash:
        daemon, task = await start_daemon(self.config)
        self.running = (daemon, task)
        return dash_of(daemon)

    async def stop(self) -> None:
        if self.running is not None:
            daemon, task = self.running
            self.running = None
            await stop_daemon(daemon, task)  # type: ignore[arg-type]


@pytest.fixture
async def hive_rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Restartable]:
    rig = Restartable(tmp_path, short_dir)
    try:
        yield rig
    finally:
        await rig.stop()


def _jar(client: httpx.AsyncClient) -> dict[str, str]:
    return {"hh_session": client.cookies["hh_session"], "x-csrf-token": client.cookies["hh_csrf"]}


async def _state(dash: Dash, saved: dict[str, str]) -> int:
    async with httpx.AsyncClient(base_url=dash.base, timeout=10) as c:
        r = await c.get("/api/state", headers={"cookie": f"hh_session={saved['hh_session']}"})
        return r.status_code


async def test_a_logout_survives_a_daemon_restart(hive_rig: Restartable) -> None:
    """Log out one session, restart the daemon: that cookie is still refused, while a session
    that did not log out still works (the live set is persisted too)."""
    dash = await hive_rig.start()
    gone, kept = await logged_in(dash), await logged_in(dash)
    gone_cookie, kept_cookie = _jar(gone), _jar(kept)
    assert (await gone.post("/logout")).status_code == 200
    await gone.aclose()
    await kept.aclose()
    assert await _state(dash, gone_cookie) == 401

    await hive_rig.stop()
    dash = await hive_rig.start()
    assert await _state(dash, gone_cookie) == 401, "a revoked cookie came back after the restart"
    assert await _state(dash, kept_cookie) == 200


async def test_hive_sessions_lists_and_revoke_all_rotates_the_key_across_a_restart(hive_rig: Restartable) -> None:
    """`hive sessions` lists the logged-in sessions (short id, client, user agent, no secret);
    `--revoke <id>` logs one out; `--revoke-all` logs out everywhere and rotates the signing key,
    and after a restart the old cookies stay refused while a new login works and persists."""
    dash = await hive_rig.start()
    secret_file = dash.services.config.paths.session_secret_file
    old_key = secret_file.read_text()
    a, b, c = (await logged_in(dash)), (await logged_in(dash)), (await logged_in(dash))
    saved = [_jar(x) for x in (a, b, c)]
    for x in (a, b, c):
        await x.aclose()

    listed = await run_hive(hive_rig.run_dir, "sessions", "--json", ok=True)
    rows = json.loads(listed.stdout)["sessions"]
    assert len(rows) == 3 and {r["client"] for r in rows} == {"127.0.0.1"}
    assert all(len(r["id"]) == 8 and "python-httpx" in r["user_agent"] for r in rows)
    assert not any(s["hh_session"] in listed.stdout or s["x-csrf-token"] in listed.stdout for s in saved)
    table = await run_hive(hive_rig.run_dir, "sessions", ok=True)
    assert all(r["id"] in table.stdout for r in rows)

    # revoke the one whose row is first (sessions are listed oldest first: that is `a`)
    one = await run_hive(hive_rig.run_dir, "sessions", "--revoke", rows[0]["id"], ok=True)
    assert rows[0]["id"] in one.stdout
    assert [await _state(dash, s) for s in saved] == [401, 200, 200]
    missing = await run_hive(hive_rig.run_dir, "sessions", "--revoke", "nosuchid")
    assert missing.returncode == 1 and "no active session" in missing.stderr

    done = await run_hive(hive_rig.run_dir, "sessions", "--revoke-all", ok=True)
    assert "2 session(s) revoked" in done.stdout and "rotated" in done.stdout
    assert [await _state(dash, s) for s in saved] == [401, 401, 401]
    new_key = secret_file.read_text()
    assert new_key != old_key and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    fresh = await logged_in(dash)
    fresh_cookie = _jar(fresh)
    await fresh.aclose()
    assert await _state(dash, fresh_cookie) == 200

    await hive_rig.stop()
    dash = await hive_rig.start()
    assert [await _state(dash, s) for s in saved] == [401, 401, 401]
    assert await _state(dash, fresh_cookie) == 200, "the login after the rotation must survive the restart"
    assert secret_file.read_text() == new_key
    listed = await run_hive(hive_rig.run_dir, "sessions", "--json", ok=True)
    assert len(json.loads(listed.stdout)["sessions"]) == 1


async def test_the_dashboards_log_out_everywhere_revokes_every_session(dash: Dash, client: httpx.AsyncClient) -> None:
    """POST /api/sessions/revoke-all (the dashboard's button) logs out this session and every other
    one and clears this browser's cookies; GET /api/sessions marks the caller's own row."""
    other = await logged_in(dash)
    try:
        r = await client.get("/api/sessions")
        assert r.status_code == 200
        rows = r.json()["sessions"]
        assert len(rows) == 2 and sorted(row["current"] for row in rows) == [False, True]
        r = await client.post("/api/sessions/revoke-all")
        assert r.status_code == 200 and r.json()["revoked"] == 2
        assert any(c.startswith("hh_session=;") for c in r.headers.get_list("set-cookie"))
        assert (await other.get("/api/state")).status_code == 401
        assert (await client.get("/api/state")).status_code == 401
    finally:
        await other.aclose()


async def test_failed_logins_are_bounded_per_client_with_429_and_retry_after(dash: Dash) -> None:
    """After LOGIN_FAILURES bad tokens a client gets 429 with Retry-After, even with the right
    token (no oracle while blocked); another client (another loopback address) is not affected."""
    async with httpx.AsyncClient(base_url=dash.base, timeout=10) as c:
        for _ in range(LOGIN_FAILURES):
            r = await c.get("/login", params={"token": "wrong" * 8})
            assert r.status_code == 403
        r = await c.get("/login", params={"token": "wrong" * 8})
        assert r.status_code == 429
        wait = int(r.headers["retry-after"])
        assert 0 < wait <= 300
        r = await c.get(dash.login_url)
        assert r.status_code == 429 and "hh_session" not in r.headers.get("set-cookie", "")
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=dash.base, timeout=10, transport=transport) as elsewhere:
        r = await elsewhere.get(dash.login_url)
        assert r.status_code == 303, r.text


def test_the_login_limiter_window_slides() -> None:
    """The bound is per window: once the oldest failure is older than the window, one more
    attempt is allowed."""
    limiter = LoginLimiter(limit=3, window=60.0, clients=2)
    for t in (0.0, 10.0, 20.0):
        assert limiter.retry_after("a", t) == 0
        limiter.failed("a", t)
    assert limiter.retry_after("a", 30.0) == 30
    assert limiter.retry_after("a", 60.0) == 0, "the failure at t=0 left the window"
    limiter.failed("a", 60.0)
    assert limiter.retry_after("a", 61.0) == 9

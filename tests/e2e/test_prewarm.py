"""Warm on start (issue 13): an idle harness connects its claude CLI (no query, no model request)
before its first message, through the core's scheduler as the lowest-priority work and only while
the warm pool has room; REAL claude CLI against the offline model, process cages."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from e2e.test_warm import Rig, alive, rig_fixture
from hivetest import require_sdk
from hyperhive.harness.prompting import format_wake_prompt
from hyperhive.harness.turn import TurnRunner, TurnSpec
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

rig = pytest.fixture(rig_fixture(warm_idle_seconds=3600.0))
off_rig = pytest.fixture(rig_fixture(warm_idle_seconds=3600.0, warm_on_start=False))
pool_rig = pytest.fixture(rig_fixture(warm_idle_seconds=3600.0, max_warm=1))
idle_rig = pytest.fixture(rig_fixture(warm_idle_seconds=0.5))


def pool_notes(rig: Rig, name: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in rig.events(name, "note") if e.get("pool") == kind]


async def test_an_idle_agent_is_prewarmed_without_a_model_request_and_its_first_turn_is_warm(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.until("a to report warm before any message", lambda: rig.s.lifecycle.row("a").warm)
    [prewarmed] = pool_notes(rig, "a", "prewarmed")
    pool = await rig.pool("a")
    assert pool["warm"] and pool["cli_pid"] == prewarmed["pid"] and alive(pool["cli_pid"])
    assert pool["heavy_loaded"] == [], "the pre-warm runs in the worker, not in the harness"
    assert rig.model.requests == [], "connecting the CLI asks the model nothing"
    assert rig.events("a", "turn_start") == []
    first = await rig.turn("a", "echo one")
    assert first["ok"] and first["warm"] is True and first["cli_pid"] == prewarmed["pid"]
    assert len(rig.model.requests) >= 1
    second = await rig.turn("a", "echo two")
    assert second["ok"] and second["warm"] is True and second["cli_pid"] == prewarmed["pid"]


async def test_controls_after_a_prewarm_model_switch_cancel_new_session(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.until("a to report warm", lambda: rig.s.lifecycle.row("a").warm)
    [prewarmed] = pool_notes(rig, "a", "prewarmed")
    refused = await rig.post("a", "/api/cancel", {})
    assert refused["ok"] is False and "nothing to cancel" in refused["error"], refused
    assert (await rig.post("a", "/api/model", {"model": "haiku-warm"}))["ok"]
    first = await rig.turn("a", "echo one")
    assert first["ok"] and first["warm"] is True and first["cli_pid"] == prewarmed["pid"]
    assert first["model"] == "haiku-warm"
    assert [r["model"] for r in rig.model.requests if "echo one" in r["last_user_text"]] == ["haiku-warm"]
    assert (await rig.post("a", "/api/new-session", {}))["ok"]
    fresh = await rig.turn("a", "echo two")
    assert fresh["ok"] and fresh["warm"] is False and fresh["cli_pid"] != prewarmed["pid"]
    assert not alive(prewarmed["pid"])


async def test_a_message_sent_at_once_after_spawn_never_starts_a_second_cli(rig: Rig) -> None:
    """Whether the message overtakes the pre-warm or waits for it, the agent runs one CLI."""
    await rig.hive("spawn", "a")
    first = await rig.turn("a", "echo right away")
    second = await rig.turn("a", "echo again")
    assert first["ok"] and second["ok"] and second["warm"] is True and second["cli_pid"] == first["cli_pid"]
    prewarmed = pool_notes(rig, "a", "prewarmed")
    if prewarmed:  # the pre-warm connected first: the turn waited for it and reused it
        assert first["warm"] is True and [n["pid"] for n in prewarmed] == [first["cli_pid"]]
    assert pool_notes(rig, "a", "prewarm_failed") == [] and rig.cooled("a") == []


async def test_with_warm_on_start_off_the_first_turn_is_cold(off_rig: Rig) -> None:
    rig = off_rig
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    first = await rig.turn("a", "echo one")
    assert first["ok"] and first["warm"] is False
    assert [n for n in rig.events("a", "note") if str(n.get("pool", "")).startswith("prewarm")] == []


async def test_with_max_warm_1_only_one_of_two_agents_is_prewarmed(pool_rig: Rig) -> None:
    rig = pool_rig
    await rig.hive("spawn", "a")
    await rig.hive("spawn", "b")
    await rig.until("a and b to be idle", lambda: rig.idle("a") and rig.idle("b"))

    def settled() -> dict[str, str] | None:
        out = {}
        for name in ("a", "b"):
            kinds = [n["pool"] for n in rig.events(name, "note") if str(n.get("pool", "")).startswith("prewarm")]
            if not kinds:
                return None
            out[name] = kinds[0]
        return out

    outcome = await rig.until("both pre-warms to be decided", settled)
    assert sorted(outcome.values()) == ["prewarm_refused", "prewarmed"], outcome
    warm = next(n for n, kind in outcome.items() if kind == "prewarmed")
    cold = next(n for n in outcome if n != warm)
    await rig.until(f"{warm} to report warm", lambda: rig.s.lifecycle.row(warm).warm)
    assert not rig.s.lifecycle.row(cold).warm and (await rig.pool(cold))["worker_pid"] is None
    assert rig.cooled("a") == rig.cooled("b") == [], "the limit was kept without cooling anyone"
    assert rig.model.requests == []


async def test_a_prewarmed_cli_is_cooled_by_the_idle_timer_and_the_next_turn_is_cold(idle_rig: Rig) -> None:
    rig = idle_rig
    await rig.hive("spawn", "a")
    await rig.until("a to be idle", lambda: rig.idle("a"))
    [prewarmed] = await rig.until("a to pre-warm", lambda: pool_notes(rig, "a", "prewarmed"))
    [cooled] = await rig.until("a to cool when idle", lambda: rig.cooled("a"))
    assert cooled["pid"] == prewarmed["pid"] and not alive(prewarmed["pid"])
    await rig.until("a to report cold", lambda: not rig.s.lifecycle.row("a").warm)
    assert (await rig.pool("a"))["worker_pid"] is None
    first = await rig.turn("a", "echo one")
    assert first["ok"] and first["warm"] is False and first["cli_pid"] != prewarmed["pid"]


# ---- the runner: the pre-warm's CLI is the one the first turn would start ------------------------


def _drop(_: Any) -> None:
    pass


def _spec(tmp_path: Path, model: OfflineModelServer, body: str, **kw: Any) -> TurnSpec:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "dummy", "HOME": str(home),
           "CLAUDE_CONFIG_DIR": str(home / ".claude")}  # fmt: skip
    return TurnSpec(prompt=format_wake_prompt(1, "operator", body), cwd=tmp_path, env=env, keep_warm=True,
                    system_prompt="you are a test agent", model="haiku", **kw)  # fmt: skip


async def test_a_prewarm_on_a_resumed_session_serves_that_sessions_next_turn(tmp_path: Path) -> None:
    require_sdk()
    runner = TurnRunner()
    async with OfflineModelServer() as model, asyncio.timeout(300):
        first = await runner.run(_spec(tmp_path, model, "echo remember the walrus"), _drop, _drop)
        assert first.ok and first.session_id and await runner.cool("test")
        asked = len(model.requests)
        pid, why = await runner.prewarm(_spec(tmp_path, model, "", resume_session=first.session_id))
        assert pid is not None and why == "" and runner.warm_pid() == pid
        assert len(model.requests) == asked, "connecting asks the model nothing"
        again = await runner.run(_spec(tmp_path, model, "echo again", resume_session=first.session_id), _drop, _drop)
        assert again.ok and again.warm is True and again.cli_pid == pid and again.session_id == first.session_id
        last = [r for r in model.requests if r["last_user_text"].endswith("echo again")][-1]
        assert any("remember the walrus" in text for text in last["user_texts"]), "the session was resumed"
        await runner.cool("test")


async def test_a_prewarm_whose_cli_cannot_start_leaves_the_runner_cold(tmp_path: Path) -> None:
    require_sdk()
    broken = tmp_path / "broken-claude"
    broken.write_text("#!/bin/sh\necho 'cannot start: no such thing' >&2\nexit 3\n")
    broken.chmod(0o755)
    runner = TurnRunner()
    async with OfflineModelServer() as model, asyncio.timeout(300):
        pid, why = await runner.prewarm(_spec(tmp_path, model, "", cli_path=broken))
        assert pid is None and "cannot start" in why and not runner.warm, why
        turn = await runner.run(_spec(tmp_path, model, "echo cold"), _drop, _drop)
        assert turn.ok and turn.warm is False
        await runner.cool("test")

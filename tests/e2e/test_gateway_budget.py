"""Issue 12's budget proof with the REAL claude CLI through the gateway: an agent with a tiny
`usd_per_day` runs one turn and is paused (`over budget`); its next message stays queued and
never reaches the model; the operator's question appears in `hive questions` and on the
dashboard, with the spend; the manager is told; answering "raise the budget for today" resumes
the agent and the queued message is handled."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hivetest import (
    HiveRig,
    diagnostics,
    make_config,
    message,
    require_sdk,
    start_daemon,
    stop_daemon,
    sync,
    wire_agent,
)
from hyperhive.agentconfig import default_agent_toml
from hyperhive.config import ApiSettings
from hyperhive.core.budget import RAISE
from hyperhive.offline_model.server import OfflineModelServer

sys.path.append(str(Path(__file__).resolve().parent.parent / "dashboard"))
from dashkit import dash_of, logged_in  # noqa: E402

pytestmark = pytest.mark.e2e

KEY = "sk-upstream-budget"


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer

    UNTIL_BOUND = 90.0
    RECHECK = 0.2
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=10, requests=10, tail=15)

    def asked(self, text: str) -> bool:
        return any(text in t for r in self.model.requests for t in r["user_texts"])


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require_sdk()
    async with OfflineModelServer(api_key=KEY) as model:
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, api=ApiSettings(base=model.url, key=KEY)))
        try:
            yield Rig(daemon, model)
        finally:
            await stop_daemon(daemon, task)


async def test_an_agent_over_its_budget_pauses_queues_asks_and_resumes_when_raised(rig: Rig) -> None:
    await wire_agent(rig.daemon, "manager")  # a manager inbox, no manager harness
    toml = default_agent_toml("a") + '\n[budget]\nusd_per_day = 0.000001\nwindow = "calendar"\n'
    await rig.s.repos.seed("a", toml=toml)
    await rig.hive("spawn", "a")
    first = json.loads((await rig.hive("send", "a", "echo one", "--json")).stdout)
    # its first turn spends more than the whole budget (the spawn kick runs none of its own)
    await rig.until("a to be over budget", lambda: rig.s.lifecycle.row("a").harness_state == "over_budget")
    await rig.until("the first turn to complete", lambda: sync(message(rig.s, first["id"])).acked_at)
    listed = json.loads((await rig.hive("list", "--json")).stdout)["agents"]
    assert next(a for a in listed if a["name"] == "a")["harness_state"] == "over_budget"

    second = json.loads((await rig.hive("send", "a", "echo two", "--json")).stdout)
    questions = await rig.until("the operator's budget question",
                                lambda: [q for q in sync(rig.s.questions.pending()) if "a is over budget" in q["question"]])  # fmt: skip
    (q,) = questions
    assert q["options"] == [RAISE, "resume once", "keep paused"]
    cli = json.loads((await rig.hive("questions", "--json")).stdout)
    assert any(x["id"] == q["id"] for x in cli["questions"]), "the question is on the CLI"
    dash = dash_of(rig.daemon)
    client = await logged_in(dash)
    try:
        state = (await client.get("/api/state")).json()
    finally:
        await client.aclose()
    assert any(x["id"] == q["id"] for x in state["questions"]), "and on the dashboard"
    spend = state["spend"]["agents"]["a"]
    assert spend["today"]["usd"] > 0.000001 and spend["paused"] is True
    assert spend["budget"]["usd_budget"] == 0.000001 and spend["budget"]["window"] == "calendar"
    assert [e["agent"] for e in rig.system_events("manager", "over_budget")] == ["a"], "the manager is told"

    assert (await message(rig.s, second["id"])).acked_at is None, "the queued message waits"
    assert not rig.asked("echo two"), "no model call while over budget"

    await rig.hive("answer", str(q["id"]), RAISE)
    await rig.until("the queued message to be handled", lambda: sync(message(rig.s, second["id"])).acked_at)
    assert rig.asked("echo two")
    assert [e["agent"] for e in rig.system_events("manager", "budget_resumed")] == ["a"]


async def test_a_turn_the_gateway_refuses_for_the_budget_is_queued_again_not_taken_for_a_logout(rig: Rig) -> None:
    """The agent's spend is over its budget before its first turn starts, so no pause holds the
    message yet: the gateway refuses the model call (a 403 the claude CLI reports as "Failed to
    authenticate"). The harness must queue the message again for after the raise, not wait for a
    login that would never come."""
    from hyperhive.core.gateway import RequestUsage

    await wire_agent(rig.daemon, "manager")
    toml = default_agent_toml("a") + '\n[budget]\nusd_per_day = 0.000001\nwindow = "calendar"\n'
    await rig.s.repos.seed("a", toml=toml)
    assert rig.daemon.gateway is not None
    await rig.daemon.gateway.usage.record(RequestUsage("a", "claude-sonnet-4-5", "earlier", input_tokens=5000))
    await rig.hive("spawn", "a")
    sent = json.loads((await rig.hive("send", "a", "echo refused", "--json")).stdout)
    refused = await rig.until("the refused turn to end",
                              lambda: [e for e in rig.s.read_agent_events("a") if e["kind"] == "turn_end"])  # fmt: skip
    assert refused[0]["payload"]["ok"] is False and "[over budget]" in refused[0]["payload"]["note"]
    assert not refused[0]["payload"]["note"].startswith("not logged in"), refused[0]["payload"]["note"]
    (q,) = await rig.until("the operator's budget question",
                           lambda: [q for q in sync(rig.s.questions.pending()) if "a is over budget" in q["question"]])  # fmt: skip
    await rig.hive("answer", str(q["id"]), RAISE)
    await rig.until("the refused message to be handled after the raise",
                    lambda: sync(message(rig.s, sent["id"])).acked_at)  # fmt: skip
    assert rig.asked("echo refused")
    states = [e["payload"]["state"] for e in rig.s.read_agent_events("a") if e["kind"] == "state_changed"]
    assert "needs_login" not in states, states

"""Issue 12's gateway proof with the REAL claude CLI in bwrap cages with `network = "none"`: the
daemon holds the upstream key (a 0600 key file) and the offline model's URL as its upstream;
the agents reach the model only through their api.sock; the relay works; no process of a cage
(harness or claude) holds the upstream key; the upstream sees the real key and never an agent
token."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
    sync,
)
from hyperhive.config import ApiSettings, read_key_file
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

TURN_BOUND = 60.0
REAL_KEY = "sk-upstream-REAL-" + uuid.uuid4().hex


def record_headers(app: Callable[..., Awaitable[None]], seen: list[dict[str, str]]) -> Callable[..., Awaitable[None]]:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append({"path": scope["path"], **{k.decode(): v.decode() for k, v in scope["headers"]}})
        await app(scope, receive, send)

    wrapped.state = app.state  # type: ignore[attr-defined]  # OfflineModelServer.requests reads it
    return wrapped


@dataclass
class Rig(HiveRig):
    model: OfflineModelServer
    seen: list[dict[str, str]]

    UNTIL_BOUND = TURN_BOUND
    RECHECK = 0.2
    HIVE_OK = True

    def diagnostics(self) -> str:
        return diagnostics(self.s, self.model, messages=20, requests=10, tail=15)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def proc_env(pid: int) -> tuple[str, dict[str, str]]:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return "", {}
    env = dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    return cmd, env


@pytest.fixture
async def rig(tmp_path: Path, short_dir: Path) -> AsyncIterator[Rig]:
    require_tool("bwrap")
    from hyperhive.cages.bwrap import BwrapCage

    ok, why = BwrapCage.available()
    require(ok, f"bwrap does not work here: {why}")
    require(os.geteuid() == 0, "the per-agent host uid needs a root daemon")
    require_sdk()
    key_file = tmp_path / "upstream.key"
    key_file.write_text(REAL_KEY + "\n")
    key_file.chmod(0o600)
    model = OfflineModelServer(api_key=REAL_KEY)
    seen: list[dict[str, str]] = []
    model.app = record_headers(model.app, seen)  # type: ignore[assignment]
    async with model:
        api = ApiSettings(base=model.url, key=read_key_file(key_file))
        daemon, task = await start_daemon(make_config(tmp_path, short_dir, cage="bwrap", api=api))
        try:
            yield Rig(daemon, model, seen)
        finally:
            await stop_daemon(daemon, task)


async def test_agents_with_no_network_relay_through_the_gateway_and_no_cage_holds_the_key(rig: Rig) -> None:
    await rig.hive("spawn", "a")
    await rig.hive("spawn", "b")
    assert rig.s.lifecycle.agent_config("a").network == "none", "with the gateway new agents get no network"
    await rig.until("a and b to be idle", lambda: rig.idle("a") and rig.idle("b"))
    token = f"TOKEN-{uuid.uuid4().hex[:12]}"
    await rig.hive("send", "a", f"relay {token} to b")
    await rig.until("b's answer in the operator's inbox",
                    lambda: any(m.sender == "b" for m in sync(rig.s.broker.recent("operator", 50))))  # fmt: skip
    inbox = json.loads((await rig.hive("inbox", "--json")).stdout)["messages"]
    assert [m["body"] for m in inbox if m["sender"] == "b"] == [f"a said: {token}"]

    # during a turn: every process of a's cage, the harness and claude included
    await rig.hive("send", "a", "slow 6")
    await rig.until("a's model call on 'slow 6'",
                    lambda: any("slow 6" in t for r in rig.model.requests for t in r["user_texts"]))  # fmt: skip
    rt = rig.s.lifecycle.agents["a"]
    assert rt.handle is not None
    assert rig.daemon.gateway is not None
    a_token = rig.daemon.gateway.tokens["a"]
    procs = [proc_env(pid) for pid in descendants(rt.handle.pid)]
    assert procs and all(REAL_KEY not in json.dumps(env) and REAL_KEY not in cmd for cmd, env in procs)
    harness = [env for cmd, env in procs if cmd.rstrip().endswith("-m hyperhive.harness")]
    claude = [env for cmd, env in procs if "_bundled/claude" in cmd]
    assert harness and claude, f"found no harness or claude among {[c for c, _ in procs]}"
    for env in harness + claude:
        assert env.get("ANTHROPIC_API_KEY") == a_token
    assert all(env["ANTHROPIC_BASE_URL"].startswith("http://127.0.0.1:") for env in claude)

    api_calls = [h for h in rig.seen if h["path"].startswith("/v1/")]
    assert api_calls and all(h.get("x-api-key") == REAL_KEY for h in api_calls), "the upstream gets the real key"
    tokens = list(rig.daemon.gateway.tokens.values())
    assert not any(t in json.dumps(h) for h in rig.seen for t in tokens), "no agent token reaches the upstream"

"""One claude turn through the Agent SDK and the REAL bundled claude CLI, against the offline
model (architecture §5, §10). Runs as root: permissions are explicit allow rules + dontAsk."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fakesock import FakeHive
from hyperhive.client import HiveClient
from hyperhive.harness.prompting import format_wake_prompt, load_system_prompt
from hyperhive.harness.tools import allowed_tool_names, build_hyperhive_server
from hyperhive.harness.turn import TurnResult, TurnRunner, TurnSpec, message_to_dict
from hyperhive.offline_model.server import OfflineModelServer

pytestmark = pytest.mark.e2e

TURN_BOUND = 90  # seconds: a CLI start plus a few model round trips, with room for a slow CI box


class CountingHive(FakeHive):
    """The fake core's socket: records and says ok; a send's (or approval's) id is the request's number."""

    def fields(self, request: dict[str, Any]) -> dict[str, Any]:
        n = len(self.requests)
        if request["cmd"] == "request_apply_commit":
            return {"approval": {"id": n, "kind": "apply_commit", "agent": request["agent"], "status": "pending"}}
        return {"id": n, "ids": [n], "recipients": 1} if request["cmd"] == "send" else super().fields(request)


@dataclass
class Rig:
    model: OfflineModelServer
    env: dict[str, str]
    cwd: Path
    runner: TurnRunner = field(default_factory=TurnRunner)
    messages: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    arrived: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def spec(self, body: str, **kw: Any) -> TurnSpec:
        return TurnSpec(prompt=format_wake_prompt(1, "operator", body), cwd=self.cwd, env=self.env,
                        system_prompt="you are a test agent", **kw)  # fmt: skip

    async def run(self, spec: TurnSpec) -> TurnResult:
        async with asyncio.timeout(TURN_BOUND):
            return await self.runner.run(spec, self.messages.append, self.notes.append)


async def make_rig(tmp_path: Path, model: OfflineModelServer, api_key: str = "dummy") -> Rig:
    home = tmp_path / "home"
    home.mkdir()
    env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": api_key, "HOME": str(home),
           "CLAUDE_CONFIG_DIR": str(home / ".claude")}  # fmt: skip
    return Rig(model=model, env=env, cwd=tmp_path)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with OfflineModelServer(on_request=queue.put_nowait) as model:
        built = await make_rig(tmp_path, model)
        built.arrived = queue
        yield built


def tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [b for m in messages if m["type"] == "user" and isinstance(m["content"], list)
            for b in m["content"] if b["type"] == "tool_result"]  # fmt: skip


async def test_a_text_turn_succeeds_with_a_session_and_usage(rig: Rig) -> None:
    """A wake prompt → the model's text; the result carries the session id and usage."""
    result = await rig.run(rig.spec("echo hello there", model="haiku"))
    assert result.ok, result.note
    assert result.text == "hello there"
    assert result.session_id and result.usage and result.usage["output_tokens"] > 0
    assert {"system", "assistant", "result"} <= {m["type"] for m in rig.messages}
    json.dumps(rig.messages)  # every message is JSON-ready
    turn_requests = [r for r in rig.model.requests if r["last_user_text"].startswith("[hyperhive]")]
    assert turn_requests and all("haiku" in r["model"] for r in turn_requests)


async def test_a_hyperhive_tool_round_trips_through_the_socket(rig: Rig, short_dir: Path) -> None:
    """`relay` → mcp__hyperhive__send runs in-process and reaches the (fake) core's socket."""
    async with CountingHive(short_dir / "mcp.sock") as hive, HiveClient(hive.path) as client:
        server = build_hyperhive_server(client, manager=False, nap=lambda s: None)
        spec = rig.spec("relay hello bob to bob", mcp_server=server, mcp_tools=allowed_tool_names(manager=False))
        result = await rig.run(spec)
    assert result.ok, result.note
    assert hive.requests == [{"cmd": "send", "to": "bob", "body": "hello bob"}]
    assert result.text.endswith("relayed.")
    offered = next(r["tools"] for r in rig.model.requests if r["last_user_text"].startswith("[hyperhive]"))
    assert "mcp__hyperhive__send" in offered  # listed, not deferred behind tool search
    assert "WebFetch" not in offered and "Task" not in offered


async def test_bash_inside_the_pattern_runs_and_outside_is_denied(rig: Rig) -> None:
    """`Bash(echo *)` allows `echo hi`; `ls /` is denied (dontAsk), and the denial is in the stream."""
    allowed = await rig.run(rig.spec("bash echo hi-from-bash", bash_patterns=["echo *"]))
    assert allowed.ok and allowed.text == "bash: hi-from-bash"
    rig.messages.clear()
    denied = await rig.run(rig.spec("bash ls /", bash_patterns=["echo *"]))
    assert denied.ok  # the turn itself completes; the tool call was refused
    (result,) = tool_results(rig.messages)
    assert result["is_error"] and "denied" in str(result["content"])
    assert any(m["type"] == "system" and m.get("subtype") == "permission_denied" for m in rig.messages)


async def test_the_managers_configure_script_commits_and_requests_the_apply(
    rig: Rig, short_dir: Path, tmp_path: Path
) -> None:
    """The manager flow (architecture §7) through the real CLI: Bash under `git *`/`python3 *` edits and
    commits agent.toml, then mcp__hyperhive__request_apply_commit carries the new sha."""
    repo = tmp_path / "agents" / "iris" / "config"
    repo.mkdir(parents=True)
    (repo / "agent.toml").write_text('model = "opus"\n', encoding="utf-8")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "seed"]):
        subprocess.run([*git, *args], check=True, env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_GLOBAL": "/dev/null"})
    work = tmp_path / "state"
    work.mkdir()
    async with CountingHive(short_dir / "mcp.sock") as hive, HiveClient(hive.path) as client:
        spec = rig.spec(
            'configure iris model="haiku"',
            bash_patterns=["git *", "python3 *"],
            mcp_server=build_hyperhive_server(client, manager=True, nap=lambda s: None),
            mcp_tools=allowed_tool_names(manager=True),
        )
        spec.cwd = work
        spec.system_prompt = load_system_prompt("manager", manager=True, agents_dir=str(tmp_path / "agents"))
        result = await rig.run(spec)
    assert result.ok, result.note
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert hive.requests == [
        {"cmd": "request_apply_commit", "agent": "iris", "commit_ref": head.stdout.strip(),
         "description": 'set model = "haiku"'},
    ]  # fmt: skip
    assert (repo / "agent.toml").read_text(encoding="utf-8") == 'model = "haiku"\n'


async def test_no_bash_patterns_means_no_bash_tool(rig: Rig) -> None:
    """Without patterns Bash is not offered at all."""
    result = await rig.run(rig.spec("echo x"))
    assert result.ok
    offered = next(r["tools"] for r in rig.model.requests if r["last_user_text"].startswith("[hyperhive]"))
    assert "Bash" not in offered and {"Read", "Edit", "Write", "Glob", "Grep"} <= set(offered)


async def test_cancel_interrupts_a_slow_turn(rig: Rig) -> None:
    """cancel() during a reply streamed over 30 s ends the turn as cancelled, well inside the bound."""
    turn = asyncio.create_task(rig.runner.run(rig.spec("slow 30"), rig.messages.append, rig.notes.append))
    async with asyncio.timeout(20):  # far less than the 30 s the reply takes
        while not (await rig.arrived.get())["last_user_text"].endswith("slow 30"):
            pass
        assert await rig.runner.cancel()
        result = await turn
    assert result.cancelled and not result.ok
    assert not rig.runner.busy
    assert await rig.runner.cancel() is False  # nothing left to cancel


async def test_resume_keeps_the_session(rig: Rig) -> None:
    """A second turn resumed from the first's session id sends the first turn's history."""
    first = await rig.run(rig.spec("echo remember the walrus"))
    assert first.ok and first.session_id
    second = await rig.run(rig.spec("echo again", resume_session=first.session_id))
    assert second.ok and second.session_id == first.session_id
    last = [r for r in rig.model.requests if r["last_user_text"].endswith("echo again")][-1]
    assert any("remember the walrus" in text for text in last["user_texts"])


async def test_compact_summarises_the_session_and_it_resumes(rig: Rig) -> None:
    """compact() runs /compact on the session; the next turn resumes it."""
    first = await rig.run(rig.spec("echo before compaction"))
    assert first.ok and first.session_id
    async with asyncio.timeout(TURN_BOUND):
        compacted = await rig.runner.compact(rig.spec(""), first.session_id, rig.messages.append, rig.notes.append)
    assert compacted.ok, compacted.note
    assert any(m.get("subtype") == "compact_boundary" for m in rig.messages)
    after = await rig.run(rig.spec("echo after", resume_session=compacted.session_id))
    assert after.ok and after.text == "after"


async def test_an_auth_failure_is_reported_not_raised(tmp_path: Path) -> None:
    """A 401 from the API → auth_failed, not ok, promptly (the CLI's 10 retries are cut short)."""
    async with OfflineModelServer(api_key="the-right-key") as model:
        rig = await make_rig(tmp_path, model, api_key="a-wrong-key")
        result = await rig.run(rig.spec("echo x"))
    assert result.auth_failed and not result.ok and not result.cancelled
    assert "not logged in" in result.note


def test_message_to_dict_types_messages_and_blocks() -> None:
    """SDK dataclasses become dicts with a `type` on the message and on each content block."""
    from claude_agent_sdk import AssistantMessage, TextBlock, ToolUseBlock

    message = AssistantMessage(content=[TextBlock("hi"), ToolUseBlock("t1", "Bash", {"command": "ls"})], model="m")
    data = message_to_dict(message)
    assert data["type"] == "assistant"
    assert data["content"] == [
        {"type": "text", "text": "hi"},
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
    ]
    json.dumps(data)


def _cmdlines() -> dict[int, str]:
    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
    return out


async def test_the_system_prompt_reaches_the_model_but_never_a_command_line(tmp_path: Path) -> None:
    """Every local user can read /proc/<pid>/cmdline (`ps`): the system prompt (instructions
    included) goes to the claude CLI as a sealed memfd behind --system-prompt-file (issue 9)."""
    marker = "PRIVATE-INSTRUCTIONS-7f3a9c"
    seen: list[dict[int, str]] = []

    def on_request(entry: dict[str, Any]) -> None:  # the CLI is alive, waiting for this answer
        seen.append(_cmdlines())

    async with OfflineModelServer(on_request=on_request) as model:
        rig = await make_rig(tmp_path, model)
        spec = rig.spec("echo hi")
        spec.system_prompt = f"you are a test agent. {marker}"
        result = await rig.run(spec)
        assert result.ok, result.note
        assert any(marker in r["system"] for r in model.requests)  # it did reach the model
    assert seen
    for snapshot in seen:
        clis = [c for c in snapshot.values() if "--system-prompt-file /proc/" in c]
        assert clis, "the claude CLI was not found among the processes"
        assert not [c for c in snapshot.values() if marker in c]

"""The offline model's script (architecture §10): pure request → answer, tested without HTTP."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hyperhive.harness.prompting import format_wake_prompt, load_system_prompt, parse_wake_prompt
from hyperhive.offline_model.policy import LABEL, SUMMARY_MARKER, TURN_CAP, configure_command, decide

SHA = "0123456789abcdef0123456789abcdef01234567"


def wake(body: str, sender: str = "operator", msg_id: int = 7, **kw: Any) -> dict[str, Any]:
    return {"role": "user", "content": format_wake_prompt(msg_id, sender, body, **kw)}


def request(*messages: dict[str, Any], model: str = "claude-test") -> dict[str, Any]:
    return {"model": model, "messages": list(messages), "stream": True}


def play(first: dict[str, Any], results: list[str], *, errors: bool = False) -> list[Any]:
    """Drive a turn: answer each tool_use with the next canned result; return every decision."""
    messages = [first]
    decisions = []
    for _ in range(TURN_CAP + 2):
        decision = decide(request(*messages))
        decisions.append(decision)
        if decision.stop_reason != "tool_use":
            return decisions
        messages.append({"role": "assistant", "content": decision.blocks})
        tool = next(b for b in decision.blocks if b["type"] == "tool_use")
        text = results.pop(0) if results else "ok"
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": text, "is_error": errors}],
            }  # fmt: skip
        )
    raise AssertionError("the turn never ended")


def tool_uses(decisions: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(b["name"], b["input"]) for d in decisions for b in d.blocks if b["type"] == "tool_use"]


def final_text(decisions: list[Any]) -> str:
    return "".join(b["text"] for b in decisions[-1].blocks if b["type"] == "text")


# ---- the wake prompt ----------------------------------------------------------------------


def test_wake_prompt_has_the_documented_format() -> None:
    """The wake prompt's exact text, with the pending hint and the redelivery banner (architecture §4–5)."""
    assert format_wake_prompt(12, "operator", "hi", unread=3, redelivered=True) == (
        "[hyperhive] message 12 from operator (3 more pending: drain them with mcp__hyperhive__recv)\n"
        "[redelivered after harness restart — may already be handled]\n---\nhi"
    )
    assert format_wake_prompt(1, "iris", "x") == "[hyperhive] message 1 from iris\n---\nx"


@pytest.mark.parametrize("unread", [0, 4])
@pytest.mark.parametrize("redelivered", [False, True])
@pytest.mark.parametrize("body", ["plain", "two\n---\nlines", ""])
def test_wake_prompt_round_trips(unread: int, redelivered: bool, body: str) -> None:
    """parse_wake_prompt inverts format_wake_prompt, bodies with separators included."""
    parsed = parse_wake_prompt(format_wake_prompt(5, "bob", body, unread, redelivered))
    assert parsed is not None
    assert (parsed.msg_id, parsed.sender, parsed.body, parsed.unread, parsed.redelivered) == (
        5, "bob", body, unread, redelivered,
    )  # fmt: skip


def test_text_that_is_not_a_wake_prompt_does_not_parse() -> None:
    """Arbitrary text (a compaction request, a title request) is not mistaken for a wake prompt."""
    assert parse_wake_prompt("hello") is None
    assert parse_wake_prompt("<session>\n[hyperhive] message 1 from a\n---\nx\n</session>") is None


# ---- scripts ------------------------------------------------------------------------------


def test_system_sender_is_only_noted() -> None:
    """Helper events from `system` get "noted." and no tool call."""
    decisions = play(wake('{"event": "spawned"}', sender="system"), [])
    assert tool_uses(decisions) == [] and final_text(decisions) == "noted."


def test_relay_sends_the_payload_then_says_relayed() -> None:
    """`relay X to B` → mcp__hyperhive__send {to: B, body: X}, then "relayed."."""
    decisions = play(wake("relay hello to you to bob"), ["sent"])
    assert tool_uses(decisions) == [("mcp__hyperhive__send", {"to": "bob", "body": "hello to you"})]
    assert final_text(decisions) == "relayed."


def test_reply_answers_the_sender_in_reply_to_the_message() -> None:
    """`reply T` → send {to: sender, body: T, in_reply_to: msg id}."""
    decisions = play(wake("Reply all good", sender="iris", msg_id=42), ["sent"])
    assert tool_uses(decisions) == [("mcp__hyperhive__send", {"to": "iris", "body": "all good", "in_reply_to": 42})]


def test_bash_runs_then_summarises_the_result() -> None:
    """`bash CMD` → Bash {command, description}, then text with the result's first 200 chars."""
    decisions = play(wake("bash echo hi"), ["hi" + "x" * 500])
    ((name, tool_input),) = tool_uses(decisions)
    assert name == "Bash" and tool_input["command"] == "echo hi" and tool_input["description"]
    text = final_text(decisions)
    assert text.startswith("bash: hix") and len(text) < 220


def test_a_denied_bash_is_reported_as_failed() -> None:
    """An error tool_result (a permission denial) shows up in the closing text."""
    decisions = play(wake("bash rm -rf /"), ["Permission to use Bash has been denied"], errors=True)
    assert final_text(decisions).startswith("bash failed: Permission to use Bash has been denied")


def test_write_and_edit_use_the_file_tools() -> None:
    """`write P C` → Write; `edit P old => new` → Edit."""
    assert tool_uses(play(wake("write /state/a.txt hello world"), ["ok"])) == [
        ("Write", {"file_path": "/state/a.txt", "content": "hello world"})
    ]
    assert tool_uses(play(wake("edit /state/a.txt hello => bye now"), ["ok"])) == [
        ("Edit", {"file_path": "/state/a.txt", "old_string": "hello", "new_string": "bye now"})
    ]


def test_nap_calls_the_nap_tool() -> None:
    assert tool_uses(play(wake("nap 30"), ["ok"])) == [("mcp__hyperhive__nap", {"seconds": 30})]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("ask which colour?", {"question": "which colour?"}),
        (
            "ask which colour? options red|blue | green",
            {"question": "which colour?", "options": ["red", "blue", "green"]},
        ),
        ("ask iris: are you done?", {"to": "iris", "question": "are you done?"}),
    ],
)
def test_ask_builds_question_options_and_recipient(body: str, expected: dict[str, Any]) -> None:
    """`ask Q [? options a|b|c]` and `ask agent: Q` → mcp__hyperhive__ask."""
    assert tool_uses(play(wake(body), ["question 3"])) == [("mcp__hyperhive__ask", expected)]


def test_answer_calls_the_answer_tool() -> None:
    assert tool_uses(play(wake("answer 9 blue it is"), ["ok"])) == [
        ("mcp__hyperhive__answer", {"id": 9, "answer": "blue it is"})
    ]


def test_slow_streams_with_a_delay_and_no_tools() -> None:
    """`slow N` asks the server to spread a labelled text over N seconds."""
    decision = decide(request(wake("slow 30")))
    assert decision.delay == 30 and decision.stop_reason == "end_turn"
    assert LABEL in decision.blocks[0]["text"]


def test_echo_and_model_question_answer_in_text() -> None:
    """`echo T` → T; `model?` → the request's model field."""
    assert final_text([decide(request(wake("echo  hi there")))]) == "hi there"
    assert final_text([decide(request(wake("model?"), model="claude-haiku-x"))]) == "model=claude-haiku-x"


@pytest.mark.parametrize(
    ("body", "tool", "tool_input"),
    [
        ("spawn iris", "request_spawn", {"name": "iris"}),
        ("init config iris", "request_init_config", {"name": "iris"}),
        ("kill iris", "kill", {"name": "iris"}),
        ("start iris", "start", {"name": "iris"}),
        ("restart iris", "restart", {"name": "iris"}),
        ("update iris", "update", {"name": "iris"}),
    ],
)
def test_manager_verbs_map_to_their_tools(body: str, tool: str, tool_input: dict[str, Any]) -> None:
    decisions = play(wake(body), ["ok"])
    assert tool_uses(decisions) == [(f"mcp__hyperhive__{tool}", tool_input)]
    assert decisions[-1].stop_reason == "end_turn"


def test_configure_commits_then_asks_to_apply_the_sha_from_the_bash_output() -> None:
    """`configure N k=v` → Bash (edit + commit + rev-parse), then request_apply_commit with the sha."""
    decisions = play(wake('configure iris model="haiku"'), [f"{SHA}\n", "proposal 4"])
    (bash, bash_input), (apply, apply_input) = tool_uses(decisions)
    assert bash == "Bash"
    assert "/agents/iris/config/agent.toml" in bash_input["command"]
    assert bash_input["command"].endswith("git -C /agents/iris/config rev-parse HEAD")
    assert apply == "mcp__hyperhive__request_apply_commit"
    assert apply_input["agent"] == "iris" and apply_input["commit_ref"] == SHA
    assert decisions[-1].stop_reason == "end_turn"


def test_configure_uses_the_agents_dir_named_in_the_managers_prompt() -> None:
    """The repo path comes from the manager's system prompt (HYPERHIVE_AGENTS_DIR in the cage)."""
    prompt = load_system_prompt("manager", manager=True, agents_dir="/srv/hive/agents")
    decision = decide(
        {"model": "m", "system": [{"type": "text", "text": prompt}], "messages": [wake("configure iris a=1")]}
    )
    assert "git -C /srv/hive/agents/iris/config rev-parse" in decision.blocks[0]["input"]["command"]


def test_configure_without_a_sha_in_the_output_stops_with_the_error() -> None:
    decisions = play(wake("configure iris model=1"), ["fatal: not a git repository"], errors=True)
    assert [n for n, _ in tool_uses(decisions)] == ["Bash"]
    assert "failed" in final_text(decisions)


def test_configure_command_edits_agent_toml_and_commits(tmp_path: Path) -> None:
    """The configure one-liner replaces a top-level key, adds a missing one before any table,
    commits, and prints the new sha (run for real with bash, python3 and git)."""
    repo = tmp_path / "iris" / "config"
    repo.mkdir(parents=True)
    (repo / "agent.toml").write_text('description = "x"\nmodel = "opus"\n\n[env]\nmodel = "keep"\n', encoding="utf-8")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "seed"], cwd=repo, check=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_CONFIG_GLOBAL": "/dev/null"}
    for key, value in (("model", '"haiku"'), ("bash", '["git *"]')):
        out = subprocess.run(
            ["bash", "-c", configure_command("iris", key, value, str(tmp_path))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert re.fullmatch(r"[0-9a-f]{40}\n", out.stdout)
    assert (repo / "agent.toml").read_text(encoding="utf-8") == (
        'description = "x"\nmodel = "haiku"\n\nbash = ["git *"]\n[env]\nmodel = "keep"\n'
    )
    assert shlex.split(configure_command("iris", "k", "'v'"))  # quotes survive


def test_anything_else_is_forwarded_to_the_operator() -> None:
    """An unscripted body from an agent → send to operator "<sender> said: <body>", then "done."."""
    decisions = play(wake("the build is green", sender="iris"), ["sent"])
    assert tool_uses(decisions) == [
        ("mcp__hyperhive__send", {"to": "operator", "body": "iris said: the build is green"})
    ]
    assert final_text(decisions) == "done."


# ---- the turn's mechanics -----------------------------------------------------------------


def test_every_tool_use_id_is_unique() -> None:
    """Repeated tool calls never reuse an id (the CLI loops on duplicates)."""
    ids = {
        b["id"] for _ in range(50) for b in decide(request(wake("relay x to bob"))).blocks if b["type"] == "tool_use"
    }
    assert len(ids) == 50


def test_turn_cap_stops_tool_calls() -> None:
    """With 8 tool calls already in the turn the answer is "turn cap reached" and no tool."""
    messages: list[dict[str, Any]] = [wake("bash true")]
    for i in range(TURN_CAP):
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": {}}],
            }
        )
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": ""}]})
    decision = decide(request(*messages))
    assert decision.stop_reason == "end_turn"
    assert [b["text"] for b in decision.blocks] == ["turn cap reached"]


def test_only_the_current_turn_counts_toward_the_cap_and_the_script() -> None:
    """A new wake message starts a new turn: earlier turns' tool calls are history."""
    old: list[dict[str, Any]] = [wake("bash true", msg_id=1)]
    for i in range(TURN_CAP):
        old.append(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": {}}],
            }
        )
        old.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "content": ""}]})
    old.append({"role": "assistant", "content": [{"type": "text", "text": "turn cap reached"}]})
    decision = decide(request(*old, wake("relay hi to bob", msg_id=2)))
    assert [b["name"] for b in decision.blocks if b["type"] == "tool_use"] == ["mcp__hyperhive__send"]


def test_system_entries_and_block_content_are_read() -> None:
    """`role: system` entries are skipped and list content with reminder blocks is understood."""
    prompt = format_wake_prompt(3, "operator", "echo ok")
    decision = decide(
        request(
            {"role": "system", "content": "you are helpful"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>x</system-reminder>"},
                    {"type": "text", "text": prompt},
                ],
            },  # fmt: skip
        )
    )
    assert decision.blocks == [{"type": "text", "text": "ok"}]


def test_a_tool_result_outside_the_script_gets_a_short_closing_text() -> None:
    """After a tool the script did not ask for, the model finishes with text."""
    messages = [
        wake("echo hi"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "x", "name": "Read", "input": {}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "x", "content": [{"type": "text", "text": "file"}]}],
        },
    ]
    decision = decide(request(*messages))
    assert decision.stop_reason == "end_turn" and "file" in decision.blocks[0]["text"]


def test_a_request_without_a_wake_prompt_gets_a_labelled_summary() -> None:
    """Compaction and title requests get labelled text that marks the session as summarised."""
    text = decide(request({"role": "user", "content": "Summarise the conversation"})).blocks[0]["text"]
    assert SUMMARY_MARKER in text and LABEL in text


def test_overflow_fails_until_the_session_is_compacted() -> None:
    """`overflow` stands in for a too-long prompt: a 400 until a summary is in the history."""
    decision = decide(request(wake("overflow x")))
    assert decision.error is not None and "prompt is too long" in decision.error[2]
    after = decide(request({"role": "user", "content": f"summary: {SUMMARY_MARKER}"}, wake("overflow x")))
    assert after.error is None and after.blocks[0]["text"] == "after compaction: x"

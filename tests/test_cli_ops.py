"""A command line with no dead ends (issue 15): kept state, revive and purge from the shell,
confirmation before a purge, `hive config show|edit` through the real deploy path, empty results
that say so, readable events, and bad input refused with one line. Real daemon, real process
cages, real git; click's CliRunner in a worker thread (its stdin is not a terminal)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hyperhive.cli import main
from hyperhive.core.daemon import Daemon
from hyperhive.eventtext import format_event

NO_MODEL = {"ANTHROPIC_BASE_URL": "http://127.0.0.1:9", "ANTHROPIC_API_KEY": "none"}


async def cli(daemon: Daemon | Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    run_dir = daemon if isinstance(daemon, Path) else daemon.paths.run_dir
    argv = [*args, "--run-dir", str(run_dir)]
    async with asyncio.timeout(240):
        return await asyncio.to_thread(CliRunner().invoke, main, argv, input=input, env=env)


def ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stderr or result.output}"
    return result.stdout


def failed(result: Result) -> str:
    """Non-zero exit, one `hive: …` line on stderr (after whatever it showed on stdout)."""
    assert result.exit_code != 0, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hive: "), result.stderr
    return lines[0]


async def wait_listed(daemon: Daemon, name: str, harness: bool = False) -> dict[str, Any]:
    """Poll `hive list --json` (bounded) until `name` runs (and, with harness, reported in)."""
    async with asyncio.timeout(60):
        while True:
            row = {a["name"]: a for a in json.loads(ok(await cli(daemon, "list", "--json")))["agents"]}.get(name)
            if row and row["state"] == "running" and (not harness or row["harness_state"] not in (None, "starting")):
                return row
            await asyncio.sleep(0.2)


# ---- kept state --------------------------------------------------------------------------------


async def test_kept_revive_and_purge_from_the_command_line(hive: Daemon) -> None:
    """destroy keeps state; `kept` lists it; `revive` queues the same approval the dashboard
    does; `spawn` of a kept name says it revives; `purge` asks (needs --yes without a terminal)."""
    assert ok(await cli(hive, "kept")).startswith("no kept state")
    ok(await cli(hive, "spawn", "a"))
    ok(await cli(hive, "destroy", "a"))
    listed = ok(await cli(hive, "kept"))
    assert listed.splitlines()[0].split() == ["NAME", "SIZE", "DESTROYED", "CREDENTIALS"]
    assert listed.splitlines()[1].startswith("a ")
    assert [k["name"] for k in json.loads(ok(await cli(hive, "kept", "--json")))["kept"]] == ["a"]

    out = ok(await cli(hive, "revive", "a"))
    aid = int(out.split()[0].lstrip("#"))
    assert out.strip() == f"#{aid} revive of a waits for approval: hive approve {aid}"
    assert f"#{aid} spawn" in ok(await cli(hive, "pending"))
    assert "already pending" in failed(await cli(hive, "revive", "a"))
    ok(await cli(hive, "deny", str(aid)))

    assert ok(await cli(hive, "spawn", "a")).splitlines() == [
        "a: reviving its kept state (config, notes and credentials reused)", "a: running"]  # fmt: skip
    assert "is live" in failed(await cli(hive, "revive", "a"))
    assert "is live" in failed(await cli(hive, "purge", "a", "--yes"))
    ok(await cli(hive, "destroy", "a"))

    assert "pass --yes" in failed(await cli(hive, "purge", "a"))
    assert "a" in ok(await cli(hive, "kept"))  # nothing was purged without the confirmation
    assert ok(await cli(hive, "purge", "a", "--yes")) == "a: purged\n"
    assert ok(await cli(hive, "kept")).startswith("no kept state")
    assert not hive.paths.agent("a").root.exists()


@pytest.mark.parametrize(("verb", "name", "expected"), [
    ("revive", "ghost", "no kept state for 'ghost'"),
    ("purge", "ghost", "no kept state for 'ghost'"),
    ("revive", "Bad", "not a valid agent name"),
    ("purge", "a/b", "not a valid agent name"),
    ("revive", "manager", "no kept state for 'manager'"),
])  # fmt: skip
async def test_kept_verbs_refuse_bad_input_with_one_line(hive: Daemon, verb: str, name: str, expected: str) -> None:
    assert expected in failed(await cli(hive, verb, name, *(["--yes"] if verb == "purge" else [])))


async def test_destroy_purge_asks_and_scripts_pass_yes(hive: Daemon) -> None:
    """Without a terminal, `destroy --purge` refuses unless --yes; the agent is untouched."""
    ok(await cli(hive, "spawn", "b"))
    assert "pass --yes" in failed(await cli(hive, "destroy", "b", "--purge"))
    assert "b" in {a["name"] for a in json.loads(ok(await cli(hive, "list", "--json")))["agents"]}
    assert ok(await cli(hive, "destroy", "b", "--purge", "--yes")) == "b: destroyed and purged\n"


# ---- empty results, send, events, no daemon -------------------------------------------------------


async def test_empty_results_say_so(hive: Daemon) -> None:
    assert ok(await cli(hive, "pending")) == "nothing waits for approval\n"
    assert ok(await cli(hive, "inbox")) == "the operator's inbox is empty\n"
    assert ok(await cli(hive, "questions")) == "no questions wait for an answer\n"
    assert ok(await cli(hive, "list")).startswith("no agents")
    assert json.loads(ok(await cli(hive, "pending", "--json"))) == {"approvals": []}


@pytest.mark.parametrize("body", ["", "   ", "-"])
async def test_an_empty_message_is_refused(hive: Daemon, body: str) -> None:
    assert failed(await cli(hive, "send", "operator", body, input="\n")) == "hive: refusing to send an empty message"
    assert json.loads(ok(await cli(hive, "inbox", "--json"))) == {"messages": []}


async def test_events_are_readable_text_by_default_and_json_on_request(hive: Daemon) -> None:
    """`hive events NAME` renders like the agent page (no raw JSON); --json is one document."""
    ok(await cli(hive, "spawn", "c"))
    async with asyncio.timeout(60):
        while not (doc := json.loads(ok(await cli(hive, "events", "c", "--json"))))["events"]:
            await asyncio.sleep(0.2)
    text = ok(await cli(hive, "events", "c"))
    assert text.strip() and not any(line.lstrip().startswith("{") for line in text.splitlines())
    assert all(line.split()[0].isdigit() for line in text.splitlines())
    assert isinstance(doc["events"][0]["id"], int)
    assert "no agent named 'ghost'" in failed(await cli(hive, "events", "ghost"))


def test_format_event_renders_each_kind_as_the_page_does() -> None:
    ev = {"id": 7, "ts": 0, "kind": "turn_start", "payload": {"from": "bob", "id": 3, "body": "hi\x1b[2Jthere\nyou"}}
    (line,) = format_event(ev)
    assert line.endswith("▶ bob #3: hi[2Jthere you") and "\x1b" not in line
    tool = {"type": "assistant", "content": [{"type": "tool_use", "name": "mcp__hyperhive__send",
                                               "input": {"to": "ann", "body": "done"}}]}  # fmt: skip
    assert format_event({"id": 8, "ts": 0, "kind": "stream", "payload": tool})[0].endswith("send → ann: done")
    end = {"ok": False, "duration_ms": 1500, "note": "model refused"}
    assert format_event({"id": 9, "ts": 0, "kind": "turn_end", "payload": end})[0].endswith(
        "✗ turn failed · 1.5 s · model refused"
    )
    assert format_event({"id": 10, "ts": 0, "kind": "stream", "payload": {"type": "stream_event"}}) == []


async def test_a_client_without_a_daemon_names_the_run_dir_and_how_to_point_elsewhere(short_dir: Path) -> None:
    line = failed(await cli(short_dir, "kept"))
    assert str(short_dir / "host.sock") in line and "--run-dir" in line and "HYPERHIVE_RUN_DIR" in line


def test_demo_with_a_bad_agent_name_fails_before_starting_anything(tmp_path: Path) -> None:
    state, run = tmp_path / "state", tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "hyperhive", "demo", "--agents", "Alice,bob", "--port", "0",
         "--state-dir", str(state), "--run-dir", str(run)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["hive: 'Alice' is not a valid agent name (want ^[a-z][a-z0-9-]{0,30}$)"]
    assert not state.exists() and not run.exists()


# ---- config show / edit -------------------------------------------------------------------------


def kept_edit(line: str) -> Path:
    """The agent.toml of the operator's edit a failed `config edit` left on disk (its error line
    names the directory)."""
    path = Path(line.rsplit("your edit is at ", 1)[1].rstrip(")"))
    assert path.name.startswith("hive-config-") and oct(path.stat().st_mode & 0o777) == "0o700"
    return path / "agent.toml"


def editor(tmp_path: Path, body: str) -> dict[str, str]:
    """$EDITOR as a real program: a python script whose body edits the file at `path`."""
    script = tmp_path / f"editor{abs(hash(body))}.py"
    script.write_text(f"import sys\nfrom pathlib import Path\npath = Path(sys.argv[1])\n{body}\n", encoding="utf-8")
    return {"EDITOR": f"{sys.executable} {script}", "VISUAL": ""}


@pytest.fixture
async def agent_d(hive: Daemon) -> Daemon:
    ok(await cli(hive, "spawn", "d"))
    await wait_listed(hive, "d", harness=True)
    return hive


async def test_config_show_prints_the_applied_agent_toml(agent_d: Daemon) -> None:
    shown = await cli(agent_d, "config", "show", "d")
    assert ok(shown).startswith("# d's configuration") and "applied main" in shown.stderr
    doc = json.loads(ok(await cli(agent_d, "config", "show", "d", "--json")))
    assert doc["name"] == "d" and len(doc["sha"]) == 40 and "model =" in doc["agent_toml"]
    assert "no agent named 'ghost'" in failed(await cli(agent_d, "config", "show", "ghost"))
    assert "not a valid agent name" in failed(await cli(agent_d, "config", "show", "D!"))


async def test_config_edit_applies_through_the_deploy_path_with_an_operator_tag(
    agent_d: Daemon, tmp_path: Path
) -> None:
    hive = agent_d
    pid = (await wait_listed(hive, "d"))["pid"]
    change = editor(tmp_path, "path.write_text(path.read_text().replace('network = \"host\"', 'network = \"none\"'))")
    line = failed(await cli(hive, "config", "edit", "d", env=change))
    assert "pass --yes" in line
    assert 'network = "none"' in kept_edit(line).read_text()
    shutil.rmtree(kept_edit(line).parent)
    out = ok(await cli(hive, "config", "edit", "d", "--yes", env=change))
    assert '-network = "host"' in out and '+network = "none"' in out
    aid = int(out.splitlines()[-1].split()[0].lstrip("#"))
    assert out.splitlines()[-1] == f"#{aid} deployed (operator/{aid}): d runs the new config"
    assert 'network = "none"' in ok(await cli(hive, "config", "show", "d"))
    assert hive.services is not None and hive.services.lifecycle.agent_config("d").network == "none"
    assert (await wait_listed(hive, "d"))["pid"] != pid  # restarted on the new config
    applied = hive.paths.agent("d").applied
    tags = subprocess.run(["git", "-C", str(applied), "tag", "--list"], capture_output=True, text=True, timeout=30)
    assert {f"operator/{aid}", f"deployed/{aid}"} <= set(tags.stdout.split())
    approval = next(a for a in (await hive.services.approvals.recent()) if a["id"] == aid)
    assert approval["requested_by"] == "operator" and approval["status"] == "deployed"


async def test_config_edit_refuses_bad_edits_and_applies_nothing(agent_d: Daemon, tmp_path: Path) -> None:
    hive = agent_d
    before = json.loads(ok(await cli(hive, "config", "show", "d", "--json")))
    line = failed(await cli(hive, "config", "edit", "d", "--yes", env=editor(tmp_path, "sys.exit(3)")))
    assert line == "hive: the editor exited with status 3; nothing applied"
    assert ok(await cli(hive, "config", "edit", "d", "--yes", env=editor(tmp_path, "pass"))) == (
        "d: agent.toml, instructions.md unchanged; nothing applied\n"
    )
    bad = editor(tmp_path, "path.write_text('colour = 1\\n' + path.read_text())")
    line = failed(await cli(hive, "config", "edit", "d", "--yes", env=bad))
    assert "`colour`: is not a known field" in line and "nothing applied" in line
    kept = kept_edit(line)
    assert kept.read_text().startswith("colour = 1\n") and oct(kept.stat().st_mode & 0o777) == "0o600"
    shutil.rmtree(kept.parent)
    missing = editor(tmp_path, "path.write_text(path.read_text().replace('instructions = ', 'instructions = \"x\" #'))")
    line = failed(await cli(hive, "config", "edit", "d", "--yes", env=missing))
    assert "not a file in the commit" in line
    shutil.rmtree(kept_edit(line).parent)
    assert json.loads(ok(await cli(hive, "config", "show", "d", "--json")))["sha"] == before["sha"]
    for args, expected in ((["ghost"], "no agent named 'ghost'"), (["Bad"], "not a valid agent name")):
        assert expected in failed(await cli(hive, "config", "edit", *args, "--yes", env=editor(tmp_path, "pass")))


async def on_a_terminal(daemon: Daemon, *args: str, answer: str) -> tuple[int, str]:
    """`hive ARGS` with a pseudo-terminal as stdin (so it asks), answering `answer`."""
    master, slave = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hyperhive", *args, "--run-dir", str(daemon.paths.run_dir),
            stdin=slave, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        os.write(master, answer.encode() + b"\n")
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    finally:
        os.close(master)
        os.close(slave)
    return proc.returncode or 0, out.decode() + err.decode()


async def test_destroy_purge_and_purge_ask_on_a_terminal(hive: Daemon) -> None:
    """On a terminal the question is asked: "n" changes nothing, "y" purges."""
    ok(await cli(hive, "spawn", "e"))
    code, text = await on_a_terminal(hive, "destroy", "e", "--purge", answer="n")
    assert code != 0 and "purge its state, config and credentials for good? [y/N]" in text and "cancelled" in text
    assert "e" in {a["name"] for a in json.loads(ok(await cli(hive, "list", "--json")))["agents"]}
    code, text = await on_a_terminal(hive, "destroy", "e", "--purge", answer="y")
    assert code == 0 and "e: destroyed and purged" in text, text
    ok(await cli(hive, "spawn", "f"))
    ok(await cli(hive, "destroy", "f"))
    code, text = await on_a_terminal(hive, "purge", "f", answer="n")
    assert code != 0 and "cancelled" in text
    code, text = await on_a_terminal(hive, "purge", "f", answer="y")
    assert code == 0 and "f: purged" in text, text


async def test_config_edit_opens_the_instructions_too_and_applies_both(agent_d: Daemon, tmp_path: Path) -> None:
    """$EDITOR gets agent.toml and the instructions file it names; a change to the instructions
    alone is one operator/<id> commit, deployed; the agent's config reads the new text."""
    hive = agent_d
    shown = json.loads(ok(await cli(hive, "config", "show", "d", "--json")))
    assert shown["instructions_path"] == "instructions.md" and shown["instructions"].startswith("# d")
    body = "ins = Path(sys.argv[2])\nassert ins.name == 'instructions.md'\nins.write_text(ins.read_text() + 'Be terse.\\n')"
    out = ok(await cli(hive, "config", "edit", "d", "--yes", env=editor(tmp_path, body)))
    assert "+++ b/instructions.md" in out and "+Be terse." in out and "agent.toml" not in out.split("+++")[0]
    assert re.fullmatch(r"#(\d+) deployed \(operator/\1\): d runs the new config", out.splitlines()[-1]), out
    after = json.loads(ok(await cli(hive, "config", "show", "d", "--json")))
    assert after["instructions"].endswith("Be terse.\n") and after["agent_toml"] == shown["agent_toml"]
    assert hive.services is not None
    instructions = await hive.services.read_instructions("d", hive.services.lifecycle.agent_config("d"))
    assert instructions.endswith("Be terse.\n")

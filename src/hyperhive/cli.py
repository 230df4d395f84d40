"""The `hive` command line (architecture §12, a contract). Commands parse, call, print; this is the
only module that exits the process. `--json` prints exactly one JSON document on stdout."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import click

from hyperhive.cages import CageChoice
from hyperhive.cli_common import (
    EXIT_ERROR,
    F,
    _age,
    _call,
    _client,
    _print_json,
    confirm_or_fail,
    handle_errors,
    json_option,
    run_dir_option,
)
from hyperhive.config import load_config, parse_env_pairs
from hyperhive.errors import HiveError
from hyperhive.eventtext import format_event
from hyperhive.logsetup import FORMATS as LOG_FORMATS
from hyperhive.logsetup import LEVELS as LOG_LEVELS
from hyperhive.logsetup import output_is_journal, say
from hyperhive.names import validate_agent_name

__all__ = ["main"]

CAGE_CHOICES = list(get_args(CageChoice))


def serve_options(fn: F) -> F:
    options = [
        click.option("--state-dir", type=click.Path(path_type=Path), envvar="HYPERHIVE_STATE_DIR",
                     help="Durable state directory [env HYPERHIVE_STATE_DIR]."),
        click.option("--run-dir", type=click.Path(path_type=Path), envvar="HYPERHIVE_RUN_DIR",
                     help="Socket directory [env HYPERHIVE_RUN_DIR]."),
        click.option("--host", envvar="HYPERHIVE_HOST", help="Dashboard address (default 127.0.0.1)."),
        click.option("--port", type=int, envvar="HYPERHIVE_PORT", help="Dashboard port (default 7000)."),
        click.option("--cage", type=click.Choice(CAGE_CHOICES), envvar="HYPERHIVE_CAGE",
                     help="Sandbox backend (default auto: bwrap when it works)."),
        click.option("--agent-env", multiple=True, metavar="KEY=VALUE",
                     help="Environment passed into every agent (repeatable)."),
        click.option("--agent-env-file", multiple=True, type=click.Path(path_type=Path), metavar="PATH",
                     help="KEY=VALUE lines passed into every agent; the file must be mode 0600 (repeatable)."),
        click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
                     help="Log threshold (stderr and STATE/logs/hive.log)."),
        click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
                     help="text (journald-friendly under systemd) or json (one object per line)."),
        click.option("-v", "--verbose", is_flag=True, help="Debug logging (same as --log-level debug)."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _daemon_logging(config: Any, verbose: bool, level: str, fmt: str, agent_env: tuple[str, ...] = ()) -> None:
    from hyperhive.logsetup import daemon_log_path, setup_logging

    setup_logging("debug" if verbose else level, fmt, log_file=daemon_log_path(config.state_dir))
    for pair in agent_env:
        key = pair.partition("=")[0]
        if any(word in key.upper() for word in ("KEY", "TOKEN", "SECRET", "PASSWORD")):
            logging.getLogger("hyperhive.cli").warning(
                "--agent-env %s puts its value on this command line (visible in ps): use --agent-env-file", key
            )


def _downtime(a: dict[str, Any]) -> str:
    """Why a crashed agent is down, in one line (the dashboard row says the same)."""
    d = a["down"]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d["at"]))
    plan = f"restart {d['policy']}, {a.get('restarts', 0)} in a row"
    if d.get("gave_up"):
        plan += ", gave up (hive start " + a["name"] + ")"
    elif d.get("next_restart_at"):
        plan += f", next at {time.strftime('%H:%M:%S', time.localtime(d['next_restart_at']))}"
    return f"{d['reason']} at {when}; {plan}"


def _setup_logging(verbose: bool) -> None:
    from hyperhive.logsetup import setup_logging

    setup_logging("debug" if verbose else "info")  # quiet HTTP libraries at INFO, as the daemon


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hyperhive")
def main() -> None:
    """hyperhive: a swarm of Claude Code agents on one host, with the operator in control."""


# ---- the daemon ----------------------------------------------------------------------------


def _run_daemon(config: Any, *, announce: Callable[[Any], Any] | None = None) -> None:
    from hyperhive.core.daemon import Daemon

    async def ready(daemon: Daemon) -> None:
        say(f"hyperhive is up: cage {daemon.services.cage_reason if daemon.services else '?'}")
        if output_is_journal():  # the journal is readable by more than the operator: no login token there
            say(f"dashboard at {daemon.dashboard_base}; `hive dashboard-url --run-dir {config.run_dir}` "
                "prints the login URL")  # fmt: skip
            return await _announce(daemon)
        say(f"dashboard login: {daemon.dashboard_url}")
        click.echo(f"login URL: {daemon.dashboard_url}")
        sys.stdout.flush()
        await _announce(daemon)

    async def _announce(daemon: Daemon) -> None:
        if announce is not None:
            result = announce(daemon)
            if asyncio.iscoroutine(result):
                await result

    os.umask(0o077)  # everything the daemon creates is private to it (docs/security.md)
    asyncio.run(Daemon(config, on_ready=ready).serve())


@main.command()
@serve_options
@click.option("--api-base", metavar="URL", help="The model API upstream the gateway forwards to "
              "(default https://api.anthropic.com; [api] base in hive.toml).")  # fmt: skip
@click.option("--api-key-file", type=click.Path(path_type=Path), metavar="PATH",
              help="File (mode 0600) with the upstream API key; default [api] key_file, then ANTHROPIC_API_KEY.")  # fmt: skip
@click.option("--store", "store_url", metavar="URL", help="The store: postgresql://… (default: HYPERHIVE_STORE, "
              "[store] url in hive.toml, else SQLite at STATE/broker.sqlite). No password here: use ~/.pgpass.")  # fmt: skip
@click.option("--node", metavar="NAME", envvar="HYPERHIVE_NODE", help="This host's name in a hive of several "
              "hosts on one PostgreSQL store (default: the short hostname; docs/nodes.md).")  # fmt: skip
@handle_errors
def serve(state_dir: Path | None, run_dir: Path | None, host: str | None, port: int | None, cage: str | None,
          agent_env: tuple[str, ...], verbose: bool, api_base: str | None, api_key_file: Path | None,
          agent_env_file: tuple[Path, ...], log_level: str, log_format: str, store_url: str | None,
          node: str | None) -> None:  # fmt: skip
    """Run the core daemon: broker, approvals, questions, cages and the dashboard."""
    from hyperhive.cli_store import refuse_password_in_argv

    refuse_password_in_argv(store_url)
    config = load_config(state_dir=state_dir, run_dir=run_dir, host=host, port=port, cage=cage,
                         agent_env=parse_env_pairs(agent_env), api_base=api_base,
                         api_key_file=api_key_file, agent_env_files=agent_env_file, store=store_url,
                         node=node)  # fmt: skip
    _daemon_logging(config, verbose, log_level, log_format, agent_env)
    _run_daemon(config)


@main.command()
@serve_options
@click.option("--agents", default="alice,bob", show_default=True, help="Comma-separated demo agents.")
@handle_errors
def demo(state_dir: Path | None, run_dir: Path | None, host: str | None, port: int | None, cage: str | None,
         agent_env: tuple[str, ...], verbose: bool, agents: str, agent_env_file: tuple[Path, ...], log_level: str,
         log_format: str) -> None:  # fmt: skip
    """Serve with the offline model (a scripted stand-in, not a real LLM) and a small swarm."""
    from hyperhive.demo import run_demo

    names = [a.strip() for a in agents.split(",") if a.strip()]
    for name in names:
        validate_agent_name(name, allow_manager=False)  # before anything starts
    config = load_config(state_dir=state_dir, run_dir=run_dir, host=host, port=port, cage=cage,
                         agent_env=parse_env_pairs(agent_env), agent_env_files=agent_env_file)  # fmt: skip
    _daemon_logging(config, verbose, log_level, log_format, agent_env)
    run_demo(config, names, _run_daemon)


@main.command("dashboard-url")
@run_dir_option
@handle_errors
def dashboard_url(run_dir: Path | None) -> None:
    """Print the dashboard login URL again."""
    reply = _call(run_dir, "ping")
    url = reply.get("dashboard_url")
    if not url:
        raise HiveError("the daemon did not report a dashboard URL")
    click.echo(url)


# ---- agents --------------------------------------------------------------------------------


@main.command("list")
@run_dir_option
@json_option
@handle_errors
def list_agents(run_dir: Path | None, as_json: bool) -> None:
    """Agents: name, cage, state, model, pid/uid."""
    reply = _call(run_dir, "list")
    if as_json:
        _print_json({"agents": reply["agents"], "cage": reply.get("cage"), "cage_reason": reply.get("cage_reason")})
        return
    if not reply["agents"]:
        click.echo("no agents (hive spawn NAME creates one)")
    else:
        click.echo(f"{'NAME':<20} {'CAGE':<8} {'STATE':<9} {'HARNESS':<12} {'MODEL':<18} {'PID':>7} {'UID':>7} UNREAD")
    for a in reply["agents"]:
        cage = a["cage"] + ("!" if not a.get("isolated", True) else "")
        harness = "queued" if a.get("queued_since") else a.get("harness_state") or "-"  # core/scheduler.py
        name = f"{a['name']}@{a['node']}" if a.get("node") else a["name"]  # an agent of another node
        click.echo(
            f"{name:<20} {cage:<8} {a['state']:<9} {harness:<12} "
            f"{a.get('model') or '-':<18} {a.get('pid') or '-':>7} {a.get('uid') if a.get('uid') is not None else '-':>7} "
            f"{a.get('unread', 0)}"
        )
    if reply.get("cage") == "process":
        click.echo("! process cages have no isolation (development only)", err=True)
    for a in reply["agents"]:
        if a.get("limits") and "NOT applied" in a["limits"]:
            click.echo(f"! {a['name']}: {a['limits']}", err=True)
        if a.get("down") and a["state"] == "crashed":
            click.echo(f"! {a['name']}: {_downtime(a)}", err=True)


def _lifecycle_command(verb: str, help_text: str) -> None:
    @main.command(verb, help=help_text)
    @click.argument("name")
    @run_dir_option
    @handle_errors
    def command(name: str, run_dir: Path | None) -> None:
        reply = _call(run_dir, verb, name=name)
        if reply.get("revived"):
            click.echo(f"{name}: reviving its kept state (config, notes and credentials reused)")
        agent = reply.get("agent") or {}
        click.echo(f"{name}: {agent.get('state', 'ok')}")


_lifecycle_command("start", "Start a stopped agent.")
_lifecycle_command("stop", "Stop an agent (its state stays).")
_lifecycle_command("restart", "Stop and start an agent.")


@main.command()
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also delete its state, credentials and config repos (no undo).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --purge (for scripts; required without a terminal).")
@run_dir_option
@handle_errors
def destroy(name: str, purge: bool, yes: bool, run_dir: Path | None) -> None:
    """Destroy an agent; its state and config stay unless --purge."""
    validate_agent_name(name)
    if purge and any(a["name"] == name for a in _call(run_dir, "list")["agents"]):  # else the daemon says why not
        confirm_or_fail(yes, f"destroy {name} and purge its state, config and credentials for good?")
    _call(run_dir, "destroy", name=name, purge=purge)
    click.echo(f"{name}: destroyed{' and purged' if purge else ' (state kept)'}")


# ---- messages ------------------------------------------------------------------------------


@main.command()
@click.argument("to")
@click.argument("body")
@click.option("--reply-to", "in_reply_to", type=int, help="Thread under this message id.")
@run_dir_option
@json_option
@handle_errors
def send(to: str, body: str, in_reply_to: int | None, run_dir: Path | None, as_json: bool) -> None:
    """Send BODY to TO as the operator (BODY "-" reads stdin)."""
    if body == "-":
        body = sys.stdin.read()
    if not body.strip():
        raise HiveError("refusing to send an empty message")
    reply = _call(run_dir, "send", to=to, body=body, in_reply_to=in_reply_to)
    if as_json:
        _print_json({"id": reply.get("id"), "ids": reply.get("ids")})
    else:
        click.echo(f"sent #{reply.get('id')} to {to}")


@main.command()
@click.option("--limit", type=int, default=50, show_default=True)
@run_dir_option
@json_option
@handle_errors
def inbox(limit: int, run_dir: Path | None, as_json: bool) -> None:
    """The operator's inbox, newest first."""
    messages = _call(run_dir, "inbox", limit=limit)["messages"]
    if as_json:
        _print_json({"messages": messages})
        return
    if not messages:
        click.echo("the operator's inbox is empty")
    for m in messages:
        reply = f" ↳#{m['in_reply_to']}" if m.get("in_reply_to") else ""
        click.echo(f"#{m['id']} {_age(m['sent_at'])} ago  {m['sender']}{reply}: {m['body']}")


# ---- approvals and questions -----------------------------------------------------------------


@main.command()
@click.option("--diff", "diff_id", type=int, help="Show the config diff of this approval.")
@run_dir_option
@json_option
@handle_errors
def pending(diff_id: int | None, run_dir: Path | None, as_json: bool) -> None:
    """Approvals waiting for the operator."""
    if diff_id is not None:
        diff = _call(run_dir, "pending", diff_id=diff_id)["diff"]
        _print_json({"id": diff_id, "diff": diff}) if as_json else click.echo(diff or "(no diff)")
        return
    approvals = _call(run_dir, "pending")["approvals"]
    if as_json:
        _print_json({"approvals": approvals})
        return
    if not approvals:
        click.echo("nothing waits for approval")
    for a in approvals:
        sha = f" {a['sha'][:12]}" if a.get("sha") else ""
        desc = f" — {a['description']}" if a.get("description") else ""
        click.echo(
            f"#{a['id']} {a['kind']:<13} {a['agent']}{sha} (by {a['requested_by']}, {_age(a['requested_at'])} ago){desc}"
        )


@main.command()
@click.argument("approval_id", type=int)
@run_dir_option
@json_option
@handle_errors
def approve(approval_id: int, run_dir: Path | None, as_json: bool) -> None:
    """Approve a pending request."""
    a = _call(run_dir, "approve", id=approval_id)["approval"]
    if as_json:
        _print_json({"approval": a})
        return
    click.echo(
        f"#{a['id']} {a['status']}"
        + (f" ({a['tag']})" if a.get("tag") else "")
        + (f": {a['note']}" if a.get("note") else "")
    )
    if a["status"] == "failed":
        sys.exit(EXIT_ERROR)


@main.command()
@click.argument("approval_id", type=int)
@click.option("--note", help="The reason, passed to the manager.")
@run_dir_option
@handle_errors
def deny(approval_id: int, note: str | None, run_dir: Path | None) -> None:
    """Deny a pending request."""
    a = _call(run_dir, "deny", id=approval_id, note=note)["approval"]
    click.echo(f"#{a['id']} denied" + (f" ({a['tag']})" if a.get("tag") else ""))


@main.command()
@run_dir_option
@json_option
@handle_errors
def questions(run_dir: Path | None, as_json: bool) -> None:
    """Questions waiting for an answer."""
    qs = _call(run_dir, "questions")["questions"]
    if as_json:
        _print_json({"questions": qs})
        return
    if not qs:
        click.echo("no questions wait for an answer")
    for q in qs:
        opts = f" [{' | '.join(q['options'])}]" if q["options"] else ""
        ttl = f" ⏳{int(q['deadline_at'] - time.time())}s" if q.get("deadline_at") else ""
        click.echo(f"#{q['id']} {q['asker']} → {q['target']}: {q['question']}{opts}{ttl}")


@main.command()
@click.argument("question_id", type=int)
@click.argument("text")
@run_dir_option
@handle_errors
def answer(question_id: int, text: str, run_dir: Path | None) -> None:
    """Answer a question as the operator."""
    _call(run_dir, "answer", id=question_id, answer=text)
    click.echo(f"#{question_id} answered")


@main.command("cancel-question")
@click.argument("question_id", type=int)
@run_dir_option
@handle_errors
def cancel_question(question_id: int, run_dir: Path | None) -> None:
    """Cancel a question; the asker gets [cancelled]."""
    _call(run_dir, "cancel_question", id=question_id)
    click.echo(f"#{question_id} cancelled")


# ---- events --------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they happen (streamed).")
@click.option("--limit", type=int, default=200, show_default=True)
@run_dir_option
@json_option
@handle_errors
def events(name: str, follow: bool, limit: int, run_dir: Path | None, as_json: bool) -> None:
    """An agent's event trail, rendered as its page shows it (--json: the raw events)."""
    reply = _call(run_dir, "events", name=name, limit=min(limit, 2000))
    evs = reply["events"]
    if as_json and not follow:
        _print_json({"events": evs})
        return
    last = 0
    if not evs and not as_json:
        click.echo(f"{name} has no events yet", err=follow)
    for e in evs:
        _echo_event(e, as_json)
        last = e["id"]
    if follow:
        _follow_events(run_dir, name, last, as_json)


def _echo_event(e: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(e, ensure_ascii=False))
        return
    for line in format_event(e):
        click.echo(line)


def _follow_events(run_dir: Path | None, name: str, last: int, as_json: bool) -> None:
    """Stream the agent's live trail through host.sock (`events_follow`: the core relays the
    agent's page stream), resuming after `last`; when the agent is down, say so once."""
    client = _client(run_dir)
    for event in itertools.islice(client.stream("events_follow", name=name, after=last), 1, None):
        if event.get("kind") == "waiting":
            click.echo(f"hive: {name} is not running; waiting for it to come back", err=True)
        elif event.get("kind") == "missed":
            click.echo(f"hive: {event['data'].get('missed')} events of {name} were missed (too far behind)", err=True)
        else:
            _echo_event(event, as_json)


# ---- inside a cage -------------------------------------------------------------------------


@main.group()
def agent() -> None:
    """Commands run inside an agent's cage."""


@agent.command("serve")
@click.option("-v", "--verbose", is_flag=True)
@handle_errors
def agent_serve(verbose: bool) -> None:
    """Run the harness: the turn loop, the event log and the agent's web page."""
    from hyperhive.harness.__main__ import main as harness_main

    sys.exit(harness_main(["--verbose"] if verbose else []))


# ---- command groups in their own modules -----------------------------------------------------

from hyperhive import cli_config, cli_kept, cli_ops, cli_sessions  # noqa: E402 (they import the helpers above)

for _command in (*cli_kept.COMMANDS, *cli_config.COMMANDS, *cli_sessions.COMMANDS, *cli_ops.COMMANDS):
    main.add_command(_command)

from hyperhive import cli_shell  # noqa: E402

for _command in cli_shell.COMMANDS:
    main.add_command(_command)

from hyperhive import cli_dead  # noqa: E402

for _command in cli_dead.COMMANDS:
    main.add_command(_command)

from hyperhive import cli_stats  # noqa: E402

for _command in cli_stats.COMMANDS:
    main.add_command(_command)

from hyperhive import cli_store  # noqa: E402

for _command in cli_store.COMMANDS:
    main.add_command(_command)

from hyperhive import cli_nodes  # noqa: E402

for _command in cli_nodes.COMMANDS:
    main.add_command(_command)

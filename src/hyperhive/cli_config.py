"""`hive config show NAME` and `hive config edit NAME`: the operator changes an agent's config
directly. An edit is applied by the core through the approval path (validation, deploy, health
check, rollback), tagged `operator/<id>`. Registered on `hive` by cli.py."""

from __future__ import annotations

import difflib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import click
from click import Command

from hyperhive.agentconfig import parse_agent_toml, validate_repo_path
from hyperhive.cli_common import (
    _call,
    _client,
    _fail,
    _print_json,
    confirm_or_fail,
    handle_errors,
    json_option,
    run_dir_option,
)
from hyperhive.errors import HiveError
from hyperhive.names import validate_agent_name

__all__ = ["COMMANDS"]

APPLY_TIMEOUT = 180.0  # the deploy waits for the restarted agent to report in


@click.group("config")
def config() -> None:
    """An agent's config (agent.toml): show it, or edit and apply it as the operator."""


@config.command("show")
@click.argument("name")
@run_dir_option
@json_option
@handle_errors
def show(name: str, run_dir: Path | None, as_json: bool) -> None:
    """Print NAME's applied agent.toml (docs/agent-config.md describes every key)."""
    reply = _call(run_dir, "config_show", name=name)
    if as_json:
        _print_json(
            {k: reply.get(k) for k in ("name", "sha", "agent_toml", "instructions_path", "instructions", "tags")}
        )
        return
    click.echo(f"# {name}: applied main {reply['sha'][:12]}", err=True)
    click.echo(reply["agent_toml"], nl=not reply["agent_toml"].endswith("\n"))


def _editor() -> list[str]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    argv = shlex.split(editor)
    if not argv:
        raise HiveError("$EDITOR is empty; set it to an editor command")
    return argv


@config.command("edit")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Apply without asking (required without a terminal).")
@run_dir_option
@handle_errors
def edit(name: str, yes: bool, run_dir: Path | None) -> None:
    """Open NAME's agent.toml (and the instructions file it names) in $EDITOR, show the diff, and
    apply it: validated, deployed and health-checked like an approved commit, tagged operator/<id>."""
    validate_agent_name(name)
    current = _call(run_dir, "config_show", name=name)
    before = {"agent.toml": current["agent_toml"]}
    ipath = current.get("instructions_path")
    if ipath and current.get("instructions") is not None:
        try:
            before[validate_repo_path(ipath)] = current["instructions"]
        except ValueError as exc:
            raise HiveError(f"the daemon sent an unsafe instructions path: {exc}") from None
    workdir = Path(tempfile.mkdtemp(prefix=f"hive-config-{name}-"))  # 0700, the operator's own
    for rel, text in before.items():
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        (workdir / rel).write_text(text, encoding="utf-8")
        (workdir / rel).chmod(0o600)
    keep = False
    try:
        try:
            status = subprocess.call([*_editor(), *(str(workdir / rel) for rel in before)])
        except OSError as exc:
            raise HiveError(f"could not run the editor: {exc}; nothing applied") from None
        if status != 0:
            raise HiveError(f"the editor exited with status {status}; nothing applied")
        after = {rel: (workdir / rel).read_text(encoding="utf-8") for rel in before}
        changed = [rel for rel in before if after[rel] != before[rel]]
        if not changed:
            click.echo(f"{name}: {', '.join(before)} unchanged; nothing applied")
            return
        keep = True  # from here on, a failure leaves the operator's edit on disk
        for rel in changed:
            diff = difflib.unified_diff(
                before[rel].splitlines(True), after[rel].splitlines(True), f"a/{rel}", f"b/{rel}"
            )
            click.echo("".join(diff), nl=False)
        try:
            parse_agent_toml(after["agent.toml"])
        except HiveError as exc:
            raise HiveError(f"{exc.message}; nothing applied, your edit is at {workdir}") from None
        confirm_or_fail(yes, f"apply this to {name} (it restarts on the new config)?", kept=workdir)
        client = _client(run_dir)
        client.timeout = APPLY_TIMEOUT
        instructions = after[ipath] if ipath in changed else None
        try:
            approval = client.call("config_apply", name=name, agent_toml=after["agent.toml"], base_sha=current["sha"],
                                   instructions=instructions)["approval"]  # fmt: skip
        except HiveError as exc:
            raise HiveError(f"{exc.message}; nothing applied, your edit is at {workdir}") from None
        if approval["status"] != "deployed":
            _fail(f"#{approval['id']} {approval['status']}: {approval.get('note') or ''}; "
                  f"{name} runs its previous config, your edit is at {workdir}")  # fmt: skip
        keep = False
        click.echo(f"#{approval['id']} deployed (operator/{approval['id']}): {name} runs the new config")
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


COMMANDS: list[Command] = [config]

"""`hive exec NAME -- CMD [ARGS...]` and `hive shell NAME`: a command or a login shell inside an
agent's cage, as its uid, over host.sock only (architecture §14). Registered on `hive` by cli.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from click import Command

from hyperhive.cli_common import handle_errors, run_dir_option
from hyperhive.names import validate_agent_name
from hyperhive.paths import default_run_dir
from hyperhive.shellclient import run_exec, run_shell

__all__ = ["COMMANDS"]


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@run_dir_option
@click.argument("name")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED, metavar="-- CMD [ARGS]...")
@handle_errors
def exec_command(name: str, argv: tuple[str, ...], run_dir: Path | None) -> None:
    """Run CMD inside NAME's cage as the agent's uid (stdin, stdout and stderr passed through);
    exits with CMD's status (128+N if a signal N killed it)."""
    validate_agent_name(name)
    args = list(argv[1:] if argv and argv[0] == "--" else argv)
    if not args:
        raise click.UsageError("give the command after --: hive exec NAME -- CMD [ARGS]...")
    status = asyncio.run(run_exec((run_dir or default_run_dir()) / "host.sock", name, args))
    click.get_current_context().exit(status)


@click.command("shell")
@run_dir_option
@click.argument("name")
@handle_errors
def shell_command(name: str, run_dir: Path | None) -> None:
    """An interactive login shell inside NAME's cage as the agent's uid (raw terminal, resize);
    exits with the shell's status."""
    validate_agent_name(name)
    status = asyncio.run(run_shell((run_dir or default_run_dir()) / "host.sock", name))
    click.get_current_context().exit(status)


COMMANDS: list[Command] = [exec_command, shell_command]

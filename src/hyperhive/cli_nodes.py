"""`hive spawn NAME [--node N]`, `hive nodes` and `hive manager claim`: a hive of several hosts
(docs/nodes.md). Registered on `hive` by cli.py."""

from __future__ import annotations

from pathlib import Path

import click
from click import Command

from hyperhive.cli import _call, _print_json, handle_errors, json_option, run_dir_option
from hyperhive.config import validate_node
from hyperhive.errors import HiveError
from hyperhive.names import validate_agent_name

__all__ = ["COMMANDS"]


@click.command("spawn")
@click.argument("name")
@click.option("--node", metavar="NODE", help="The node (hive serve --node) to run it on; default: this one.")
@run_dir_option
@handle_errors
def spawn(name: str, node: str | None, run_dir: Path | None) -> None:
    """Create an agent with the default config and start it (or revive its kept state)."""
    validate_agent_name(name, allow_manager=False)
    fields: dict[str, str] = {"name": name}
    if node is not None:
        try:
            fields["node"] = validate_node(node)
        except HiveError as exc:
            raise HiveError(f"--node: {exc.message}") from None
    reply = _call(run_dir, "spawn", **fields)
    if reply.get("revived"):
        click.echo(f"{name}: reviving its kept state (config, notes and credentials reused)")
    agent = reply.get("agent") or {}
    click.echo(f"{name}: {agent.get('state', 'ok')}" + (f" on node {node}" if node else ""))


@click.command("nodes")
@json_option
@run_dir_option
@handle_errors
def nodes(as_json: bool, run_dir: Path | None) -> None:
    """The hive's nodes: name, alive, agents, dashboard."""
    reply = _call(run_dir, "nodes")
    if as_json:
        _print_json(reply)
        return
    if not reply.get("multi"):
        click.echo(f"{reply['node']} (the only node: the store is SQLite)")
        return
    for n in reply["nodes"]:
        here = " (this one)" if n["here"] else ""
        state = "alive" if n["alive"] else "unreachable"
        click.echo(f"{n['name']:<20} {state:<12} {n['agents']:>3} agents  {n['dashboard_url'] or '-'}{here}")


@click.group("manager")
def manager_group() -> None:
    """Where the manager runs (one node at a time)."""


@manager_group.command("claim")
@click.option("--force", is_flag=True, help="Claim it even though its node still sends heartbeats.")
@run_dir_option
@handle_errors
def claim(force: bool, run_dir: Path | None) -> None:
    """Run the manager on this node (its node is gone, or --force)."""
    reply = _call(run_dir, "manager_claim", force=force)
    if reply.get("moved"):
        click.echo(f"manager: now runs on node {reply['manager']} (was {reply.get('from') or 'nowhere'})")
    else:
        click.echo(f"manager: already runs on node {reply['manager']}")


COMMANDS: list[Command] = [spawn, nodes, manager_group]

"""`hive spawn NAME [--node N]`, `hive nodes` and `hive manager claim`: a hive of several hosts
(docs/nodes.md). Registered on `hive` by cli.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
from click import Command

from hyperhive.cli_common import _call, _print_json, handle_errors, json_option, run_dir_option
from hyperhive.config import validate_node
from hyperhive.errors import HiveError
from hyperhive.names import validate_agent_name

__all__ = ["COMMANDS"]


@click.command("spawn")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("--node", metavar="NODE", help="The node (hive serve --node) to run them on; default: this one.")
@click.option("--wait", is_flag=True, help="Return once each harness has reported in (not when its cage started).")
@run_dir_option
@handle_errors
def spawn(names: tuple[str, ...], node: str | None, wait: bool, run_dir: Path | None) -> None:
    """Create agents with the default config and start them (or revive their kept state).

    Several names are spawned at once (the core starts their cages in parallel, up to the host's
    cores); each gets its line, and the exit status is 1 if any failed."""
    for name in names:
        validate_agent_name(name, allow_manager=False)
    if len(set(names)) != len(names):
        raise HiveError("a name is given twice")
    fields: dict[str, Any] = {"wait": True} if wait else {}
    if node is not None:
        try:
            fields["node"] = validate_node(node)
        except HiveError as exc:
            raise HiveError(f"--node: {exc.message}") from None
    with ThreadPoolExecutor(max_workers=min(len(names), 32)) as pool:
        futures = [pool.submit(_call, run_dir, "spawn", name=name, **fields) for name in names]
    failed = 0
    for name, future in zip(names, futures, strict=True):
        try:
            reply = future.result()
        except HiveError as exc:
            if len(names) == 1:
                raise  # one name: the usual one-line `hive: …` failure
            failed += 1
            click.echo(f"{name}: {exc.message}", err=True)
            continue
        if reply.get("revived"):
            click.echo(f"{name}: reviving its kept state (config, notes and credentials reused)")
        agent = reply.get("agent") or {}
        state = agent.get("harness_state") if wait and agent.get("harness_state") else agent.get("state", "ok")
        click.echo(f"{name}: {state}" + (f" on node {node}" if node else ""))
    if failed:
        raise SystemExit(1)


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

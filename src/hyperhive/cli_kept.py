"""`hive kept`, `hive revive NAME`, `hive purge NAME`: the kept state of destroyed agents, the
same verbs as the dashboard's ◆ K3PT ST4T3 ◆ section. Registered on `hive` by cli.py."""

from __future__ import annotations

import time
from pathlib import Path

import click
from click import Command

from hyperhive.cli_common import _call, _print_json, confirm_or_fail, handle_errors, json_option, run_dir_option

__all__ = ["COMMANDS"]


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


@click.command("kept")
@run_dir_option
@json_option
@handle_errors
def kept(run_dir: Path | None, as_json: bool) -> None:
    """Agents destroyed without --purge whose state and config remain."""
    rows = _call(run_dir, "kept")["kept"]
    if as_json:
        _print_json({"kept": rows})
        return
    if not rows:
        click.echo("no kept state (agents destroyed without --purge appear here)")
        return
    click.echo(f"{'NAME':<20} {'SIZE':>10}  {'DESTROYED':<20} CREDENTIALS")
    for k in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(k["destroyed_at"])) if k.get("destroyed_at") else "-"
        creds = "kept" if k.get("has_credentials") else "none"
        click.echo(f"{k['name']:<20} {_size(k.get('size_bytes')):>10}  {when:<20} {creds}")


@click.command("revive")
@click.argument("name")
@run_dir_option
@json_option
@handle_errors
def revive(name: str, run_dir: Path | None, as_json: bool) -> None:
    """Queue a spawn of NAME on its kept state (an approval, as on the dashboard)."""
    approval = _call(run_dir, "revive", name=name)["approval"]
    if as_json:
        _print_json({"approval": approval})
        return
    click.echo(f"#{approval['id']} revive of {name} waits for approval: hive approve {approval['id']}")


@click.command("purge")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask (for scripts; required without a terminal).")
@run_dir_option
@handle_errors
def purge(name: str, yes: bool, run_dir: Path | None) -> None:
    """Delete the kept state, credentials and config repos of destroyed agent NAME (no undo)."""
    if any(k["name"] == name for k in _call(run_dir, "kept")["kept"]):  # else the daemon says why not
        confirm_or_fail(yes, f"purge the kept state of {name}? its state, config and credentials go for good")
    _call(run_dir, "purge", name=name)
    click.echo(f"{name}: purged")


COMMANDS: list[Command] = [kept, revive, purge]

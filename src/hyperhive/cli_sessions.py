"""`hive sessions`: the operator's dashboard sessions; `--revoke ID` logs one out, `--revoke-all`
logs out everywhere and rotates the session signing key. Registered on `hive` by cli.py."""

from __future__ import annotations

from pathlib import Path

import click
from click import Command

from hyperhive.cli_common import _age, _call, _print_json, handle_errors, json_option, run_dir_option

__all__ = ["COMMANDS"]


@click.command("sessions")
@click.option("--revoke", "revoke", metavar="ID", help="Log out the session with this id (from the list).")
@click.option("--revoke-all", is_flag=True, help="Log out everywhere: revoke every session and rotate the signing key.")
@run_dir_option
@json_option
@handle_errors
def sessions(revoke: str | None, revoke_all: bool, run_dir: Path | None, as_json: bool) -> None:
    """List the dashboard sessions that are logged in (or revoke them)."""
    fields: dict[str, object] = {}
    if revoke:
        fields["revoke"] = revoke
    if revoke_all:
        fields["revoke_all"] = True
    reply = _call(run_dir, "sessions", **fields)
    if as_json:
        _print_json(reply)
        return
    if revoke_all:
        click.echo(f"logged out everywhere: {reply.get('revoked', 0)} session(s) revoked, signing key rotated")
        return
    if revoke:
        click.echo(f"session {revoke} logged out")
    rows = reply.get("sessions") or []
    if not rows:
        click.echo("no dashboard sessions are logged in")
        return
    click.echo(f"{'ID':<10} {'CREATED':>8} {'SEEN':>8}  {'CLIENT':<16} USER AGENT")
    for r in rows:
        click.echo(
            f"{r['id']:<10} {_age(r['created_at']):>8} {_age(r['last_seen']):>8}  {r['client']:<16} {r['user_agent'][:60]}"
        )


COMMANDS: tuple[Command, ...] = (sessions,)

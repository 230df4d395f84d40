"""`hive dead-letters`, `hive retry-dead ID`, `hive discard-dead ID`: messages parked after every
delivery attempt failed (the `[broker] max_attempts` of hive.toml), the same verbs as the
dashboard's dead-letter list. Registered on `hive` by cli.py."""

from __future__ import annotations

from pathlib import Path

import click
from click import Command

from hyperhive.cli_common import _age, _call, _print_json, handle_errors, json_option, run_dir_option

__all__ = ["COMMANDS"]


@click.command("dead-letters")
@click.option("--limit", type=int, default=200, show_default=True)
@run_dir_option
@json_option
@handle_errors
def dead_letters(limit: int, run_dir: Path | None, as_json: bool) -> None:
    """Messages parked after failing every delivery attempt; retry or discard each."""
    reply = _call(run_dir, "dead_letters", limit=limit)
    rows = reply["dead_letters"]
    if as_json:
        _print_json({"dead_letters": rows, "max_attempts": reply["max_attempts"]})
        return
    if not rows:
        click.echo("no dead letters")
        return
    for m in rows:
        preview = m["body"].replace("\n", " ")[:100]
        click.echo(f"#{m['id']} {m['sender']} → {m['recipient']}, {m['attempts']} attempts, "
                   f"parked {_age(m['dead_at'])} ago: {preview}")  # fmt: skip
    click.echo("retry with `hive retry-dead ID`, drop with `hive discard-dead ID`")


@click.command("retry-dead")
@click.argument("message_id", type=int)
@run_dir_option
@handle_errors
def retry_dead(message_id: int, run_dir: Path | None) -> None:
    """Put a dead letter back into its recipient's queue with fresh attempts."""
    m = _call(run_dir, "retry_dead", id=message_id)["message"]
    click.echo(f"#{m['id']} requeued for {m['recipient']}")


@click.command("discard-dead")
@click.argument("message_id", type=int)
@run_dir_option
@handle_errors
def discard_dead(message_id: int, run_dir: Path | None) -> None:
    """Drop a dead letter: acknowledged without delivery (no undo)."""
    m = _call(run_dir, "discard_dead", id=message_id)["message"]
    click.echo(f"#{m['id']} for {m['recipient']} discarded")


COMMANDS: tuple[Command, ...] = (dead_letters, retry_dead, discard_dead)

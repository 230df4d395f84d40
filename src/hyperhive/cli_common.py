"""What every `hive` command module shares: exit codes, the error handler, the common options,
the host.sock client and the output helpers. The command modules (cli.py, cli_*.py) import from
here, so none of them imports another (docs/architecture.md §16)."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hyperhive.client import SyncHiveClient
from hyperhive.errors import HiveError, StartupError
from hyperhive.paths import default_run_dir

__all__ = [
    "EXIT_ERROR",
    "EXIT_STARTUP",
    "F",
    "confirm_or_fail",
    "handle_errors",
    "json_option",
    "run_dir_option",
]

F = TypeVar("F", bound=Callable[..., Any])
EXIT_ERROR = 1
EXIT_STARTUP = 3


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"hive: {message}", err=True)
    sys.exit(code)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StartupError as exc:
            _fail(exc.message, EXIT_STARTUP)
        except HiveError as exc:
            _fail(exc.message)
        except (OSError, TimeoutError) as exc:
            _fail(str(exc))

    return wrapper  # type: ignore[return-value]


def run_dir_option(fn: F) -> F:
    return click.option(
        "--run-dir", type=click.Path(path_type=Path), envvar="HYPERHIVE_RUN_DIR",
        help="Socket directory of the daemon [env HYPERHIVE_RUN_DIR].",
    )(fn)  # fmt: skip


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


def confirm_or_fail(yes: bool, question: str, *, kept: Path | None = None) -> None:
    """Ask on a terminal; without one, `--yes` is required (a script never blocks on a prompt)."""
    if yes:
        return
    where = f" (your edit is at {kept})" if kept else ""
    if not sys.stdin.isatty():
        _fail(f"{question.rstrip('?')}: not on a terminal, so pass --yes to confirm{where}")
    if not click.confirm(question, default=False, err=True):
        _fail(f"cancelled; nothing changed{where}")


def _client(run_dir: Path | None) -> SyncHiveClient:
    return SyncHiveClient((run_dir or default_run_dir()) / "host.sock")


def _call(run_dir: Path | None, cmd: str, **fields: Any) -> dict[str, Any]:
    return _client(run_dir).call(cmd, **fields)


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _age(ts: float | None) -> str:
    if not ts:
        return "-"
    s = max(0, int(time.time() - ts))  # the dashboard's format (hive.fmtAge): 45s, 4m05s, 2h07m, 3d4h
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"

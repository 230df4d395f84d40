"""Operating a hive: `hive service install`, `hive logs`, `hive backup` (docs/operations.md).
They work on the state directory's files, so they also work while the daemon is down.
Registered on `hive` by cli.py."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import deque
from pathlib import Path

import click
from click import Command

from hyperhive.cli_common import handle_errors, run_dir_option
from hyperhive.client import SyncHiveClient
from hyperhive.config import read_env_file
from hyperhive.errors import HiveError
from hyperhive.logsetup import LEVELS, daemon_log_path
from hyperhive.paths import HivePaths, default_run_dir, default_state_dir
from hyperhive.servicefile import SYSTEM_RUN, SYSTEM_STATE, ServiceSpec, render_unit, unit_path

__all__ = ["COMMANDS"]

FOLLOW_POLL = 0.5  # seconds between two looks at a followed log (as tail -f does)


def state_dir_option(fn: click.decorators.FC) -> click.decorators.FC:
    fn = click.option(
        "--state-dir", type=click.Path(path_type=Path), envvar="HYPERHIVE_STATE_DIR",
        help="State directory of the hive [env HYPERHIVE_STATE_DIR; default: the running daemon's].",
    )(fn)  # fmt: skip
    return run_dir_option(fn)


def _state_dir(state_dir: Path | None) -> Path:
    return (state_dir or default_state_dir()).expanduser().absolute()


def _hive_state_dir(state_dir: Path | None, run_dir: Path | None) -> Path:
    """--state-dir; else the running daemon's (found through --run-dir); else the default."""
    if state_dir is None:
        sock = (run_dir or default_run_dir()) / "host.sock"
        if sock.exists():
            try:
                reported = SyncHiveClient(sock).call("ping").get("state_dir")
            except (HiveError, OSError):
                reported = None
            if reported:
                return Path(reported)
    return _state_dir(state_dir)


# ---- hive service ---------------------------------------------------------------------------


@click.group("service")
def service() -> None:
    """Run `hive serve` as a systemd service."""


def _hive_program() -> str:
    beside = Path(sys.executable).parent / "hive"  # the venv's own script
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("hive")
    if not found:
        raise HiveError("cannot find the `hive` program to run (is hyperhive installed?)")
    return str(Path(found).absolute())


def _private_file(path: Path, what: str) -> Path:
    path = path.expanduser().absolute()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise HiveError(f"{what} {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise HiveError(f"{what} {path} must be private (chmod 600 {path})")
    return path


@service.command("install")
@click.option("--user", "user_unit", is_flag=True, help="A unit for your own service manager (systemctl --user).")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Default /var/lib/hyperhive (--user: yours).")
@click.option("--run-dir", type=click.Path(path_type=Path), help="Default /run/hyperhive (--user: yours).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard address.")
@click.option("--port", type=click.IntRange(0, 65535), default=7000, show_default=True, help="Dashboard port.")
@click.option("--api-key-file", type=click.Path(path_type=Path), metavar="PATH",
              help="The upstream API key (mode 0600), handed over with LoadCredential=.")  # fmt: skip
@click.option("--agent-env-file", type=click.Path(path_type=Path), metavar="PATH",
              help="KEY=VALUE lines for every agent (mode 0600), handed over with LoadCredential=.")  # fmt: skip
@click.option("--log-level", type=click.Choice(LEVELS), default="info", show_default=True)
@click.option("--print", "print_only", is_flag=True, help="Print the unit instead of writing it.")
@handle_errors
def service_install(user_unit: bool, state_dir: Path | None, run_dir: Path | None, host: str, port: int,
                    api_key_file: Path | None, agent_env_file: Path | None, log_level: str,
                    print_only: bool) -> None:  # fmt: skip
    """Write the systemd unit for `hive serve` (Type=notify, restart on failure)."""
    if not user_unit and os.geteuid() != 0 and not print_only:
        raise HiveError("a system unit needs root (or use --user, or --print to see it)")
    if agent_env_file is not None:
        agent_env_file = _private_file(agent_env_file, "the agent env file")
        read_env_file(agent_env_file)  # refuse a malformed file now, not at the service's start
    spec = ServiceSpec(
        hive=_hive_program(),
        state_dir=_state_dir(state_dir) if state_dir or user_unit else SYSTEM_STATE,
        run_dir=(run_dir or default_run_dir()).absolute() if run_dir or user_unit else SYSTEM_RUN,
        host=host,
        port=port,
        user=user_unit,
        api_key_file=_private_file(api_key_file, "the API key file") if api_key_file else None,
        agent_env_file=agent_env_file,
        log_level=log_level,
    )
    text = render_unit(spec)
    if print_only:
        click.echo(text, nl=False)
        return
    path = unit_path(user_unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o644)
    replaced = path.exists()
    tmp.replace(path)
    ctl = "systemctl --user" if user_unit else "systemctl"
    click.echo(f"{'replaced' if replaced else 'wrote'} {path}")
    click.echo(f"next: {ctl} daemon-reload && {ctl} enable --now hyperhive")
    click.echo(f"then: {ctl} status hyperhive; hive dashboard-url --run-dir {spec.run_dir}")


# ---- hive logs ------------------------------------------------------------------------------


def _log_path(state: Path, name: str | None) -> Path:
    if name is None:
        return daemon_log_path(state)
    return HivePaths(state, Path("/")).agent(name).root / "harness.log"


def _tail(path: Path, lines: int) -> tuple[list[str], int, int]:
    """The last `lines` lines, and the (inode, offset) to follow from."""
    with path.open("rb") as f:
        st = os.fstat(f.fileno())
        kept: deque[bytes] = deque(f, maxlen=lines) if lines else deque()
        offset = f.seek(0, os.SEEK_END)
    return [b.decode("utf-8", "replace").rstrip("\n") for b in kept], st.st_ino, offset


def _follow(path: Path, inode: int, offset: int) -> None:
    buf = b""
    while True:
        time.sleep(FOLLOW_POLL)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # mid-rotation
        if st.st_ino != inode or st.st_size < offset:  # rotated or truncated: the new file from its start
            inode, offset = st.st_ino, 0
        if st.st_size == offset:
            continue
        with path.open("rb") as f:
            f.seek(offset)
            chunk = f.read()
            offset = f.tell()
        buf += chunk
        *done, buf = buf.split(b"\n")
        for line in done:
            click.echo(line.decode("utf-8", "replace"))


@click.command("logs")
@click.argument("name", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines as they are written.")
@click.option("--lines", "-n", type=click.IntRange(0), default=100, show_default=True, help="How many last lines.")
@state_dir_option
@handle_errors
def logs(name: str | None, follow: bool, lines: int, state_dir: Path | None, run_dir: Path | None) -> None:
    """The daemon's log, or agent NAME's harness output (stdout and stderr)."""
    state = _hive_state_dir(state_dir, run_dir)
    path = _log_path(state, name)
    if not path.is_file():
        whose = f"{name} has no harness log" if name else "no daemon log"
        hint = " (under systemd: journalctl -u hyperhive)" if name is None else " (has it ever started?)"
        raise HiveError(f"{whose} at {path}; pass --state-dir if the hive keeps its state elsewhere{hint}")
    try:
        kept, inode, offset = _tail(path, lines)
    except PermissionError:
        raise HiveError(f"cannot read {path}: run as the user that runs hive serve") from None
    for line in kept:
        click.echo(line)
    if follow:
        try:
            _follow(path, inode, offset)
        except KeyboardInterrupt:
            return


# ---- hive backup ----------------------------------------------------------------------------


@click.command("backup")
@click.argument("dest", type=click.Path(path_type=Path))
@state_dir_option
@handle_errors
def backup(dest: Path, state_dir: Path | None, run_dir: Path | None) -> None:
    """Copy the state directory to DEST (new), consistently, while the hive runs."""
    from hyperhive.store.backup import backup_state

    state = _hive_state_dir(state_dir, run_dir)
    # a hive on SQLite has its store here; one on PostgreSQL at least its agents' tree
    if not (state / "broker.sqlite").is_file() and not (state / "agents").is_dir():
        raise HiveError(f"{state} holds no hive (no broker.sqlite, no agents/); pass --state-dir")
    try:
        report = backup_state(state, dest)
    except (FileExistsError, ValueError) as exc:
        raise HiveError(str(exc)) from None
    size = report.bytes / (1024 * 1024)
    click.echo(f"backed up {state} to {dest.absolute()}: {report.databases} databases (online backup), "
               f"{report.files} files, {size:.1f} MiB")  # fmt: skip
    if report.skipped:
        click.echo(f"skipped {len(report.skipped)} sockets, fifos or files swapped during the copy", err=True)


COMMANDS: list[Command] = [service, logs, backup]

"""`hive backup DEST`: a consistent copy of a state directory while the daemon runs.

Every SQLite database (the broker's, each agent's events db) is copied with SQLite's online
backup API, which reads a consistent snapshot alongside the live writer; everything else
(config repos, notes, credentials, tokens) is copied file by file with its mode and owner.
Git writes objects and refs by atomic rename, so a repo copied mid-commit is at worst one commit
behind. Links are copied as links (never followed: an agent's state may hold a planted one);
sockets and fifos are skipped."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BackupReport", "backup_state"]

log = logging.getLogger(__name__)
SQLITE_MAGIC = b"SQLite format 3\0"
SKIP_SUFFIXES = ("-wal", "-shm", "-journal")  # the backup API folds these into the copy


@dataclass
class BackupReport:
    databases: int = 0
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _copy_db(src: Path, dest: Path) -> None:
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=10)
    try:
        target = sqlite3.connect(dest)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _copy_file(src: Path, out: Path) -> None:
    """Through a no-follow descriptor: a file swapped for a link after the walk saw it is refused."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileNotFoundError(f"{src} became a link") from None
        raise
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            raise FileNotFoundError(f"{src} is no longer a regular file")
        with out.open("xb") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)


def _same_owner(src_st: os.stat_result, dest: Path) -> None:
    if os.geteuid() == 0:
        os.lchown(dest, src_st.st_uid, src_st.st_gid)


def _copy_entry(src: Path, out: Path, state_dir: Path, dirs: list[str], report: BackupReport) -> None:
    name = src.name
    st = src.lstat()
    if stat.S_ISDIR(st.st_mode):
        return  # made when os.walk reaches it
    if stat.S_ISLNK(st.st_mode):
        out.symlink_to(src.readlink())
        _same_owner(st, out)
        dirs[:] = [d for d in dirs if d != name]  # a link to a dir: not descended
        return
    if not stat.S_ISREG(st.st_mode):
        report.skipped.append(str(src.relative_to(state_dir)))
        return
    if name.endswith(SKIP_SUFFIXES):
        return
    if _is_sqlite(src):
        try:
            _copy_db(src, out)
            report.databases += 1
        except sqlite3.Error as exc:
            log.warning("%s: the online backup failed (%s); copied the file as it is", src, exc)
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            _copy_file(src, out)
        after = src.lstat()
        if (after.st_ino, after.st_dev) != (st.st_ino, st.st_dev) or stat.S_ISLNK(after.st_mode):
            out.unlink()  # swapped for something else while we read it (sqlite follows links)
            report.skipped.append(str(src.relative_to(state_dir)))
            return
    else:
        _copy_file(src, out)
    out.chmod(stat.S_IMODE(st.st_mode))
    _same_owner(st, out)
    report.files += 1
    report.bytes += out.stat().st_size


def backup_state(state_dir: Path, dest: Path) -> BackupReport:
    """Copy `state_dir` to `dest` (which must not exist; created private to its owner)."""
    state_dir = state_dir.resolve()
    dest = dest.absolute()
    if dest.exists() or dest.is_symlink():
        raise FileExistsError(f"{dest} already exists: back up to a new path")
    if dest == state_dir or state_dir in dest.parents:
        raise ValueError(f"{dest} is inside the state directory {state_dir}")
    report = BackupReport()
    dest.mkdir(mode=0o700, parents=True)
    for root, dirs, files in os.walk(state_dir, followlinks=False):
        rel = Path(root).relative_to(state_dir)
        target_dir = dest / rel
        if rel != Path():
            target_dir.mkdir(mode=0o700)
        for name in [*dirs, *files]:
            src = Path(root) / name
            out = target_dir / name
            try:
                _copy_entry(src, out, state_dir, dirs, report)
            except FileNotFoundError:
                continue  # removed while we walked (a temp file): nothing to keep
    # directory modes and owners last (a 0500 dir would have refused its files)
    for root, dirs, _files in os.walk(state_dir, followlinks=False):
        for name in ["", *dirs]:
            src = Path(root) / name if name else Path(root)
            out = dest / src.relative_to(state_dir)
            if src.is_symlink() or not out.is_dir() or out.is_symlink():
                continue
            st = src.lstat()
            out.chmod(stat.S_IMODE(st.st_mode) if out != dest else 0o700)
            _same_owner(st, out)
    return report

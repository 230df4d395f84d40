"""Snapshot a proposed repo's git objects into a core-owned directory, race-free.

The manager owns its proposed repos and may swap anything below `.git` for a link to another
repository (or plant `objects/info/alternates`) between any check and git's read. So the core
never lets git read the proposed repo: it walks `.git` through directory file descriptors opened
with O_NOFOLLOW, refuses any link, special file or alternates on the way, and copies the loose
objects and packs into a private directory that git then borrows. What git sees is exactly what
was copied; a swap during the walk fails an open instead of being followed. An object file not
owned by the owner of `.git` (a hard link to somebody else's object) is refused too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from hyperhive.errors import Conflict, ErrorCode
from hyperhive.fsutil import UnsafePath

__all__ = ["MAX_SNAPSHOT_BYTES", "MAX_SNAPSHOT_ENTRIES", "SnapshotTooLarge", "snapshot_objects"]

MAX_SNAPSHOT_BYTES = 256 << 20
MAX_SNAPSHOT_ENTRIES = 200_000

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FANOUT = re.compile(r"[0-9a-f]{2}")
_LOOSE = re.compile(r"[0-9a-f]{38}|[0-9a-f]{62}")
_PACK = re.compile(r"pack-(?:[0-9a-f]{40}|[0-9a-f]{64})\.(?:pack|idx)")


class SnapshotTooLarge(UnsafePath):
    code = ErrorCode.BAD_REQUEST


def _open_dir(name: str, dir_fd: int | None, shown: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{shown} is not a plain directory (a symlink or a file); refusing", path=shown) from None
        raise


def open_dirs(base: Path, parts: Sequence[str]) -> int | None:
    """An fd of `base/parts...`, every part opened without following a link; None if a part is
    missing. `base` itself must be core-owned (it is opened normally)."""
    fd = os.open(base, _DIR_FLAGS & ~os.O_NOFOLLOW)
    shown = str(base)
    try:
        for part in parts:
            shown = f"{shown}/{part}"
            try:
                child = _open_dir(part, fd, shown)
            except FileNotFoundError:
                os.close(fd)
                return None
            os.close(fd)
            fd = child
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
    return fd


class _Walk:
    def __init__(self, owner: int, dest: Path, max_bytes: int, max_entries: int) -> None:
        self.owner = owner
        self.dest = dest
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes = 0
        self.entries = 0

    def tree(self, fd: int, rel: tuple[str, ...]) -> None:
        """Check everything below `fd` (depth first through fds) and copy the objects."""
        stack: list[tuple[int, tuple[str, ...]]] = [(fd, rel)]
        opened: list[int] = []
        try:
            while stack:
                dfd, here = stack.pop()
                with os.scandir(dfd) as it:
                    entries = list(it)
                for entry in entries:
                    self.entries += 1
                    if self.entries > self.max_entries:
                        raise SnapshotTooLarge(f"the proposed repo's .git holds more than {self.max_entries} entries")
                    path = (*here, entry.name)
                    shown = "/".join(path)
                    if entry.is_symlink():
                        raise UnsafePath(f"{shown} is a link; nothing below a proposed .git may be one", path=shown)
                    if path == (".git", "objects", "info", "alternates"):
                        raise UnsafePath("the proposed repo borrows objects (objects/info/alternates); refusing")
                    if entry.is_dir(follow_symlinks=False):
                        child = _open_dir(entry.name, dfd, shown)
                        opened.append(child)
                        stack.append((child, path))
                    elif entry.is_file(follow_symlinks=False):
                        target = self._object_target(path)
                        if target is not None:
                            self._copy(dfd, entry.name, shown, target)
                    else:
                        raise UnsafePath(f"{shown} is not a regular file or directory; refusing", path=shown)
        finally:
            for child in opened:
                os.close(child)

    def _object_target(self, path: tuple[str, ...]) -> Path | None:
        if len(path) != 4 or path[:2] != (".git", "objects"):
            return None
        sub, name = path[2], path[3]
        if (_FANOUT.fullmatch(sub) and _LOOSE.fullmatch(name)) or (sub == "pack" and _PACK.fullmatch(name)):
            return self.dest / sub / name
        return None

    def _copy(self, dfd: int, name: str, shown: str, target: Path) -> None:
        try:
            src = os.open(name, _FILE_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{shown} is a link; nothing below a proposed .git may be one", path=shown) from None
            raise
        try:
            st = os.fstat(src)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{shown} is not a regular file; refusing", path=shown)
            if st.st_uid != self.owner:
                raise UnsafePath(f"{shown} belongs to uid {st.st_uid}, not the repo's owner; refusing", path=shown)
            target.parent.mkdir(mode=0o700, exist_ok=True)
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o400)
            try:
                while chunk := os.read(src, 1 << 20):
                    self.bytes += len(chunk)
                    if self.bytes > self.max_bytes:
                        raise SnapshotTooLarge(
                            f"the proposed repo holds more than {self.max_bytes >> 20} MiB of objects"
                        )
                    os.write(out, chunk)
            finally:
                os.close(out)
        finally:
            os.close(src)


def snapshot_objects(
    base: Path,
    git_dir: Sequence[str],
    dest: Path,
    *,
    max_bytes: int = MAX_SNAPSHOT_BYTES,
    max_entries: int = MAX_SNAPSHOT_ENTRIES,
) -> bool:
    """Copy the objects of the repo whose `.git` is `base/git_dir...` into `dest` (a new, private
    object directory). Returns False if the repo is missing; raises UnsafePath for any link,
    special file, alternates, foreign-owned object, or a repo too large to snapshot."""
    if not git_dir or git_dir[-1] != ".git":
        raise ValueError("git_dir must end in .git")
    fd = open_dirs(base, git_dir)
    if fd is None:
        return False
    try:
        objects = open_dirs_at(fd, "objects", f"{base}/{'/'.join(git_dir)}/objects")
        if objects is None:
            return False
        os.close(objects)
        dest.mkdir(mode=0o700)
        walk = _Walk(os.fstat(fd).st_uid, dest, max_bytes, max_entries)
        try:
            walk.tree(fd, (".git",))
        except FileNotFoundError:
            raise Conflict("the proposed repo changed while the core read it; propose again") from None
    finally:
        os.close(fd)
    return True


def open_dirs_at(dir_fd: int, name: str, shown: str) -> int | None:
    try:
        return _open_dir(name, dir_fd, shown)
    except FileNotFoundError:
        return None

"""Filesystem helpers for trees an agent could have written into.

Agents own files under the state dir (their state, home, and for the manager every proposed
config repo), so a tree the core deletes may hold planted symlinks. `safe_rmtree` walks by
directory file descriptors opened with O_NOFOLLOW: a symlink is unlinked, never followed.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from hyperhive.errors import ErrorCode, HiveError

__all__ = ["UnsafePath", "is_within", "make_private", "read_or_create_secret", "safe_rmtree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(HiveError):
    """A path the core refuses to act on: a symlink where a real directory must be, or a path
    outside the directory it must stay in."""

    code = ErrorCode.FORBIDDEN

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = str(path) if path is not None else None


def make_private(path: Path | str, mode: int) -> bool:
    """Set `path`'s mode without following a link (an agent may have planted one where a
    database or directory should be: it is left alone). False if missing or not a regular file
    or directory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return False
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
        return True
    finally:
        os.close(fd)


def is_within(path: Path, root: Path) -> bool:
    """True if `path`, with its parent's symlinks resolved, lies strictly inside `root`.

    The last component is not resolved: a symlink leaf is judged by where it sits, not by where
    it points (the caller then refuses or unlinks it).
    """
    if path.name in ("", ".", ".."):
        return False
    parent = path.parent.resolve()
    real_root = root.resolve()
    return parent == real_root or real_root in parent.parents


def safe_rmtree(path: Path | str, *, within: Path | str | None = None, missing_ok: bool = True) -> None:
    """Delete the directory tree at `path` without ever following a symlink.

    Symlinks inside the tree are unlinked (their targets are untouched). `path` itself must be a
    real directory: a symlink there raises UnsafePath, as does a path not inside `within` when it
    is given. A missing `path` is fine unless `missing_ok` is False. The walk is iterative, so a
    deeply nested tree cannot exhaust the recursion limit.
    """
    path = Path(path)
    if within is not None and not is_within(path, Path(within)):
        raise UnsafePath(f"refusing to delete {path}: it is not inside {within}", path=path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"refusing to delete {path}: it is a symlink", path=path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"refusing to delete {path}: it is not a directory", path=path)
    parent_fd = os.open(path.parent, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        _rmtree_at(parent_fd, path.name, st)
    finally:
        os.close(parent_fd)


def _open_dir(parent_fd: int, name: str, expected: os.stat_result | None) -> int:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    if expected is not None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (expected.st_dev, expected.st_ino):
            os.close(fd)
            raise UnsafePath(f"refusing to delete {name!r}: it was replaced while being deleted")
    return fd


def _unlink_at(dir_fd: int, name: str, *, is_dir: bool) -> None:
    try:
        if is_dir:
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)
    except PermissionError:
        # A directory without write permission (possible for a non-root core): grant it to
        # ourselves, the owner, and retry once.
        os.fchmod(dir_fd, 0o700)
        if is_dir:
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)


def _rmtree_at(parent_fd: int, name: str, expected: os.stat_result) -> None:
    # Each frame: (fd of the directory being emptied, its name, fd of its parent).
    stack: list[tuple[int, str, int]] = [(_open_dir(parent_fd, name, expected), name, parent_fd)]
    try:
        while stack:
            fd, dname, pfd = stack[-1]
            descended = False
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        try:
                            child = _open_dir(fd, entry.name, entry.stat(follow_symlinks=False))
                        except PermissionError:
                            # Only a non-root core gets here (a mode-000 directory of its own).
                            # The retry re-opens with O_NOFOLLOW and re-checks the inode.
                            os.chmod(entry.name, 0o700, dir_fd=fd)
                            child = _open_dir(fd, entry.name, entry.stat(follow_symlinks=False))
                        stack.append((child, entry.name, fd))
                        descended = True
                        break
                    _unlink_at(fd, entry.name, is_dir=False)
            if descended:
                continue
            stack.pop()
            os.close(fd)
            _unlink_at(pfd, dname, is_dir=True)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """The secret in `path`, created (0600, exclusive) on first use; a looser mode is tightened."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        if path.is_symlink():
            raise PermissionError(f"{path} is a symlink; refusing to read a secret through it") from None
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        value = path.read_text(encoding="ascii").strip()
        if len(value) >= 32:
            return value
        # empty or truncated (a crash mid-write): write a fresh one
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
    value = secrets.token_urlsafe(nbytes)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(value + "\n")
    path.chmod(0o600)
    return value

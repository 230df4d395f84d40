"""Filesystem steps around the repos: directories reached without following links, a private
scratch dir no agent can write, and moving a built repo into place."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from hyperhive.core.configrepo.gitrun import GitError
from hyperhive.errors import AgentNotFound
from hyperhive.fsutil import UnsafePath, safe_rmtree
from hyperhive.paths import HivePaths

__all__ = ["applied_or_raise", "applied_repo", "move_into_place", "real_dirs", "scratch_dir"]


def real_dirs(base: Path, *parts: str) -> Path | None:
    """Walk `base/parts...` refusing symlinks and non-directories; None if a part is missing."""
    path = base
    for part in parts:
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{path} is not a plain directory (a symlink or a file); refusing", path=path)
    return path


def move_into_place(src: Path, dest: Path) -> None:
    try:
        src.rename(dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copytree(src, dest, symlinks=True)
        safe_rmtree(src)


def scratch_dir(paths: HivePaths) -> Path:
    """A private temp dir inside the applied root, which no agent can write."""
    paths.applied_root.mkdir(parents=True, exist_ok=True)
    if real_dirs(paths.state_dir, "applied") is None:  # pragma: no cover - just made
        raise UnsafePath(f"{paths.applied_root} vanished")
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=paths.applied_root))


def applied_repo(paths: HivePaths, name: str) -> Path | None:
    """The agent's applied repo, None if it has none; a link or a dir without `.git` is refused."""
    repo = real_dirs(paths.applied_root, name)
    if repo is not None and real_dirs(repo, ".git") is None:
        raise GitError(f"{repo} is not a git repo")
    return repo


def applied_or_raise(paths: HivePaths, name: str) -> Path:
    repo = applied_repo(paths, name)
    if repo is None:
        raise AgentNotFound(f"{name!r} has no applied config repo")
    return repo

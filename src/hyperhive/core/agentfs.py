"""An agent's tree on the host: its private dirs, the manager's hold on the config repos, what a
purge removes, what a kept tree weighs. Everything here blocks on the filesystem: the lifecycle
runs it in a worker thread. Links an agent planted are never followed."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from hyperhive.fsutil import make_private, safe_rmtree
from hyperhive.names import MANAGER
from hyperhive.paths import AgentPaths, HivePaths

__all__ = ["grant_manager_repos", "plain_file", "prepare_dirs", "private_modes", "purge_tree", "tree_size"]


def prepare_dirs(paths: HivePaths, name: str, uid: int | None, manager_uid: int | None) -> None:
    """The agent's state, home and run dirs, private and owned by its uid, with a .gitconfig."""
    ap = paths.agent(name)
    for d in (ap.state, ap.home, ap.run):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_modes(ap)
    gitconfig = ap.home / ".gitconfig"
    if not gitconfig.exists() and not gitconfig.is_symlink():
        # git knows who the agent is; safe.directory lets the manager read root-owned /applied
        fd = os.open(gitconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"[user]\n\tname = {name}\n\temail = {name}@hyperhive.local\n[safe]\n\tdirectory = *\n")
    if uid is not None:
        for d in (ap.state, ap.home, ap.run):
            chown_tree(d, uid)
        os.chown(ap.root, 0, 0)
    if name == MANAGER:
        grant_manager_repos(paths, manager_uid)


def grant_manager_repos(paths: HivePaths, manager_uid: int | None) -> None:
    """The manager's uid owns every proposed repo, so its git works on them in its cage, and
    its gid may read (not write) the applied root it sees at /applied; nobody else may."""
    root = paths.proposed_root
    root.mkdir(parents=True, exist_ok=True)
    make_private(root, 0o700)
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                make_private(entry.path, 0o700)
    if manager_uid is not None:
        chown_tree(root, manager_uid)
        applied = paths.applied_root
        applied.mkdir(parents=True, exist_ok=True)
        os.lchown(applied, 0, manager_uid)
        applied.chmod(0o750)


def purge_tree(paths: HivePaths, name: str) -> None:
    """The agent's state, run dir and proposed repo dir (its config repos: `ConfigRepos.remove`)."""
    ap = paths.agent(name)
    for path in (ap.root, ap.run, ap.config.parent):
        safe_rmtree(path, within=paths.state_dir if path != ap.run else paths.run_dir)


def private_modes(ap: AgentPaths) -> None:
    """Nobody but the agent's uid (and root) reads its dirs or its event trail; also fixes an
    install from before everything was private. Links the agent planted are not followed."""
    for d in (ap.root, ap.state, ap.home, ap.run):  # the cage reaches state/home through its binds
        make_private(d, 0o700)
    for suffix in ("", "-wal", "-shm"):
        make_private(f"{ap.events_db}{suffix}", 0o600)


def chown_tree(root: Path, uid: int) -> None:
    """chown a tree to uid:uid without following symlinks. An agent may plant links, and (the
    manager, whose repos are chowned while it runs) may swap a directory for a link during the
    walk: `fwalk` descends through directory fds it checked, and each entry is chowned relative
    to its directory's fd without following it."""
    os.lchown(root, uid, uid)
    for _dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        for entry in dirnames + filenames:
            with contextlib.suppress(FileNotFoundError):
                os.chown(entry, uid, uid, dir_fd=dirfd, follow_symlinks=False)


def plain_file(root: Path, *parts: str) -> bool:
    """True if root/parts... is a regular file reached through real directories only (a link
    the agent planted is not followed, so it cannot make the core stat outside its tree)."""
    path = root
    for i, part in enumerate(parts):
        path = path / part
        try:
            mode = path.lstat().st_mode
        except OSError:
            return False
        if not (stat.S_ISREG(mode) if i == len(parts) - 1 else stat.S_ISDIR(mode)):
            return False
    return True


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for f in filenames:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / f).lstat().st_size
    return total

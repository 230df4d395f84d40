"""Creating an agent's repos from the templates: the proposed repo with the seed committed, and
(for a one-step seed) the applied repo with `main` checked out and tagged `deployed/0`."""

from __future__ import annotations

import os
from pathlib import Path

from hyperhive.agentconfig import (
    AGENT_TOML,
    INSTRUCTIONS_MD,
    ConfigInvalid,
    default_agent_toml,
    default_instructions,
    manager_agent_toml,
    manager_instructions,
    parse_agent_toml,
)
from hyperhive.core.configrepo.fsops import applied_or_raise, applied_repo, move_into_place, real_dirs, scratch_dir
from hyperhive.core.configrepo.gitrun import ZERO, git, out
from hyperhive.core.configrepo.objects import import_commit, validate_at
from hyperhive.errors import Conflict
from hyperhive.fsutil import UnsafePath, safe_rmtree
from hyperhive.names import MANAGER
from hyperhive.paths import HivePaths

__all__ = ["MANAGER_APPLIED_MOUNT", "ensure_applied", "init_proposed", "seed"]

MANAGER_APPLIED_MOUNT = "/applied"  # where the manager's cage sees the applied repos (architecture §2)


def seed(paths: HivePaths, name: str, description: str | None, toml: str | None, network: str) -> str:
    """Both repos from the template (see `ConfigRepos.seed`); returns the seed commit's sha."""
    _refuse_existing(paths, name, applied=True)
    files = _seed_files(name, description, toml, network)
    tmp = scratch_dir(paths)
    try:
        sha = _build_proposed(tmp / "proposed", name, files)
        applied = tmp / "applied"
        _init_applied(applied)
        import_commit(applied, tmp / "proposed" / ".git" / "objects", sha)
        validate_at(applied, sha)
        git(applied, "update-ref", "refs/heads/main", sha, ZERO)
        git(applied, "read-tree", "--reset", "-u", "HEAD")
        git(applied, "update-ref", "refs/tags/deployed/0", sha, ZERO)
        _place_proposed(paths, name, tmp / "proposed")
        move_into_place(applied, paths.agent(name).applied)
    finally:
        safe_rmtree(tmp)
    return sha


def init_proposed(paths: HivePaths, name: str, description: str | None, network: str) -> str:
    """Only the proposed repo from the template; returns its commit's sha."""
    _refuse_existing(paths, name, applied=False)
    files = _seed_files(name, description, None, network)
    tmp = scratch_dir(paths)
    try:
        sha = _build_proposed(tmp / "proposed", name, files)
        _place_proposed(paths, name, tmp / "proposed")
    finally:
        safe_rmtree(tmp)
    return sha


def ensure_applied(paths: HivePaths, name: str) -> Path:
    """The applied repo, created empty for a first proposal."""
    repo = applied_repo(paths, name)
    if repo is not None:
        return repo
    tmp = scratch_dir(paths)
    try:
        _init_applied(tmp / "applied")
        move_into_place(tmp / "applied", paths.agent(name).applied)
    finally:
        safe_rmtree(tmp)
    return applied_or_raise(paths, name)


def _refuse_existing(paths: HivePaths, name: str, *, applied: bool) -> None:
    ap = paths.agent(name)
    if os.path.lexists(ap.config):
        raise Conflict(f"{name!r} already has a proposed config repo")
    if applied and os.path.lexists(ap.applied):
        raise Conflict(f"{name!r} already has an applied config repo")


def _seed_files(name: str, description: str | None, toml: str | None, network: str) -> dict[str, str]:
    if toml is None:
        if name == MANAGER:
            return {
                AGENT_TOML: manager_agent_toml(description, network=network),
                INSTRUCTIONS_MD: manager_instructions(),
            }
        toml = default_agent_toml(name, description, network=network)
    cfg = parse_agent_toml(toml)
    if cfg.instructions not in (None, INSTRUCTIONS_MD):
        raise ConfigInvalid(
            f"agent.toml: `instructions`: a seed provides only {INSTRUCTIONS_MD!r}", field="instructions"
        )
    instructions = manager_instructions() if name == MANAGER else default_instructions(name, description)
    return {AGENT_TOML: toml, INSTRUCTIONS_MD: instructions}


def _build_proposed(repo: Path, name: str, files: dict[str, str]) -> str:
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (repo / rel).write_text(text, encoding="utf-8")
    git(repo, "add", "--", *files)
    git(repo, "commit", "-q", "-m", f"seed {name}'s config")
    # Inside the manager's cage, `git fetch applied` reaches the applied repo (read-only).
    git(repo, "remote", "add", "applied", f"{MANAGER_APPLIED_MOUNT}/{name}")
    return out(repo, "rev-parse", "--verify", "HEAD^{commit}")


def _place_proposed(paths: HivePaths, name: str, built: Path) -> None:
    paths.proposed_root.mkdir(parents=True, exist_ok=True)
    parent = real_dirs(paths.state_dir, "proposed")
    if parent is None:  # pragma: no cover - just made
        raise UnsafePath(f"{paths.proposed_root} vanished")
    if real_dirs(parent, name) is None:
        (parent / name).mkdir()
    move_into_place(built, paths.agent(name).config)


def _init_applied(repo: Path) -> None:
    repo.mkdir()
    repo.chmod(0o755)  # whatever the daemon's umask (077): the manager's cage reads it at /applied
    git(repo, "init", "-q", "-b", "main")

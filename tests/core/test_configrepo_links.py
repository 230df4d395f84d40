"""The manager cannot make the root core read git data it could not read itself (issue 9, item 3).

The manager owns its proposed repos, so anything below `.git` may be a link to another repo's
objects, a hard link to a root-only object, or `objects/info/alternates`, planted before a
proposal or swapped in while the core reads. None of it may bring a foreign object into the
applied repo, and the answer must not depend on whether the foreign object exists.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_configrepo import MANAGER_UID, BlockingRepos, commit, manager_git

from hivetest import IN_CI
from hyperhive.core.configrepo import ConfigRepos
from hyperhive.errors import HiveError
from hyperhive.fsutil import UnsafePath
from hyperhive.paths import HivePaths

MISSING_SHA = "deadbeef" * 5


@pytest.fixture
def paths(tmp_path: Path) -> HivePaths:
    return HivePaths(tmp_path / "state", tmp_path / "run")


@pytest.fixture
def repos(paths: HivePaths) -> BlockingRepos:
    return BlockingRepos(ConfigRepos(paths))


@pytest.fixture
def iris(repos: BlockingRepos, paths: HivePaths) -> Path:
    repos.seed("iris", "frontend")
    return paths.agent("iris").config


@pytest.fixture
def secret(tmp_path: Path, iris: Path) -> tuple[Path, str]:
    """A root-only repo elsewhere on the host with a commit that is a valid agent config (so
    importing it would succeed), packed, plus the same objects loose in `loose/`."""
    repo = tmp_path / "secret"
    shutil.copytree(iris, repo)  # shares iris's history, so only the new commit is foreign
    sha = commit(repo, {"agent.toml": (repo / "agent.toml").read_text() + "\n# the root-only secret\n"})
    loose = tmp_path / "loose"
    shutil.copytree(repo, loose)
    manager_git(repo, "repack", "-a", "-d", "-q")
    manager_git(repo, "prune-packed")
    for p in (repo, loose):
        p.chmod(0o700)
    return repo, sha


def in_applied(paths: HivePaths, sha: str) -> bool:
    repo = paths.agent("iris").applied
    return manager_git(repo, "cat-file", "-t", sha, check=False) != ""


def refusal(repos: BlockingRepos, ref: str, aid: int) -> tuple[type[BaseException], str]:
    with pytest.raises(HiveError) as info:
        repos.propose("iris", ref, aid)
    return type(info.value), str(info.value)


def test_a_symlinked_pack_dir_is_refused_and_is_no_oracle(
    repos: BlockingRepos, paths: HivePaths, iris: Path, secret: tuple[Path, str]
) -> None:
    repo, sha = secret
    pack = iris / ".git" / "objects" / "pack"
    shutil.rmtree(pack, ignore_errors=True)
    pack.symlink_to(repo / ".git" / "objects" / "pack")
    found = refusal(repos, sha, 1)
    assert found[0] is UnsafePath and "link" in found[1]
    assert refusal(repos, MISSING_SHA, 2) == found  # same answer whether the object exists or not
    assert not in_applied(paths, sha)
    assert repos.tags("iris") == ["deployed/0"]


def test_a_symlinked_loose_object_dir_is_refused(
    repos: BlockingRepos, paths: HivePaths, iris: Path, secret: tuple[Path, str], tmp_path: Path
) -> None:
    _, sha = secret
    fanout = iris / ".git" / "objects" / sha[:2]
    shutil.rmtree(fanout, ignore_errors=True)
    fanout.symlink_to(tmp_path / "loose" / ".git" / "objects" / sha[:2])
    with pytest.raises(UnsafePath, match="link"):
        repos.propose("iris", sha, 1)
    assert not in_applied(paths, sha)


@pytest.mark.parametrize("where", ["refs/heads/stolen", "config", "info/exclude", "objects/info/packs"])
def test_a_link_anywhere_below_git_is_refused(repos: BlockingRepos, iris: Path, where: str) -> None:
    own = manager_git(iris, "rev-parse", "HEAD")
    target = iris / ".git" / where
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    target.symlink_to("/etc/shadow")
    with pytest.raises(UnsafePath, match="link"):
        repos.propose("iris", own, 1)


@pytest.mark.skipif(os.geteuid() != 0 and not IN_CI, reason="chown and hard links need root")
def test_a_hard_link_to_a_foreign_object_is_refused(
    repos: BlockingRepos, paths: HivePaths, iris: Path, secret: tuple[Path, str], tmp_path: Path
) -> None:
    """The manager's repo belongs to its uid; an object file owned by anyone else (a hard link to
    a root-only object) is not copied."""
    _, sha = secret
    loose = tmp_path / "loose" / ".git" / "objects"
    objects = iris / ".git" / "objects"
    for entry in [paths.proposed_root, *paths.proposed_root.rglob("*")]:
        os.lchown(entry, MANAGER_UID, MANAGER_UID)
    for src in loose.glob("??/*"):
        dest = objects / src.parent.name / src.name
        if not dest.exists():
            dest.parent.mkdir(exist_ok=True)
            os.link(src, dest)
    with pytest.raises(UnsafePath, match="belongs to uid 0"):
        repos.propose("iris", sha, 1)
    assert not in_applied(paths, sha)


def test_planted_alternates_are_refused(repos: BlockingRepos, iris: Path, secret: tuple[Path, str]) -> None:
    repo, sha = secret
    alternates = iris / ".git" / "objects" / "info" / "alternates"
    alternates.parent.mkdir(exist_ok=True)
    alternates.write_text(f"{repo}/.git/objects\n", encoding="utf-8")
    assert refusal(repos, sha, 1) == refusal(repos, MISSING_SHA, 2)
    with pytest.raises(UnsafePath, match="alternates"):
        repos.propose("iris", sha, 3)


def _swap_dir(link: Path, target: Path) -> Iterator[None]:
    """Alternate `link` between its real directory and a symlink to `target`."""
    real = link.with_name(link.name + ".real")
    while True:
        link.rename(real)
        link.symlink_to(target)
        yield
        link.unlink()
        real.rename(link)
        yield


def _toggle_alternates(objects: Path, target: Path) -> Iterator[None]:
    alternates = objects / "info" / "alternates"
    alternates.parent.mkdir(exist_ok=True)
    while True:
        alternates.write_text(f"{target}\n", encoding="utf-8")
        yield
        alternates.unlink()
        yield


SWAPS: dict[str, Callable[[Path, Path], Iterator[None]]] = {
    "objects": lambda iris, secret: _swap_dir(iris / ".git" / "objects", secret / ".git" / "objects"),
    "pack": lambda iris, secret: _swap_dir(iris / ".git" / "objects" / "pack", secret / ".git" / "objects" / "pack"),
    "alternates": lambda iris, secret: _toggle_alternates(iris / ".git" / "objects", secret / ".git" / "objects"),
}


ROUNDS = 40


@pytest.mark.parametrize("swap", sorted(SWAPS))
def test_a_swap_racing_the_proposal_never_imports_a_foreign_object(
    repos: BlockingRepos, paths: HivePaths, iris: Path, secret: tuple[Path, str], swap: str
) -> None:
    """Each round, a thread plants the link (or alternates) at the moment the core starts
    proposing the foreign sha, so it lands anywhere between the core's first look and git's read;
    it is taken away once the proposal returned. No round may bring the object in."""
    repo, sha = secret
    (iris / ".git" / "objects" / "pack").mkdir(exist_ok=True)
    steps = SWAPS[swap](iris, repo)
    start, end = threading.Barrier(2, timeout=60), threading.Barrier(2, timeout=60)

    def swapper() -> None:
        for _ in range(ROUNDS):
            start.wait()
            next(steps)  # plant, racing the proposal
            end.wait()
            next(steps)  # take it away before the next round starts

    thread = threading.Thread(target=swapper)
    thread.start()
    accepted = []
    refusals: set[str] = set()
    try:
        for aid in range(1, ROUNDS + 1):
            start.wait()
            try:
                accepted.append(repos.propose("iris", sha, aid))
            except HiveError as exc:
                refusals.add(type(exc).__name__)
            finally:
                end.wait()
    finally:
        thread.join()
    assert accepted == [], f"imported a foreign commit in {len(accepted)} of {ROUNDS} rounds"
    assert not in_applied(paths, sha)
    assert refusals <= {"UnsafePath", "InvalidRef", "Conflict", "AgentNotFound"}, refusals

"""Config as git (architecture §7): seeding, proposals frozen by tag, the deploy tags, purge.

Real git on tmp dirs. `manager_git` plays the manager committing in its proposed repo.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hivetest import IN_CI
from hyperhive.agentconfig import ConfigInvalid, default_agent_toml
from hyperhive.core.configrepo import (
    CORE_NAME,
    ConfigRepos,
    GitError,
    InvalidRef,
    RefNotFound,
)
from hyperhive.errors import AgentNotFound, Conflict, InvalidName
from hyperhive.fsutil import UnsafePath
from hyperhive.paths import HivePaths

MANAGER_UID = 61001


class BlockingRepos:
    """The daemon's async `ConfigRepos`, driven from plain test code: each call runs to the end on
    a loop of its own, so the thread-race tests can call it from several threads at once."""

    def __init__(self, repos: ConfigRepos) -> None:
        self.repos = repos

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.repos, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(method(*args, **kwargs))

        return call


def manager_git(repo: Path, *args: str, check: bool = True) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "LC_ALL": "C"}  # fmt: skip
    r = subprocess.run(
        ["git", "-c", "safe.directory=*", "-c", "user.name=manager", "-c", "user.email=manager@hive",
         "-C", str(repo), *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if check and r.returncode != 0:
        raise AssertionError(f"git {args} failed: {r.stderr}")
    return r.stdout.strip()


def commit(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    """Write (or delete, for None) files and commit them as the manager; return the sha."""
    for rel, text in files.items():
        path = repo / rel
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    manager_git(repo, "add", "-A")
    manager_git(repo, "commit", "-q", "-m", message)
    return manager_git(repo, "rev-parse", "HEAD")


def edit_toml(repo: Path, old: str, new: str) -> dict[str, str | None]:
    text = (repo / "agent.toml").read_text(encoding="utf-8")
    assert old in text
    return {"agent.toml": text.replace(old, new)}


@pytest.fixture
def paths(tmp_path: Path) -> HivePaths:
    return HivePaths(tmp_path / "state", tmp_path / "run")


@pytest.fixture
def repos(paths: HivePaths) -> BlockingRepos:
    return BlockingRepos(ConfigRepos(paths))


@pytest.fixture
def iris(repos: BlockingRepos, paths: HivePaths) -> Path:
    """A seeded agent 'iris'; returns its proposed repo."""
    repos.seed("iris", "frontend")
    return paths.agent("iris").config


def applied(paths: HivePaths, name: str = "iris") -> Path:
    return paths.agent(name).applied


def main_sha(paths: HivePaths, name: str = "iris") -> str:
    return manager_git(applied(paths, name), "rev-parse", "refs/heads/main")


# ---- seeding ---------------------------------------------------------------------------


def test_seed_commits_the_template_as_core_and_tags_deployed_0(repos: BlockingRepos, paths: HivePaths) -> None:
    """Seeding makes the proposed repo (template committed by hyperhive-core) and the applied repo
    with main checked out and `deployed/0` (architecture §7)."""
    sha = repos.seed("iris", "frontend: owns the dashboard")
    proposed = paths.agent("iris").config
    assert manager_git(proposed, "log", "-1", "--format=%an|%cn") == f"{CORE_NAME}|{CORE_NAME}"
    assert manager_git(proposed, "rev-parse", "HEAD") == sha
    assert manager_git(proposed, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert manager_git(proposed, "remote", "get-url", "applied") == "/applied/iris"
    assert main_sha(paths) == sha
    assert repos.tags("iris") == ["deployed/0"]
    assert (applied(paths) / "agent.toml").read_text(encoding="utf-8") == (proposed / "agent.toml").read_text(
        encoding="utf-8"
    )
    assert repos.applied_sha("iris") == sha and repos.has_applied("iris")
    assert repos.applied_config("iris").description == "frontend: owns the dashboard"
    assert "frontend" in repos.read_file_at("iris", "main", "instructions.md")
    assert not [p for p in paths.applied_root.iterdir() if p.name.startswith(".")], "scratch dir left behind"


def test_seed_of_the_manager_uses_the_manager_template(repos: BlockingRepos) -> None:
    """The manager's seed allows the git commands it needs to edit config repos (architecture §7)."""
    repos.seed("manager", "the manager: coordinates the swarm")
    cfg = repos.applied_config("manager")
    assert {"git *", "cd *"} <= set(cfg.bash)
    assert "request_apply_commit" in repos.read_file_at("manager", "main", "instructions.md")


def test_seed_refuses_when_either_repo_exists(repos: BlockingRepos, paths: HivePaths, iris: Path) -> None:
    """A second seed is a Conflict, whether the proposed or the applied repo is the one left."""
    with pytest.raises(Conflict, match="proposed"):
        repos.seed("iris")
    paths.agent("ada").applied.mkdir(parents=True)
    with pytest.raises(Conflict, match="applied"):
        repos.seed("ada")
    assert not paths.agent("ada").config.exists()


def test_seed_with_an_invalid_toml_creates_nothing(repos: BlockingRepos, paths: HivePaths) -> None:
    """A custom seed that does not validate raises ConfigInvalid before anything is made."""
    with pytest.raises(ConfigInvalid, match="network"):
        repos.seed("iris", toml='network = "bridge"')
    assert not paths.agent("iris").config.exists()
    assert not paths.agent("iris").applied.exists()
    sha = repos.seed("iris", toml='model = "haiku"\ninstructions = "instructions.md"\n')
    assert repos.config_at("iris", sha).model == "haiku"


def test_init_proposed_creates_only_the_proposed_repo(repos: BlockingRepos, paths: HivePaths) -> None:
    """Two-step spawn, step one: a template in the proposed repo, no applied config yet; a repeat
    is a Conflict (architecture §7)."""
    sha = repos.init_proposed("iris", "frontend")
    assert manager_git(paths.agent("iris").config, "rev-parse", "HEAD") == sha
    assert not repos.has_applied("iris")
    assert repos.applied_sha("iris") is None
    assert repos.tags("iris") == []
    with pytest.raises(Conflict):
        repos.init_proposed("iris", "again")
    with pytest.raises(AgentNotFound):
        repos.applied_config("iris")


# ---- the proposal → approve → deploy flow -----------------------------------------------


def test_proposal_approve_deploy_moves_main_and_leaves_the_tags(
    repos: BlockingRepos, paths: HivePaths, iris: Path
) -> None:
    """The whole flow: propose tags `proposal/<id>`, approve tags `approved/<id>`, begin_deploy checks
    the proposal out without moving main, finish_deploy tags `deployed/<id>` and fast-forwards main."""
    seed = main_sha(paths)
    sha = commit(iris, edit_toml(iris, "bash = []", 'bash = ["git *"]'))
    proposal = repos.propose("iris", sha[:7], 7)
    assert proposal.sha == sha
    assert proposal.config.bash == ["git *"]
    assert proposal.base == seed
    assert "\n-bash = []" in proposal.diff and '\n+bash = ["git *"]' in proposal.diff
    assert repos.diff("iris", 7) == proposal.diff
    assert repos.tags("iris") == ["deployed/0", "proposal/7"]
    assert main_sha(paths) == seed

    assert repos.tag_approved("iris", 7).bash == ["git *"]
    previous = repos.begin_deploy("iris", 7)
    assert previous == seed
    assert main_sha(paths) == seed, "begin_deploy must not move main"
    assert 'bash = ["git *"]' in (applied(paths) / "agent.toml").read_text(encoding="utf-8")
    assert repos.applied_config("iris").bash == ["git *"]  # what the restarted cage runs
    assert repos.config_at("iris", "main").bash == []
    assert repos.deploying("iris") == 7

    result = repos.finish_deploy("iris", 7)
    assert (result.sha, result.previous_sha, result.fast_forward) == (sha, seed, True)
    assert main_sha(paths) == sha
    assert manager_git(applied(paths), "rev-parse", "deployed/7") == sha
    assert repos.tags("iris") == ["deployed/0", "proposal/7", "approved/7", "deployed/7"]
    assert repos.deploying("iris") is None
    assert manager_git(applied(paths), "status", "--porcelain") == ""
    assert repos.diff("iris", 7) == ""  # against the current main


def test_first_apply_after_init_creates_the_applied_repo(repos: BlockingRepos, paths: HivePaths) -> None:
    """After init_proposed, the first propose creates the applied repo; the diff is against the empty
    tree; main appears only when the deploy finishes (architecture §7, two-step spawn)."""
    repos.init_proposed("iris", "frontend")
    repo = paths.agent("iris").config
    sha = commit(repo, edit_toml(repo, 'model = "sonnet"', 'model = "haiku"'))
    proposal = repos.propose("iris", sha, 3)
    assert proposal.base is None
    assert "new file mode 100644" in proposal.diff and "+++ b/agent.toml" in proposal.diff
    assert not repos.has_applied("iris")
    repos.tag_approved("iris", 3)
    assert repos.begin_deploy("iris", 3) is None
    assert repos.applied_config("iris").model == "haiku"
    result = repos.finish_deploy("iris", 3)
    assert (result.previous_sha, result.fast_forward) == (None, True)
    assert repos.has_applied("iris") and repos.applied_sha("iris") == sha


def test_a_proposal_survives_the_manager_amending_and_force_resetting(
    repos: BlockingRepos, paths: HivePaths, iris: Path
) -> None:
    """Once tagged, a proposal is immutable: amending, resetting, deleting the branch and pruning the
    objects in the proposed repo change nothing about what gets deployed (architecture §7)."""
    seed = main_sha(paths)
    sha = commit(iris, edit_toml(iris, 'model = "sonnet"', 'model = "haiku"'))
    repos.propose("iris", sha, 1)
    diff = repos.diff("iris", 1)

    commit(iris, edit_toml(iris, 'model = "haiku"', 'model = "opus"'))
    manager_git(iris, "commit", "-q", "--amend", "-m", "rewritten")
    manager_git(iris, "checkout", "-q", "-b", "other", seed)
    manager_git(iris, "branch", "-D", "main")
    manager_git(iris, "reflog", "expire", "--expire=now", "--all")
    manager_git(iris, "gc", "-q", "--prune=now")
    assert manager_git(iris, "cat-file", "-e", sha, check=False) == ""
    assert subprocess.run(["git", "-C", str(iris), "cat-file", "-e", sha], capture_output=True).returncode != 0

    assert repos.diff("iris", 1) == diff
    assert repos.config_at("iris", "proposal/1").model == "haiku"
    repos.tag_approved("iris", 1)
    repos.begin_deploy("iris", 1)
    assert repos.finish_deploy("iris", 1).sha == sha
    assert repos.applied_config("iris").model == "haiku"


def test_proposing_the_same_id_and_commit_again_is_idempotent(repos: BlockingRepos, iris: Path) -> None:
    """A retried propose returns the same proposal; another commit under that id is a Conflict."""
    a = commit(iris, edit_toml(iris, 'model = "sonnet"', 'model = "haiku"'))
    b = commit(iris, edit_toml(iris, 'model = "haiku"', 'model = "opus"'))
    assert repos.propose("iris", a, 1).sha == a
    assert repos.propose("iris", a.upper(), 1).sha == a
    with pytest.raises(Conflict, match="proposal/1 already exists"):
        repos.propose("iris", b, 1)
    assert repos.tags("iris") == ["deployed/0", "proposal/1"]


def test_concurrent_proposals_for_one_agent_are_serialised(repos: BlockingRepos, iris: Path) -> None:
    """Calls arrive from several asyncio.to_thread workers; proposals released together by a barrier
    all end up tagged, each at its own commit."""
    shas = {aid: commit(iris, {f"n{aid}.txt": str(aid)}) for aid in range(1, 5)}
    barrier = threading.Barrier(len(shas))
    errors: list[BaseException] = []

    def go(aid: int) -> None:
        try:
            barrier.wait(timeout=10)
            repos.propose("iris", shas[aid], aid)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(aid,)) for aid in shas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    assert repos.tags("iris") == ["deployed/0", *(f"proposal/{aid}" for aid in shas)]
    for aid, sha in shas.items():
        assert repos.config_at("iris", f"proposal/{aid}") == repos.config_at("iris", sha)


# ---- refusals ----------------------------------------------------------------------------

BAD_REFS = ["main", "HEAD", "refs/heads/main", "deployed/0", "abc123", "a" * 41, "g" * 7, "-abcdef0",
            "abcdef0\n", "abcdef0 ", "abcdef0~1", "abcdef0^{tree}", "", "HEAD@{1}"]  # fmt: skip


@pytest.mark.parametrize("ref", BAD_REFS)
def test_branch_names_and_malformed_refs_are_refused_before_git(repos: BlockingRepos, iris: Path, ref: str) -> None:
    """commit_ref must be 7-40 hex digits: branch and tag names, short, long and non-hex refs are
    refused with a clear error and leave no tag (architecture §7)."""
    with pytest.raises(InvalidRef, match="7-40 hex"):
        repos.propose("iris", ref, 1)
    assert repos.tags("iris") == ["deployed/0"]


def test_an_unknown_sha_is_refused(repos: BlockingRepos, iris: Path) -> None:
    """A well-formed sha that is in neither repo is refused; no tag."""
    with pytest.raises(InvalidRef, match="is not a commit"):
        repos.propose("iris", "deadbeef" * 5, 1)
    with pytest.raises(InvalidRef, match="is not a commit"):
        repos.propose("iris", "deadbee", 1)
    assert repos.tags("iris") == ["deployed/0"]


def test_a_tree_or_blob_sha_is_refused(repos: BlockingRepos, iris: Path) -> None:
    """Only a commit can be proposed; a tree or blob sha names its type in the refusal."""
    tree = manager_git(iris, "rev-parse", "HEAD^{tree}")
    blob = manager_git(iris, "rev-parse", "HEAD:agent.toml")
    with pytest.raises(InvalidRef, match="names a tree, not a commit"):
        repos.propose("iris", tree, 1)
    with pytest.raises(InvalidRef, match="names a blob, not a commit"):
        repos.propose("iris", blob[:10], 1)
    assert repos.tags("iris") == ["deployed/0"]


@pytest.mark.parametrize("aid", [0, -1, True, "1", 1.0, None, 10**18])
def test_approval_ids_must_be_positive_integers(repos: BlockingRepos, iris: Path, aid: object) -> None:
    """Approval ids name tags, so only positive integers pass (0 is the seed's)."""
    sha = manager_git(iris, "rev-parse", "HEAD")
    with pytest.raises(InvalidRef, match="approval id"):
        repos.propose("iris", sha, aid)


INVALID_COMMITS: list[tuple[dict[str, str | None], str]] = [
    ({"agent.toml": 'network = "bridge"\n'}, "agent.toml: `network`: must be 'host' or 'none'"),
    ({"agent.toml": "model = [\n"}, "not valid TOML"),
    ({"agent.toml": None}, "agent.toml: missing"),
    ({"instructions.md": None}, "`instructions`: 'instructions.md' is not a file in the commit"),
    ({"agent.toml": 'instructions = "nope.md"\n'}, "'nope.md' is not a file"),
    ({"agent.toml": 'env = { PATH = "/evil" }\n'}, "'PATH' is not an allowed [env] name"),
]


@pytest.mark.parametrize(("files", "needle"), INVALID_COMMITS)
def test_an_invalid_config_is_never_tagged(
    repos: BlockingRepos, iris: Path, files: dict[str, str | None], needle: str
) -> None:
    """A commit whose agent.toml does not validate, or names a missing instructions file, raises
    ConfigInvalid and leaves no `proposal/<id>` (architecture §7)."""
    sha = commit(iris, files)
    with pytest.raises(ConfigInvalid) as info:
        repos.propose("iris", sha, 1)
    assert needle in info.value.message
    assert repos.tags("iris") == ["deployed/0"]
    with pytest.raises(RefNotFound):
        repos.diff("iris", 1)


def test_symlinks_in_a_config_commit_are_refused(repos: BlockingRepos, iris: Path) -> None:
    """instructions.md as a symlink to /etc/shadow is refused: a config repo holds plain files only."""
    (iris / "instructions.md").unlink()
    (iris / "instructions.md").symlink_to("/etc/shadow")
    sha = commit(iris, {})
    with pytest.raises(ConfigInvalid, match="symlinks are not allowed"):
        repos.propose("iris", sha, 1)
    assert repos.tags("iris") == ["deployed/0"]


# ---- deny / fail ------------------------------------------------------------------------


def test_deny_annotates_the_reason(repos: BlockingRepos, paths: HivePaths, iris: Path) -> None:
    """Deny tags `denied/<id>` annotated with the operator's reason, or "denied" without one; a denied
    proposal cannot be approved (architecture §7)."""
    a = commit(iris, edit_toml(iris, 'model = "sonnet"', 'model = "haiku"'))
    b = commit(iris, edit_toml(iris, 'model = "haiku"', 'model = "opus"'))
    repos.propose("iris", a, 1)
    repos.propose("iris", b, 2)
    repos.deny("iris", 1, "too expensive\nuse haiku only for triage")
    repos.deny("iris", 2, "")
    repo = applied(paths)
    assert manager_git(repo, "cat-file", "-t", "denied/1") == "tag"
    body = manager_git(repo, "cat-file", "tag", "denied/1")
    assert "too expensive\nuse haiku only for triage" in body
    assert f"tagger {CORE_NAME}" in body
    assert manager_git(repo, "tag", "-n1", "-l", "denied/2").split() == ["denied/2", "denied"]
    assert repos.tag_message("iris", "denied/1") == "too expensive\nuse haiku only for triage"
    assert repos.tag_message("iris", "proposal/1") is None
    with pytest.raises(Conflict, match="denied"):
        repos.tag_approved("iris", 1)
    repos.deny("iris", 1, "again")  # repeat: no error, first reason kept
    assert repos.tag_message("iris", "denied/1") == "too expensive\nuse haiku only for triage"
    assert main_sha(paths) != a


def test_deny_after_approve_is_a_conflict(repos: BlockingRepos, iris: Path) -> None:
    """An approved proposal is past denial."""
    repos.propose("iris", commit(iris, {"notes.txt": "x"}), 1)
    repos.tag_approved("iris", 1)
    with pytest.raises(Conflict, match="approved"):
        repos.deny("iris", 1, "changed my mind")


def test_fail_deploy_tags_the_error_and_restores_main(repos: BlockingRepos, paths: HivePaths, iris: Path) -> None:
    """A failed deploy tags `failed/<id>` with the error, puts the working tree back to main, and
    keeps the old config running (architecture §7)."""
    seed = main_sha(paths)
    sha = commit(iris, {**edit_toml(iris, 'model = "sonnet"', 'model = "haiku"'), "extra/new.md": "hi"})
    repos.propose("iris", sha, 4)
    repos.tag_approved("iris", 4)
    repos.begin_deploy("iris", 4)
    assert (applied(paths) / "extra" / "new.md").exists()
    repos.fail_deploy("iris", 4, "cage did not become healthy within 30s")
    assert main_sha(paths) == seed
    assert not (applied(paths) / "extra" / "new.md").exists()
    assert 'model = "sonnet"' in (applied(paths) / "agent.toml").read_text(encoding="utf-8")
    assert manager_git(applied(paths), "status", "--porcelain") == ""
    assert repos.applied_config("iris").model == "sonnet"
    assert repos.deploying("iris") is None
    assert "cage did not become healthy" in manager_git(applied(paths), "cat-file", "tag", "failed/4")
    assert repos.tags("iris") == ["deployed/0", "proposal/4", "approved/4", "failed/4"]
    with pytest.raises(Conflict, match="failed"):
        repos.finish_deploy("iris", 4)
    repos.fail_deploy("iris", 4, "again")  # repeat: harmless


def test_fail_deploy_of_a_first_apply_empties_the_working_tree(repos: BlockingRepos, paths: HivePaths) -> None:
    """With no main yet, failing the first deploy leaves no config checked out and no main."""
    repos.init_proposed("iris")
    sha = manager_git(paths.agent("iris").config, "rev-parse", "HEAD")
    repos.propose("iris", sha, 1)
    repos.tag_approved("iris", 1)
    repos.begin_deploy("iris", 1)
    repos.fail_deploy("iris", 1, "boom")
    assert not (applied(paths) / "agent.toml").exists()
    assert not repos.has_applied("iris")


def test_finish_deploy_moves_main_even_when_it_is_not_an_ancestor(
    repos: BlockingRepos, paths: HivePaths, iris: Path
) -> None:
    """If main is not an ancestor of the deployed commit (the manager rewrote history), main still
    moves to the deployed sha and the result says it was not a fast-forward."""
    seed = main_sha(paths)
    one = commit(iris, edit_toml(iris, 'model = "sonnet"', 'model = "haiku"'))
    for aid, sha in ((1, one),):
        repos.propose("iris", sha, aid)
        repos.tag_approved("iris", aid)
        repos.begin_deploy("iris", aid)
        repos.finish_deploy("iris", aid)
    manager_git(iris, "reset", "-q", "--hard", seed)
    two = commit(iris, edit_toml(iris, 'model = "sonnet"', 'model = "opus"'))
    repos.propose("iris", two, 2)
    repos.tag_approved("iris", 2)
    assert repos.begin_deploy("iris", 2) == one
    result = repos.finish_deploy("iris", 2)
    assert (result.sha, result.previous_sha, result.fast_forward) == (two, one, False)
    assert main_sha(paths) == two
    assert manager_git(applied(paths), "rev-parse", "deployed/1") == one  # the old deploy stays reachable


def test_deploy_steps_are_safe_to_repeat(repos: BlockingRepos, paths: HivePaths, iris: Path) -> None:
    """Each step can be retried after a crash or a retry without changing the outcome."""
    sha = commit(iris, {"notes.txt": "x"})
    repos.propose("iris", sha, 1)
    repos.tag_approved("iris", 1)
    repos.tag_approved("iris", 1)
    prev = repos.begin_deploy("iris", 1)
    assert repos.begin_deploy("iris", 1) == prev
    repos.finish_deploy("iris", 1)
    again = repos.finish_deploy("iris", 1)
    assert again.sha == sha and main_sha(paths) == sha
    assert repos.tags("iris") == ["deployed/0", "proposal/1", "approved/1", "deployed/1"]
    with pytest.raises(Conflict, match="deployed"):
        repos.fail_deploy("iris", 1, "late failure")


def test_deploy_needs_an_approved_proposal(repos: BlockingRepos, iris: Path) -> None:
    """begin_deploy and finish_deploy refuse a proposal that was not approved; an unknown id is not found."""
    repos.propose("iris", commit(iris, {"notes.txt": "x"}), 1)
    with pytest.raises(Conflict, match="not approved"):
        repos.begin_deploy("iris", 1)
    with pytest.raises(Conflict, match="not approved"):
        repos.finish_deploy("iris", 1)
    with pytest.raises(RefNotFound):
        repos.tag_approved("iris", 99)


def test_a_second_deploy_waits_for_the_first(repos: BlockingRepos, iris: Path) -> None:
    """Only one deploy per agent is in flight; `deploying` names it so a restarted daemon can end it."""
    for aid in (1, 2):
        repos.propose("iris", commit(iris, {f"n{aid}.txt": "x"}), aid)
        repos.tag_approved("iris", aid)
    repos.begin_deploy("iris", 1)
    with pytest.raises(Conflict, match="already deploying #1"):
        repos.begin_deploy("iris", 2)
    repos.fail_deploy("iris", 2, "superseded")  # failing another id leaves #1's checkout alone
    assert repos.deploying("iris") == 1
    repos.fail_deploy("iris", 1, "interrupted")
    assert repos.deploying("iris") is None


# ---- reading -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", ".git/config", "a/../../b", "", "a\x00b", "./agent.toml"])
def test_read_file_at_refuses_paths_escaping_the_repo(repos: BlockingRepos, iris: Path, path: str) -> None:
    """Only relative paths inside the repo are read (architecture §7: instructions stay in the repo)."""
    with pytest.raises(InvalidRef, match="path"):
        repos.read_file_at("iris", "main", path)


def test_refs_and_files_that_do_not_exist_are_not_found(repos: BlockingRepos, iris: Path) -> None:
    """Unknown refs and files are RefNotFound; malformed refs are InvalidRef."""
    with pytest.raises(RefNotFound):
        repos.read_file_at("iris", "main", "nope.md")
    with pytest.raises(RefNotFound):
        repos.config_at("iris", "proposal/5")
    with pytest.raises(InvalidRef):
        repos.config_at("iris", "refs/heads/main")
    with pytest.raises(InvalidRef):
        repos.config_at("iris", "--all")
    with pytest.raises(RefNotFound):
        repos.read_file_at("iris", "main", "extra")  # a directory is not a file
    seed = repos.applied_sha("iris")
    assert seed is not None
    assert repos.config_at("iris", seed[:8]).model == repos.config_at("iris", "deployed/0").model


# ---- hostile repos and names -------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0 and not IN_CI, reason="chown needs root")
def test_a_proposed_repo_owned_by_another_uid_works_from_root(
    repos: BlockingRepos, paths: HivePaths, iris: Path
) -> None:
    """The proposed repo belongs to the manager's uid while the core runs as root; proposing still
    works (architecture §2, §7)."""
    sha = commit(iris, edit_toml(iris, 'model = "sonnet"', 'model = "haiku"'))
    for entry in [paths.proposed_root, *paths.proposed_root.rglob("*")]:
        os.lchown(entry, MANAGER_UID, MANAGER_UID)
    plain = subprocess.run(["git", "-C", str(iris), "rev-parse", "HEAD"], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})  # fmt: skip
    assert plain.returncode != 0 and "dubious ownership" in plain.stderr  # the condition is real
    assert repos.propose("iris", sha, 1).sha == sha
    repos.tag_approved("iris", 1)
    repos.begin_deploy("iris", 1)
    assert repos.finish_deploy("iris", 1).sha == sha
    assert (iris / ".git" / "HEAD").stat().st_uid == MANAGER_UID  # the core wrote nothing there


def test_the_proposed_repos_git_config_and_hooks_never_run(
    repos: BlockingRepos, paths: HivePaths, iris: Path, tmp_path: Path
) -> None:
    """The manager controls the proposed repo's .git: its config commands (fsmonitor, a promisor
    remote's upload-pack) and hooks must never run as root. The core reads only its objects."""
    marker = tmp_path / "pwned"
    script = tmp_path / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n", encoding="utf-8")
    script.chmod(0o755)
    sha = commit(iris, {"notes.txt": "x"})
    for key, value in [("core.fsmonitor", str(script)), ("core.repositoryformatversion", "1"),
                       ("extensions.partialClone", "origin"), ("remote.origin.url", str(tmp_path)),
                       ("remote.origin.promisor", "true"), ("remote.origin.uploadpack", str(script)),
                       ("core.hooksPath", str(tmp_path))]:  # fmt: skip
        manager_git(iris, "config", key, value)
    for hook in ("post-checkout", "reference-transaction", "pre-auto-gc"):
        (tmp_path / hook).symlink_to(script)
    with pytest.raises(InvalidRef):
        repos.propose("iris", "deadbeef" * 5, 1)  # a missing object would make git lazy-fetch
    assert repos.propose("iris", sha, 2).sha == sha
    repos.tag_approved("iris", 2)
    repos.begin_deploy("iris", 2)
    repos.finish_deploy("iris", 2)
    assert not marker.exists()


def test_a_symlinked_or_borrowing_proposed_repo_is_refused(
    repos: BlockingRepos, paths: HivePaths, iris: Path, tmp_path: Path
) -> None:
    """The manager could replace its repo with a symlink to a root-only repo, or point its object dir
    at one with alternates; either is refused rather than read as root."""
    sha = manager_git(iris, "rev-parse", "HEAD")
    secret = tmp_path / "secret"
    secret.mkdir()
    manager_git(secret, "init", "-q")
    alternates = iris / ".git" / "objects" / "info" / "alternates"
    alternates.parent.mkdir(parents=True, exist_ok=True)
    alternates.write_text(str(secret / ".git" / "objects") + "\n", encoding="utf-8")
    with pytest.raises(UnsafePath, match="alternates"):
        repos.propose("iris", sha, 1)
    alternates.unlink()
    moved = tmp_path / "moved"
    iris.rename(moved)
    iris.symlink_to(moved)
    with pytest.raises(UnsafePath, match="symlink"):
        repos.propose("iris", sha, 1)
    iris.unlink()
    (iris.parent).rmdir()
    paths.agent("iris").config.parent.symlink_to(tmp_path)  # state/proposed/iris → elsewhere
    with pytest.raises(UnsafePath):
        repos.propose("iris", sha, 1)
    assert repos.tags("iris") == ["deployed/0"]


HOSTILE = ["../etc", "a/b", "..", "", "Iris", "x" * 40, "operator", "*", "iris\n", "/etc"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_before_any_path_is_built(repos: BlockingRepos, paths: HivePaths, name: str) -> None:
    """Every entry point validates the agent name first: nothing is created or read (architecture §2)."""
    calls = [
        lambda: repos.seed(name),
        lambda: repos.init_proposed(name, "x"),
        lambda: repos.propose(name, "abcdef0", 1),
        lambda: repos.diff(name, 1),
        lambda: repos.config_at(name, "main"),
        lambda: repos.applied_config(name),
        lambda: repos.read_file_at(name, "main", "agent.toml"),
        lambda: repos.applied_sha(name),
        lambda: repos.has_applied(name),
        lambda: repos.tag_approved(name, 1),
        lambda: repos.begin_deploy(name, 1),
        lambda: repos.finish_deploy(name, 1),
        lambda: repos.fail_deploy(name, 1, "e"),
        lambda: repos.deny(name, 1, "n"),
        lambda: repos.tags(name),
        lambda: repos.remove(name),
        lambda: repos.deploying(name),
    ]
    for call in calls:
        with pytest.raises(InvalidName):
            call()
    assert not paths.state_dir.exists()


def test_remove_deletes_both_repos_without_following_symlinks(
    repos: BlockingRepos, paths: HivePaths, iris: Path, tmp_path: Path
) -> None:
    """Purge deletes the proposed and applied repos; a symlink the manager planted is unlinked and
    its target survives (architecture §7)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep", encoding="utf-8")
    (iris / "escape").symlink_to(outside)
    (iris / "etc").symlink_to("/etc")
    repos.remove("iris")
    assert not os.path.lexists(paths.agent("iris").config.parent)
    assert not os.path.lexists(paths.agent("iris").applied)
    assert (outside / "precious").read_text(encoding="utf-8") == "keep"
    assert Path("/etc/passwd").exists()
    repos.remove("iris")  # purging twice is fine
    assert repos.tags("iris") == []


def test_remove_refuses_a_repo_path_that_is_a_symlink(
    repos: BlockingRepos, paths: HivePaths, iris: Path, tmp_path: Path
) -> None:
    """If the agent's proposed dir was swapped for a symlink, purge refuses instead of following it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep", encoding="utf-8")
    agent_dir = paths.agent("iris").config.parent
    from hyperhive.fsutil import safe_rmtree

    safe_rmtree(agent_dir)
    agent_dir.symlink_to(outside)
    with pytest.raises(UnsafePath):
        repos.remove("iris")
    assert (outside / "precious").exists()


def test_git_failures_surface_as_git_errors(repos: BlockingRepos, paths: HivePaths, iris: Path) -> None:
    """A broken applied repo gives a GitError naming the repo, not a crash or a hang."""
    head = applied(paths) / ".git" / "HEAD"
    head.write_text("garbage\n", encoding="utf-8")
    with pytest.raises(GitError):
        repos.config_at("iris", "main")


def test_templates_in_a_seed_are_valid_configs(repos: BlockingRepos) -> None:
    """A custom seed toml (one-step spawn) is committed and deployed as given."""
    toml = default_agent_toml("ada", "backend").replace('network = "host"', 'network = "none"')
    repos.seed("ada", "backend", toml=toml)
    assert repos.applied_config("ada").network == "none"

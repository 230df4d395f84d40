"""The blocking half of `ConfigRepos`: every operation on an agent's repos, serialised per agent
by a thread lock. Only `ConfigRepos` calls it, each call in a worker thread."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import hyperhive.core.configrepo.deploytags as deploytags
import hyperhive.core.configrepo.objects as objects
import hyperhive.core.configrepo.seeding as seeding
from hyperhive.agentconfig import AgentConfig, ConfigInvalid, validate_repo_path
from hyperhive.core.configrepo.deploytags import Deployed
from hyperhive.core.configrepo.fsops import applied_or_raise, applied_repo, scratch_dir
from hyperhive.core.configrepo.gitrun import ZERO, git, out, ref_sha
from hyperhive.core.configrepo.refs import TAG_RE, InvalidRef, RefNotFound, approval_id, commit_ref
from hyperhive.errors import Conflict
from hyperhive.fsutil import safe_rmtree
from hyperhive.paths import HivePaths

__all__ = ["Proposal", "RepoEngine"]

log = logging.getLogger(__name__)

_REGULAR_MODES = ("100644", "100755")


@dataclass(frozen=True)
class Proposal:
    """A frozen request: `sha` is tagged `proposal/<id>` in the applied repo."""

    sha: str
    config: AgentConfig
    diff: str  # against applied main (or the empty tree for a first apply)
    base: str | None = None  # applied main's sha when proposed


class RepoEngine:
    """Thread-safe: calls on one agent are serialised, calls on different agents run in parallel."""

    def __init__(self, paths: HivePaths) -> None:
        self.paths = paths
        self.default_network = "host"
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def _name(self, name: str) -> str:
        return self.paths.agent(name).name  # validates

    # ---- seeding ----

    def seed(self, name: str, description: str | None, toml: str | None) -> str:
        name = self._name(name)
        with self._lock(name):
            sha = seeding.seed(self.paths, name, description, toml, self.default_network)
            log.info("seeded config repos for %s at %s", name, sha[:12])
            return sha

    def init_proposed(self, name: str, description: str | None) -> str:
        name = self._name(name)
        with self._lock(name):
            return seeding.init_proposed(self.paths, name, description, self.default_network)

    def has_proposed(self, name: str) -> bool:
        return os.path.lexists(self.paths.agent(name).config)

    # ---- reading ----

    def applied_sha(self, name: str) -> str | None:
        repo = applied_repo(self.paths, self._name(name))
        return None if repo is None else ref_sha(repo, "refs/heads/main")

    def config_at(self, name: str, ref: str) -> AgentConfig:
        name = self._name(name)
        with self._lock(name):
            repo = applied_or_raise(self.paths, name)
            return objects.validate_at(repo, deploytags.resolve_applied(repo, ref))

    def read_file_at(self, name: str, ref: str, path: str) -> str:
        try:
            path = validate_repo_path(path)
        except ValueError as exc:
            raise InvalidRef(f"path: {exc}") from None
        name = self._name(name)
        with self._lock(name):
            repo = applied_or_raise(self.paths, name)
            sha = deploytags.resolve_applied(repo, ref)
            raw = git(repo, "ls-tree", "-z", "-l", sha, "--", path).stdout.rstrip(b"\0")
            meta, _, found = raw.partition(b"\t")
            fields = meta.decode().split()
            if found.decode("utf-8", "replace") != path or len(fields) != 4 or fields[0] not in _REGULAR_MODES:
                raise RefNotFound(f"{path!r} is not a regular file at {ref} in {name}'s applied repo")
            if int(fields[3]) > objects.MAX_FILE_BYTES:
                raise ConfigInvalid(f"{path}: larger than 1 MiB")
            try:
                return git(repo, "cat-file", "blob", fields[2]).stdout.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigInvalid(f"{path}: not UTF-8 text") from None

    def diff(self, name: str, aid: int) -> str:
        name = self._name(name)
        with self._lock(name):
            repo = applied_or_raise(self.paths, name)
            _, sha = deploytags.proposal_sha(repo, name, aid)
            return objects.diff(repo, ref_sha(repo, "refs/heads/main"), sha)

    def tags(self, name: str) -> list[str]:
        repo = applied_repo(self.paths, self._name(name))
        return [] if repo is None else deploytags.tags(repo)

    def tag_message(self, name: str, tag: str) -> str | None:
        if not TAG_RE.fullmatch(tag):
            raise InvalidRef(f"tag {tag[:60]!r} must be <stage>/<id>")
        name = self._name(name)
        return deploytags.tag_message(applied_or_raise(self.paths, name), name, tag)

    def deploying(self, name: str) -> int | None:
        name = self._name(name)
        with self._lock(name):
            repo = applied_repo(self.paths, name)
            found = None if repo is None else deploytags.deploying(repo)
            return None if found is None else found[0]

    # ---- proposals ----

    def propose(self, name: str, ref: object, aid: object) -> Proposal:
        name = self._name(name)
        checked_aid = approval_id(aid)
        checked_ref = commit_ref(ref)
        with self._lock(name):
            tmp = scratch_dir(self.paths)
            try:
                snap = objects.snapshot_proposed(self.paths, name, tmp)
                repo = seeding.ensure_applied(self.paths, name)
                sha = objects.resolve_proposed(name, repo, snap, checked_ref)
                tag = f"proposal/{checked_aid}"
                existing = ref_sha(repo, f"refs/tags/{tag}")
                if existing is not None and existing != sha:
                    raise Conflict(f"{tag} already exists for {name!r} at {existing[:12]}")
                objects.import_commit(repo, snap, sha)
            finally:
                safe_rmtree(tmp)
            cfg = objects.validate_at(repo, sha)
            if existing is None:
                git(repo, "update-ref", f"refs/tags/{tag}", sha, ZERO)
            base = ref_sha(repo, "refs/heads/main")
            return Proposal(sha=sha, config=cfg, diff=objects.diff(repo, base, sha), base=base)

    def commit_operator_edit(self, name: str, files: dict[str, str], base_sha: str, aid: object) -> Proposal:
        name = self._name(name)
        checked_aid = approval_id(aid)
        with self._lock(name):
            repo = applied_or_raise(self.paths, name)
            main = ref_sha(repo, "refs/heads/main")
            if main is None:
                raise RefNotFound(f"{name!r} has no applied config yet")
            if main != base_sha:
                raise Conflict(f"{name}'s config changed while you edited it (now {main[:12]}); edit it again")
            tmp = scratch_dir(self.paths)
            try:
                sha = _commit_files(repo, main, files, tmp / "index", checked_aid)
            finally:
                safe_rmtree(tmp)
            cfg = objects.validate_at(repo, sha)
            git(repo, "update-ref", f"refs/tags/operator/{checked_aid}", sha, ZERO)
            git(repo, "update-ref", f"refs/tags/proposal/{checked_aid}", sha, ZERO)
            return Proposal(sha=sha, config=cfg, diff=objects.diff(repo, main, sha), base=main)

    # ---- deploy steps ----

    def _proposal(self, name: str, aid: object) -> tuple[Path, int, str]:
        repo = applied_or_raise(self.paths, name)
        checked, sha = deploytags.proposal_sha(repo, name, aid)
        return repo, checked, sha

    def tag_approved(self, name: str, aid: int) -> AgentConfig:
        name = self._name(name)
        with self._lock(name):
            repo, checked, sha = self._proposal(name, aid)
            return deploytags.tag_approved(repo, name, checked, sha)

    def begin_deploy(self, name: str, aid: int) -> str | None:
        name = self._name(name)
        with self._lock(name):
            repo, checked, sha = self._proposal(name, aid)
            return deploytags.begin_deploy(repo, name, checked, sha)

    def finish_deploy(self, name: str, aid: int) -> Deployed:
        name = self._name(name)
        with self._lock(name):
            repo, checked, sha = self._proposal(name, aid)
            return deploytags.finish_deploy(repo, name, checked, sha)

    def fail_deploy(self, name: str, aid: int, error: str) -> None:
        name = self._name(name)
        with self._lock(name):
            repo, checked, sha = self._proposal(name, aid)
            deploytags.fail_deploy(repo, name, checked, sha, error)

    def deny(self, name: str, aid: int, reason: str | None) -> None:
        name = self._name(name)
        with self._lock(name):
            repo, checked, sha = self._proposal(name, aid)
            deploytags.deny(repo, name, checked, sha, reason)

    # ---- purge ----

    def remove(self, name: str) -> None:
        ap = self.paths.agent(name)
        with self._lock(ap.name):
            safe_rmtree(ap.config.parent, within=self.paths.proposed_root)
            safe_rmtree(ap.applied, within=self.paths.applied_root)


def _commit_files(repo: Path, main: str, files: dict[str, str], index: Path, aid: int) -> str:
    """A commit on `main` with `files` replaced, built through a private index."""
    env = {"GIT_INDEX_FILE": str(index)}
    git(repo, "read-tree", main, env=env)
    for rel, text in files.items():
        try:
            rel = validate_repo_path(rel)
        except ValueError as exc:
            raise InvalidRef(f"path: {exc}") from None
        oid = git(repo, "hash-object", "-w", "--stdin", input=text.encode("utf-8")).stdout.decode().strip()
        git(repo, "update-index", "--add", "--cacheinfo", f"100644,{oid},{rel}", env=env)
    tree = out(repo, "write-tree", env=env)
    who = {"GIT_AUTHOR_NAME": "operator", "GIT_AUTHOR_EMAIL": "operator@hyperhive.local"}
    message = f"operator edit #{aid} of {', '.join(sorted(files))}\n".encode()
    return git(repo, "commit-tree", tree, "-p", main, input=message, env=who).stdout.decode().strip()

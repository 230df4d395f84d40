"""Agent config as git (DESIGN §7): proposed repos, applied repos, proposals, deploy tags.

Two repos per agent. The *proposed* repo (`state/proposed/<name>/config`) belongs to the manager,
which edits and commits there. The *applied* repo (`state/applied/<name>`) belongs to the core:
`main` is what runs, and the tags `proposal/<id>`, `approved/<id>`, `deployed/<id>`,
`failed/<id>` (annotated with the error) and `denied/<id>` (annotated with the reason) record
every request. `deployed/0` marks a seed.

The core runs as root and the proposed repo is written by an agent, so this module never runs
git *in* the proposed repo (its config and hooks could run commands). It reads the proposed
repo's objects from a private snapshot (`gitobjects.snapshot_objects`: copied through
O_NOFOLLOW directory fds, refusing any link below `.git`, alternates, or an object file owned by
someone else) that a core-owned repo borrows as alternates, and copies them with
`pack-objects | index-pack`. The core never writes to a proposed repo after seeding it.

Every call is synchronous (the daemon runs them in `asyncio.to_thread`), serialised per agent,
bounded by a timeout, and passes git only validated refs and shas: never a shell.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hyperhive.agentconfig import (
    AGENT_TOML,
    INSTRUCTIONS_MD,
    MAX_TOML_BYTES,
    AgentConfig,
    ConfigInvalid,
    default_agent_toml,
    default_instructions,
    manager_agent_toml,
    manager_instructions,
    parse_agent_toml,
    validate_repo_path,
)
from hyperhive.core.gitobjects import snapshot_objects
from hyperhive.errors import AgentNotFound, Conflict, HiveError
from hyperhive.fsutil import UnsafePath, safe_rmtree
from hyperhive.names import MANAGER
from hyperhive.paths import HivePaths

__all__ = [
    "CORE_EMAIL",
    "CORE_NAME",
    "ConfigRepos",
    "Deployed",
    "GitError",
    "InvalidRef",
    "Proposal",
    "RefNotFound",
]

log = logging.getLogger(__name__)

CORE_NAME = "hyperhive-core"
CORE_EMAIL = "hyperhive-core@localhost"
GIT_TIMEOUT = 60.0
MANAGER_APPLIED_MOUNT = "/applied"  # where the manager's cage sees the applied repos (DESIGN §2)
MAX_PACK_BYTES = 64 << 20
MAX_FILE_BYTES = 1 << 20
MAX_DIFF_CHARS = 512 * 1024
MAX_NOTE_CHARS = 8 * 1024
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
_ZERO = "0" * 40
_STAGES = ("proposal", "approved", "deployed", "failed", "denied")
_HEX_RE = re.compile(r"[0-9a-fA-F]{7,40}")
_SHA_RE = re.compile(r"[0-9a-f]{40}")
_TAG_RE = re.compile(r"(proposal|approved|deployed|failed|denied)/(0|[1-9][0-9]{0,17})")
_DEPLOYING = "refs/hyperhive/deploying/"
_REGULAR_MODES = ("100644", "100755")

_GIT = shutil.which("git")
_GIT_OPTS = [
    "--no-pager",
    *("-c", "safe.directory=*"),  # proposed repos belong to the manager's uid; the core is root
    *("-c", "core.hooksPath=/dev/null"),
    *("-c", "core.fsmonitor=false"),
    *("-c", "protocol.allow=never"),
    *("-c", "gc.autoDetach=false"),
    *("-c", "maintenance.auto=false"),
    *("-c", "init.defaultBranch=main"),
    *("-c", "commit.gpgSign=false"),
    *("-c", "tag.gpgSign=false"),
    *("-c", "core.autocrlf=false"),
    *("-c", "advice.detachedHead=false"),
]
_GIT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/nonexistent",
    "LC_ALL": "C",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_NO_REPLACE_OBJECTS": "1",
    "GIT_LITERAL_PATHSPECS": "1",
    "GIT_AUTHOR_NAME": CORE_NAME,
    "GIT_AUTHOR_EMAIL": CORE_EMAIL,
    "GIT_COMMITTER_NAME": CORE_NAME,
    "GIT_COMMITTER_EMAIL": CORE_EMAIL,
}


class GitError(HiveError):
    """A git command failed or timed out where it should not have. `stderr` is its tail."""

    code = "git_error"

    def __init__(self, message: str, *, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


class InvalidRef(HiveError):
    """A commit ref, approval id or path that is refused before it reaches git."""

    code = "bad_request"


class RefNotFound(HiveError):
    """A well-formed ref, tag or file that does not exist in the repo."""

    code = "not_found"


@dataclass(frozen=True)
class Proposal:
    """A frozen request: `sha` is tagged `proposal/<id>` in the applied repo."""

    sha: str
    config: AgentConfig
    diff: str  # against applied main (or the empty tree for a first apply)
    base: str | None = None  # applied main's sha when proposed


@dataclass(frozen=True)
class Deployed:
    """The outcome of `finish_deploy`. `fast_forward` is False when main was not an ancestor of
    the deployed sha and was moved anyway; `previous_sha` is None for a first deploy or a repeat."""

    sha: str
    previous_sha: str | None
    fast_forward: bool


# ---- git ---------------------------------------------------------------------------------


def _git(
    repo: Path,
    *args: str,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    ok: Sequence[int] = (0,),
    timeout: float = GIT_TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run git on `repo` (GIT_DIR is explicit: no discovery upwards) and return the result;
    raise GitError on an exit code not in `ok` or on timeout (the whole process group dies)."""
    if _GIT is None:
        raise GitError("git is not installed (hyperhive needs it for config repos)")
    argv = [_GIT, *_GIT_OPTS, *args]
    full_env = {**_GIT_ENV, "GIT_DIR": str(repo / ".git"), "GIT_WORK_TREE": str(repo), **(env or {})}
    proc = subprocess.Popen(
        argv,
        cwd=repo,
        env=full_env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        umask=0o022,  # the manager reads the applied repos through their group/other bits (applied/ is 0750)
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise GitError(f"git {args[0]} timed out after {timeout:g}s in {repo}") from None
        raise
    if proc.returncode not in ok:
        tail = err.decode("utf-8", "replace").strip()[-2000:]
        raise GitError(f"git {args[0]} failed in {repo}: {tail[-300:]}", stderr=tail, returncode=proc.returncode)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def _out(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return _git(repo, *args, env=env).stdout.decode("utf-8", "replace").strip()


def _alternates(objects: Path) -> dict[str, str]:
    text = str(objects)
    if any(c in text for c in ':"\\\n'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return {"GIT_ALTERNATE_OBJECT_DIRECTORIES": text}


def _ref_sha(repo: Path, ref: str) -> str | None:
    r = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
    sha = r.stdout.decode().strip()
    return sha if r.returncode == 0 and _SHA_RE.fullmatch(sha) else None


def _approval_id(approval_id: object) -> int:
    if isinstance(approval_id, bool) or not isinstance(approval_id, int) or not 1 <= approval_id < 10**18:
        raise InvalidRef(f"approval id {str(approval_id)[:30]!r} must be a positive integer")
    return approval_id


def _commit_ref(commit_ref: object) -> str:
    if not isinstance(commit_ref, str) or not _HEX_RE.fullmatch(commit_ref):
        shown = repr(commit_ref)[:60]
        raise InvalidRef(f"commit_ref {shown} must be a commit sha of 7-40 hex digits (not a branch or tag name)")
    return commit_ref.lower()


def _note(text: str | None, default: str) -> bytes:
    text = (text or "").replace("\x00", "").strip() or default
    if len(text) > MAX_NOTE_CHARS:
        text = text[:MAX_NOTE_CHARS] + "\n[truncated]"
    return (text + "\n").encode("utf-8", "replace")


def _real_dirs(base: Path, *parts: str) -> Path | None:
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


def _move_into_place(src: Path, dest: Path) -> None:
    try:
        src.rename(dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copytree(src, dest, symlinks=True)
        safe_rmtree(src)


# ---- the repos ---------------------------------------------------------------------------


class ConfigRepos:
    """Every agent's proposed and applied config repos. Thread-safe: calls on one agent are
    serialised, calls on different agents run in parallel."""

    def __init__(self, paths: HivePaths) -> None:
        self.paths = paths
        self.default_network = "host"  # "none" when the core is the agents' model API gateway
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    # ---- locating repos ----

    def _snapshot_proposed(self, name: str, tmp: Path) -> Path:
        """A core-owned copy of the proposed repo's objects (see `gitobjects`): git never reads
        the proposed repo itself, so a link or alternates swapped in at any moment is not followed."""
        rel = self.paths.agent(name).config.relative_to(self.paths.state_dir)
        objects = tmp / "objects"
        if not snapshot_objects(self.paths.state_dir, (*rel.parts, ".git"), objects):
            raise AgentNotFound(f"{name!r} has no proposed config repo")
        return objects

    def _applied(self, name: str) -> Path | None:
        repo = _real_dirs(self.paths.applied_root, name)
        if repo is not None and _real_dirs(repo, ".git") is None:
            raise GitError(f"{repo} is not a git repo")
        return repo

    def _applied_or_raise(self, name: str) -> Path:
        repo = self._applied(name)
        if repo is None:
            raise AgentNotFound(f"{name!r} has no applied config repo")
        return repo

    def _scratch_dir(self) -> Path:
        """A private temp dir inside the applied root, which no agent can write."""
        self.paths.applied_root.mkdir(parents=True, exist_ok=True)
        if _real_dirs(self.paths.state_dir, "applied") is None:  # pragma: no cover - just made
            raise UnsafePath(f"{self.paths.applied_root} vanished")
        return Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.paths.applied_root))

    # ---- seeding ----

    def seed(self, name: str, description: str | None = None, *, toml: str | None = None) -> str:
        """Create the proposed repo with the template committed, and the applied repo from it with
        `main` checked out and tagged `deployed/0` (DESIGN §7). Returns the seed commit's sha.
        Raises Conflict if either repo exists, ConfigInvalid if `toml` does not validate."""
        ap = self.paths.agent(name)
        with self._lock(ap.name):
            self._refuse_existing(ap.name, applied=True)
            files = self._seed_files(ap.name, description, toml)
            tmp = self._scratch_dir()
            try:
                sha = self._build_proposed(tmp / "proposed", ap.name, files)
                applied = tmp / "applied"
                self._init_applied(applied)
                self._import(applied, tmp / "proposed" / ".git" / "objects", sha)
                self._validate_at(applied, sha)
                _git(applied, "update-ref", "refs/heads/main", sha, _ZERO)
                _git(applied, "read-tree", "--reset", "-u", "HEAD")
                _git(applied, "update-ref", "refs/tags/deployed/0", sha, _ZERO)
                self._place_proposed(ap.name, tmp / "proposed")
                _move_into_place(applied, ap.applied)
            finally:
                safe_rmtree(tmp)
            log.info("seeded config repos for %s at %s", ap.name, sha[:12])
            return sha

    def init_proposed(self, name: str, description: str | None = None) -> str:
        """Two-step spawn, step one: create only the proposed repo from the template. Raises
        Conflict if it exists. The first `propose` creates the applied repo."""
        ap = self.paths.agent(name)
        with self._lock(ap.name):
            self._refuse_existing(ap.name, applied=False)
            files = self._seed_files(ap.name, description, None)
            tmp = self._scratch_dir()
            try:
                sha = self._build_proposed(tmp / "proposed", ap.name, files)
                self._place_proposed(ap.name, tmp / "proposed")
            finally:
                safe_rmtree(tmp)
            return sha

    def has_proposed(self, name: str) -> bool:
        return os.path.lexists(self.paths.agent(name).config)

    def has_applied(self, name: str) -> bool:
        """True once the agent has an applied `main` (seeded, or a first proposal deployed)."""
        return self.applied_sha(name) is not None

    def _refuse_existing(self, name: str, *, applied: bool) -> None:
        ap = self.paths.agent(name)
        if os.path.lexists(ap.config):
            raise Conflict(f"{name!r} already has a proposed config repo")
        if applied and os.path.lexists(ap.applied):
            raise Conflict(f"{name!r} already has an applied config repo")

    def _seed_files(self, name: str, description: str | None, toml: str | None) -> dict[str, str]:
        net = self.default_network
        if toml is None:
            if name == MANAGER:
                return {AGENT_TOML: manager_agent_toml(description, network=net), INSTRUCTIONS_MD: manager_instructions()}
            toml = default_agent_toml(name, description, network=net)
        cfg = parse_agent_toml(toml)
        if cfg.instructions not in (None, INSTRUCTIONS_MD):
            raise ConfigInvalid(
                f"agent.toml: `instructions`: a seed provides only {INSTRUCTIONS_MD!r}", field="instructions"
            )
        instructions = manager_instructions() if name == MANAGER else default_instructions(name, description)
        return {AGENT_TOML: toml, INSTRUCTIONS_MD: instructions}

    @staticmethod
    def _build_proposed(repo: Path, name: str, files: dict[str, str]) -> str:
        repo.mkdir()
        _git(repo, "init", "-q", "-b", "main")
        for rel, text in files.items():
            (repo / rel).write_text(text, encoding="utf-8")
        _git(repo, "add", "--", *files)
        _git(repo, "commit", "-q", "-m", f"seed {name}'s config")
        # Inside the manager's cage, `git fetch applied` reaches the applied repo (read-only).
        _git(repo, "remote", "add", "applied", f"{MANAGER_APPLIED_MOUNT}/{name}")
        return _out(repo, "rev-parse", "--verify", "HEAD^{commit}")

    def _place_proposed(self, name: str, built: Path) -> None:
        ap = self.paths.agent(name)
        self.paths.proposed_root.mkdir(parents=True, exist_ok=True)
        parent = _real_dirs(self.paths.state_dir, "proposed")
        if parent is None:  # pragma: no cover - just made
            raise UnsafePath(f"{self.paths.proposed_root} vanished")
        if _real_dirs(parent, name) is None:
            (parent / name).mkdir()
        _move_into_place(built, ap.config)

    @staticmethod
    def _init_applied(repo: Path) -> None:
        repo.mkdir()
        repo.chmod(0o755)  # whatever the daemon's umask (077): the manager's cage reads it at /applied
        _git(repo, "init", "-q", "-b", "main")

    def _ensure_applied(self, name: str) -> Path:
        repo = self._applied(name)
        if repo is not None:
            return repo
        tmp = self._scratch_dir()
        try:
            self._init_applied(tmp / "applied")
            _move_into_place(tmp / "applied", self.paths.agent(name).applied)
        finally:
            safe_rmtree(tmp)
        return self._applied_or_raise(name)

    # ---- objects and validation ----

    @staticmethod
    def _import(repo: Path, objects: Path, sha: str) -> None:
        """Copy `sha` and everything it reaches from `objects` into `repo` without running git in
        the repo that owns `objects`."""
        if _git(repo, "cat-file", "-e", f"{sha}^{{commit}}", ok=(0, 1, 128)).returncode == 0:
            return  # objects only arrive here whole, so the commit's closure is already present
        have = _git(repo, "for-each-ref", "--format=%(objectname)").stdout.decode().split()
        revs = "\n".join([sha, "--not", *have]) + "\n"
        pack = _git(
            repo, "pack-objects", "--revs", "--stdout", "-q", input=revs.encode(), env=_alternates(objects)
        ).stdout
        if len(pack) > MAX_PACK_BYTES:
            raise ConfigInvalid(f"the commit brings more than {MAX_PACK_BYTES >> 20} MiB of objects; refusing")
        _git(repo, "index-pack", "--stdin", input=pack)
        _git(repo, "cat-file", "-e", f"{sha}^{{tree}}")

    @staticmethod
    def _tree(repo: Path, sha: str) -> dict[str, tuple[str, str, str, int]]:
        """path → (mode, type, oid, size) for every entry of the commit's tree."""
        raw = _git(repo, "ls-tree", "-r", "-z", "-l", "--full-tree", sha).stdout
        entries: dict[str, tuple[str, str, str, int]] = {}
        for item in raw.split(b"\0"):
            if not item:
                continue
            meta, _, path_b = item.partition(b"\t")
            mode, kind, oid, size = meta.decode().split()
            path = path_b.decode("utf-8", "replace")
            if mode == "120000":
                raise ConfigInvalid(f"{path}: symlinks are not allowed in a config repo", field=path)
            if kind != "blob":
                raise ConfigInvalid(f"{path}: submodules are not allowed in a config repo", field=path)
            entries[path] = (mode, kind, oid, int(size))
        return entries

    def _validate_at(self, repo: Path, sha: str) -> AgentConfig:
        """Validate `agent.toml` at the commit and check that the files it names are there."""
        entries = self._tree(repo, sha)
        entry = entries.get(AGENT_TOML)
        if entry is None:
            raise ConfigInvalid("agent.toml: missing from the commit")
        if entry[3] > MAX_TOML_BYTES:
            raise ConfigInvalid(f"agent.toml: larger than {MAX_TOML_BYTES // 1024} KiB")
        cfg = parse_agent_toml(_git(repo, "cat-file", "blob", entry[2]).stdout)
        if cfg.instructions is not None:
            ins = entries.get(cfg.instructions)
            if ins is None:
                raise ConfigInvalid(
                    f"agent.toml: `instructions`: {cfg.instructions!r} is not a file in the commit",
                    field="instructions",
                )
            if ins[3] > MAX_FILE_BYTES:
                raise ConfigInvalid(f"agent.toml: `instructions`: {cfg.instructions!r} is larger than 1 MiB")
            try:
                _git(repo, "cat-file", "blob", ins[2]).stdout.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigInvalid(f"agent.toml: `instructions`: {cfg.instructions!r} is not UTF-8 text") from None
        return cfg

    def _resolve_proposed(self, name: str, repo: Path, objects: Path, ref: str) -> str:
        env = _alternates(objects)
        r = _git(repo, "cat-file", "-t", ref, env=env, ok=(0, 1, 128))
        if r.returncode != 0:
            if b"ambiguous" in r.stderr:
                raise InvalidRef(f"commit_ref {ref!r} is ambiguous in {name}'s proposed repo; give more hex digits")
            raise InvalidRef(f"commit_ref {ref!r} is not a commit in {name}'s proposed repo")
        kind = r.stdout.decode().strip()
        if kind != "commit":
            raise InvalidRef(f"commit_ref {ref!r} names a {kind}, not a commit")
        return _out(repo, "rev-parse", "--verify", f"{ref}^{{commit}}", env=env)

    def _resolve_applied(self, repo: Path, ref: str) -> str:
        """`main`, `current`, `<stage>/<id>` or 7-40 hex → a commit sha in the applied repo."""
        if ref == "current":
            deploying = self._deploying(repo)
            ref = "main" if deploying is None else deploying[1]
        if ref == "main":
            full = "refs/heads/main"
        elif _TAG_RE.fullmatch(ref):
            full = f"refs/tags/{ref}"
        elif _HEX_RE.fullmatch(ref):
            full = ref.lower()
        else:
            raise InvalidRef(f"ref {ref[:60]!r} must be main, current, <stage>/<id> or a commit sha")
        sha = _ref_sha(repo, full)
        if sha is None:
            raise RefNotFound(f"no {ref!r} in the applied repo")
        return sha

    def _diff(self, repo: Path, base: str | None, sha: str) -> str:
        raw = _git(repo, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M", base or EMPTY_TREE, sha).stdout
        text = raw.decode("utf-8", "replace")
        if len(text) > MAX_DIFF_CHARS:
            text = text[:MAX_DIFF_CHARS] + f"\n[diff truncated: {len(text)} characters in all]\n"
        return text

    # ---- proposals ----

    def propose(self, name: str, commit_ref: str, approval_id: int) -> Proposal:
        """Freeze a commit of the proposed repo as `proposal/<id>` in the applied repo (DESIGN §7).

        `commit_ref` must be 7-40 hex digits naming a commit. The commit is copied into the
        applied repo (created now for a first apply) and validated; if it is invalid, ConfigInvalid
        is raised and no tag is made. Repeating a call with the same id and commit returns the
        same proposal; a different commit under an existing id is a Conflict.
        """
        ap = self.paths.agent(name)
        aid = _approval_id(approval_id)
        ref = _commit_ref(commit_ref)
        with self._lock(ap.name):
            tmp = self._scratch_dir()
            try:
                objects = self._snapshot_proposed(ap.name, tmp)
                repo = self._ensure_applied(ap.name)
                sha = self._resolve_proposed(ap.name, repo, objects, ref)
                tag = f"proposal/{aid}"
                existing = _ref_sha(repo, f"refs/tags/{tag}")
                if existing is not None and existing != sha:
                    raise Conflict(f"{tag} already exists for {ap.name!r} at {existing[:12]}")
                self._import(repo, objects, sha)
            finally:
                safe_rmtree(tmp)
            cfg = self._validate_at(repo, sha)
            if existing is None:
                _git(repo, "update-ref", f"refs/tags/{tag}", sha, _ZERO)
            base = _ref_sha(repo, "refs/heads/main")
            return Proposal(sha=sha, config=cfg, diff=self._diff(repo, base, sha), base=base)

    def _tag(self, repo: Path, stage: str, aid: int) -> str | None:
        return _ref_sha(repo, f"refs/tags/{stage}/{aid}")

    def _proposal(self, name: str, approval_id: int) -> tuple[Path, int, str]:
        aid = _approval_id(approval_id)
        repo = self._applied_or_raise(name)
        sha = self._tag(repo, "proposal", aid)
        if sha is None:
            raise RefNotFound(f"no proposal/{aid} for {name!r}")
        return repo, aid, sha

    def diff(self, name: str, approval_id: int) -> str:
        """The diff from applied main (or the empty tree) to `proposal/<id>`."""
        name = self.paths.agent(name).name
        with self._lock(name):
            repo, _, sha = self._proposal(name, approval_id)
            return self._diff(repo, _ref_sha(repo, "refs/heads/main"), sha)

    def config_at(self, name: str, ref: str) -> AgentConfig:
        """The validated config at `ref` (see `read_file_at` for the refs) in the applied repo."""
        name = self.paths.agent(name).name
        with self._lock(name):
            repo = self._applied_or_raise(name)
            return self._validate_at(repo, self._resolve_applied(repo, ref))

    def applied_config(self, name: str) -> AgentConfig:
        """The config the agent runs: the proposal being deployed between `begin_deploy` and
        `finish_deploy`/`fail_deploy`, otherwise applied main."""
        return self.config_at(name, "current")

    def applied_sha(self, name: str) -> str | None:
        """Applied main's sha, or None before the first deploy."""
        name = self.paths.agent(name).name
        repo = self._applied(name)
        return None if repo is None else _ref_sha(repo, "refs/heads/main")

    def read_file_at(self, name: str, ref: str, path: str) -> str:
        """A UTF-8 file of the applied repo at `ref`: `main`, `current` (as `applied_config`),
        `<stage>/<id>` or a 7-40 hex sha. `path` must stay inside the repo; symlinks are refused."""
        try:
            path = validate_repo_path(path)
        except ValueError as exc:
            raise InvalidRef(f"path: {exc}") from None
        name = self.paths.agent(name).name
        with self._lock(name):
            repo = self._applied_or_raise(name)
            sha = self._resolve_applied(repo, ref)
            raw = _git(repo, "ls-tree", "-z", "-l", sha, "--", path).stdout.rstrip(b"\0")
            meta, _, found = raw.partition(b"\t")
            fields = meta.decode().split()
            if found.decode("utf-8", "replace") != path or len(fields) != 4 or fields[0] not in _REGULAR_MODES:
                raise RefNotFound(f"{path!r} is not a regular file at {ref} in {name}'s applied repo")
            if int(fields[3]) > MAX_FILE_BYTES:
                raise ConfigInvalid(f"{path}: larger than 1 MiB")
            try:
                return _git(repo, "cat-file", "blob", fields[2]).stdout.decode("utf-8")
            except UnicodeDecodeError:
                raise ConfigInvalid(f"{path}: not UTF-8 text") from None

    # ---- deploy steps (each safe to repeat) ----

    def tag_approved(self, name: str, approval_id: int) -> AgentConfig:
        """Tag `approved/<id>` after validating the proposal again; returns its config.
        Conflict if the proposal was denied or failed; ConfigInvalid leaves no tag."""
        name = self.paths.agent(name).name
        with self._lock(name):
            repo, aid, sha = self._proposal(name, approval_id)
            for stage in ("denied", "failed"):
                if self._tag(repo, stage, aid) is not None:
                    raise Conflict(f"proposal/{aid} for {name!r} is already {stage}")
            cfg = self._validate_at(repo, sha)
            if self._tag(repo, "approved", aid) is None:
                _git(repo, "update-ref", f"refs/tags/approved/{aid}", sha, _ZERO)
            return cfg

    def _deploying(self, repo: Path) -> tuple[int, str] | None:
        out = _git(repo, "for-each-ref", "--format=%(refname) %(objectname)", _DEPLOYING).stdout.decode().split()
        if not out:
            return None
        return int(out[0].removeprefix(_DEPLOYING)), out[1]

    def deploying(self, name: str) -> int | None:
        """The approval id of a deploy begun and neither finished nor failed (e.g. the daemon died
        mid-deploy): call `fail_deploy` or `finish_deploy` for it."""
        name = self.paths.agent(name).name
        with self._lock(name):
            repo = self._applied(name)
            found = None if repo is None else self._deploying(repo)
            return None if found is None else found[0]

    def begin_deploy(self, name: str, approval_id: int) -> str | None:
        """Check the approved proposal out in the applied working tree without moving main; returns
        main's sha before the deploy (None for a first deploy)."""
        name = self.paths.agent(name).name
        with self._lock(name):
            repo, aid, sha = self._proposal(name, approval_id)
            if self._tag(repo, "approved", aid) is None:
                raise Conflict(f"proposal/{aid} for {name!r} is not approved")
            for stage in ("deployed", "failed", "denied"):
                if self._tag(repo, stage, aid) is not None:
                    raise Conflict(f"proposal/{aid} for {name!r} is already {stage}")
            current = self._deploying(repo)
            if current is not None and current[0] != aid:
                raise Conflict(f"{name!r} is already deploying #{current[0]}")
            _git(repo, "update-ref", f"{_DEPLOYING}{aid}", sha)
            _git(repo, "read-tree", "--reset", "-u", sha)
            return _ref_sha(repo, "refs/heads/main")

    def finish_deploy(self, name: str, approval_id: int) -> Deployed:
        """Tag `deployed/<id>` and move main to it: a fast-forward, or (if main is not an ancestor)
        a forced move, logged and reported as `fast_forward=False`."""
        name = self.paths.agent(name).name
        with self._lock(name):
            repo, aid, sha = self._proposal(name, approval_id)
            if self._tag(repo, "approved", aid) is None:
                raise Conflict(f"proposal/{aid} for {name!r} is not approved")
            for stage in ("failed", "denied"):
                if self._tag(repo, stage, aid) is not None:
                    raise Conflict(f"proposal/{aid} for {name!r} is already {stage}")
            if self._tag(repo, "deployed", aid) is not None:
                self._end_deploying(repo, aid)
                return Deployed(sha=sha, previous_sha=None, fast_forward=True)
            old = _ref_sha(repo, "refs/heads/main")
            ff = old is None or _git(repo, "merge-base", "--is-ancestor", old, sha, ok=(0, 1)).returncode == 0
            _git(repo, "update-ref", f"refs/tags/deployed/{aid}", sha, _ZERO)
            _git(repo, "update-ref", "-m", f"deploy {aid}", "refs/heads/main", sha, old or _ZERO)
            _git(repo, "read-tree", "--reset", "-u", "HEAD")
            self._end_deploying(repo, aid)
            if not ff:
                assert old is not None
                log.warning(
                    "%s: deployed/%d (%s) does not descend from main (%s); main moved anyway",
                    name, aid, sha[:12], old[:12],
                )  # fmt: skip
            return Deployed(sha=sha, previous_sha=old, fast_forward=ff)

    def _end_deploying(self, repo: Path, aid: int) -> None:
        _git(repo, "update-ref", "-d", f"{_DEPLOYING}{aid}")

    def _reset_to_main(self, repo: Path) -> None:
        main = _ref_sha(repo, "refs/heads/main")
        _git(repo, "read-tree", "--reset", "-u", main or EMPTY_TREE)

    def fail_deploy(self, name: str, approval_id: int, error: str) -> None:
        """Tag `failed/<id>` annotated with `error` and put the working tree back to main.
        Conflict if the proposal was already deployed."""
        name = self.paths.agent(name).name
        with self._lock(name):
            repo, aid, sha = self._proposal(name, approval_id)
            if self._tag(repo, "deployed", aid) is not None:
                raise Conflict(f"proposal/{aid} for {name!r} is already deployed")
            if self._tag(repo, "failed", aid) is None:
                _git(repo, "tag", "-a", "--cleanup=whitespace", "-F", "-", f"failed/{aid}", sha,
                     input=_note(error, "failed"))  # fmt: skip
            deploying = self._deploying(repo)
            if deploying is not None and deploying[0] == aid:
                self._end_deploying(repo, aid)
            if deploying is None or deploying[0] == aid:
                self._reset_to_main(repo)

    def deny(self, name: str, approval_id: int, note: str | None = None) -> None:
        """Tag `denied/<id>` annotated with the operator's reason ("denied" if none).
        Conflict if the proposal was already approved."""
        name = self.paths.agent(name).name
        with self._lock(name):
            repo, aid, sha = self._proposal(name, approval_id)
            if self._tag(repo, "approved", aid) is not None:
                raise Conflict(f"proposal/{aid} for {name!r} is already approved")
            if self._tag(repo, "denied", aid) is None:
                _git(repo, "tag", "-a", "--cleanup=whitespace", "-F", "-", f"denied/{aid}", sha,
                     input=_note(note, "denied"))  # fmt: skip

    def tags(self, name: str) -> list[str]:
        """Every hyperhive tag of the applied repo, by approval id then stage."""
        name = self.paths.agent(name).name
        repo = self._applied(name)
        if repo is None:
            return []
        refs = _git(repo, "for-each-ref", "--format=%(refname)", "refs/tags/").stdout.decode().split()
        found = [r.removeprefix("refs/tags/") for r in refs]
        ours = [t for t in found if _TAG_RE.fullmatch(t)]

        def key(tag: str) -> tuple[int, int]:
            stage, _, aid = tag.partition("/")
            return int(aid), _STAGES.index(stage)

        return sorted(ours, key=key)

    def tag_message(self, name: str, tag: str) -> str | None:
        """The annotation of `failed/<id>` or `denied/<id>` (None for a lightweight tag)."""
        if not _TAG_RE.fullmatch(tag):
            raise InvalidRef(f"tag {tag[:60]!r} must be <stage>/<id>")
        name = self.paths.agent(name).name
        repo = self._applied_or_raise(name)
        r = _git(repo, "cat-file", "-t", f"refs/tags/{tag}", ok=(0, 1, 128))
        if r.returncode != 0:
            raise RefNotFound(f"no {tag} for {name!r}")
        if r.stdout.strip() != b"tag":
            return None
        return (
            _git(repo, "for-each-ref", "--format=%(contents)", f"refs/tags/{tag}")
            .stdout.decode("utf-8", "replace")
            .strip()
        )

    def commit_operator_edit(self, name: str, files: dict[str, str], base_sha: str, approval_id: int) -> Proposal:
        """The operator's direct edit (`hive config edit`): a commit on applied main with `files`
        replaced, built by the core in the applied repo (never in the manager's proposed repo),
        validated, and tagged `proposal/<id>` and `operator/<id>`; the deploy steps then run as
        for any proposal. Conflict if main moved on from `base_sha` while the operator edited."""
        ap = self.paths.agent(name)
        aid = _approval_id(approval_id)
        with self._lock(ap.name):
            repo = self._applied_or_raise(ap.name)
            main = _ref_sha(repo, "refs/heads/main")
            if main is None:
                raise RefNotFound(f"{ap.name!r} has no applied config yet")
            if main != base_sha:
                raise Conflict(f"{ap.name}'s config changed while you edited it (now {main[:12]}); edit it again")
            tmp = self._scratch_dir()
            try:
                env = {"GIT_INDEX_FILE": str(tmp / "index")}
                _git(repo, "read-tree", main, env=env)
                for rel, text in files.items():
                    try:
                        rel = validate_repo_path(rel)
                    except ValueError as exc:
                        raise InvalidRef(f"path: {exc}") from None
                    oid = _git(repo, "hash-object", "-w", "--stdin", input=text.encode("utf-8")).stdout.decode().strip()
                    _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{oid},{rel}", env=env)
                tree = _out(repo, "write-tree", env=env)
                who = {"GIT_AUTHOR_NAME": "operator", "GIT_AUTHOR_EMAIL": "operator@hyperhive.local"}
                message = f"operator edit #{aid} of {', '.join(sorted(files))}\n".encode()
                sha = _git(repo, "commit-tree", tree, "-p", main, input=message, env=who).stdout.decode().strip()
            finally:
                safe_rmtree(tmp)
            cfg = self._validate_at(repo, sha)
            _git(repo, "update-ref", f"refs/tags/operator/{aid}", sha, _ZERO)
            _git(repo, "update-ref", f"refs/tags/proposal/{aid}", sha, _ZERO)
            return Proposal(sha=sha, config=cfg, diff=self._diff(repo, main, sha), base=main)

    # ---- purge ----

    def remove(self, name: str) -> None:
        """Delete both repos (purge). Symlinks inside are unlinked, never followed; a repo path that
        is itself a symlink is refused (UnsafePath)."""
        ap = self.paths.agent(name)
        with self._lock(ap.name):
            safe_rmtree(ap.config.parent, within=self.paths.proposed_root)
            safe_rmtree(ap.applied, within=self.paths.applied_root)

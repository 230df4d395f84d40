"""Bringing a commit from the manager's proposed repo into a core-owned applied repo, and
validating what a commit holds. git never runs in the proposed repo: its objects are snapshot
(`gitobjects.snapshot_objects`) into a private dir the applied repo borrows as alternates, then
copied with `pack-objects | index-pack`."""

from __future__ import annotations

from pathlib import Path

from hyperhive.agentconfig import AGENT_TOML, MAX_TOML_BYTES, AgentConfig, ConfigInvalid, parse_agent_toml
from hyperhive.core.configrepo.gitrun import EMPTY_TREE, alternates, git, out
from hyperhive.core.configrepo.refs import InvalidRef
from hyperhive.core.gitobjects import snapshot_objects
from hyperhive.errors import AgentNotFound
from hyperhive.paths import HivePaths

__all__ = ["diff", "import_commit", "resolve_proposed", "snapshot_proposed", "validate_at"]

MAX_PACK_BYTES = 64 << 20
MAX_FILE_BYTES = 1 << 20
MAX_DIFF_CHARS = 512 * 1024


def snapshot_proposed(paths: HivePaths, name: str, tmp: Path) -> Path:
    """A core-owned copy of the proposed repo's objects (see `gitobjects`): git never reads
    the proposed repo itself, so a link or alternates swapped in at any moment is not followed."""
    rel = paths.agent(name).config.relative_to(paths.state_dir)
    objects = tmp / "objects"
    if not snapshot_objects(paths.state_dir, (*rel.parts, ".git"), objects):
        raise AgentNotFound(f"{name!r} has no proposed config repo")
    return objects


def import_commit(repo: Path, objects: Path, sha: str) -> None:
    """Copy `sha` and everything it reaches from `objects` into `repo` without running git in
    the repo that owns `objects`."""
    if git(repo, "cat-file", "-e", f"{sha}^{{commit}}", ok=(0, 1, 128)).returncode == 0:
        return  # objects only arrive here whole, so the commit's closure is already present
    have = git(repo, "for-each-ref", "--format=%(objectname)").stdout.decode().split()
    revs = "\n".join([sha, "--not", *have]) + "\n"
    pack = git(repo, "pack-objects", "--revs", "--stdout", "-q", input=revs.encode(), env=alternates(objects)).stdout
    if len(pack) > MAX_PACK_BYTES:
        raise ConfigInvalid(f"the commit brings more than {MAX_PACK_BYTES >> 20} MiB of objects; refusing")
    git(repo, "index-pack", "--stdin", input=pack)
    git(repo, "cat-file", "-e", f"{sha}^{{tree}}")


def _tree(repo: Path, sha: str) -> dict[str, tuple[str, str, str, int]]:
    """path → (mode, type, oid, size) for every entry of the commit's tree."""
    raw = git(repo, "ls-tree", "-r", "-z", "-l", "--full-tree", sha).stdout
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


def validate_at(repo: Path, sha: str) -> AgentConfig:
    """Validate `agent.toml` at the commit and check that the files it names are there."""
    entries = _tree(repo, sha)
    entry = entries.get(AGENT_TOML)
    if entry is None:
        raise ConfigInvalid("agent.toml: missing from the commit")
    if entry[3] > MAX_TOML_BYTES:
        raise ConfigInvalid(f"agent.toml: larger than {MAX_TOML_BYTES // 1024} KiB")
    cfg = parse_agent_toml(git(repo, "cat-file", "blob", entry[2]).stdout)
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
            git(repo, "cat-file", "blob", ins[2]).stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigInvalid(f"agent.toml: `instructions`: {cfg.instructions!r} is not UTF-8 text") from None
    return cfg


def resolve_proposed(name: str, repo: Path, objects: Path, ref: str) -> str:
    """The full sha of the commit `ref` (hex) names among the snapshot `objects`."""
    env = alternates(objects)
    r = git(repo, "cat-file", "-t", ref, env=env, ok=(0, 1, 128))
    if r.returncode != 0:
        if b"ambiguous" in r.stderr:
            raise InvalidRef(f"commit_ref {ref!r} is ambiguous in {name}'s proposed repo; give more hex digits")
        raise InvalidRef(f"commit_ref {ref!r} is not a commit in {name}'s proposed repo")
    kind = r.stdout.decode().strip()
    if kind != "commit":
        raise InvalidRef(f"commit_ref {ref!r} names a {kind}, not a commit")
    return out(repo, "rev-parse", "--verify", f"{ref}^{{commit}}", env=env)


def diff(repo: Path, base: str | None, sha: str) -> str:
    """The diff from `base` (or the empty tree) to `sha`, capped."""
    raw = git(repo, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "-M", base or EMPTY_TREE, sha).stdout
    text = raw.decode("utf-8", "replace")
    if len(text) > MAX_DIFF_CHARS:
        text = text[:MAX_DIFF_CHARS] + f"\n[diff truncated: {len(text)} characters in all]\n"
    return text

"""Agent config as git (architecture §7): proposed repos, applied repos, proposals, deploy tags.

Two repos per agent. The *proposed* repo (`state/proposed/<name>/config`) belongs to the manager,
which edits and commits there. The *applied* repo (`state/applied/<name>`) belongs to the core:
`main` is what runs, and the tags `proposal/<id>`, `approved/<id>`, `deployed/<id>`,
`failed/<id>` (annotated with the error) and `denied/<id>` (annotated with the reason) record
every request. `deployed/0` marks a seed.

The core runs as root and the proposed repo is written by an agent, so git never runs *in* the
proposed repo (its config and hooks could run commands): its objects are read from a private
snapshot (`objects`, `core.gitobjects`). The core never writes to a proposed repo after seeding.

The rooms: `gitrun` runs git, `refs` checks what may reach it, `fsops` places directories,
`seeding` creates repos, `objects` imports and validates commits, `deploytags` is the tag state
machine, `engine` composes them under per-agent locks. `ConfigRepos` is the daemon's door, and it
is async only: each call runs the blocking engine in a worker thread, so git (bounded by
`GIT_TIMEOUT`) never holds the event loop.
"""

from __future__ import annotations

import asyncio

from hyperhive.agentconfig import AgentConfig
from hyperhive.core.configrepo.deploytags import Deployed
from hyperhive.core.configrepo.engine import Proposal, RepoEngine
from hyperhive.core.configrepo.gitrun import CORE_EMAIL, CORE_NAME, GIT_TIMEOUT, GitError
from hyperhive.core.configrepo.refs import InvalidRef, RefNotFound
from hyperhive.paths import HivePaths

__all__ = [
    "CORE_EMAIL",
    "CORE_NAME",
    "GIT_TIMEOUT",
    "ConfigRepos",
    "Deployed",
    "GitError",
    "InvalidRef",
    "Proposal",
    "RefNotFound",
]


class ConfigRepos:
    """Every agent's proposed and applied config repos. Calls on one agent are serialised, calls
    on different agents run in parallel; every call runs off the event loop."""

    def __init__(self, paths: HivePaths) -> None:
        self.paths = paths
        self._engine = RepoEngine(paths)

    @property
    def default_network(self) -> str:
        """The `network` a seeded agent.toml gets: "none" when the core is the model gateway."""
        return self._engine.default_network

    @default_network.setter
    def default_network(self, value: str) -> None:
        self._engine.default_network = value

    # ---- seeding ----

    async def seed(self, name: str, description: str | None = None, *, toml: str | None = None) -> str:
        """Create the proposed repo with the template committed, and the applied repo from it with
        `main` checked out and tagged `deployed/0`. Returns the seed commit's sha. Raises Conflict
        if either repo exists, ConfigInvalid if `toml` does not validate."""
        return await asyncio.to_thread(self._engine.seed, name, description, toml)

    async def init_proposed(self, name: str, description: str | None = None) -> str:
        """Two-step spawn, step one: create only the proposed repo from the template. Raises
        Conflict if it exists. The first `propose` creates the applied repo."""
        return await asyncio.to_thread(self._engine.init_proposed, name, description)

    async def has_proposed(self, name: str) -> bool:
        return await asyncio.to_thread(self._engine.has_proposed, name)

    async def has_applied(self, name: str) -> bool:
        """True once the agent has an applied `main` (seeded, or a first proposal deployed)."""
        return await self.applied_sha(name) is not None

    # ---- reading ----

    async def applied_sha(self, name: str) -> str | None:
        """Applied main's sha, or None before the first deploy."""
        return await asyncio.to_thread(self._engine.applied_sha, name)

    async def config_at(self, name: str, ref: str) -> AgentConfig:
        """The validated config at `ref` (see `read_file_at` for the refs) in the applied repo."""
        return await asyncio.to_thread(self._engine.config_at, name, ref)

    async def applied_config(self, name: str) -> AgentConfig:
        """The config the agent runs: the proposal being deployed between `begin_deploy` and
        `finish_deploy`/`fail_deploy`, otherwise applied main."""
        return await self.config_at(name, "current")

    async def read_file_at(self, name: str, ref: str, path: str) -> str:
        """A UTF-8 file of the applied repo at `ref`: `main`, `current` (as `applied_config`),
        `<stage>/<id>` or a 7-40 hex sha. `path` must stay inside the repo; symlinks are refused."""
        return await asyncio.to_thread(self._engine.read_file_at, name, ref, path)

    async def diff(self, name: str, approval_id: int) -> str:
        """The diff from applied main (or the empty tree) to `proposal/<id>`."""
        return await asyncio.to_thread(self._engine.diff, name, approval_id)

    async def tags(self, name: str) -> list[str]:
        """Every hyperhive tag of the applied repo, by approval id then stage."""
        return await asyncio.to_thread(self._engine.tags, name)

    async def tag_message(self, name: str, tag: str) -> str | None:
        """The annotation of `failed/<id>` or `denied/<id>` (None for a lightweight tag)."""
        return await asyncio.to_thread(self._engine.tag_message, name, tag)

    async def deploying(self, name: str) -> int | None:
        """The approval id of a deploy begun and neither finished nor failed (e.g. the daemon died
        mid-deploy): call `fail_deploy` or `finish_deploy` for it."""
        return await asyncio.to_thread(self._engine.deploying, name)

    # ---- proposals ----

    async def propose(self, name: str, commit_ref: str, approval_id: int) -> Proposal:
        """Freeze a commit of the proposed repo as `proposal/<id>` in the applied repo (architecture §7).

        `commit_ref` must be 7-40 hex digits naming a commit. The commit is copied into the
        applied repo (created now for a first apply) and validated; if it is invalid, ConfigInvalid
        is raised and no tag is made. Repeating a call with the same id and commit returns the
        same proposal; a different commit under an existing id is a Conflict.
        """
        return await asyncio.to_thread(self._engine.propose, name, commit_ref, approval_id)

    async def commit_operator_edit(self, name: str, files: dict[str, str], base_sha: str, approval_id: int) -> Proposal:
        """The operator's direct edit (`hive config edit`): a commit on applied main with `files`
        replaced, built by the core in the applied repo (never in the manager's proposed repo),
        validated, and tagged `proposal/<id>` and `operator/<id>`; the deploy steps then run as
        for any proposal. Conflict if main moved on from `base_sha` while the operator edited."""
        return await asyncio.to_thread(self._engine.commit_operator_edit, name, files, base_sha, approval_id)

    # ---- deploy steps (each safe to repeat) ----

    async def tag_approved(self, name: str, approval_id: int) -> AgentConfig:
        """Tag `approved/<id>` after validating the proposal again; returns its config.
        Conflict if the proposal was denied or failed; ConfigInvalid leaves no tag."""
        return await asyncio.to_thread(self._engine.tag_approved, name, approval_id)

    async def begin_deploy(self, name: str, approval_id: int) -> str | None:
        """Check the approved proposal out in the applied working tree without moving main; returns
        main's sha before the deploy (None for a first deploy)."""
        return await asyncio.to_thread(self._engine.begin_deploy, name, approval_id)

    async def finish_deploy(self, name: str, approval_id: int) -> Deployed:
        """Tag `deployed/<id>` and move main to it: a fast-forward, or (if main is not an ancestor)
        a forced move, logged and reported as `fast_forward=False`."""
        return await asyncio.to_thread(self._engine.finish_deploy, name, approval_id)

    async def fail_deploy(self, name: str, approval_id: int, error: str) -> None:
        """Tag `failed/<id>` annotated with `error` and put the working tree back to main.
        Conflict if the proposal was already deployed."""
        await asyncio.to_thread(self._engine.fail_deploy, name, approval_id, error)

    async def deny(self, name: str, approval_id: int, note: str | None = None) -> None:
        """Tag `denied/<id>` annotated with the operator's reason ("denied" if none).
        Conflict if the proposal was already approved."""
        await asyncio.to_thread(self._engine.deny, name, approval_id, note)

    # ---- purge ----

    async def remove(self, name: str) -> None:
        """Delete both repos (purge). Symlinks inside are unlinked, never followed; a repo path that
        is itself a symlink is refused (UnsafePath)."""
        await asyncio.to_thread(self._engine.remove, name)

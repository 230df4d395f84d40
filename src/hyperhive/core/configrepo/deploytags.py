"""The deploy-tag state machine of an applied repo (architecture §7).

`proposal/<id>` → `approved/<id>` → (`refs/hyperhive/deploying/<id>` while the agent restarts on
it) → `deployed/<id>` with `main` moved, or `failed/<id>` annotated with the error; or
`proposal/<id>` → `denied/<id>` annotated with the reason. Each step checks the tags already
there, so repeating one is safe and a contradicting one is a Conflict. Callers hold the agent's
lock; every function blocks on git.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from hyperhive.agentconfig import AgentConfig
from hyperhive.core.configrepo.gitrun import EMPTY_TREE, ZERO, git, ref_sha
from hyperhive.core.configrepo.objects import validate_at
from hyperhive.core.configrepo.refs import HEX_RE, STAGES, TAG_RE, InvalidRef, RefNotFound, approval_id, note
from hyperhive.errors import Conflict

__all__ = [
    "Deployed",
    "begin_deploy",
    "deny",
    "deploying",
    "fail_deploy",
    "finish_deploy",
    "proposal_sha",
    "resolve_applied",
    "tag_approved",
    "tag_message",
    "tags",
]

log = logging.getLogger(__name__)

_DEPLOYING = "refs/hyperhive/deploying/"


@dataclass(frozen=True)
class Deployed:
    """The outcome of `finish_deploy`. `fast_forward` is False when main was not an ancestor of
    the deployed sha and was moved anyway; `previous_sha` is None for a first deploy or a repeat."""

    sha: str
    previous_sha: str | None
    fast_forward: bool


def _tag(repo: Path, stage: str, aid: int) -> str | None:
    return ref_sha(repo, f"refs/tags/{stage}/{aid}")


def proposal_sha(repo: Path, name: str, aid: object) -> tuple[int, str]:
    """The checked approval id and the sha tagged `proposal/<id>`; RefNotFound if none."""
    checked = approval_id(aid)
    sha = _tag(repo, "proposal", checked)
    if sha is None:
        raise RefNotFound(f"no proposal/{checked} for {name!r}")
    return checked, sha


def deploying(repo: Path) -> tuple[int, str] | None:
    """(approval id, sha) of a deploy begun and neither finished nor failed."""
    found = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", _DEPLOYING).stdout.decode().split()
    if not found:
        return None
    return int(found[0].removeprefix(_DEPLOYING)), found[1]


def resolve_applied(repo: Path, ref: str) -> str:
    """`main`, `current`, `<stage>/<id>` or 7-40 hex → a commit sha in the applied repo."""
    if ref == "current":
        current = deploying(repo)
        ref = "main" if current is None else current[1]
    if ref == "main":
        full = "refs/heads/main"
    elif TAG_RE.fullmatch(ref):
        full = f"refs/tags/{ref}"
    elif HEX_RE.fullmatch(ref):
        full = ref.lower()
    else:
        raise InvalidRef(f"ref {ref[:60]!r} must be main, current, <stage>/<id> or a commit sha")
    sha = ref_sha(repo, full)
    if sha is None:
        raise RefNotFound(f"no {ref!r} in the applied repo")
    return sha


def _refuse(repo: Path, name: str, aid: int, stages: tuple[str, ...]) -> None:
    for stage in stages:
        if _tag(repo, stage, aid) is not None:
            raise Conflict(f"proposal/{aid} for {name!r} is already {stage}")


def _require_approved(repo: Path, name: str, aid: int) -> None:
    if _tag(repo, "approved", aid) is None:
        raise Conflict(f"proposal/{aid} for {name!r} is not approved")


def tag_approved(repo: Path, name: str, aid: int, sha: str) -> AgentConfig:
    """Validate the proposal again and tag it `approved/<id>`; ConfigInvalid leaves no tag."""
    _refuse(repo, name, aid, ("denied", "failed"))
    cfg = validate_at(repo, sha)
    if _tag(repo, "approved", aid) is None:
        git(repo, "update-ref", f"refs/tags/approved/{aid}", sha, ZERO)
    return cfg


def begin_deploy(repo: Path, name: str, aid: int, sha: str) -> str | None:
    _require_approved(repo, name, aid)
    _refuse(repo, name, aid, ("deployed", "failed", "denied"))
    current = deploying(repo)
    if current is not None and current[0] != aid:
        raise Conflict(f"{name!r} is already deploying #{current[0]}")
    git(repo, "update-ref", f"{_DEPLOYING}{aid}", sha)
    git(repo, "read-tree", "--reset", "-u", sha)
    return ref_sha(repo, "refs/heads/main")


def finish_deploy(repo: Path, name: str, aid: int, sha: str) -> Deployed:
    _require_approved(repo, name, aid)
    _refuse(repo, name, aid, ("failed", "denied"))
    if _tag(repo, "deployed", aid) is not None:
        _end_deploying(repo, aid)
        return Deployed(sha=sha, previous_sha=None, fast_forward=True)
    old = ref_sha(repo, "refs/heads/main")
    ff = old is None or git(repo, "merge-base", "--is-ancestor", old, sha, ok=(0, 1)).returncode == 0
    git(repo, "update-ref", f"refs/tags/deployed/{aid}", sha, ZERO)
    git(repo, "update-ref", "-m", f"deploy {aid}", "refs/heads/main", sha, old or ZERO)
    git(repo, "read-tree", "--reset", "-u", "HEAD")
    _end_deploying(repo, aid)
    if not ff:
        assert old is not None
        log.warning(
            "%s: deployed/%d (%s) does not descend from main (%s); main moved anyway",
            name, aid, sha[:12], old[:12],
        )  # fmt: skip
    return Deployed(sha=sha, previous_sha=old, fast_forward=ff)


def fail_deploy(repo: Path, name: str, aid: int, sha: str, error: str) -> None:
    _refuse(repo, name, aid, ("deployed",))
    if _tag(repo, "failed", aid) is None:
        git(repo, "tag", "-a", "--cleanup=whitespace", "-F", "-", f"failed/{aid}", sha, input=note(error, "failed"))
    current = deploying(repo)
    if current is not None and current[0] == aid:
        _end_deploying(repo, aid)
    if current is None or current[0] == aid:
        main = ref_sha(repo, "refs/heads/main")
        git(repo, "read-tree", "--reset", "-u", main or EMPTY_TREE)


def deny(repo: Path, name: str, aid: int, sha: str, reason: str | None) -> None:
    _refuse(repo, name, aid, ("approved",))
    if _tag(repo, "denied", aid) is None:
        git(repo, "tag", "-a", "--cleanup=whitespace", "-F", "-", f"denied/{aid}", sha, input=note(reason, "denied"))


def _end_deploying(repo: Path, aid: int) -> None:
    git(repo, "update-ref", "-d", f"{_DEPLOYING}{aid}")


def tags(repo: Path) -> list[str]:
    """Every hyperhive tag of the applied repo, by approval id then stage."""
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/tags/").stdout.decode().split()
    ours = [r.removeprefix("refs/tags/") for r in refs if TAG_RE.fullmatch(r.removeprefix("refs/tags/"))]

    def key(tag: str) -> tuple[int, int]:
        stage, _, aid = tag.partition("/")
        return int(aid), STAGES.index(stage)

    return sorted(ours, key=key)


def tag_message(repo: Path, name: str, tag: str) -> str | None:
    """The annotation of `failed/<id>` or `denied/<id>` (None for a lightweight tag)."""
    r = git(repo, "cat-file", "-t", f"refs/tags/{tag}", ok=(0, 1, 128))
    if r.returncode != 0:
        raise RefNotFound(f"no {tag} for {name!r}")
    if r.stdout.strip() != b"tag":
        return None
    return (
        git(repo, "for-each-ref", "--format=%(contents)", f"refs/tags/{tag}").stdout.decode("utf-8", "replace").strip()
    )

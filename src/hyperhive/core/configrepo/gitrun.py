"""Run git for the core: never a shell, never discovery upwards, no user or system config, no
hooks, a timeout that kills the whole process group. Blocking: callers run in a worker thread."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hyperhive.errors import ErrorCode, HiveError

__all__ = [
    "CORE_EMAIL",
    "CORE_NAME",
    "EMPTY_TREE",
    "GIT_TIMEOUT",
    "ZERO",
    "GitError",
    "alternates",
    "git",
    "out",
    "ref_sha",
]

CORE_NAME = "hyperhive-core"
CORE_EMAIL = "hyperhive-core@localhost"
GIT_TIMEOUT = 60.0
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
ZERO = "0" * 40
SHA_RE = re.compile(r"[0-9a-f]{40}")

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

    code = ErrorCode.GIT_ERROR

    def __init__(self, message: str, *, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


def git(
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
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise GitError(f"git {args[0]} timed out after {timeout:g}s in {repo}") from None
        raise
    if proc.returncode not in ok:
        tail = stderr.decode("utf-8", "replace").strip()[-2000:]
        raise GitError(f"git {args[0]} failed in {repo}: {tail[-300:]}", stderr=tail, returncode=proc.returncode)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def out(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """git's stdout as stripped text."""
    return git(repo, *args, env=env).stdout.decode("utf-8", "replace").strip()


def alternates(objects: Path) -> dict[str, str]:
    """The env that lets git in a core-owned repo borrow `objects` (quoted as git wants)."""
    text = str(objects)
    if any(c in text for c in ':"\\\n'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return {"GIT_ALTERNATE_OBJECT_DIRECTORIES": text}


def ref_sha(repo: Path, ref: str) -> str | None:
    """The commit `ref` names, or None if it names none."""
    r = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", ok=(0, 1))
    sha = r.stdout.decode().strip()
    return sha if r.returncode == 0 and SHA_RE.fullmatch(sha) else None

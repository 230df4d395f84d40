"""The `process` backend: no isolation at all. For development only, chosen explicitly."""

from __future__ import annotations

from typing import ClassVar

from hyperhive.cages.base import (
    ENV_RUN,
    ENV_STATE,
    Cage,
    CageError,
    CageHandle,
    CageSpec,
    Entry,
    base_env,
    entry_preexec,
)

__all__ = ["ProcessCage"]


class ProcessCage(Cage):
    kind: ClassVar[str] = "process"
    isolated: ClassVar[bool] = False

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, "process cages have no isolation: development only"

    def build_argv(self, spec: CageSpec) -> tuple[list[str], dict[str, str]]:
        env = base_env(spec)
        env[ENV_STATE] = str(spec.state_dir)
        env[ENV_RUN] = str(spec.run_dir)
        env["HOME"] = str(spec.home_dir)
        for bind in spec.binds:
            if bind.env:
                env[bind.env] = str(bind.src)
        env.update(spec.config_env)  # no host-side wrapper here: the harness is the first process
        return list(spec.argv), env

    def entry(self, handle: CageHandle) -> Entry:
        """No cage to enter: the command runs on the host as the daemon's user, in the agent's
        state dir, with the agent's environment. Not isolated, and `Entry.isolated` says so."""
        spec = handle.spec
        if spec is None or handle.proc.returncode is not None:
            raise CageError(f"cage {handle.name} is not running")
        env = self.build_argv(spec)[1]
        shell = [env.get("SHELL") or "/bin/sh", "-l"]
        return Entry([], env, shell, entry_preexec(handle.cgroup), isolated=False, cwd=str(spec.state_dir))

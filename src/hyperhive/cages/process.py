"""The `process` backend: no isolation at all. For development only, chosen explicitly."""

from __future__ import annotations

from typing import ClassVar

from hyperhive.cages.base import ENV_RUN, ENV_STATE, Cage, CageSpec, base_env

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
        return list(spec.argv), env

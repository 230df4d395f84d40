"""`python -m hyperhive.cages.envexec FILE -- ARGV...`, run inside a cage: load FILE (a JSON
object of environment variables, readable only by the cage's uid) into the environment, then
exec ARGV. For a backend that could otherwise pass environment only on its own command line
(systemd-nspawn's --setenv), where every user on the host could read it in /proc."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m hyperhive.cages.envexec FILE -- ARGV...")
    try:
        data = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.exit(f"envexec: cannot read {argv[0]}: {exc}")
    if not isinstance(data, dict):
        sys.exit(f"envexec: {argv[0]} is not a JSON object")
    os.environ.update({str(k): str(v) for k, v in data.items()})
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])

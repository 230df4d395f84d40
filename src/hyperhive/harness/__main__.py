"""`python -m hyperhive.harness`: the harness a cage runs, started without the `hive` CLI.

The CLI imports every command's dependencies (click, pydantic, the config models: about 25 MiB
and 0.9 s), which a waiting agent would carry all its life (issue 13). `hive agent serve` runs the
same thing by hand.
"""

from __future__ import annotations

import asyncio
import sys

from hyperhive.errors import HiveError, StartupError
from hyperhive.harness.main import run_harness
from hyperhive.logsetup import setup_logging

EXIT_ERROR = 1
EXIT_STARTUP = 3  # as `hive`: the harness could not start (cli_common.EXIT_STARTUP)


def main(argv: list[str]) -> int:
    setup_logging("debug" if "-v" in argv or "--verbose" in argv else "info")
    try:
        asyncio.run(run_harness())
    except StartupError as exc:
        print(f"hive: {exc.message}", file=sys.stderr)
        return EXIT_STARTUP
    except HiveError as exc:
        print(f"hive: {exc.message}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, TimeoutError) as exc:
        print(f"hive: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""An agent's harness output (its cage's stdout and stderr), kept on the host in
`state/agents/<name>/harness.log` — outside the cage, so the agent cannot rewrite it — for
`hive logs NAME`. Each line is stamped; the file rotates once at 1 MiB (one `.1` kept)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Final

__all__ = ["HarnessLog"]

log = logging.getLogger(__name__)
MAX_BYTES: Final = 1024 * 1024


class HarnessLog:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._size = 0
        self._broken = False

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self._size = os.fstat(fd).st_size
        return fd

    def write(self, line: str) -> None:
        """Append one line (small, to the page cache: cheap enough for the event loop)."""
        if self._broken:
            return
        data = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n".encode("utf-8", "replace")
        try:
            if self._fd is None:
                self._fd = self._open()
            if self._size + len(data) > self.max_bytes:
                self.close()
                self.path.replace(self.path.with_name(self.path.name + ".1"))
                self._fd = self._open()
            os.write(self._fd, data)
            self._size += len(data)
        except OSError as exc:
            self._broken = True
            log.warning("not keeping %s: %s", self.path, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()

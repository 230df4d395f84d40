"""Logging for `hive serve`/`hive demo`: one line per event, quiet at INFO (the HTTP libraries'
per-request lines only at DEBUG), text or JSON, journald-friendly under systemd, and a copy in
`STATE/logs/hive.log` that `hive logs` reads."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = ["LEVELS", "FORMATS", "daemon_log_path", "output_is_journal", "say", "setup_logging"]

LEVELS: Final = ("debug", "info", "warning", "error")
FORMATS: Final = ("text", "json")
# What logs every request or connection at INFO (the libraries, and the demo's offline model
# with one line per model call): heard only at DEBUG.
CHATTY: Final = ("httpx", "httpcore", "uvicorn", "uvicorn.access", "uvicorn.error", "asyncio", "multipart",
                 "hyperhive.offline_model")  # fmt: skip
LOG_FILE_BYTES: Final = 5 * 1024 * 1024
LOG_FILE_KEEP: Final = 3
# syslog priorities, which journald reads from a "<N>" line prefix
_PRIORITY: Final = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


_format = {"current": "text"}


def say(message: str) -> None:
    """A line for the operator on stderr; with --log-format json a log record instead, so that
    every stderr line stays one JSON object."""
    if _format["current"] == "json":
        logging.getLogger("hyperhive.cli").info("%s", message)
    else:
        print(message, file=sys.stderr, flush=True)


def daemon_log_path(state_dir: Path) -> Path:
    return state_dir / "logs" / "hive.log"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO 8601 UTC), level, logger, msg (and exc)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        doc: dict[str, object] = {"ts": ts, "level": record.levelname.lower(), "logger": record.name,
                                  "msg": record.getMessage()}  # fmt: skip
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class JournalFormatter(logging.Formatter):
    """journald stamps each line itself and reads the priority from a `<N>` prefix."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"<{_PRIORITY.get(record.levelno, 6)}>{record.name}: {record.getMessage()}"
        if record.exc_info:
            # one journal entry: the traceback's newlines would split it into many
            text += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return text


def _is_journal(stream: object, environ: Mapping[str, str]) -> bool:
    """systemd sets JOURNAL_STREAM=dev:inode when stderr (or stdout) is connected to the journal."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())  # type: ignore[attr-defined]
        return bool(value) and st.st_dev == int(dev) and st.st_ino == int(ino)
    except (OSError, ValueError, AttributeError):
        return False


def _stderr_is_journal(environ: Mapping[str, str]) -> bool:
    return _is_journal(sys.stderr, environ)


def output_is_journal(environ: Mapping[str, str] | None = None) -> bool:
    """Whether what we print lands in the journal (readable by more than the operator: no tokens)."""
    env = os.environ if environ is None else environ
    return _is_journal(sys.stderr, env) or _is_journal(sys.stdout, env)


def _text_formatter() -> logging.Formatter:
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")


def _open_log_file(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    path.chmod(0o600)
    return logging.handlers.RotatingFileHandler(path, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_KEEP,
                                                encoding="utf-8")  # fmt: skip


def setup_logging(
    level: str = "info", fmt: str = "text", *, log_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> None:
    """Configure the root logger once for a process. `level` is one of LEVELS, `fmt` of FORMATS."""
    env = os.environ if environ is None else environ
    numeric = getattr(logging, level.upper())
    _format["current"] = fmt
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(numeric)
    stream = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        stream.setFormatter(JsonFormatter())
    elif _stderr_is_journal(env):
        stream.setFormatter(JournalFormatter())
    else:
        stream.setFormatter(_text_formatter())
    root.addHandler(stream)
    if log_file is not None:
        try:
            handler = _open_log_file(log_file)
        except OSError as exc:
            root.warning("not writing %s: %s", log_file, exc)
        else:
            handler.setFormatter(JsonFormatter() if fmt == "json" else _text_formatter())
            root.addHandler(handler)
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)

"""The login panel's back end: run the claude CLI's own login command over plain pipes (no PTY),
show the first URL it prints, pass the code the operator pastes to its stdin, report how it ended.

The command is `claude auth login` of the CLI bundled in claude-agent-sdk (over pipes it prints
"visit: https://claude.ai/oauth/authorize?..." and "Paste code here if prompted >"), or the
shell-words string in `HYPERHIVE_LOGIN_CMD` (tests use a tiny fake). It runs with the agent's own
`$HOME`, so the credentials it writes stay in that agent's home (upstream §3.5). One login runs
at a time; its output is kept in a bounded tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from hyperhive.errors import Conflict

__all__ = ["LOGIN_CMD_ENV", "LoginSession", "default_login_argv"]

LOGIN_CMD_ENV: Final = "HYPERHIVE_LOGIN_CMD"
MAX_LINES: Final = 200
MAX_LINE_CHARS: Final = 2000
MAX_CODE_CHARS: Final = 4096
_URL_RE: Final = re.compile(r"https?://[^\s<>\"']+")
_ANSI_RE: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


class LoginError(Conflict):
    """The login panel cannot do that now (code `conflict`, from Conflict)."""


def _bundled_claude() -> str | None:
    with contextlib.suppress(ImportError):
        import claude_agent_sdk

        path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
        if path.is_file():
            return str(path)
    return shutil.which("claude")


def default_login_argv(environ: Mapping[str, str]) -> list[str]:
    """`$HYPERHIVE_LOGIN_CMD` split as shell words, else `<bundled claude> auth login`."""
    override = environ.get(LOGIN_CMD_ENV, "").strip()
    if override:
        argv = shlex.split(override)
        if argv:
            return argv
    claude = _bundled_claude()
    if claude is None:
        raise LoginError("no claude CLI found to log in with (set HYPERHIVE_LOGIN_CMD)")
    return [claude, "auth", "login"]


class LoginSession:
    """One login attempt at a time: `start()`, `url`, `send_code()`, `wait()`, `tail()`.

    `on_success` runs once when the command exits 0 (the harness then retries its turn).
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        home: Path | None = None,
        on_success: Callable[[], None] | None = None,
        on_output: Callable[[str], None] | None = None,
    ) -> None:
        self.environ = dict(environ)
        self.home = home
        self.on_success = on_success
        self.on_output = on_output
        self.argv: list[str] = []
        self.url: str | None = None
        self.exit_code: int | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.note: str | None = None
        self._lines: deque[str] = deque(maxlen=MAX_LINES)
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._done = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self.exit_code is None

    def tail(self, n: int = 40) -> list[str]:
        return list(self._lines)[-n:]

    def snapshot(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "started": self.started_at is not None,
            "url": self.url,
            "exit_code": self.exit_code,
            "note": self.note,
            "output": self.tail(),
            "command": " ".join(shlex.quote(a) for a in self.argv),
        }

    async def start(self) -> dict[str, Any]:
        if self.running:
            raise LoginError("a login is already running: paste its code or wait for it to end")
        self.argv = default_login_argv(self.environ)
        env = dict(self.environ)
        if self.home is not None:
            env["HOME"] = str(self.home)
        env.setdefault("BROWSER", "true")  # nothing to open inside a cage: just print the URL
        self.url = None
        self.exit_code = None
        self.note = None
        self.ended_at = None
        self._lines.clear()
        self._done = asyncio.Event()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=str(self.home) if self.home is not None and self.home.is_dir() else None,
            )
        except OSError as exc:
            self._proc = None
            self.exit_code = -1
            self.note = f"could not start {self.argv[0]}: {exc}"
            self._done.set()
            raise LoginError(self.note) from exc
        self.started_at = time.time()
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read(self._proc.stdout), name="login-stdout"),
            asyncio.create_task(self._read(self._proc.stderr), name="login-stderr"),
        ]
        self._watcher = asyncio.create_task(self._watch(self._proc), name="login-watch")
        return self.snapshot()

    async def _read(self, stream: asyncio.StreamReader) -> None:
        # Prompts such as "Paste code here if prompted >" end without a newline: read chunks.
        pending = ""
        while True:
            chunk = await stream.read(4096)
            if not chunk:
                break
            pending += chunk.decode("utf-8", "replace")
            *lines, pending = re.split(r"\r\n|\r|\n", pending)
            for line in lines:
                self._line(line)
            if len(pending) > MAX_LINE_CHARS or pending.rstrip().endswith((">", ":", "?")):
                self._line(pending)
                pending = ""
        if pending:
            self._line(pending)

    def _line(self, raw: str) -> None:
        line = _ANSI_RE.sub("", raw)[:MAX_LINE_CHARS]
        if not line.strip():
            return
        self._lines.append(line)
        if self.url is None and (m := _URL_RE.search(line)):
            self.url = m[0]
        if self.on_output is not None:
            self.on_output(line)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self.exit_code = code
        self.ended_at = time.time()
        if code == 0:
            self.note = "login finished: logged in"
            if self.on_success is not None:
                self.on_success()
        else:
            self.note = f"login command exited with code {code}"
        self._done.set()

    async def send_code(self, code: str) -> dict[str, Any]:
        code = code.strip()
        if not code:
            raise LoginError("paste the code the login page showed")
        if len(code) > MAX_CODE_CHARS or "\n" in code or "\r" in code:
            raise LoginError("that does not look like a login code")
        proc = self._proc
        if proc is None or not self.running or proc.stdin is None:
            raise LoginError("no login is running: start one first")
        try:
            proc.stdin.write(code.encode("utf-8") + b"\n")
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise LoginError(f"the login command is not reading input any more: {exc}") from exc
        return self.snapshot()

    async def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the command to end (at most `timeout` seconds); the snapshot either way."""
        if self._proc is None:
            return self.snapshot()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._done.wait(), timeout)
        return self.snapshot()

    async def close(self) -> None:
        """Stop a running login (harness shutdown)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        tasks = [t for t in (*self._readers, self._watcher) if t is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if proc is not None and proc.stdin is not None:
            proc.stdin.close()

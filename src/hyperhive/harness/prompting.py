"""Text the harness shows the model: the wake prompt and the system prompt templates.

The wake prompt format is shared with the offline model's policy, which parses it back, so
both sides use `format_wake_prompt` / `parse_wake_prompt` from here. No I/O except reading
the packaged prompt templates.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hyperhive.cages.base import ENV_CONFIG_ENV

__all__ = [
    "EARLIER_PREFIX",
    "REDELIVERED_BANNER",
    "PromptFile",
    "config_env",
    "WakePrompt",
    "format_wake_prompt",
    "load_system_prompt",
    "parse_wake_prompt",
]

REDELIVERED_BANNER = "[redelivered after harness restart — may already be handled]"
EARLIER_PREFIX = "[hyperhive] earlier: "
"""A held system notice (harness/bookkeeping.py) folded in front of the next message."""
_SEPARATOR = "---"
_HEADER_RE = re.compile(
    r"\[hyperhive\] message (?P<id>\d+) from (?P<sender>\S+)"
    r"(?: \((?P<unread>\d+) more pending: drain them with mcp__hyperhive__recv\))?"
)


@dataclass(frozen=True)
class WakePrompt:
    msg_id: int
    sender: str
    body: str
    unread: int = 0
    redelivered: bool = False
    earlier: tuple[str, ...] = ()


def format_wake_prompt(
    msg_id: int, sender: str, body: str, unread: int = 0, redelivered: bool = False, earlier: list[str] | None = None
) -> str:
    """The prompt that starts a turn for one broker message.

    ```
    [hyperhive] message 12 from operator (3 more pending: drain them with mcp__hyperhive__recv)
    [redelivered after harness restart — may already be handled]
    ---
    <body>
    ```
    The "(N more pending…)" part appears only when unread > 0, the banner only when redelivered;
    each of `earlier` (held system notices, one line each) follows as `[hyperhive] earlier: …`.
    """
    header = f"[hyperhive] message {int(msg_id)} from {sender}"
    if unread > 0:
        header += f" ({int(unread)} more pending: drain them with mcp__hyperhive__recv)"
    lines = [header]
    if redelivered:
        lines.append(REDELIVERED_BANNER)
    lines += [EARLIER_PREFIX + " ".join(e.split()) for e in earlier or ()]
    lines.append(_SEPARATOR)
    lines.append(body)
    return "\n".join(lines)


def parse_wake_prompt(text: str) -> WakePrompt | None:
    """Parse a wake prompt back; None if `text` is not one (leading whitespace is ignored)."""
    text = text.lstrip()
    head, sep, body = text.partition("\n" + _SEPARATOR + "\n")
    if not sep:
        # An empty body leaves the separator as the last line.
        if text.endswith("\n" + _SEPARATOR):
            head, body = text[: -len(_SEPARATOR) - 1], ""
        else:
            return None
    head_lines = head.split("\n")
    match = _HEADER_RE.fullmatch(head_lines[0])
    if match is None:
        return None
    rest = head_lines[1:]
    earlier = tuple(line.removeprefix(EARLIER_PREFIX) for line in rest if line.startswith(EARLIER_PREFIX))
    rest = [line for line in rest if not line.startswith(EARLIER_PREFIX)]
    if rest not in ([], [REDELIVERED_BANNER]):
        return None
    return WakePrompt(
        msg_id=int(match["id"]),
        sender=match["sender"],
        body=body,
        unread=int(match["unread"] or 0),
        redelivered=bool(rest),
        earlier=earlier,
    )


def load_system_prompt(
    name: str,
    *,
    manager: bool = False,
    notes_path: str = "/state/notes.md",
    agents_dir: str = "/agents",
    instructions: str | None = None,
) -> str:
    """The system prompt for agent `name`: the packaged template filled in, plus the config's
    `instructions` text (already read from the config repo) appended under its own heading."""
    template_name = "manager.md" if manager else "agent.md"
    text = resources.files("hyperhive.harness").joinpath("prompts", template_name).read_text(encoding="utf-8")
    prompt = string.Template(text).substitute(name=name, notes_path=notes_path, agents_dir=agents_dir)
    if instructions and instructions.strip():
        prompt = prompt.rstrip() + "\n\n## Instructions from your configuration\n\n" + instructions.strip() + "\n"
    return prompt


class PromptFile:
    """The system prompt as a file for `claude --system-prompt-file`, so it is never on a command
    line (every local user can read those in `ps`). A sealed memfd: nothing on disk, and nobody,
    not even a process of the agent's own, can change it while the CLI reads it. The path is
    `/proc/<harness pid>/fd/<n>`, which only the agent's uid (and root) may open. Close it after
    the turn."""

    def __init__(self, text: str) -> None:
        self.fd = os.memfd_create("hyperhive-system-prompt", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(self.fd, data) :]
            seals = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, seals)
        except BaseException:
            os.close(self.fd)
            raise
        self.path = f"/proc/{os.getpid()}/fd/{self.fd}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def config_env(var: str = ENV_CONFIG_ENV) -> dict[str, str]:
    """agent.toml `[env]`, from the read-only file the cage holds it in (named by `var`): it
    goes to the claude CLI only, never to a process outside the cage. {} when there is none."""
    path = os.environ.get(var)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}

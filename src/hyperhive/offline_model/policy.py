"""The offline model's script: a Messages API request → the answer's content blocks.

A labelled stand-in, not a real LLM. Pure: no I/O, no clock. The turn starts with the wake
prompt (hyperhive.harness.prompting); its body picks a script, and each tool_result that comes
back advances that script one step.
"""

from __future__ import annotations

import re
import shlex
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hyperhive.harness.compaction import compaction_target
from hyperhive.harness.prompting import WakePrompt, parse_wake_prompt
from hyperhive.offline_model.phrasing import HELP, Intent, newcomer_intent

__all__ = [
    "LABEL",
    "TURN_CAP",
    "Decision",
    "ToolResult",
    "TurnView",
    "decide",
    "view_turn",
]

LABEL = "offline model — scripted stand-in, not a real LLM"
TURN_CAP = 8
"""Assistant tool calls allowed in one turn before the model answers "turn cap reached"."""
SUMMARY_MARKER = "[offline model summary]"

_NAME = r"[a-z][a-z0-9-]{0,30}"
_SHA_RE = re.compile(r"\b[0-9a-f]{40}\b")


@dataclass(frozen=True)
class Decision:
    """One assistant answer: content blocks (text / tool_use dicts), why it stops, and how many
    seconds the server should spread the text over (0 = all at once)."""

    blocks: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    delay: float = 0.0
    error: tuple[int, str, str] | None = None
    """(HTTP status, error type, message): answer with an API error instead of blocks."""


@dataclass(frozen=True)
class ToolResult:
    name: str
    text: str
    is_error: bool = False


@dataclass
class TurnView:
    """What the policy needs from a request: the turn's prompt and what happened since."""

    model: str
    prompt: str
    wake: WakePrompt | None
    tool_calls: int = 0
    results: list[ToolResult] = field(default_factory=list)
    history_text: str = ""


# ---- reading the request -------------------------------------------------------------------


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _block_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for item in _blocks(content):
        if item.get("type") == "text":
            parts.append(str(item.get("text", "")))
    return "\n".join(parts)


def _is_plain_user(message: dict[str, Any]) -> bool:
    if message.get("role") != "user":
        return False
    blocks = _blocks(message.get("content"))
    return bool(blocks) and not any(b.get("type") == "tool_result" for b in blocks)


def _prompt_of(message: dict[str, Any]) -> tuple[str, WakePrompt | None]:
    """The wake prompt inside a user message (the CLI may add reminder blocks around it)."""
    texts = [str(b.get("text", "")) for b in _blocks(message.get("content")) if b.get("type") == "text"]
    # Ignore the <system-reminder> blocks the CLI injects; only the last real text counts, so a
    # compaction instruction appended after an interrupted wake prompt is not read as that wake.
    plain = [t for t in texts if not t.lstrip().startswith("<system-reminder>")]
    last = plain[-1] if plain else (texts[-1] if texts else "")
    return last, parse_wake_prompt(last)


def view_turn(request: dict[str, Any]) -> TurnView:
    """Find the current turn (since the last plain-text user message) in a request body."""
    messages = [m for m in request.get("messages") or [] if isinstance(m, dict)]
    start = None
    for i in range(len(messages) - 1, -1, -1):
        if _is_plain_user(messages[i]):
            start = i
            break
    model = str(request.get("model") or "")
    history_text = "\n".join(
        str(b.get("text", "")) or _block_text(b) for m in messages for b in _blocks(m.get("content"))
    )
    if start is None:
        return TurnView(model=model, prompt="", wake=None, history_text=history_text)
    prompt, wake = _prompt_of(messages[start])
    names: dict[str, str] = {}
    view = TurnView(model=model, prompt=prompt, wake=wake, history_text=history_text)
    for message in messages[start + 1 :]:
        for block in _blocks(message.get("content")):
            if message.get("role") == "assistant" and block.get("type") == "tool_use":
                view.tool_calls += 1
                names[str(block.get("id"))] = str(block.get("name", ""))
            elif message.get("role") == "user" and block.get("type") == "tool_result":
                view.results.append(
                    ToolResult(
                        name=names.get(str(block.get("tool_use_id")), ""),
                        text=_block_text(block),
                        is_error=bool(block.get("is_error")),
                    )
                )
    return view


# ---- answering -----------------------------------------------------------------------------


def _new_id() -> str:
    return "toolu_offline_" + uuid.uuid4().hex


def _text(text: str, delay: float = 0.0) -> Decision:
    return Decision(blocks=[{"type": "text", "text": text}], stop_reason="end_turn", delay=delay)


@dataclass
class _Ctx:
    view: TurnView
    new_id: Callable[[], str]
    agents_dir: str = "/agents"

    @property
    def step(self) -> int:
        return len(self.view.results)

    @property
    def last(self) -> ToolResult | None:
        return self.view.results[-1] if self.view.results else None

    def tool(self, name: str, tool_input: dict[str, Any], lead: str | None = None) -> Decision:
        blocks: list[dict[str, Any]] = []
        if lead:
            blocks.append({"type": "text", "text": lead})
        blocks.append({"type": "tool_use", "id": self.new_id(), "name": name, "input": tool_input})
        return Decision(blocks=blocks, stop_reason="tool_use")

    def done(self, text: str) -> Decision:
        """The closing text after the script's last tool call; a failed tool is reported."""
        last = self.last
        if last is not None and last.is_error:
            return _text(f"{text.rstrip('.')} failed: {_short(last.text)}")
        return _text(text)


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _hh(tool: str) -> str:
    return f"mcp__hyperhive__{tool}"


_TOML_SETTER = (
    "import re,sys\n"
    "p,k,v=sys.argv[1:4]\n"
    "ls=open(p,encoding='utf-8').read().splitlines()\n"
    "end=next((i for i,l in enumerate(ls) if l.lstrip().startswith('[')),len(ls))\n"
    "hit=[i for i in range(end) if re.match(r'\\s*'+re.escape(k)+r'\\s*=',ls[i])]\n"
    "if hit: ls[hit[0]]=k+' = '+v\n"
    "else: ls.insert(end,k+' = '+v)\n"
    "open(p,'w',encoding='utf-8').write('\\n'.join(ls)+'\\n')\n"
)
_AGENTS_DIR_RE = re.compile(r"proposed config is a git repository at (/\S*?)/<name>/config")


def agents_dir_of(request: dict[str, Any]) -> str:
    """Where the manager's prompt says the proposed config repos are (default /agents)."""
    system = request.get("system")
    text = system if isinstance(system, str) else " ".join(str(b.get("text", "")) for b in _blocks(system))
    match = _AGENTS_DIR_RE.search(text)
    return match[1] if match else "/agents"


def configure_command(name: str, key: str, value: str, agents_dir: str = "/agents") -> str:
    """The Bash command the `configure` script runs in the manager's cage: set a top-level key
    of agent.toml, commit as the manager, print the sha. Literal paths and no `cd`: the CLI's
    permission check refuses variable expansions and a `cd` outside the working directory, and
    checks each `&&` part against the Bash patterns (`python3 *`, `git *`)."""
    repo = f"{agents_dir.rstrip('/')}/{name}/config"
    git = f"git -C {shlex.quote(repo)}"
    return (
        f"python3 -c {shlex.quote(_TOML_SETTER)} {shlex.quote(repo + '/agent.toml')} "
        f"{shlex.quote(key)} {shlex.quote(value)} && "
        f"{git} -c user.name=manager -c user.email=manager@hyperhive.local commit -qam "
        f"{shlex.quote('set ' + key)} && {git} rev-parse HEAD"
    )


def _script(ctx: _Ctx, wake: WakePrompt) -> Decision:  # noqa: C901 - one table of scripts
    body = wake.body.strip()
    sender = wake.sender
    step = ctx.step

    if sender == "system":
        return _text("noted.")

    if m := re.fullmatch(rf"(?is)relay\s+(.+)\s+to\s+({_NAME}|\*|operator|manager)", body):
        if step == 0:
            return ctx.tool(_hh("send"), {"to": m[2].lower(), "body": m[1].strip()})
        return ctx.done("relayed.")

    if m := re.fullmatch(r"(?is)reply\s+(.+)", body):
        if step == 0:
            return ctx.tool(_hh("send"), {"to": sender, "body": m[1].strip(), "in_reply_to": wake.msg_id})
        return ctx.done("replied.")

    if m := re.fullmatch(r"(?is)bash\s+(.+)", body):
        if step == 0:
            command = m[1].strip()
            return ctx.tool("Bash", {"command": command, "description": f"run {_short(command, 60)}"})
        last = ctx.last
        assert last is not None
        prefix = "bash failed: " if last.is_error else "bash: "
        return _text(prefix + _short(last.text))

    if m := re.fullmatch(r"(?is)write\s+(\S+)\s+(.*)", body):
        if step == 0:
            return ctx.tool("Write", {"file_path": m[1], "content": m[2]})
        return ctx.done(f"wrote {m[1]}.")

    if m := re.fullmatch(r"(?is)edit\s+(\S+)\s+(.+?)\s+=>\s+(.*)", body):
        if step == 0:
            return ctx.tool("Edit", {"file_path": m[1], "old_string": m[2], "new_string": m[3]})
        return ctx.done(f"edited {m[1]}.")

    if m := re.fullmatch(r"(?is)nap\s+(\d+(?:\.\d+)?)", body):
        if step == 0:
            seconds = float(m[1])
            return ctx.tool(_hh("nap"), {"seconds": int(seconds) if seconds.is_integer() else seconds})
        return ctx.done("napping.")

    if m := re.fullmatch(r"(?is)ask\s+(.+)", body):
        if step == 0:
            rest = m[1].strip()
            tool_input: dict[str, Any] = {}
            if to := re.match(rf"({_NAME}):\s+(.*)", rest, re.S):
                tool_input["to"] = to[1]
                rest = to[2]
            question, options = rest, []
            if opts := re.search(r"\?\s*options\s+(.+)$", rest, re.S | re.I):
                question = rest[: opts.start() + 1]
                options = [o.strip() for o in opts[1].split("|") if o.strip()]
            tool_input["question"] = question.strip()
            if options:
                tool_input["options"] = options
            return ctx.tool(_hh("ask"), tool_input)
        return ctx.done("asked.")

    if m := re.fullmatch(r"(?is)answer\s+(\d+)\s+(.+)", body):
        if step == 0:
            return ctx.tool(_hh("answer"), {"id": int(m[1]), "answer": m[2].strip()})
        return ctx.done("answered.")

    if m := re.fullmatch(r"(?is)slow\s+(\d+(?:\.\d+)?)", body):
        seconds = float(m[1])
        words = " ".join(f"tick {i}." for i in range(1, 21))
        return _text(f"({LABEL}) slow reply over {m[1]}s: {words}", delay=seconds)

    if m := re.fullmatch(r"(?is)echo\s+(.*)", body):
        return _text(m[1])

    if re.fullmatch(r"(?i)model\?", body):
        return _text(f"model={ctx.view.model}")

    if re.fullmatch(r"(?is)always\s+fail(?:\s+.*)?", body):
        # A turn that fails every time it is tried (dead-letter tests): an API error, not retried.
        return Decision(blocks=[], error=(400, "invalid_request_error", "offline model: scripted failure"))

    if m := re.fullmatch(r"(?is)overflow(?:\s+(.*))?", body):
        # Stands in for a context overflow until the session has been compacted once.
        if SUMMARY_MARKER not in ctx.view.history_text:
            return Decision(
                blocks=[],
                error=(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"),
            )
        return _text(f"after compaction: {m[1] or ''}".rstrip())

    if m := re.fullmatch(rf"(?i)spawn\s+({_NAME})", body):
        if step == 0:
            return ctx.tool(_hh("request_spawn"), {"name": m[1].lower()})
        return ctx.done(f"requested spawn of {m[1].lower()}.")

    if m := re.fullmatch(rf"(?i)init\s+config\s+({_NAME})", body):
        if step == 0:
            return ctx.tool(_hh("request_init_config"), {"name": m[1].lower()})
        return ctx.done(f"requested a config for {m[1].lower()}.")

    if m := re.fullmatch(rf"(?is)configure\s+({_NAME})\s+([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(.+)", body):
        name, key, value = m[1].lower(), m[2], m[3].strip()
        if step == 0:
            return ctx.tool(
                "Bash",
                {
                    "command": configure_command(name, key, value, ctx.agents_dir),
                    "description": f"set {key} for {name}",
                },
            )
        if step == 1:
            last = ctx.last
            assert last is not None
            shas = _SHA_RE.findall(last.text)
            if last.is_error or not shas:
                return _text(f"configure {name} failed: {_short(last.text)}")
            return ctx.tool(
                _hh("request_apply_commit"),
                {"agent": name, "commit_ref": shas[-1], "description": f"set {key} = {value}"},
            )
        return ctx.done(f"asked the operator to apply {key} for {name}.")

    if m := re.fullmatch(rf"(?i)(kill|start|restart|update)\s+({_NAME})", body):
        verb, name = m[1].lower(), m[2].lower()
        if step == 0:
            return ctx.tool(_hh(verb), {"name": name})
        return ctx.done(f"{verb} {name}: done.")

    if intent := newcomer_intent(body):
        return _newcomer(ctx, wake, intent)

    if step == 0:
        return ctx.tool(_hh("send"), {"to": "operator", "body": f"{sender} said: {wake.body}"})
    return ctx.done("done.")


def _newcomer(ctx: _Ctx, wake: WakePrompt, intent: Intent) -> Decision:
    """A newcomer's phrasing (offline_model/phrasing.py): spawn, init, or the list of commands."""
    if ctx.step > 0:
        if intent.tool == "help":
            return ctx.done("sent the list of what I understand.")
        if intent.tool == "request_init_config":
            return ctx.done(f"requested a config for {intent.name}.")
        return ctx.done(f"requested spawn of {intent.name}.")
    if intent.tool == "help":
        return ctx.tool(_hh("send"), {"to": wake.sender, "body": HELP, "in_reply_to": wake.msg_id})
    tool_input: dict[str, Any] = {"name": intent.name}
    if intent.description:
        tool_input["description"] = intent.description
    return ctx.tool(_hh(intent.tool), tool_input)


def decide(request: dict[str, Any], new_id: Callable[[], str] = _new_id) -> Decision:
    """The answer to one Messages API request body."""
    view = view_turn(request)
    if view.tool_calls >= TURN_CAP:
        return _text("turn cap reached")
    ctx = _Ctx(view=view, new_id=new_id, agents_dir=agents_dir_of(request))
    if (notes_file := compaction_target(view.prompt)) is not None:
        return _compact_notes(ctx, notes_file)
    if view.wake is None:
        if view.results:
            return _text(f"tool finished: {_short(view.results[-1].text, 120)}")
        # Not a hyperhive wake prompt (a compaction request, a slash command, a human test).
        return _text(f"{SUMMARY_MARKER} ({LABEL}) nothing scripted for: {_short(view.prompt, 120)}")
    if view.results and view.results[-1].name not in _SCRIPTED_TOOLS:
        return _text(f"tool finished: {_short(view.results[-1].text, 120)}")
    return _script(ctx, view.wake)


_SCRIPTED_TOOLS = frozenset(
    {"Bash", "Write", "Edit"}
    | {
        _hh(t)
        for t in (
            "send", "nap", "ask", "answer", "request_spawn", "request_init_config",
            "request_apply_commit", "kill", "start", "restart", "update",
        )
    }
)  # fmt: skip


# ---- notes compaction (hyperhive.harness.compaction's secondary session) -----------------------

COMPACT_FAIL = "offline-model: compaction fails"
"""In the notes, makes the compaction session fail with an API error."""
COMPACT_GARBAGE = "offline-model: compaction garbage"
"""In the notes, makes the compaction write a rewrite larger than the original."""
COMPACT_ESCAPE = "offline-model: compaction escapes"
"""In the notes, makes the compaction try to Write a new file next to the live notes, outside
its working copy (the permission rules must deny it)."""
_READ_PREFIX = re.compile(r"^ *\d+(?:\t|→)", re.M)


def _read_text(result: str) -> str:
    """The file's text from a Read tool result (line-number prefixes and reminders removed)."""
    body = result.split("<system-reminder>", 1)[0]
    return _READ_PREFIX.sub("", body).rstrip("\n") + "\n"


def _compacted(notes: str) -> str:
    """Stand-in compaction: drop repeated lines and runs of blank lines (order kept)."""
    seen: set[str] = set()
    out: list[str] = []
    for line in notes.splitlines():
        key = line.strip()
        if key and key in seen:
            continue
        if not key and (not out or not out[-1].strip()):
            continue
        seen.add(key)
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def _compact_notes(ctx: _Ctx, notes_file: str) -> Decision:
    """Read the notes, then Write them back compacted (or fail / write garbage on request)."""
    if ctx.step == 0:
        return ctx.tool("Read", {"file_path": notes_file})
    last = ctx.last
    assert last is not None
    if ctx.step == 1:
        if last.is_error:
            return _text(f"could not read the notes: {_short(last.text)}")
        notes = _read_text(last.text)
        if COMPACT_ESCAPE in notes:
            outside = notes_file.rsplit("/", 2)[0] + "/escaped-by-compaction.md"
            return ctx.tool("Write", {"file_path": outside, "content": "written by the compaction session\n"})
        if COMPACT_FAIL in notes:
            return Decision(
                blocks=[], error=(400, "invalid_request_error", "offline model: scripted compaction failure")
            )
        content = notes + notes if COMPACT_GARBAGE in notes else _compacted(notes)
        return ctx.tool("Write", {"file_path": notes_file, "content": content})
    return ctx.done("done.")

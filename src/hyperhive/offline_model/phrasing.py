"""The first things a newcomer types to the manager, mapped onto the offline model's scripts:
"please create an agent called zed", "make a new agent named zed for the docs", "init zed",
"help". Pure: a message body in, an intent out. docs/offline-model.md lists what is understood
(tests/offline_model/test_phrasing.py checks that page against this module)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["HELP", "Intent", "newcomer_intent"]

_NAME = r"[A-Za-z][A-Za-z0-9-]{0,30}"
_POLITE = re.compile(
    r"^(?:(?:hi|hey|hello|ok|okay)\b[\s,!.:-]*)?(?:manager\b[\s,:-]*)?"
    r"(?:(?:please|pls|kindly)\s+|(?:could|can|would|will)\s+you\s+(?:please\s+)?|i\s+(?:want|need|would\s+like)\s+(?:you\s+)?(?:to\s+)?)*",
    re.I,
)
_TAIL = re.compile(r"[\s,]*(?:please|pls|thanks|thank\s+you)?[\s.!?]*$", re.I)
_SPAWN = re.compile(
    rf"(?:create|make|spawn|add|build|set\s+up|start\s+up|spin\s+up|new)\s+"
    rf"(?:(?:a|an|one|another)\s+)?(?:new\s+)?(?:agent|worker|bot|helper)?\s*"
    rf"(?:(?:called|named|with\s+the\s+name)\s+|:\s*)?[\"'`]?({_NAME})[\"'`]?"
    rf"(?:\s*[,:-]?\s*(?:to|for|that|who|which|as)\s+(.+))?",
    re.I | re.S,
)
_INIT = re.compile(rf"init(?:ialise|ialize)?\s+(?:(?:a\s+)?config(?:\s+for)?\s+)?[\"'`]?({_NAME})[\"'`]?", re.I)
_HELP = re.compile(r"(?:help|\?|what\s+can\s+you\s+do|commands|usage)", re.I)
_NOT_NAMES = frozenset({"agent", "worker", "bot", "helper", "a", "an", "new", "one", "another", "config"})

HELP = """\
offline model (a scripted stand-in, not a real LLM). I understand:
  create an agent called NAME [for WHAT]   → request_spawn (also: spawn NAME, make/add/new agent NAME)
  init NAME                                → request_init_config (also: init config NAME)
  configure NAME KEY = VALUE               → edit NAME's agent.toml, commit, request_apply_commit
  kill|start|restart|update NAME           → that manager tool
  relay TEXT to NAME · reply TEXT · ask [NAME:] QUESTION? options A | B · answer ID TEXT
  bash CMD · write PATH TEXT · edit PATH OLD => NEW · nap SECONDS · echo TEXT · slow SECONDS · model?
anything else is forwarded to the operator. docs/offline-model.md has the full list."""


@dataclass(frozen=True)
class Intent:
    tool: str  # request_spawn | request_init_config | help
    name: str | None = None
    description: str | None = None


def _core(body: str) -> str:
    text = " ".join(body.split())
    text = _POLITE.sub("", text, count=1)
    return _TAIL.sub("", text, count=1).strip()


def newcomer_intent(body: str) -> Intent | None:
    """What a newcomer's message asks for, or None when it is none of these phrasings."""
    text = _core(body)
    if _HELP.fullmatch(text):
        return Intent("help")
    if m := _INIT.fullmatch(text):
        return Intent("request_init_config", m[1].lower())
    if (m := _SPAWN.fullmatch(text)) and m[1].lower() not in _NOT_NAMES:
        description = m[2].strip().rstrip(".!?") if m[2] else None
        return Intent("request_spawn", m[1].lower(), description or None)
    return None

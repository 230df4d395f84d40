"""Budgets (issue 12): `[budget]` in agent.toml per agent, `[budget]` in hive.toml for the hive.

When an agent's (or the hive's) spend in its window reaches the budget, the gateway refuses its
model calls, it shows `over budget`, its `recv` holds (messages keep queuing, nothing is lost),
the manager is told, and the operator gets a question: raise the budget for today, resume once,
or keep paused. Answering resumes it where it stopped. Windows: `calendar` (since local
midnight, the hive's time zone) or `rolling` (the last 24 hours).

"Raise" adds a grant for the current window: one more day's budget above what is spent.
"Resume once" lets the next turn run; it is used up when the agent goes back to idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hyperhive.core.usage import DAY, UsageBook, day_start
from hyperhive.names import MANAGER
from hyperhive.wirecaps import OVER_BUDGET_MARK

if TYPE_CHECKING:
    from hyperhive.core.broker import Broker
    from hyperhive.core.hub import Hub
    from hyperhive.core.lifecycle import Lifecycle
    from hyperhive.core.questions import Questions
    from hyperhive.store.base import Store

__all__ = ["HIVE", "RAISE", "RESUME_ONCE", "KEEP_PAUSED", "Budgets"]

log = logging.getLogger(__name__)
HIVE = "*"  # the hive-wide budget's key
RAISE = "raise the budget for today"
RESUME_ONCE = "resume once"
KEEP_PAUSED = "keep paused"
QUESTION_PREFIX = "budget: "


@dataclass(frozen=True)
class Limit:
    usd: float | None
    tokens: int | None
    window: str

    def since(self, now: float) -> float:
        return now - DAY if self.window == "rolling" else day_start(now)


@dataclass
class _Pause:
    reason: str
    question: int | None = None
    once: bool = False  # the operator said "resume once": the next turn may run
    once_started: bool = False
    resumed: asyncio.Event = field(default_factory=asyncio.Event)


class Budgets:
    def __init__(self, store: Store, hub: Hub, usage: UsageBook, lifecycle: Lifecycle, broker: Broker,
                 questions: Questions, hive_budget: dict[str, Any]) -> None:  # fmt: skip
        self.store = store
        self.hub = hub
        self.usage = usage
        self.lifecycle = lifecycle
        self.broker = broker
        self.questions = questions
        self.hive = _limit(hive_budget)
        self.paused: dict[str, _Pause] = {}
        self._pausing: set[str] = set()

    # ---- what the gateway and recv ask --------------------------------------------------

    def limit_of(self, name: str) -> Limit | None:
        if name == HIVE:
            return self.hive
        with contextlib.suppress(Exception):
            b = self.lifecycle.agent_config(name).budget
            return _limit({"usd_per_day": b.usd_per_day, "tokens_per_day": b.tokens_per_day, "window": b.window})
        return None

    async def status(self, name: str, now: float | None = None) -> dict[str, Any]:
        """Spend in the window against the budget (plus today's grants) for an agent or HIVE."""
        now = time.time() if now is None else now
        limit = self.limit_of(name)
        window = limit.window if limit else "calendar"
        since = limit.since(now) if limit else day_start(now)
        spent = await self.usage.total(since) if name == HIVE else await self.usage.spend(name, since)
        grants = await self.store.grants_since(name, since)
        extra_usd = sum(g["usd"] for g in grants if g["kind"] == "raise")
        extra_tokens = sum(g["tokens"] for g in grants if g["kind"] == "raise")
        usd = None if limit is None or limit.usd is None else limit.usd + extra_usd
        tokens = None if limit is None or limit.tokens is None else limit.tokens + extra_tokens
        over = (usd is not None and spent["cost_usd"] >= usd) or (tokens is not None and spent["tokens"] >= tokens)
        return {"usd": round(float(spent["cost_usd"]), 6), "tokens": int(spent["tokens"]), "usd_budget": usd,
                "tokens_budget": tokens, "window": window, "since": since, "over": bool(over)}  # fmt: skip

    async def refusal(self, name: str) -> str | None:
        """The gateway's check before a model call: a reason to refuse it, or None."""
        for key in (name, HIVE):
            pause = self.paused.get(key)
            if pause is not None and not pause.once:
                return pause.reason
        for key in (name, HIVE):
            st = await self.status(key)
            if st["over"] and not (key in self.paused and self.paused[key].once):
                self._pause_soon(key, st)
                return _reason(key, st)
        return None

    async def after_usage(self, name: str) -> None:
        """After a response is recorded: pause at once if it crossed a budget."""
        for key in (name, HIVE):
            if key in self.paused:
                continue
            st = await self.status(key)
            if st["over"]:
                await self.pause(key, st)

    def held(self, name: str) -> asyncio.Event | None:
        """For `recv`: the event that resumes `name` if it is paused (its own budget or the hive's)."""
        for key in (name, HIVE):
            pause = self.paused.get(key)
            if pause is not None and not pause.once:
                return pause.resumed
        return None

    # ---- pausing and resuming ------------------------------------------------------------

    def _pause_soon(self, key: str, st: dict[str, Any]) -> None:
        if key not in self.paused and key not in self._pausing:
            self._pausing.add(key)
            task = asyncio.ensure_future(self.pause(key, st))
            task.add_done_callback(lambda t: self._pausing.discard(key))

    async def pause(self, key: str, st: dict[str, Any]) -> None:
        if key in self.paused:
            return
        reason = _reason(key, st)
        pause = _Pause(reason)
        self.paused[key] = pause
        self._show(key, "over_budget")
        log.warning("%s", reason)
        who = "the hive" if key == HIVE else key
        spent = f"${st['usd']:.4f}" + (f" of ${st['usd_budget']:.4f}" if st["usd_budget"] is not None else "")
        question = (f"{QUESTION_PREFIX}{key} is over budget ({spent}; {st['tokens']} tokens"
                    + (f" of {st['tokens_budget']}" if st["tokens_budget"] is not None else "")
                    + f", {st['window']} window). its messages are queued. what now?")  # fmt: skip
        try:
            q = await self.questions.ask(MANAGER, question, options=[RAISE, RESUME_ONCE, KEEP_PAUSED])
            pause.question = int(q["id"])
        except Exception:
            log.exception("could not ask the operator about %s's budget", who)
        with contextlib.suppress(Exception):
            await self.broker.system_event(MANAGER, "over_budget", agent=key, usd=st["usd"], usd_budget=st["usd_budget"],
                                           tokens=st["tokens"], tokens_budget=st["tokens_budget"], window=st["window"])  # fmt: skip

    async def on_answer(self, question: dict[str, Any]) -> None:
        """A resolved question: if it is a budget question, act on the operator's answer."""
        key = next((k for k, p in self.paused.items() if p.question == question["id"]), None)
        if key is None:
            return
        answer = str(question.get("answer") or "").strip().lower()
        pause = self.paused[key]
        if answer == RAISE:
            st = await self.status(key)
            limit = self.limit_of(key)
            usd = (
                max(0.0, st["usd"] - (st["usd_budget"] or 0.0)) + (limit.usd or 0.0)
                if limit and limit.usd is not None
                else 0.0
            )
            tokens = (
                max(0, st["tokens"] - (st["tokens_budget"] or 0)) + (limit.tokens or 0)
                if limit and limit.tokens is not None
                else 0
            )
            now = time.time()
            await self.store.add_grant(key, now, "raise", usd, tokens)
            self._resume(key, "raised for today")
        elif answer == RESUME_ONCE:
            pause.once = True
            pause.resumed.set()
            self._show(key, None)
            await self._tell(key, "resumed once")
        else:
            log.info("%s stays paused (%s)", key, answer or "no answer")

    async def on_state(self, name: str, harness_state: str | None) -> None:
        """The agent's reported state: a "resume once" ends when its turn does."""
        pause = self.paused.get(name)
        if pause is None or not pause.once:
            return
        if harness_state == "thinking":
            pause.once_started = True
        elif harness_state == "idle" and pause.once_started:
            del self.paused[name]
            st = await self.status(name)
            if st["over"]:
                await self.pause(name, st)

    def _resume(self, key: str, how: str) -> None:
        pause = self.paused.pop(key, None)
        if pause is not None:
            pause.resumed.set()
        self._show(key, None)
        asyncio.ensure_future(self._tell(key, how))

    async def _tell(self, key: str, how: str) -> None:
        with contextlib.suppress(Exception):
            await self.broker.system_event(MANAGER, "budget_resumed", agent=key, how=how)

    def _show(self, key: str, blocked: str | None) -> None:
        names = list(self.lifecycle.agents) if key == HIVE else [key]
        for name in names:
            rt = self.lifecycle.agents.get(name)
            if rt is None or (blocked is None and rt.blocked != "over_budget"):
                continue
            rt.blocked = blocked
            rt.blocked_until = None
            self.lifecycle.publish_row(name)
        self.hub.publish("budget", {"agent": key, "paused": blocked is not None})


def _limit(raw: dict[str, Any]) -> Limit | None:
    usd, tokens = raw.get("usd_per_day"), raw.get("tokens_per_day")
    if usd is None and tokens is None:
        return None
    window = str(raw.get("window") or "calendar")
    return Limit(None if usd is None else float(usd), None if tokens is None else int(tokens), window)


def _reason(key: str, st: dict[str, Any]) -> str:
    who = "the hive" if key == HIVE else key
    return (f"{OVER_BUDGET_MARK} {who} is over its {st['window']} budget (${st['usd']:.4f} spent, {st['tokens']} tokens); "
            "the operator has been asked to raise it or resume")  # fmt: skip


BudgetHook = Callable[[str], str | None]

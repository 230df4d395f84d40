"""Held system notices (issue 13 §1): which notices need no turn, how they persist, how they read
in the next wake prompt (and parse back, as the offline model does)."""

from __future__ import annotations

import json
from pathlib import Path

from hyperhive.harness.bookkeeping import HeldEvents, quiet_event
from hyperhive.harness.prompting import format_wake_prompt, parse_wake_prompt


def system(mid: int, event: str, **fields: object) -> dict[str, object]:
    return {"id": mid, "sender": "system", "body": json.dumps({"event": event, **fields})}


def test_only_notices_that_need_no_decision_are_quiet() -> None:
    for event in ("kick", "spawned", "killed", "logged_in"):
        assert quiet_event(system(1, event)) == event
    for event in ("container_crash", "approval_resolved", "dead_letter", "question_answered", "needs_login"):
        assert quiet_event(system(1, event)) is None
    assert quiet_event({"id": 1, "sender": "operator", "body": json.dumps({"event": "kick"})}) is None
    assert quiet_event({"id": 1, "sender": "system", "body": "not json"}) is None


def test_held_notices_persist_and_a_newer_kick_replaces_the_older(tmp_path: Path) -> None:
    path = tmp_path / "held.json"
    held = HeldEvents(path)
    assert not held and held.add(system(1, "kick", note="you were spawned at T1."), "kick") is None
    held.add(system(2, "spawned", agent="a"), "spawned")
    held.add(system(3, "kick", note="you were restarted\nat T2."), "kick")
    again = HeldEvents(path)
    assert [h.id for h in again.items] == [2, 3]
    assert again.preface() == ['system event: {"event": "spawned", "agent": "a"}', "kick: you were restarted at T2."]
    assert path.stat().st_mode & 0o777 == 0o600
    assert again.clear() is None and not path.exists() and not HeldEvents(path)


def test_a_failed_write_keeps_them_in_memory_and_says_so(tmp_path: Path) -> None:
    held = HeldEvents(tmp_path / "missing-dir" / "held.json")
    warning = held.add(system(1, "spawned", agent="a"), "spawned")
    assert warning is not None and "could not persist" in warning
    assert len(held.items) == 1


def test_folded_notices_parse_back_with_the_body_intact() -> None:
    text = format_wake_prompt(7, "operator", "echo hi\n---\nmore", 2, True, earlier=["kick: you were\nspawned."])
    wake = parse_wake_prompt(text)
    assert wake is not None
    assert (wake.msg_id, wake.sender, wake.body, wake.unread, wake.redelivered) == (
        7,
        "operator",
        "echo hi\n---\nmore",
        2,
        True,
    )
    assert wake.earlier == ("kick: you were spawned.",)
    assert parse_wake_prompt(format_wake_prompt(8, "a", "x")).earlier == ()  # type: ignore[union-attr]

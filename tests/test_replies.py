"""Every verb has a reply model (issue 10): hyperhive.replies.REPLIES names one for each verb of
protocol.VERBS, and encode_reply keeps a verb's fields as they were while refusing one its
model does not list."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hyperhive.protocol import VERBS
from hyperhive.replies import REPLIES, encode_reply


def test_every_verb_has_a_reply_model() -> None:
    missing = sorted(VERBS - set(REPLIES))
    assert not missing, f"verbs without a reply model in hyperhive/replies.py: {missing}"


def test_a_reply_keeps_its_fields_and_adds_no_defaults() -> None:
    """Only the keys the verb set go out; optional ones it left out stay out."""
    assert encode_reply("recv", {"messages": [], "unread": 3}) == {"messages": [], "unread": 3}
    ping = {"pong": True, "as": "operator", "hyperhive": "0.1.0", "state_dir": "/s"}
    assert encode_reply("ping", ping) == ping
    row = {"name": "iris", "cage": "process", "state": "running", "pid": None}
    assert encode_reply("start", {"agent": row}) == {"agent": row}


def test_a_field_the_model_does_not_list_is_refused() -> None:
    with pytest.raises(ValidationError):
        encode_reply("status", {"unread": 1, "surprise": True})
    with pytest.raises(ValidationError):
        encode_reply("send", {"ids": [1], "recipients": 1})  # `id` missing

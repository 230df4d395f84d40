"""requestcodec.decode_request: one line in, one typed request out, or a ProtocolFailure with a
named code and a one-sentence reason (architecture §3, STYLE §3, issue 2)."""

from __future__ import annotations

import json

import pytest

from hyperhive import protocol as p
from hyperhive import socketverbs as sv
from hyperhive.protocol import MAX_BODY_BYTES, MAX_RECV, MAX_RECV_WAIT, ErrorCode
from hyperhive.requestcodec import ProtocolFailure, decode_request, error_reply


def fails(line: bytes | str, code: str) -> str:
    with pytest.raises(ProtocolFailure) as info:
        decode_request(line)
    assert info.value.code == code, info.value.message
    assert info.value.message and "\n" not in info.value.message
    return info.value.message


def test_a_good_line_decodes_to_its_typed_model() -> None:
    """Each verb decodes to its own frozen model, defaults filled in (architecture §3)."""
    req = decode_request(b'{"cmd":"send","to":"b","body":"hi"}')
    assert isinstance(req, p.SendReq) and (req.to, req.body, req.in_reply_to) == ("b", "hi", None)
    recv = decode_request('{"cmd":"recv"}')
    assert isinstance(recv, p.RecvReq) and (recv.wait_seconds, recv.max) == (0, 1)
    assert isinstance(decode_request('{"cmd":"destroy","name":"a","purge":true}'), p.DestroyReq)


def test_every_verb_in_the_socket_tables_is_a_known_verb() -> None:
    """The per-socket verb tables only name verbs the protocol defines (architecture §3)."""
    assert sv.HOST_VERBS | sv.AGENT_VERBS | sv.MANAGER_VERBS <= p.VERBS
    assert {"approve", "deny", "spawn", "destroy", "inbox"}.isdisjoint(sv.AGENT_VERBS)
    assert {"approve", "deny", "spawn", "destroy"}.isdisjoint(sv.MANAGER_VERBS)
    assert sv.AGENT_VERBS < sv.MANAGER_VERBS


@pytest.mark.parametrize("line", [b"", b"{", b"not json", b'{"cmd":"ping"', b"\xff\xfe", b'{"a":"\xc3\x28"}'])
def test_malformed_json_is_bad_json(line: bytes) -> None:
    """A line that does not parse is refused with bad_json (issue 2)."""
    fails(line, ErrorCode.BAD_JSON)


@pytest.mark.parametrize("line", ["[]", "[1]", '"ping"', "1", "null", "true"])
def test_json_that_is_not_an_object_is_bad_json(line: str) -> None:
    """A request must be a JSON object (architecture §3)."""
    assert "object" in fails(line, ErrorCode.BAD_JSON)


@pytest.mark.parametrize("line", ["{}", '{"cmd":5}', '{"cmd":null}', '{"cmd":["ping"]}'])
def test_a_missing_or_non_string_cmd_is_a_bad_request(line: str) -> None:
    """`cmd` is required and a string (architecture §3)."""
    assert "cmd" in fails(line, ErrorCode.BAD_REQUEST)


def test_an_unknown_verb_is_named_and_truncated() -> None:
    """An unknown verb says which, shortened so an attacker's megabyte is not echoed (STYLE §8)."""
    assert "'frobnicate'" in fails('{"cmd":"frobnicate"}', ErrorCode.UNKNOWN_VERB)
    assert len(fails(json.dumps({"cmd": "x" * 10_000}), ErrorCode.UNKNOWN_VERB)) < 100


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"cmd": "send", "to": "b"}, "body"),
        ({"cmd": "send", "body": "x"}, "to"),
        ({"cmd": "send", "to": "b", "body": 1}, "body"),
        ({"cmd": "send", "to": "b", "body": "x", "in_reply_to": "1"}, "in_reply_to"),
        ({"cmd": "send", "to": "b", "body": "x", "in_reply_to": 0}, "in_reply_to"),
        ({"cmd": "send", "to": "b", "body": "x", "from": "operator"}, "from"),
        ({"cmd": "recv", "wait_seconds": MAX_RECV_WAIT + 1}, "wait_seconds"),
        ({"cmd": "recv", "wait_seconds": "5"}, "wait_seconds"),
        ({"cmd": "recv", "wait_seconds": True}, "wait_seconds"),
        ({"cmd": "recv", "max": MAX_RECV + 1}, "max"),
        ({"cmd": "recv", "max": 1.5}, "max"),
        ({"cmd": "destroy", "name": "a", "purge": "yes"}, "purge"),
        ({"cmd": "approve", "id": "1"}, "id"),
        ({"cmd": "ping", "x": 1}, "x"),
        ({"cmd": "ask", "question": "q", "options": "a,b"}, "options"),
    ],
)
def test_missing_wrong_typed_or_extra_fields_are_bad_requests_naming_the_field(
    obj: dict[str, object], field: str
) -> None:
    """Requests are strict: nothing is coerced, unknown fields are refused, and the error names
    the field (STYLE §3, issue 2)."""
    assert f"{field}`" in fails(json.dumps(obj), ErrorCode.BAD_REQUEST)


@pytest.mark.parametrize("name", ["..", "a/b", "-x", "a" * 500, "ünï", "", "A", "a b", "operator", "system", "*"])
def test_hostile_names_are_invalid_names(name: str) -> None:
    """Names that could reach a path or impersonate a role are refused with invalid_name (architecture §2)."""
    fails(json.dumps({"cmd": "start", "name": name}), ErrorCode.INVALID_NAME)
    fails(json.dumps({"cmd": "request_apply_commit", "agent": name, "commit_ref": "HEAD"}), ErrorCode.INVALID_NAME)


def test_spawning_the_manager_is_refused_but_starting_it_is_not() -> None:
    """`manager` is made by the core, never spawned; it can be started (architecture §2)."""
    assert "reserved" in fails('{"cmd":"spawn","name":"manager"}', ErrorCode.INVALID_NAME)
    assert decode_request('{"cmd":"start","name":"manager"}').name == "manager"


@pytest.mark.parametrize("to", ["operator", "manager", "*", "b"])
def test_recipients_include_the_roles(to: str) -> None:
    """send accepts an agent, `manager`, `operator` and `*` (architecture §4)."""
    assert decode_request(json.dumps({"cmd": "send", "to": to, "body": "x"})).to == to


def test_the_body_cap_counts_utf8_bytes_and_is_inclusive() -> None:
    """MAX_BODY_BYTES bytes pass; one more byte, or the same count of two-byte characters, is
    too_large (architecture §4)."""
    decode_request(json.dumps({"cmd": "send", "to": "b", "body": "x" * MAX_BODY_BYTES}))
    fails(json.dumps({"cmd": "send", "to": "b", "body": "x" * (MAX_BODY_BYTES + 1)}), ErrorCode.TOO_LARGE)
    fails(json.dumps({"cmd": "send", "to": "b", "body": "é" * (MAX_BODY_BYTES // 2 + 1)}), ErrorCode.TOO_LARGE)


def test_a_lone_surrogate_escape_is_a_bad_request_and_a_pair_is_fine() -> None:
    """JSON can carry an unpaired surrogate escape that no store can encode: it is refused up
    front (it used to reach SQLite and come back as an internal error); a proper pair decodes (issue 2)."""
    assert "surrogate" in fails('{"cmd":"send","to":"b","body":"\\ud800"}', ErrorCode.BAD_REQUEST)
    fails('{"cmd":"send","to":"b","body":"x","\\udc00":1}', ErrorCode.BAD_REQUEST)
    assert decode_request('{"cmd":"send","to":"b","body":"\\ud83d\\ude00"}').body == "\U0001f600"


@pytest.mark.parametrize("line", [b"[" * 100_000, b'{"cmd":"ping","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"])
def test_json_nested_too_deeply_is_bad_json(line: bytes) -> None:
    """Deep nesting inside the line cap raised RecursionError out of the decoder and the daemon
    dropped the connection unanswered; it is now bad_json (issue 2)."""
    assert "deeply" in fails(line, ErrorCode.BAD_JSON)


def test_error_reply_is_the_canonical_envelope() -> None:
    """error_reply builds exactly {version, ok:false, error, code} (architecture §3)."""
    assert error_reply("nope", ErrorCode.BAD_REQUEST) == {
        "version": p.PROTOCOL_VERSION, "ok": False, "error": "nope", "code": "bad_request",
    }  # fmt: skip

"""Hostile input on the real sockets of a running daemon (architecture §3, issue 2 "Bad input").

One table of cases, each driven through `host.sock` or an agent's `mcp.sock` with the
bad-then-good pattern: after the bad line the same connection (or, when the case closes it, a
new one) still gets a good answer, and no row was half-written. Agents here are registered
and given their sockets without a harness, so nothing else reads their queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hivetest import sync, wire_agent
from hyperhive.core import sockets as sockets_module
from hyperhive.core.daemon import Daemon
from hyperhive.protocol import MAX_BODY_BYTES, MAX_LINE_BYTES, PROTOCOL_VERSION, ErrorCode

TIMEOUT = 10


# ---- helpers ---------------------------------------------------------------------------------


def assert_canonical_error(reply: dict[str, Any] | None, code: str) -> None:
    """The one error envelope every refusal uses: `{"version":1,"ok":false,"error":str,"code":str}`."""
    assert reply is not None, "the daemon closed the connection instead of answering"
    assert set(reply) == {"version", "ok", "error", "code"}, reply
    assert reply["version"] == PROTOCOL_VERSION
    assert reply["ok"] is False
    assert isinstance(reply["error"], str) and reply["error"].strip(), reply
    assert "\n" not in reply["error"], "an error is one line"
    assert len(reply["error"]) < 400, "echoed input is truncated"
    assert reply["code"] == code, reply


class Conn:
    """One raw connection to a hyperhive socket: bytes out, JSON lines back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Conn:
        self.reader, self.writer = await asyncio.open_unix_connection(str(self.path), limit=4 * MAX_LINE_BYTES)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
            self.writer = None

    async def write(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def read(self) -> dict[str, Any] | None:
        """The next reply, or None when the daemon closed the connection."""
        assert self.reader is not None
        async with asyncio.timeout(TIMEOUT):
            try:
                line = await self.reader.readline()
            except ConnectionError:
                return None
        return json.loads(line) if line else None

    async def request(self, payload: dict[str, Any] | bytes) -> dict[str, Any] | None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() + b"\n"
        await self.write(data)
        return await self.read()


async def ask(path: Path, payload: dict[str, Any] | bytes) -> dict[str, Any] | None:
    async with Conn(path) as conn:
        return await conn.request(payload)


def row_counts(daemon: Daemon) -> dict[str, int]:
    assert daemon.services is not None

    counts = sync(daemon.services.store.check())["counts"]
    return {t: counts[t] for t in ("messages", "agents", "approvals", "questions")}


@dataclass
class Hive:
    daemon: Daemon
    sockets: dict[str, Path]  # "host", "agent" (a), "manager"


@pytest.fixture
async def wired(hive: Daemon) -> AsyncIterator[Hive]:
    """The daemon with agents `a` and `b` and the manager registered and their sockets open, no harness."""
    for name in ("a", "b", "manager"):
        await wire_agent(hive, name)
    yield Hive(hive, {"host": hive.paths.host_socket, "agent": hive.paths.agent("a").socket,
                      "manager": hive.paths.agent("manager").socket})  # fmt: skip


# ---- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    on: str  # "host" | "agent" | "manager"
    line: bytes
    code: str
    closes: bool = False


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode() + b"\n"


HOSTILE_NAMES = ["..", "a/b", "-x", "a" * 500, "ünïcode", "", "A", "a b", "a\nb", ".hidden", "operator", "system", "*"]

CASES: list[Case] = [
    # malformed lines
    Case("truncated-json", "host", b'{"cmd": "ping"\n', ErrorCode.BAD_JSON),
    Case("not-json", "agent", b"hello there\n", ErrorCode.BAD_JSON),
    Case("json-array", "host", b"[1, 2]\n", ErrorCode.BAD_JSON),
    Case("json-string", "agent", b'"ping"\n', ErrorCode.BAD_JSON),
    Case("json-number", "host", b"42\n", ErrorCode.BAD_JSON),
    Case("json-null", "host", b"null\n", ErrorCode.BAD_JSON),
    Case("invalid-utf8", "host", b'{"cmd":"send","to":"operator","body":"\xff\xfe"}\n', ErrorCode.BAD_JSON),
    Case("invalid-utf8-agent", "agent", b'{"cmd":"\xc3\x28"}\n', ErrorCode.BAD_JSON),
    Case("nul-bytes", "host", b'{"cmd":"ping"\x00}\n', ErrorCode.BAD_JSON),
    Case("deeply-nested", "host", b"[" * 200_000 + b"\n", ErrorCode.BAD_JSON),
    Case(
        "deeply-nested-field",
        "agent",
        b'{"cmd":"ping","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        ErrorCode.BAD_JSON,
    ),
    Case("lone-surrogate", "host", b'{"cmd":"send","to":"operator","body":"\\ud800"}\n', ErrorCode.BAD_REQUEST),
    Case("nan", "host", b'{"cmd":"inbox","limit":NaN}\n', ErrorCode.BAD_REQUEST),
    # verbs
    Case("no-cmd", "host", j({}), ErrorCode.BAD_REQUEST),
    Case("cmd-not-string", "host", j({"cmd": 5}), ErrorCode.BAD_REQUEST),
    Case("unknown-verb", "host", j({"cmd": "frobnicate"}), ErrorCode.UNKNOWN_VERB),
    Case("unknown-verb-long", "agent", j({"cmd": "x" * 5000}), ErrorCode.UNKNOWN_VERB),
    Case("agent-approve", "agent", j({"cmd": "approve", "id": 1}), ErrorCode.UNKNOWN_VERB),
    Case("agent-spawn", "agent", j({"cmd": "spawn", "name": "zed"}), ErrorCode.UNKNOWN_VERB),
    Case("agent-destroy", "agent", j({"cmd": "destroy", "name": "b"}), ErrorCode.UNKNOWN_VERB),
    Case("agent-inbox", "agent", j({"cmd": "inbox"}), ErrorCode.UNKNOWN_VERB),
    Case("agent-list", "agent", j({"cmd": "list"}), ErrorCode.UNKNOWN_VERB),
    Case("agent-request-spawn", "agent", j({"cmd": "request_spawn", "name": "zed"}), ErrorCode.UNKNOWN_VERB),
    Case(
        "agent-request-init-config", "agent", j({"cmd": "request_init_config", "name": "zed"}), ErrorCode.UNKNOWN_VERB
    ),
    Case(
        "agent-request-apply-commit",
        "agent",
        j({"cmd": "request_apply_commit", "agent": "b", "commit_ref": "HEAD"}),
        ErrorCode.UNKNOWN_VERB,
    ),  # fmt: skip
    Case("agent-kill", "agent", j({"cmd": "kill", "name": "b"}), ErrorCode.UNKNOWN_VERB),
    Case("agent-start", "agent", j({"cmd": "start", "name": "b"}), ErrorCode.UNKNOWN_VERB),
    Case("agent-update", "agent", j({"cmd": "update", "name": "b"}), ErrorCode.UNKNOWN_VERB),
    Case("manager-approve", "manager", j({"cmd": "approve", "id": 1}), ErrorCode.UNKNOWN_VERB),
    Case("manager-spawn", "manager", j({"cmd": "spawn", "name": "zed"}), ErrorCode.UNKNOWN_VERB),
    Case("manager-destroy", "manager", j({"cmd": "destroy", "name": "b"}), ErrorCode.UNKNOWN_VERB),
    Case("host-recv", "host", j({"cmd": "recv"}), ErrorCode.UNKNOWN_VERB),
    Case("host-ack-turn", "host", j({"cmd": "ack_turn"}), ErrorCode.UNKNOWN_VERB),
    Case("host-requeue", "host", j({"cmd": "requeue_inflight"}), ErrorCode.UNKNOWN_VERB),
    # fields
    Case("send-missing-body", "agent", j({"cmd": "send", "to": "b"}), ErrorCode.BAD_REQUEST),
    Case("send-missing-to", "host", j({"cmd": "send", "body": "hi"}), ErrorCode.BAD_REQUEST),
    Case("send-body-not-string", "agent", j({"cmd": "send", "to": "b", "body": 5}), ErrorCode.BAD_REQUEST),
    Case("send-body-list", "host", j({"cmd": "send", "to": "a", "body": ["x"]}), ErrorCode.BAD_REQUEST),
    Case("send-to-not-string", "agent", j({"cmd": "send", "to": ["b"], "body": "x"}), ErrorCode.BAD_REQUEST),
    Case(
        "send-reply-to-zero",
        "agent",
        j({"cmd": "send", "to": "b", "body": "x", "in_reply_to": 0}),
        ErrorCode.BAD_REQUEST,
    ),
    Case(
        "send-reply-to-string",
        "host",
        j({"cmd": "send", "to": "a", "body": "x", "in_reply_to": "1"}),
        ErrorCode.BAD_REQUEST,
    ),
    Case(
        "send-extra-field",
        "agent",
        j({"cmd": "send", "to": "b", "body": "x", "sender": "operator"}),
        ErrorCode.BAD_REQUEST,
    ),
    Case("ping-extra-field", "host", j({"cmd": "ping", "extra": 1}), ErrorCode.BAD_REQUEST),
    Case("recv-wait-string", "agent", j({"cmd": "recv", "wait_seconds": "soon"}), ErrorCode.BAD_REQUEST),
    Case("recv-wait-over-cap", "agent", j({"cmd": "recv", "wait_seconds": 181}), ErrorCode.BAD_REQUEST),
    Case("recv-wait-negative", "agent", j({"cmd": "recv", "wait_seconds": -1}), ErrorCode.BAD_REQUEST),
    Case("recv-max-over-cap", "agent", j({"cmd": "recv", "max": 33}), ErrorCode.BAD_REQUEST),
    Case("recv-max-zero", "agent", j({"cmd": "recv", "max": 0}), ErrorCode.BAD_REQUEST),
    Case("approve-id-string", "host", j({"cmd": "approve", "id": "one"}), ErrorCode.BAD_REQUEST),
    Case("approve-missing-id", "host", j({"cmd": "approve"}), ErrorCode.BAD_REQUEST),
    Case(
        "destroy-purge-string", "host", j({"cmd": "destroy", "name": "b", "purge": "yes please"}), ErrorCode.BAD_REQUEST
    ),
    Case("inbox-limit-huge", "host", j({"cmd": "inbox", "limit": 10**12}), ErrorCode.BAD_REQUEST),
    Case("report-state-unknown", "agent", j({"cmd": "report_state", "state": "dancing"}), ErrorCode.BAD_REQUEST),
    # not found / not allowed after a valid decode
    Case("send-to-nobody", "agent", j({"cmd": "send", "to": "nobody", "body": "x"}), ErrorCode.NOT_FOUND),
    Case("start-nobody", "host", j({"cmd": "start", "name": "nobody"}), ErrorCode.NOT_FOUND),
    Case("approve-nothing", "host", j({"cmd": "approve", "id": 999}), ErrorCode.NOT_FOUND),
    Case("manager-kills-itself", "manager", j({"cmd": "kill", "name": "manager"}), ErrorCode.FORBIDDEN),
    Case("spawn-manager", "host", j({"cmd": "spawn", "name": "manager"}), ErrorCode.INVALID_NAME),
    Case("destroy-manager", "host", j({"cmd": "destroy", "name": "manager"}), ErrorCode.FORBIDDEN),
    # bodies over the cap
    Case(
        "body-over-cap", "agent", j({"cmd": "send", "to": "b", "body": "x" * (MAX_BODY_BYTES + 1)}), ErrorCode.TOO_LARGE
    ),
    Case(
        "body-over-cap-host",
        "host",
        j({"cmd": "send", "to": "operator", "body": "x" * (MAX_BODY_BYTES + 1)}),
        ErrorCode.TOO_LARGE,
    ),  # fmt: skip
    Case(
        "body-over-cap-multibyte",
        "host",
        j({"cmd": "send", "to": "a", "body": "é" * (MAX_BODY_BYTES // 2 + 1)}),
        ErrorCode.TOO_LARGE,
    ),  # fmt: skip
    # lines over the cap: refused, then closed
    Case("line-over-cap", "host", b"x" * (MAX_LINE_BYTES + 10) + b"\n", ErrorCode.LINE_TOO_LONG, closes=True),
    Case(
        "line-over-cap-no-newline",
        "agent",
        b'{"cmd":"ping","pad":"' + b"x" * (MAX_LINE_BYTES + 10),
        ErrorCode.LINE_TOO_LONG,
        closes=True,
    ),  # fmt: skip
    Case(
        "line-over-cap-valid-json",
        "host",
        j({"cmd": "send", "to": "a", "body": "x" * (MAX_LINE_BYTES + 1)}),
        ErrorCode.LINE_TOO_LONG,
        closes=True,
    ),  # fmt: skip
]
for _i, _name in enumerate(HOSTILE_NAMES):
    CASES += [
        Case(f"spawn-name-{_i}", "host", j({"cmd": "spawn", "name": _name}), ErrorCode.INVALID_NAME),
        Case(f"destroy-name-{_i}", "host", j({"cmd": "destroy", "name": _name, "purge": True}), ErrorCode.INVALID_NAME),
        Case(f"events-name-{_i}", "host", j({"cmd": "events", "name": _name}), ErrorCode.INVALID_NAME),
        Case(f"send-to-name-{_i}", "agent", j({"cmd": "send", "to": _name, "body": "x"}), ErrorCode.INVALID_NAME),
        Case(f"kill-name-{_i}", "manager", j({"cmd": "kill", "name": _name}), ErrorCode.INVALID_NAME),
    ]
# `operator`, `system` and `*` are fine recipients or impossible senders only for send; drop the
# send cases where the name is a valid recipient.
CASES = [c for c in CASES if not (c.id.startswith("send-to-name-") and HOSTILE_NAMES[int(c.id.rsplit("-", 1)[1])]
                                  in ("operator", "*"))]  # fmt: skip


async def test_hostile_lines_get_a_canonical_error_and_the_daemon_serves_on(
    wired: Hive, subtests: pytest.Subtests
) -> None:
    """Every bad line is answered with the error envelope (closing only past the line cap); the
    same connection or a new one is then served, and no row was written (architecture §3, issue 2).
    One daemon takes every line in turn, so it also serves on after all of them."""
    for case in CASES:
        with subtests.test(case.id):
            before = row_counts(wired.daemon)
            path = wired.sockets[case.on]
            async with Conn(path) as conn:
                await conn.write(case.line)
                assert_canonical_error(await conn.read(), case.code)
                if case.closes:
                    assert await conn.read() is None, "the connection is closed after an over-long line"
                else:
                    good = await conn.request({"cmd": "ping"})
                    assert good is not None and good["ok"] is True, good
            fresh = await ask(path, {"cmd": "whoami"} if case.on != "host" else {"cmd": "list"})
            assert fresh is not None and fresh["ok"] is True, fresh
            assert row_counts(wired.daemon) == before, "a refused request wrote a row"


async def test_a_good_send_after_a_bad_one_on_the_same_connection_writes_exactly_one_row(wired: Hive) -> None:
    """Bad then good on one connection: the bad send leaves nothing, the good one one row (issue 2)."""
    before = row_counts(wired.daemon)["messages"]
    async with Conn(wired.sockets["agent"]) as conn:
        assert_canonical_error(await conn.request({"cmd": "send", "to": "b", "body": 5}), ErrorCode.BAD_REQUEST)
        good = await conn.request({"cmd": "send", "to": "b", "body": "after the bad one"})
    assert good is not None and good["ok"] is True and good["recipients"] == 1
    assert row_counts(wired.daemon)["messages"] == before + 1
    assert wired.daemon.services is not None
    assert (await wired.daemon.services.broker.get(good["id"])) is not None


async def test_a_body_exactly_at_the_cap_is_accepted(wired: Hive) -> None:
    """The body cap is inclusive: MAX_BODY_BYTES bytes pass, one more is refused (architecture §4)."""
    reply = await ask(wired.sockets["host"], {"cmd": "send", "to": "a", "body": "x" * MAX_BODY_BYTES})
    assert reply is not None and reply["ok"] is True, reply


async def test_an_over_long_line_closes_only_its_own_connection(wired: Hive) -> None:
    """Past the line cap one connection is refused and closed; a connection opened before it
    keeps being served (issue 2)."""
    async with Conn(wired.sockets["host"]) as bystander, Conn(wired.sockets["host"]) as bad:
        assert (await bystander.request({"cmd": "ping"}) or {}).get("ok") is True
        await bad.write(b"y" * (MAX_LINE_BYTES + 100))
        assert_canonical_error(await bad.read(), ErrorCode.LINE_TOO_LONG)
        assert await bad.read() is None
        again = await bystander.request({"cmd": "ping"})
        assert again is not None and again["ok"] is True


async def test_several_lines_in_one_write_are_answered_in_order(wired: Hive) -> None:
    """Framing is by newline, not by chunk: three requests in one write get three replies in
    order, blank lines are skipped and CRLF is accepted (architecture §3)."""
    async with Conn(wired.sockets["host"]) as conn:
        await conn.write(b'{"cmd":"ping"}\n\n{"cmd":"nope"}\r\n{"cmd":"list"}\n')
        first, second, third = await conn.read(), await conn.read(), await conn.read()
    assert first is not None and first["pong"] is True
    assert_canonical_error(second, ErrorCode.UNKNOWN_VERB)
    assert third is not None and third["ok"] is True and "agents" in third


async def test_a_last_line_without_newline_is_answered_at_eof(wired: Hive) -> None:
    """A request whose newline never comes is still answered when the client half-closes (architecture §3)."""
    async with Conn(wired.sockets["host"]) as conn:
        await conn.write(b'{"cmd":"ping"}')
        assert conn.writer is not None
        conn.writer.write_eof()
        reply = await conn.read()
    assert reply is not None and reply["ok"] is True


async def test_a_client_that_never_writes_does_not_block_others(wired: Hive, monkeypatch: pytest.MonkeyPatch) -> None:
    """Silent clients, one with half a line, do not hold up anyone; past the idle timeout the
    daemon closes them cleanly (issue 2)."""
    async with Conn(wired.sockets["host"]), Conn(wired.sockets["agent"]) as half:
        await half.write(b'{"cmd":"pi')
        for _ in range(5):
            reply = await ask(wired.sockets["host"], {"cmd": "ping"})
            assert reply is not None and reply["ok"] is True
            reply = await ask(wired.sockets["agent"], {"cmd": "whoami"})
            assert reply is not None and reply["name"] == "a"
    monkeypatch.setattr(sockets_module, "IDLE_TIMEOUT", 0.2)
    async with Conn(wired.sockets["host"]) as silent:
        assert await silent.read() is None, "an idle client is closed after IDLE_TIMEOUT"


async def _wait_for_long_poll(daemon: Daemon, agent: str) -> None:
    """Poll the broker's waiter table (bounded) until `agent` has a long-poll registered."""
    assert daemon.services is not None
    async with asyncio.timeout(TIMEOUT):
        while not daemon.services.broker._waiters.get(agent):
            await asyncio.sleep(0.01)


async def test_a_client_that_leaves_mid_long_poll_loses_no_message(wired: Hive) -> None:
    """A recv whose client disconnects mid-wait must not swallow the next message: the next recv
    gets it, not yet delivered (architecture §4 at-least-once, issue 2)."""
    agent_sock = wired.sockets["agent"]
    async with Conn(agent_sock) as poller:
        await poller.write(j({"cmd": "recv", "wait_seconds": 30}))
        await _wait_for_long_poll(wired.daemon, "a")
    # the poller is gone; now a message arrives for a
    sent = await ask(wired.sockets["host"], {"cmd": "send", "to": "a", "body": "are you there?"})
    assert sent is not None and sent["ok"] is True
    assert wired.daemon.services is not None
    async with asyncio.timeout(TIMEOUT):
        while wired.daemon.services.broker._waiters.get("a"):
            await asyncio.sleep(0.01)  # the abandoned long-poll has finished one way or the other
    got = await ask(agent_sock, {"cmd": "recv", "wait_seconds": 5})
    assert got is not None and got["ok"] is True
    assert [m["body"] for m in got["messages"]] == ["are you there?"]
    assert got["messages"][0]["id"] == sent["id"]


async def test_a_long_poll_is_woken_by_a_send_over_the_sockets(wired: Hive) -> None:
    """A recv waiting on `b`'s socket returns the message `a` sends, well inside its wait (architecture §4)."""
    async with Conn(wired.daemon.paths.agent("b").socket) as poller:
        await poller.write(j({"cmd": "recv", "wait_seconds": 60}))
        await _wait_for_long_poll(wired.daemon, "b")
        sent = await ask(wired.sockets["agent"], {"cmd": "send", "to": "b", "body": "wake up"})
        assert sent is not None and sent["ok"] is True
        got = await poller.read()
    assert got is not None and [m["body"] for m in got["messages"]] == ["wake up"]
    assert got["messages"][0]["sender"] == "a"


async def test_many_concurrent_clients_are_all_served(wired: Hive) -> None:
    """Sixty clients connected at once, then released together by a barrier, each get their own
    answer and exactly one row each (issue 2); spread over host.sock and three agent sockets so
    each stays within its connection cap (issue 9)."""
    n = 60
    before = row_counts(wired.daemon)["messages"]
    gate = asyncio.Event()
    connected = 0
    all_connected = asyncio.Event()

    async def client(i: int) -> dict[str, Any] | None:
        nonlocal connected
        agents = [wired.sockets["agent"], wired.sockets["manager"], wired.daemon.paths.agent("b").socket]
        path = wired.sockets["host"] if i % 2 else agents[(i // 2) % 3]
        async with Conn(path) as conn:
            connected += 1
            if connected == n:
                all_connected.set()
            await gate.wait()
            bad = await conn.request(b"{not json\n")
            assert_canonical_error(bad, ErrorCode.BAD_JSON)
            return await conn.request({"cmd": "send", "to": "operator", "body": f"client {i}"})

    async with asyncio.timeout(30):
        tasks = [asyncio.create_task(client(i)) for i in range(n)]
        await all_connected.wait()
        gate.set()
        replies = await asyncio.gather(*tasks)
    assert all(r is not None and r["ok"] for r in replies), replies
    assert len({r["id"] for r in replies if r}) == n
    assert row_counts(wired.daemon)["messages"] == before + n
    assert wired.daemon.services is not None
    bodies = {m.body for m in (await wired.daemon.services.broker.recent("operator", 1000))}
    assert {f"client {i}" for i in range(n)} <= bodies

"""Dead letters on the dashboard (issue 9): the snapshot lists them, the live stream announces
them, and the operator retries or discards one with a session and the CSRF token; without the
token the action is refused. Real HTTP against an in-process daemon."""

from __future__ import annotations

import httpx
from dashkit import Dash

from hivetest import ask_socket, wire_agent


async def park(dash: Dash, body: str) -> int:
    """A message to `worker` whose three deliveries all fail (requeued as a failing harness does)."""
    worker = await wire_agent(dash.daemon, "worker")
    [mid] = await dash.services.broker.send("operator", "worker", body)
    for _ in range(3):
        got = await ask_socket(worker, {"cmd": "recv"})
        assert [m["id"] for m in got["messages"]] == [mid]
        assert (await ask_socket(worker, {"cmd": "requeue_inflight"}))["ok"] is True
    return mid


async def test_the_snapshot_lists_dead_letters_and_the_operator_retries_one(
    dash: Dash, client: httpx.AsyncClient
) -> None:
    mid = await park(dash, "<b>hi</b>")
    snap = (await client.get("/api/state")).json()
    assert [(m["id"], m["attempts"], m["body"]) for m in snap["dead_letters"]] == [(mid, 3, "<b>hi</b>")]
    assert snap["counts"]["dead_letters"] == 1
    r = await client.post(f"/api/dead-letters/{mid}/retry")
    assert r.status_code == 200 and r.json()["message"]["attempts"] == 0, r.text
    assert (await client.get("/api/state")).json()["dead_letters"] == []
    assert dash.services.broker.unread("worker") == 1
    again = await client.post(f"/api/dead-letters/{mid}/retry")
    assert again.status_code == 404


async def test_discard_needs_the_csrf_token_and_then_acknowledges(dash: Dash, client: httpx.AsyncClient) -> None:
    mid = await park(dash, "drop me")
    no_csrf = await client.post(f"/api/dead-letters/{mid}/discard", headers={"x-csrf-token": ""})
    assert no_csrf.status_code == 403
    assert [m.id for m in (await dash.services.broker.dead_letters())] == [mid]
    r = await client.post(f"/api/dead-letters/{mid}/discard")
    assert r.status_code == 200 and r.json()["message"]["acked_at"] is not None, r.text
    assert (await dash.services.broker.dead_letters()) == [] and dash.services.broker.unread("worker") == 0
    assert (await client.post(f"/api/dead-letters/{mid}/bogus")).status_code == 404

"""The dashboard's actions are the host verbs (issue 10): a form post and a host.sock line go
through the same Verbs and the same request model, so they share one cap and one error code."""

from __future__ import annotations

import httpx
from dashkit import Dash

from hivetest import ask_socket
from hyperhive.protocol import MAX_TEXT


async def _spawn_request(client: httpx.AsyncClient, name: str) -> int:
    r = await client.post("/api/request-spawn", json={"name": name})
    assert r.status_code == 200, r.text
    aid: int = r.json()["approval"]["id"]
    return aid


async def test_a_deny_note_has_the_sockets_cap_on_the_dashboard_too(dash: Dash, client: httpx.AsyncClient) -> None:
    """A note over the old dashboard-only 4,096 characters is accepted (MAX_TEXT applies to
    both); one character over MAX_TEXT is refused by both with the same 400/bad_request."""
    long_note = "n" * 5000
    aid = await _spawn_request(client, "beta")
    r = await client.post(f"/api/approvals/{aid}/deny", data={"note": long_note})
    assert r.status_code == 200 and r.json()["approval"]["note"] == long_note, r.text

    over = "n" * (MAX_TEXT + 1)
    aid = await _spawn_request(client, "gamma")
    r = await client.post(f"/api/approvals/{aid}/deny", json={"note": over})
    assert r.status_code == 400 and "note" in r.json()["error"], r.text
    reply = await ask_socket(dash.daemon.paths.host_socket, {"cmd": "deny", "id": aid, "note": over})
    assert reply["ok"] is False and reply["code"] == "bad_request"
    assert r.json()["error"] == reply["error"]  # the very same validation, word for word
    pending = await ask_socket(dash.daemon.paths.host_socket, {"cmd": "pending"})
    assert [a["id"] for a in pending["approvals"]] == [aid]  # nothing half-done


async def test_a_bad_name_reads_the_same_on_both_surfaces(dash: Dash, client: httpx.AsyncClient) -> None:
    r = await client.post("/api/request-spawn", json={"name": "Bad/Name"})
    reply = await ask_socket(dash.daemon.paths.host_socket, {"cmd": "request_spawn", "name": "Bad/Name"})
    assert r.status_code == 400 and reply["code"] == "invalid_name"
    assert r.json()["error"] == reply["error"]

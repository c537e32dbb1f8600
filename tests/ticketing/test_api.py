"""The REST API against a real server: auth, permissions, ticket actions and bad input."""

from __future__ import annotations

import httpx
import pytest

from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing.ingest import ingest_batch


@pytest.fixture
async def world(rt: Runtime) -> dict[str, int]:
    """Two queues, an agent in each, a supervisor, an admin, and one email ticket per queue."""
    ids = {
        "support": await make_queue(rt, "support", channels=["email"]),
        "billing": await make_queue(rt, "billing"),
        "alice": await make_agent(rt, "alice", queues=["support"]),
        "carol": await make_agent(rt, "carol", queues=["billing"]),
        "sam": await make_agent(rt, "sam", role="supervisor"),
        "ada": await make_agent(rt, "ada", role="admin"),
    }
    results = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id="<s@x>",
                sender=Identity(kind="email", value="ann@example.com"),
                subject="Order late",
                text="Where is it?",
                queue="support",
            ),
            InboundMessage(
                channel="email",
                external_id="<b@x>",
                sender=Identity(kind="email", value="bo@example.com"),
                subject="Refund",
                text="Charged twice",
                queue="billing",
            ),
        ],
    )
    ids["support_ticket"] = results[0].ticket_id  # type: ignore[union-attr]
    ids["billing_ticket"] = results[1].ticket_id  # type: ignore[union-attr]
    return ids


async def test_every_api_endpoint_requires_login(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """Without a token or cookie the API answers 401, and a forged token is no better."""
    for path in (
        "/api/tickets",
        f"/api/tickets/{world['support_ticket']}",
        "/api/queues",
        "/api/agents",
        "/api/auth/me",
        "/api/contacts/1",
    ):
        assert (await client.get(path)).status_code == 401, path
    forged = {"Authorization": "Bearer eyJhIjoxfQ.forged.signature"}
    assert (await client.get("/api/tickets", headers=forged)).status_code == 401


async def test_login_sets_cookie_and_bearer_token_works(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """Login answers a token and sets the session cookie; both authenticate."""
    r = await client.post("/api/auth/login", json={"username": "alice", "password": "password-123"})
    assert r.status_code == 200
    token = r.json()["token"]
    assert "switchboard_session" in r.cookies
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["username"] == "alice"
    async with httpx.AsyncClient(base_url=str(client.base_url), cookies={"switchboard_session": token}) as c2:
        assert (await c2.get("/api/auth/me")).json()["username"] == "alice"


async def test_wrong_password_is_refused_and_login_is_rate_limited(
    client: httpx.AsyncClient, world: dict[str, int]
) -> None:
    """Wrong passwords get 401; after the per-minute limit even the right one gets 429 with Retry-After."""
    for _ in range(10):
        r = await client.post("/api/auth/login", json={"username": "alice", "password": "wrong-password"})
        assert r.status_code == 401
    r = await client.post("/api/auth/login", json={"username": "alice", "password": "password-123"})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0


async def test_password_change_ends_old_sessions(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """A token issued before a password change no longer authenticates."""
    alice = await login(client, "alice", "password-123")
    admin = await login(client, "ada", "password-123")
    r = await client.patch(f"/api/agents/{world['alice']}", json={"password": "a-new-password"}, headers=admin)
    assert r.status_code == 200
    assert (await client.get("/api/auth/me", headers=alice)).status_code == 401


async def test_agent_sees_only_their_queues(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """An agent lists and opens their queue's tickets; another queue's ticket is 403; a supervisor sees all."""
    alice = await login(client, "alice", "password-123")
    listed = (await client.get("/api/tickets", headers=alice)).json()
    assert [t["id"] for t in listed["items"]] == [world["support_ticket"]]
    assert (await client.get(f"/api/tickets/{world['support_ticket']}", headers=alice)).status_code == 200
    r = await client.get(f"/api/tickets/{world['billing_ticket']}", headers=alice)
    assert r.status_code == 403 and r.json()["code"] == "ticket_forbidden"
    r = await client.post(f"/api/tickets/{world['billing_ticket']}/reply", json={"text": "hi"}, headers=alice)
    assert r.status_code == 403
    sam = await login(client, "sam", "password-123")
    assert (await client.get("/api/tickets", headers=sam)).json()["total"] == 2


async def test_admin_endpoints_refuse_agents_and_supervisors(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """Creating agents and queues is for admins only."""
    body = {"username": "mallory", "password": "password-123", "role": "admin"}
    for who in ("alice", "sam"):
        headers = await login(client, who, "password-123")
        r = await client.post("/api/agents", json=body, headers=headers)
        assert r.status_code == 403 and r.json()["code"] == "admin_only"
        assert (await client.post("/api/queues", json={"name": "x"}, headers=headers)).status_code == 403
    admin = await login(client, "ada", "password-123")
    assert (await client.post("/api/agents", json=body, headers=admin)).status_code == 201
    assert (await client.post("/api/agents", json=body, headers=admin)).status_code == 409


async def test_reply_note_status_tags_and_history(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """An agent replies, adds a note, solves and tags; the ticket and the contact history show it all."""
    alice = await login(client, "alice", "password-123")
    tid = world["support_ticket"]
    r = await client.post(f"/api/tickets/{tid}/reply", json={"text": "It ships today."}, headers=alice)
    assert r.status_code == 201
    reply = r.json()
    assert reply["direction"] == "outbound" and reply["recipient"] == "ann@example.com"
    assert reply["subject"] == f"Re: Order late [#{tid}]"
    assert reply["external_id"].endswith("@switchboard.local>")
    r = await client.post(f"/api/tickets/{tid}/notes", json={"text": "VIP customer"}, headers=alice)
    assert r.status_code == 201 and r.json()["direction"] == "note"
    r = await client.patch(
        f"/api/tickets/{tid}", json={"status": "solved", "tags": ["Shipping", " vip "]}, headers=alice
    )
    assert r.status_code == 200 and r.json()["status"] == "solved" and r.json()["tags"] == ["shipping", "vip"]
    detail = (await client.get(f"/api/tickets/{tid}", headers=alice)).json()
    assert [m["direction"] for m in detail["messages"]] == ["inbound", "outbound", "note"]
    assert detail["first_response_at"] is not None
    history = (await client.get(f"/api/contacts/{detail['contact_id']}", headers=alice)).json()
    assert history["identities"] == [
        {"kind": "email", "value": "ann@example.com", "channels": ["email"], "verified": True}
    ]
    assert [t["id"] for t in history["tickets"]] == [tid]


async def test_reply_on_a_solved_or_closed_ticket_is_refused_until_reopened(
    client: httpx.AsyncClient, world: dict[str, int]
) -> None:
    """As in the console, a solved or closed ticket takes no reply: 409 ``ticket_not_open`` saying to reopen it
    first, nothing stored or queued for sending; a note still goes on it; reopened, it takes the reply. A reply
    sent before the solve and repeated with its client key still answers the stored one."""
    alice = await login(client, "alice", "password-123")
    tid = world["support_ticket"]
    first = await client.post(f"/api/tickets/{tid}/reply", json={"text": "On it.", "client_key": "k1"}, headers=alice)
    assert first.status_code == 201
    for status in ("solved", "closed"):
        assert (await client.patch(f"/api/tickets/{tid}", json={"status": status}, headers=alice)).status_code == 200
        r = await client.post(f"/api/tickets/{tid}/reply", json={"text": "One more thing"}, headers=alice)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "ticket_not_open"
        assert status in r.json()["detail"] and "reopen" in r.json()["detail"]
    again = await client.post(f"/api/tickets/{tid}/reply", json={"text": "On it.", "client_key": "k1"}, headers=alice)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    r = await client.post(f"/api/tickets/{tid}/notes", json={"text": "customer called back"}, headers=alice)
    assert r.status_code == 201
    detail = (await client.get(f"/api/tickets/{tid}", headers=alice)).json()
    assert [m["direction"] for m in detail["messages"]] == ["inbound", "outbound", "note"]
    assert (await client.patch(f"/api/tickets/{tid}", json={"status": "open"}, headers=alice)).status_code == 200
    r = await client.post(f"/api/tickets/{tid}/reply", json={"text": "One more thing"}, headers=alice)
    assert r.status_code == 201 and r.json()["text"] == "One more thing"


async def test_transfer_moves_ticket_to_another_queue(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """After a transfer to billing, billing's agent sees the ticket and the sender's queue does not."""
    alice = await login(client, "alice", "password-123")
    tid = world["support_ticket"]
    r = await client.post(f"/api/tickets/{tid}/transfer", json={"queue_id": world["billing"]}, headers=alice)
    assert r.status_code == 200 and r.json()["queue_id"] == world["billing"]
    carol = await login(client, "carol", "password-123")
    assert (await client.get(f"/api/tickets/{tid}", headers=carol)).status_code == 200
    assert (await client.get(f"/api/tickets/{tid}", headers=alice)).status_code == 403


async def test_list_filters_and_pagination(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """Filters by status, queue and channel; offset/limit page through; bad limits are 422."""
    sam = await login(client, "sam", "password-123")
    page = (await client.get("/api/tickets", params={"limit": 1}, headers=sam)).json()
    assert page["total"] == 2 and len(page["items"]) == 1
    rest = (await client.get("/api/tickets", params={"limit": 1, "offset": 1}, headers=sam)).json()
    assert {page["items"][0]["id"], rest["items"][0]["id"]} == {world["support_ticket"], world["billing_ticket"]}
    by_queue = (await client.get("/api/tickets", params={"queue_id": world["billing"]}, headers=sam)).json()
    assert [t["id"] for t in by_queue["items"]] == [world["billing_ticket"]]
    assert (await client.get("/api/tickets", params={"status": "solved"}, headers=sam)).json()["total"] == 0
    assert (await client.get("/api/tickets", params={"limit": 1000}, headers=sam)).status_code == 422


async def test_bad_input_gets_clear_errors(
    client: httpx.AsyncClient, server: LiveServer, world: dict[str, int]
) -> None:
    """Broken JSON is 422 saying what is wrong; unknown ids are 404; an oversized body is 413."""
    admin = await login(client, "ada", "password-123")
    r = await client.post(
        f"/api/tickets/{world['support_ticket']}/reply",
        content=b'{"text": ',
        headers={**admin, "content-type": "application/json"},
    )
    assert r.status_code == 422 and "json" in r.text.lower()
    r = await client.post(f"/api/tickets/{world['support_ticket']}/reply", json={"txt": "x"}, headers=admin)
    assert r.status_code == 422 and "text" in r.text
    r = await client.get("/api/tickets/999999", headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "ticket_not_found"
    assert (await client.get("/api/contacts/999999", headers=admin)).status_code == 404
    huge = "x" * (server.settings.max_body_bytes + 10)
    r = await client.post(f"/api/tickets/{world['support_ticket']}/notes", json={"text": huge}, headers=admin)
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


async def test_inbound_api_is_idempotent(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """Posting the same normalized message twice returns the stored message, no second row."""
    admin = await login(client, "ada", "password-123")
    body = {
        "channel": "sms",
        "external_id": "SM-1",
        "sender": {"kind": "phone", "value": "+14155550100"},
        "text": "hello",
    }
    first = await client.post("/api/inbound", json=body, headers=admin)
    again = await client.post("/api/inbound", json=body, headers=admin)
    assert first.json()["created"] is True and again.json()["created"] is False
    assert first.json()["message_id"] == again.json()["message_id"]
    detail = (await client.get(f"/api/tickets/{first.json()['ticket_id']}", headers=admin)).json()
    assert len(detail["messages"]) == 1


async def test_healthz_and_metrics(client: httpx.AsyncClient, world: dict[str, int]) -> None:
    """/healthz checks the database; /metrics reports tickets by status and ingested messages."""
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    admin = await login(client, "ada", "password-123")
    await client.post(
        "/api/inbound",
        headers=admin,
        json={"channel": "telegram", "external_id": "u1", "sender": {"kind": "telegram", "value": "42"}, "text": "hi"},
    )
    text = (await client.get("/metrics")).text
    assert 'switchboard_tickets{status="new"} 3.0' in text
    assert 'switchboard_messages_ingested_total{channel="telegram"} 1.0' in text
    assert "switchboard_websocket_clients" in text


async def test_deactivation_and_queue_changes_apply_to_the_next_request(
    client: httpx.AsyncClient, world: dict[str, int]
) -> None:
    """Agents are cached per process between requests, yet a change made through the API applies to the very
    next request: new queues are visible at once, and a deactivated agent's token stops working."""
    alice = await login(client, "alice", "password-123")
    admin = await login(client, "ada", "password-123")
    billing = f"/api/tickets/{world['billing_ticket']}"
    assert (await client.get(billing, headers=alice)).status_code == 403  # loaded and cached
    r = await client.patch(f"/api/agents/{world['alice']}", json={"queues": ["support", "billing"]}, headers=admin)
    assert r.status_code == 200
    assert (await client.get(billing, headers=alice)).status_code == 200
    r = await client.patch(f"/api/agents/{world['alice']}", json={"active": False}, headers=admin)
    assert r.status_code == 200
    assert (await client.get("/api/auth/me", headers=alice)).status_code == 401


async def test_a_change_made_by_another_process_is_honoured_within_seconds(
    rt: Runtime, client: httpx.AsyncClient, world: dict[str, int]
) -> None:
    """A change the server did not make itself (another process, here the test's own runtime, whose events
    the server reads from the log) ends a cached session within the cache's lifetime."""
    import asyncio
    import time

    from hub.principals import TTL_SECONDS
    from ticketing.agents import update_agent
    from ticketing.models import AgentUpdate

    alice = await login(client, "alice", "password-123")
    assert (await client.get("/api/auth/me", headers=alice)).status_code == 200
    await update_agent(rt, agent_id=world["alice"], data=AgentUpdate(active=False))
    deadline = time.monotonic() + TTL_SECONDS + 2
    while (await client.get("/api/auth/me", headers=alice)).status_code != 401:
        assert time.monotonic() < deadline, "a deactivated agent still authenticates"
        await asyncio.sleep(0.2)

"""The supervisor's API and page against a real server: an agent is refused every one of them (403), a
supervisor's actions change what they say and are written to the audit log."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import tables
from ticketing.ingest import ingest_batch

# Every supervisor endpoint and page, with a body that would be valid for a supervisor.
SUPERVISOR_ONLY = [
    ("GET", "/supervisor", None),
    ("GET", "/api/supervisor/wallboard", None),
    ("POST", "/api/supervisor/tickets/1/reassign", {"agent_id": 1}),
    ("POST", "/api/supervisor/tickets/1/requeue", {}),
    ("POST", "/api/supervisor/tickets/1/join", {"mode": "silent"}),
    ("PUT", "/api/supervisor/agents/1/status", {"status": "away"}),
    ("GET", "/api/supervisor/forecast", None),
    ("GET", "/api/reports/summary?start=2026-01-01&end=2026-01-07", None),
    ("GET", "/api/reports/summary.csv?start=2026-01-01&end=2026-01-07", None),
    ("GET", "/api/reports/chart/volume.svg?start=2026-01-01&end=2026-01-07", None),
]


@pytest.fixture
async def world(rt: Runtime) -> dict[str, int]:
    ids = {
        "support": await make_queue(rt, "support", channels=["webchat"]),
        "billing": await make_queue(rt, "billing"),
        "alice": await make_agent(rt, "alice", queues=["support"]),
        "bob": await make_agent(rt, "bob", queues=["support", "billing"]),
        "sam": await make_agent(rt, "sam", role="supervisor"),
        "ada": await make_agent(rt, "ada", role="admin"),
    }
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="webchat",
                external_id="w1",
                thread_key="visitor-1",
                sender=Identity(kind="webchat", value="visitor-1", name="Vi"),
                text="Hello?",
                queue="support",
            )
        ],
    )
    assert not isinstance(result, Exception)
    ids["ticket"] = result.ticket_id
    return ids


async def test_an_agent_is_refused_every_supervisor_page_and_endpoint(
    world: dict[str, int], client: httpx.AsyncClient
) -> None:
    agent = await login(client, "alice", "password-123")
    for method, path, body in SUPERVISOR_ONLY:
        r = await client.request(method, path, headers=agent, json=body)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
    # and without a login: 401 (the page sends you to the login form)
    client.cookies.clear()
    for method, path, body in SUPERVISOR_ONLY:
        r = await client.request(method, path, json=body)
        assert r.status_code in (401, 303), (method, path, r.status_code)


async def test_supervisor_and_admin_get_the_page_and_the_board(
    world: dict[str, int], client: httpx.AsyncClient
) -> None:
    for user in ("sam", "ada"):
        headers = await login(client, user, "password-123")
        page = await client.get("/supervisor", headers=headers)
        assert page.status_code == 200 and "Wallboard" in page.text
        board = (await client.get("/api/supervisor/wallboard", headers=headers)).json()
        support = next(q for q in board["queues"] if q["name"] == "support")
        assert support["waiting"] == 1 and support["channels"]["webchat"]["waiting"] == 1
        assert {a["name"] for a in board["agents"]} >= {"alice", "bob"}


async def _audit(rt: Runtime) -> list[tuple[str, str, str]]:
    from hub import audit

    table = getattr(audit, "AuditEntry", None)
    if table is None:
        pytest.skip("the audit log is not merged yet")
    t = table.__table__
    async with rt.read() as conn:
        return [(r.actor, r.action, r.target) for r in await conn.execute(select(t).order_by(t.c.id))]


async def test_supervisor_actions_change_the_ticket_and_the_agent_and_are_audited(
    world: dict[str, int], client: httpx.AsyncClient, rt: Runtime, server: LiveServer
) -> None:
    sam = await login(client, "sam", "password-123")
    t = world["ticket"]
    r = await client.post(f"/api/supervisor/tickets/{t}/reassign", headers=sam, json={"agent_id": world["bob"]})
    assert r.status_code == 200, r.text
    assert r.json()["assignee_id"] == world["bob"] and r.json()["answered_at"] is not None
    r = await client.post(f"/api/supervisor/tickets/{t}/requeue", headers=sam, json={"queue_id": world["billing"]})
    assert r.status_code == 200, r.text
    assert r.json()["assignee_id"] is None and r.json()["queue_id"] == world["billing"]
    r = await client.put(f"/api/supervisor/agents/{world['alice']}/status", headers=sam, json={"status": "away"})
    assert r.status_code == 200 and r.json()["status"] == "away"
    # joins: the customer sees only the visible one (an outbound message); the silent one is a note
    silent = await client.post(f"/api/supervisor/tickets/{t}/join", headers=sam, json={"mode": "silent"})
    visible = await client.post(f"/api/supervisor/tickets/{t}/join", headers=sam, json={"mode": "visible"})
    assert silent.status_code == 201 and visible.status_code == 201, (silent.text, visible.text)
    assert silent.json()["direction"] == "note" and visible.json()["direction"] == "outbound"
    async with rt.read() as conn:
        sent = [
            m.text
            for m in await conn.execute(
                select(tables.messages.c.text).where(
                    tables.messages.c.ticket_id == t, tables.messages.c.direction == "outbound"
                )
            )
        ]
    assert sent == ["sam joined the conversation."]
    # bad input: unknown agent 404, unknown status 422 naming the field
    r = await client.post(f"/api/supervisor/tickets/{t}/reassign", headers=sam, json={"agent_id": 999_999})
    assert r.status_code == 404
    r = await client.put(f"/api/supervisor/agents/{world['alice']}/status", headers=sam, json={"status": "asleep"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "status"]
    entries = await _audit(rt)
    assert [(a, act, tgt) for a, act, tgt in entries] == [
        ("sam", "ticket.reassign", f"ticket:{t}"),
        ("sam", "ticket.requeue", f"ticket:{t}"),
        ("sam", "agent.status", f"agent:{world['alice']}"),
        ("sam", "ticket.join_silent", f"ticket:{t}"),
        ("sam", "ticket.join_visible", f"ticket:{t}"),
    ]

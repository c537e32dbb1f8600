"""Deleting a queue (DELETE /api/queues/{id}): refused with a 409 saying what to change while it holds open
work, is another queue's overflow target or a routing rule's queue; otherwise its agents leave it, its closed
tickets stay in no queue (the reports count them so), the wallboard drops it, and the audit log has it."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from hub.runtime import Runtime
from tests.conftest import login, make_agent, until
from tests.ticketing.routing_helpers import SUPERVISOR, arrive, message, queue
from ticketing import queues, report_rollup, reports, tables
from ticketing.models import QueueUpdate, TicketStatus, TicketUpdate
from ticketing.queue_rules import RuleSet
from ticketing.ticket_updates import update_ticket
from ticketing.wallboard import start_wallboard


async def test_a_queue_in_use_is_refused_with_the_reason_then_deleted_and_audited(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    await make_agent(rt, "root", role="admin")
    await make_agent(rt, "sam", role="supervisor")
    old = await queue(rt, "old", channels=["email"])
    main = await queue(rt, "main", channels=["email"])
    alice = await make_agent(rt, "alice", queues=["old", "main"])
    root = await login(client, "root", "password-123")
    sam = await login(client, "sam", "password-123")
    board = await start_wallboard(rt)
    try:
        [t1] = await arrive(rt, message("email", queue="old"))
        assert await report_rollup.catch_up(rt, build=True)
        # a supervisor may not; an unknown queue is a 404
        assert (await client.delete(f"/api/queues/{old}", headers=sam)).status_code == 403
        assert (await client.delete("/api/queues/999999", headers=root)).status_code == 404
        # open work
        r = await client.delete(f"/api/queues/{old}", headers=root)
        assert r.status_code == 409 and r.json()["code"] == "queue_in_use"
        assert "1 open ticket" in r.json()["detail"] and "re-queue" in r.json()["detail"]
        await update_ticket(rt, ticket_id=t1, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.CLOSED))
        # an overflow target
        await queues.update_queue(rt, queue_id=main, data=QueueUpdate(max_wait_seconds=60, overflow_queue="old"))
        r = await client.delete(f"/api/queues/{old}", headers=root)
        assert r.status_code == 409 and "overflow target of main" in r.json()["detail"]
        await queues.update_queue(rt, queue_id=main, data=QueueUpdate(max_wait_seconds=None, overflow_queue=None))
        # a routing rule's queue
        await queues.set_routing_rules(rt, rules=RuleSet.model_validate({"rules": [], "default_queue": "old"}))
        r = await client.delete(f"/api/queues/{old}", headers=root)
        assert r.status_code == 409 and "routing rules" in r.json()["detail"]
        await queues.set_routing_rules(rt, rules=RuleSet.model_validate({"rules": []}))
        # free: deleted
        r = await client.delete(f"/api/queues/{old}", headers=root)
        assert r.status_code == 204, r.text
        assert [q.name for q in await queues.list_queues(rt)] == ["main"]
        async with rt.read() as conn:
            ticket = (await conn.execute(select(tables.tickets).where(tables.tickets.c.id == t1))).one()
            members = (await conn.execute(select(tables.agent_queues.c.queue_id))).scalars().all()
        assert ticket.queue_id is None and ticket.status == "closed"
        assert list(members) == [main]
        # the wallboard dropped it; alice stays, in main only
        await until(lambda: [q["name"] for q in board.snapshot()["queues"]] == ["main"])
        assert next(a for a in board.snapshot()["agents"] if a["id"] == alice)["queue_ids"] == [main]
        # the report counts the closed ticket in no queue, from the rollup as from the tickets
        today = ticket.created_at.date()
        r_ = reports.report_range(today, today, "day", "UTC")
        data = await reports.collect(rt, r_)
        assert {k[1] for k in data} == {None}
        # audited, as the admin did it
        entries = (await client.get("/api/audit", headers=root)).json()
        items = entries["items"] if isinstance(entries, dict) else entries
        deleted = [e for e in items if e["action"] == "queue.delete"]
        assert len(deleted) == 1 and deleted[0]["target"] == f"queue:{old}"
        assert deleted[0]["detail"]["name"] == "old"
    finally:
        board.stop()

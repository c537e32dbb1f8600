"""The routing engine on the real database: offers, accept/decline/timeout, status changes, wrap-up,
capacity, priorities, overflow, queue-selection rules and explanations."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from hub.config import Settings
from hub.db import utcnow
from hub.events import events_after
from hub.runtime import Runtime, Tx
from tests.conftest import LiveServer, login, make_agent, racing
from tests.ticketing.routing_helpers import (
    SUPERVISOR,
    agent,
    agent_row,
    arrive,
    backdate,
    check_state,
    event_types,
    message,
    queue,
    ticket,
    who,
)
from ticketing import queue_rules, routing_service, tables
from ticketing.exceptions import InvalidRoutingConfig, OfferNotPending
from ticketing.models import AgentStatus, OverflowStepSpec, QueueUpdate, TicketStatus, TicketUpdate
from ticketing.queues import list_queues, set_routing_rules, update_queue
from ticketing.ticket_updates import update_ticket
from ticketing.tickets import get_contact_history


async def test_new_work_is_offered_to_a_skilled_agent_with_free_capacity_and_says_why(rt: Runtime) -> None:
    """Skills gate eligibility; the offered event and the ticket carry the reason; without an eligible
    agent the work is queued with the reason."""
    await queue(rt, "billing", required_skills={"billing": 2})
    novice = await agent(rt, "novice", ["billing"], skills={"billing": 1})
    expert = await agent(rt, "expert", ["billing"], skills={"billing": 3})
    [t] = await arrive(rt, message(queue="billing"))
    row = await ticket(rt, t)
    assert row.offered_agent_id == expert and row.assignee_id is None
    assert row.routing["decision"] == "offered" and row.routing["reason"] == "the only eligible agent"
    async with rt.read() as conn:
        offered = [e for e in await events_after(conn, 0) if e.type == "ticket.offered"]
    assert offered[-1].payload["reason"] == "the only eligible agent" and offered[-1].agent_id == expert

    await routing_service.set_agent_status(rt, agent_id=expert, status=AgentStatus.AWAY)
    row = await ticket(rt, t)
    assert row.offered_agent_id is None  # not to the novice: lacks the skill level
    assert row.routing["decision"] == "queued"
    assert row.routing["reason"] == "no eligible agent: 1 lacks skill billing at level 2, 1 status away"
    explained = await routing_service.explain_routing(rt, ticket_id=t, principal=SUPERVISOR)
    assert explained.state == "waiting" and "lacks skill billing at level 2" in explained.now
    assert novice


async def test_accept_assigns_once_and_a_second_accept_or_another_agent_fails(rt: Runtime) -> None:
    """Accepting is atomic: the offered agent gets it; accepting again or by someone else is refused."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"])
    b = await agent(rt, "b", ["support"])
    [t] = await arrive(rt, message())
    offered_to = (await ticket(rt, t)).offered_agent_id
    other = b if offered_to == a else a
    with pytest.raises(OfferNotPending):
        await routing_service.accept_offer(rt, ticket_id=t, principal=who(other))
    await routing_service.accept_offer(rt, ticket_id=t, principal=who(offered_to))
    with pytest.raises(OfferNotPending):
        await routing_service.accept_offer(rt, ticket_id=t, principal=who(offered_to))
    row = await ticket(rt, t)
    assert row.assignee_id == offered_to and row.offered_agent_id is None
    types = await event_types(rt, t)
    assert types.count("offer.accepted") == 1 and types.count("ticket.assigned") == 1
    explained = await routing_service.explain_routing(rt, ticket_id=t, principal=SUPERVISOR)
    assert explained.state == "assigned" and explained.last_decision["decision"] == "offered"  # type: ignore[index]


async def test_decline_moves_the_offer_on_and_the_decliner_is_not_offered_it_again_at_once(rt: Runtime) -> None:
    """A decline offers the work to the next agent; with nobody else, it waits rather than bouncing back."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"])
    b = await agent(rt, "b", ["support"])
    [t] = await arrive(rt, message())
    first = (await ticket(rt, t)).offered_agent_id
    await routing_service.decline_offer(rt, ticket_id=t, principal=who(first))
    second = (await ticket(rt, t)).offered_agent_id
    assert {first, second} == {a, b}
    await routing_service.decline_offer(rt, ticket_id=t, principal=who(second))
    row = await ticket(rt, t)
    assert row.offered_agent_id is None and row.routing["decision"] == "queued"
    assert "2 passed on this item" in row.routing["reason"]
    assert (await event_types(rt, t)).count("offer.declined") == 2
    await check_state(rt)


async def test_offer_timeout_moves_on_and_missed_offers_in_a_row_set_the_agent_away(
    rt: Runtime, settings: Settings
) -> None:
    """An expired offer goes to the next agent; an agent who lets ``max_missed_offers`` expire in a row is
    set away, and the reason is in the status event."""
    settings.max_missed_offers = 2
    await queue(rt, "support")
    sleepy = await agent(rt, "sleepy", ["support"])
    t1, t2 = await arrive(rt, message(), message())
    assert (await ticket(rt, t1)).offered_agent_id == sleepy == (await ticket(rt, t2)).offered_agent_id
    await backdate(rt, t1, offer_seconds=1)
    assert await routing_service.expire_offers(rt) == 1
    assert (await agent_row(rt, sleepy)).missed_offers == 1
    assert (await agent_row(rt, sleepy)).status == AgentStatus.AVAILABLE
    await backdate(rt, t2, offer_seconds=1)
    await routing_service.expire_offers(rt)
    assert (await agent_row(rt, sleepy)).status == AgentStatus.AWAY
    async with rt.read() as conn:
        status = [e for e in await events_after(conn, 0) if e.type == "agent.status"][-1]
    assert status.payload["reason"] == "let 2 offers expire in a row"
    awake = await agent(rt, "awake", ["support"])
    assert {(await ticket(rt, t)).offered_agent_id for t in (t1, t2)} == {awake}


async def test_going_away_returns_pending_offers_at_once_to_another_agent(rt: Runtime) -> None:
    """An agent who goes away or offline loses their un-accepted offers immediately."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"])
    [t] = await arrive(rt, message())
    assert (await ticket(rt, t)).offered_agent_id == a
    b = await agent(rt, "b", ["support"])
    await routing_service.set_agent_status(rt, agent_id=a, status=AgentStatus.OFFLINE)
    assert (await ticket(rt, t)).offered_agent_id == b
    types = await event_types(rt, t)
    assert types[-2:] == ["offer.expired", "ticket.offered"]


async def test_supervisor_requeues_an_absent_agents_conversations(rt: Runtime) -> None:
    """Open conversations of an agent can be put back in the queue by a supervisor, and go to others."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"])
    tickets = await arrive(rt, message(), message())
    for t in tickets:
        await routing_service.accept_offer(rt, ticket_id=t, principal=who(a))
    await routing_service.set_agent_status(rt, agent_id=a, status=AgentStatus.OFFLINE)
    with pytest.raises(Exception, match="supervisor"):
        await routing_service.requeue_agent_work(rt, agent_id=a, principal=who(a))
    b = await agent(rt, "b", ["support"])
    assert await routing_service.requeue_agent_work(rt, agent_id=a, principal=SUPERVISOR) == sorted(tickets)
    for t in tickets:
        row = await ticket(rt, t)
        assert row.assignee_id is None and row.offered_agent_id == b
        assert "ticket.requeued" in await event_types(rt, t)


async def test_capacity_per_channel_and_a_call_blocks_chats(rt: Runtime) -> None:
    """Chats stop at the agent's chat capacity; a call in hand blocks further chats but not email."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"], capacity={"webchat": 2, "voice": 1, "email": 1})
    chats = await arrive(rt, message(), message(), message())
    assert [(await ticket(rt, t)).offered_agent_id for t in chats] == [a, a, None]
    await update_ticket(rt, ticket_id=chats[0], principal=SUPERVISOR, data=TicketUpdate(status="closed"))
    [call] = await arrive(rt, message("voice"))
    assert (await ticket(rt, call)).offered_agent_id == a
    await update_ticket(rt, ticket_id=chats[1], principal=SUPERVISOR, data=TicketUpdate(status="closed"))
    async with rt.write() as tx:
        await routing_service.route_tickets(rt, tx)
    assert (await ticket(rt, chats[2])).offered_agent_id is None  # the call blocks it
    [mail] = await arrive(rt, message("email"))
    assert (await ticket(rt, mail)).offered_agent_id == a
    explained = await routing_service.explain_routing(rt, ticket_id=chats[2], principal=SUPERVISOR)
    assert "busy on voice" in explained.now
    await check_state(rt)


async def test_the_end_of_a_call_offers_the_chats_it_blocked(rt: Runtime, settings: Settings) -> None:
    """The sweep after a solved item looks at the channels whose capacity it freed: its own, and after a call
    the chats the call blocked. The waiting chat is offered in the transaction that solves the call."""
    settings.wrap_up_seconds = 0
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"], capacity={"webchat": 1, "voice": 1, "email": 1})
    [call] = await arrive(rt, message("voice"))
    await routing_service.accept_offer(rt, ticket_id=call, principal=who(a))
    chat, mail = await arrive(rt, message(), message("email"))
    assert (await ticket(rt, chat)).offered_agent_id is None  # the call blocks it
    await routing_service.accept_offer(rt, ticket_id=mail, principal=who(a))
    [later] = await arrive(rt, message("email"))
    assert (await ticket(rt, later)).offered_agent_id is None  # email capacity is full
    await update_ticket(rt, ticket_id=call, principal=who(a), data=TicketUpdate(status=TicketStatus.SOLVED))
    assert (await ticket(rt, chat)).offered_agent_id == a
    await update_ticket(rt, ticket_id=mail, principal=who(a), data=TicketUpdate(status=TicketStatus.SOLVED))
    assert (await ticket(rt, later)).offered_agent_id == a
    await check_state(rt)


async def test_solving_a_chat_while_the_agent_goes_offline_leaves_them_offline(rt: Runtime, settings: Settings) -> None:
    """An agent solves a chat while (in another transaction) they are set offline: solving must see the new
    status, not the one before it, or it would put the agent in wrap-up and, when that ends, make them
    available again while they are gone. PostgreSQL only: SQLite runs one writer at a time."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    settings.wrap_up_seconds = 60
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"], capacity={"webchat": 1})
    [chat] = await arrive(rt, message())
    await routing_service.accept_offer(rt, ticket_id=chat, principal=who(a))

    async def go_offline(tx: Tx) -> None:
        await routing_service.change_status(rt, tx, a, AgentStatus.OFFLINE)

    solving = update_ticket(rt, ticket_id=chat, principal=who(a), data=TicketUpdate(status=TicketStatus.SOLVED))
    await racing(rt, go_offline, solving)
    row = await agent_row(rt, a)
    assert row.status == AgentStatus.OFFLINE and row.wrap_up_until is None
    assert (await ticket(rt, chat)).status == TicketStatus.SOLVED


async def test_wrap_up_after_a_chat_then_available_again(rt: Runtime, settings: Settings) -> None:
    """Solving a chat puts its agent in wrap-up (no offers); when the time is over they are available and
    receive waiting work. Solving an email does not."""
    settings.wrap_up_seconds = 60
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"], capacity={"webchat": 1})
    chat, waiting = await arrive(rt, message(), message())
    await routing_service.accept_offer(rt, ticket_id=chat, principal=who(a))
    await update_ticket(rt, ticket_id=chat, principal=who(a), data=TicketUpdate(status=TicketStatus.SOLVED))
    row = await agent_row(rt, a)
    assert row.status == AgentStatus.WRAP_UP and row.wrap_up_until is not None
    assert (await ticket(rt, waiting)).offered_agent_id is None
    assert await routing_service.end_wrap_ups(rt) == 0
    async with rt.db.begin() as conn:
        await conn.execute(update(tables.agents).values(wrap_up_until=utcnow() - timedelta(seconds=1)))
    assert await routing_service.end_wrap_ups(rt) == 1
    assert (await agent_row(rt, a)).status == AgentStatus.AVAILABLE
    assert (await ticket(rt, waiting)).offered_agent_id == a

    [mail] = await arrive(rt, message("email"))
    await routing_service.accept_offer(rt, ticket_id=mail, principal=who(a))
    await update_ticket(rt, ticket_id=mail, principal=who(a), data=TicketUpdate(status=TicketStatus.SOLVED))
    assert (await agent_row(rt, a)).status == AgentStatus.AVAILABLE


async def test_waiting_work_is_offered_by_priority_then_arrival_order(rt: Runtime) -> None:
    """With one free slot at a time, waiting work goes out highest priority first, FIFO among equals, and
    work near its SLA deadline overtakes older work."""
    await queue(rt, "support", sla_first_response_seconds=600)
    first, second, urgent, late = await arrive(rt, message(), message(), message(), message())
    async with rt.db.begin() as conn:
        await conn.execute(update(tables.tickets).where(tables.tickets.c.id == urgent).values(priority="urgent"))
    await backdate(rt, late, queued_seconds=3600)
    row = await ticket(rt, late)
    assert row.first_response_due_at is not None  # stamped from the queue's SLA when queued
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.tickets).where(tables.tickets.c.id == late).values(first_response_due_at=utcnow())
        )  # at its deadline: urgency 4 on top of normal
    a = await agent(rt, "a", ["support"], capacity={"webchat": 1})
    order = []
    for _ in range(4):
        offered = [t for t in (first, second, urgent, late) if (await ticket(rt, t)).offered_agent_id == a]
        assert len(offered) == 1
        order.append(offered[0])
        await update_ticket(rt, ticket_id=offered[0], principal=SUPERVISOR, data=TicketUpdate(status="closed"))
        async with rt.write() as tx:
            await routing_service.route_tickets(rt, tx)
    assert order == [urgent, late, first, second]


async def test_overflow_widens_then_drops_a_skill_then_moves_past_max_wait(rt: Runtime) -> None:
    """After 60 s the work may go to the general queue's agents, after 120 s the language skill is no longer
    asked, and past the 300 s maximum it moves to the overflow queue; each step is a ticket.overflowed event
    with the reason, and routing follows it."""
    general = await queue(rt, "general")
    backup = await queue(rt, "backup")
    await queue(
        rt,
        "spanish",
        required_skills={"language:es": 1},
        overflow=[
            OverflowStepSpec(after_seconds=60, widen_to=["general"]),
            OverflowStepSpec(after_seconds=120, drop_skills=["language:es"]),
        ],
        max_wait_seconds=300,
        overflow_queue="backup",
    )
    gen_agent = await agent(rt, "gen", ["general"], available=False)
    [t] = await arrive(rt, message(queue="spanish"))
    assert (await ticket(rt, t)).routing["decision"] == "queued"
    await backdate(rt, t, queued_seconds=61)
    assert await routing_service.apply_overflow(rt) == 1
    row = await ticket(rt, t)
    assert row.overflow_stage == 1 and row.routing["reason"] == "waited 61 s in spanish: widened to general"
    assert await routing_service.apply_overflow(rt) == 0  # nothing new
    await routing_service.set_agent_status(rt, agent_id=gen_agent, status=AgentStatus.AVAILABLE)
    assert (await ticket(rt, t)).offered_agent_id is None  # widened, but gen lacks the language
    await backdate(rt, t, queued_seconds=60)
    assert await routing_service.apply_overflow(rt) == 1
    row = await ticket(rt, t)
    assert row.overflow_stage == 2 and row.offered_agent_id == gen_agent
    async with rt.read() as conn:
        overflowed = [e for e in await events_after(conn, 0) if e.type == "ticket.overflowed"]
    assert overflowed[-1].payload["reason"] == "waited 121 s in spanish: widened to general; dropped skill language:es"

    [t2] = await arrive(rt, message(queue="spanish"))
    await routing_service.set_agent_status(rt, agent_id=gen_agent, status=AgentStatus.AWAY)
    await backdate(rt, t2, queued_seconds=301)
    assert await routing_service.apply_overflow(rt) == 1
    row = await ticket(rt, t2)
    assert row.queue_id == backup and row.overflow_stage == 0
    assert row.routing["reason"] == "waited over the maximum of 300 s in spanish: moved to backup"
    assert (await event_types(rt, t2)).count("ticket.overflowed") == 1
    assert general


async def test_queue_routing_config_is_validated(rt: Runtime) -> None:
    """Overflow must name existing queues; a maximum wait needs an overflow queue; bad hours are refused."""
    with pytest.raises(InvalidRoutingConfig, match="do not exist: nowhere"):
        await queue(rt, "q1", overflow=[OverflowStepSpec(after_seconds=5, widen_to=["nowhere"])])
    with pytest.raises(InvalidRoutingConfig, match="needs an overflow_queue"):
        await queue(rt, "q2", max_wait_seconds=10)
    q = await queue(rt, "q3", hours={"timezone": "Europe/Madrid", "weekly": {"mon": ["09:00-17:00"]}})
    updated = await update_queue(rt, queue_id=q, data=QueueUpdate(priority=3, sla_first_response_seconds=60))
    assert updated.priority == 3 and updated.hours["timezone"] == "Europe/Madrid"  # type: ignore[index]


async def test_sla_deadlines_are_stamped_in_business_time(rt: Runtime) -> None:
    """A queue with SLA targets stamps first-response and resolution deadlines on new work."""
    await queue(rt, "support", sla_first_response_seconds=3600, sla_resolution_seconds=86_400)
    [t] = await arrive(rt, message())
    row = await ticket(rt, t)
    assert row.first_response_due_at - row.created_at == timedelta(hours=1)
    assert row.resolution_due_at - row.created_at == timedelta(days=1)


async def test_rules_choose_the_queue_priority_and_skills_of_new_work(rt: Runtime) -> None:
    """Rules stored through the service pick the queue by VIP attribute, language, keywords, number and IVR
    choice, or channel; a rule can raise priority and add skills; unknown queues are refused."""
    for name in ("vip", "soporte", "billing", "sales", "support"):
        await queue(rt, name)
    rules = queue_rules.parse_rules(
        {
            "rules": [
                {"name": "vip", "when": {"contact": {"vip": True}}, "queue": "vip", "priority": "high"},
                {"name": "es", "when": {"language": "es"}, "queue": "soporte", "skills": {"language:es": 1}},
                {"name": "billing", "when": {"keywords": ["invoice"]}, "queue": "billing"},
                {"name": "sales", "when": {"recipient": "+14155550100", "ivr_choice": "2"}, "queue": "sales"},
            ],
            "default_queue": "support",
        }
    )
    await set_routing_rules(rt, rules=rules)
    t_bill, t_sales, t_es, t_other = await arrive(
        rt,
        message("email", text="About my invoice"),
        message("voice", recipient="+14155550100", metadata={"ivr_choice": "2"}),
        message("sms", metadata={"language": "es"}),
        message("sms"),
    )
    names = {q.id: q.name for q in await list_queues(rt)}
    assert names[(await ticket(rt, t_bill)).queue_id] == "billing"
    assert names[(await ticket(rt, t_sales)).queue_id] == "sales"
    es = await ticket(rt, t_es)
    assert names[es.queue_id] == "soporte" and es.skills == {"language:es": 1}
    assert names[(await ticket(rt, t_other)).queue_id] == "support"

    # A known contact's attributes count: make the sms sender a VIP and write again on another channel.
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.contacts).where(tables.contacts.c.id == es.contact_id).values(attributes={"vip": True})
        )
    sender = (await get_contact_history(rt, contact_id=es.contact_id, principal=SUPERVISOR)).identities[0]
    [t_vip] = await arrive(rt, message("whatsapp", sender=sender.value))
    vip = await ticket(rt, t_vip)
    assert names[vip.queue_id] == "vip" and vip.priority == "high"
    assert vip.routing["reason"] in ("the only eligible agent", "no agent is a member of the queue")

    bad = queue_rules.parse_rules({"rules": [{"name": "x", "queue": "nowhere"}]})
    with pytest.raises(InvalidRoutingConfig, match="nowhere"):
        await set_routing_rules(rt, rules=bad)


async def test_rules_written_by_two_workers_at_once_both_succeed(rt: Runtime) -> None:
    """Workers starting together each store the rules file: on an empty rules table the second writer must
    not fail on the first one's row (it waits for it and overwrites it). PostgreSQL only: SQLite runs one
    writer at a time."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    await queue(rt, "support")
    first = queue_rules.parse_rules({"rules": [], "default_queue": "support"})
    second = queue_rules.parse_rules({"rules": [{"name": "all", "queue": "support"}]})

    async def other_worker(tx: Tx) -> None:
        await tx.conn.execute(
            tables.routing_rules.insert().values(
                id=1, rules=first.model_dump(mode="json"), source="w1", updated_at=utcnow()
            )
        )

    assert await racing(rt, other_worker, set_routing_rules(rt, rules=second, source="w2")) == []
    async with rt.read() as conn:
        row = (await conn.execute(select(tables.routing_rules.c.source, tables.routing_rules.c.rules))).one()
    assert row.source == "w2" and [r["name"] for r in row.rules["rules"]] == ["all"]


async def test_rules_file_is_loaded_at_start_and_the_admin_api_validates(
    settings: Settings, tmp_path: Path, rt: Runtime
) -> None:
    """SWITCHBOARD_ROUTING_RULES is loaded when the server starts; the admin API reads and replaces the
    rules and refuses invalid ones with the field named; GET /api/tickets/{id}/routing explains."""
    await queue(rt, "support")
    await queue(rt, "billing")
    await make_agent(rt, "ada", role="admin")
    await make_agent(rt, "alice", queues=["support"])
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - name: money\n    when: {keywords: [refund]}\n    queue: billing\n")
    settings.routing_rules = path
    live = LiveServer(settings).start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
            admin = await login(client, "ada", "password-123")
            alice = await login(client, "alice", "password-123")
            r = await client.get("/api/routing/rules", headers=admin)
            assert r.json()["rules"][0]["name"] == "money"
            r = await client.put("/api/routing/rules", headers=admin, json={"rules": [{"name": "x", "queu": "a"}]})
            assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "Field required"
            assert r.json()["detail"][0]["loc"] == ["body", "rules", 0, "queue"]
            r = await client.put("/api/routing/rules", headers=alice, json={"rules": []})
            assert r.status_code == 403
            r = await client.post(
                "/api/inbound",
                headers=admin,
                json={"channel": "sms", "external_id": "s1", "sender": {"kind": "phone", "value": "+14155550199"},
                      "text": "I want a refund"},
            )  # fmt: skip
            tid = r.json()["ticket_id"]
            r = await client.get(f"/api/tickets/{tid}/routing", headers=admin)
            body = r.json()
            assert body["state"] == "waiting" and body["last_decision"]["decision"] == "queued"
            assert body["now"] == "no agent is a member of the queue"
            r = await client.patch("/api/queues/2", headers=admin, json={"max_wait_seconds": 5})
            assert r.status_code == 422 and r.json()["code"] == "invalid_routing_config"
    finally:
        live.stop()


async def test_ticket_in_no_queue_is_not_routed_or_announced(rt: Runtime) -> None:
    """Without any queue, new work is stored and waits silently (no queued event)."""
    [t] = await arrive(rt, message())
    assert (await ticket(rt, t)).queue_id is None
    assert "ticket.queued" not in await event_types(rt, t)


async def test_work_waits_outside_business_hours_and_is_offered_once_the_queue_opens(rt: Runtime) -> None:
    """A queue outside its business hours (today is a holiday) offers nothing, though an agent is free: new
    work is queued with the reason, an agent becoming available and the periodic sweep leave it waiting, and
    the explanation says why; once the queue's hours allow, the waiting work is offered."""
    today = utcnow().date()
    closed = {
        "timezone": "UTC",
        "weekly": {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        "holidays": [today.isoformat(), (today + timedelta(days=1)).isoformat()],
    }
    q = await queue(rt, "support", hours=closed)
    early = await agent(rt, "early", ["support"])
    late = await agent(rt, "late", ["support"], available=False)
    [t] = await arrive(rt, message(queue="support"))
    row = await ticket(rt, t)
    assert row.offered_agent_id is None and row.queued_at is not None
    assert row.routing["decision"] == "queued" and row.routing["reason"] == "outside business hours"
    async with rt.read() as conn:
        queued = [e for e in await events_after(conn, 0) if e.type == "ticket.queued" and e.ticket_id == t]
    assert [e.payload["reason"] for e in queued] == ["outside business hours"]

    await routing_service.set_agent_status(rt, agent_id=late, status=AgentStatus.AVAILABLE)
    await routing_service.routing_tick(rt)
    assert (await ticket(rt, t)).offered_agent_id is None
    explained = await routing_service.explain_routing(rt, ticket_id=t, principal=SUPERVISOR)
    assert explained.state == "waiting" and explained.now == "outside business hours"

    await update_queue(rt, queue_id=q, data=QueueUpdate(hours=None))
    assert (await ticket(rt, t)).offered_agent_id in (early, late)


async def test_the_routing_tick_does_each_job_that_is_due(rt: Runtime, settings: Settings) -> None:
    """One tick expires a late offer, ends a wrap-up that is over, applies an overflow step and offers waiting
    work to an agent whose capacity freed outside routing; a tick with nothing due changes nothing."""
    settings.wrap_up_seconds = 60
    await queue(rt, "general")
    await queue(rt, "slow", overflow=[OverflowStepSpec(after_seconds=60, widen_to=["general"])])
    await queue(rt, "chats")
    late = await agent(rt, "late", ["general"], capacity={"webchat": 1})
    wrapping = await agent(rt, "wrapping", ["chats"], capacity={"webchat": 1})
    [offered] = await arrive(rt, message(queue="general"))
    [slow] = await arrive(rt, message(queue="slow"))
    [chat] = await arrive(rt, message(queue="chats"))
    await routing_service.accept_offer(rt, ticket_id=chat, principal=who(wrapping))
    await update_ticket(rt, ticket_id=chat, principal=who(wrapping), data=TicketUpdate(status=TicketStatus.SOLVED))
    assert (await ticket(rt, offered)).offered_agent_id == late
    assert (await agent_row(rt, wrapping)).status == AgentStatus.WRAP_UP

    await routing_service.routing_tick(rt)  # nothing due yet
    assert (await ticket(rt, offered)).offered_agent_id == late
    assert (await agent_row(rt, wrapping)).status == AgentStatus.WRAP_UP
    assert (await ticket(rt, slow)).overflow_stage == 0

    await backdate(rt, offered, offer_seconds=1)
    await backdate(rt, slow, queued_seconds=61)
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.agents)
            .where(tables.agents.c.id == wrapping)
            .values(wrap_up_until=utcnow() - timedelta(seconds=1))
        )
    await routing_service.routing_tick(rt)
    assert (await ticket(rt, offered)).offered_agent_id is None  # expired: not offered to "late" again at once
    assert (await agent_row(rt, wrapping)).status == AgentStatus.AVAILABLE
    row = await ticket(rt, slow)
    assert row.overflow_stage == 1 and row.offered_agent_id == late  # widened to general, whose agent is free

    # Capacity freed outside routing (plain SQL from another tool): the tick's sweep offers the waiting work.
    spare = await agent(rt, "spare", ["general"], available=False)
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.agents).where(tables.agents.c.id == spare).values(status=AgentStatus.AVAILABLE.value)
        )
    await routing_service.routing_tick(rt)
    assert (await ticket(rt, offered)).offered_agent_id == spare
    await check_state(rt)


async def test_a_routing_tick_with_nothing_due_does_not_wait_for_the_writer(rt: Runtime) -> None:
    """Every process ticks every second: a tick that finds nothing to do must not take the writer's turn,
    which on SQLite every ingest batch and reply waits for."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"])
    [t] = await arrive(rt, message())
    await routing_service.accept_offer(rt, ticket_id=t, principal=who(a))
    async with rt.db.begin():  # a long write elsewhere in the process holds the writer's turn
        await asyncio.wait_for(routing_service.routing_tick(rt), 2)

"""The agent's workspace: views with counts, filters and sorts; pulling a waiting ticket from a view within
routing's capacity and locking; a burst of offers let expire counts as one miss. On the real database."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from hub.config import Settings
from hub.db import utcnow
from hub.events import events_after, seq_bounds
from hub.principals import Principal
from hub.runtime import Runtime
from tests.conftest import empty_tables, login
from tests.ticketing.routing_helpers import (
    SUPERVISOR,
    agent,
    agent_row,
    arrive,
    backdate,
    check_state,
    member,
    message,
    queue,
    replay_events,
    ticket,
)
from ticketing import tables
from ticketing.exceptions import AtCapacity, NotYourTicket, TicketTaken
from ticketing.models import AgentStatus, Priority, TicketStatus, TicketUpdate
from ticketing.routing_service import accept_offer, expire_offers, pull_ticket, set_agent_status
from ticketing.ticket_updates import update_ticket
from ticketing.workspace import SlaState, Sort, View, ViewFilters, view_counts, view_tickets


async def counts(rt: Runtime, principal: Principal, **filters: Any) -> dict[str, int]:
    return {v.id.value: v.count for v in await view_counts(rt, principal=principal, filters=ViewFilters(**filters))}


async def ids(rt: Runtime, principal: Principal, view: View, sort: Sort = Sort.OLDEST, **filters: Any) -> list[int]:
    page = await view_tickets(rt, principal=principal, view=view, filters=ViewFilters(**filters), sort=sort)
    assert page.total == len(page.items)
    return [t.id for t in page.items]


async def test_views_hold_what_they_say_with_counts(rt: Runtime) -> None:
    """Waiting (my queues, held by nobody), unassigned (also offered), mine, pending, solved recently, and all
    open for supervisors only; each count equals its list."""
    await queue(rt, "support")
    await queue(rt, "billing")
    ann = await agent(rt, "ann", ["support"], available=False)
    bob = await agent(rt, "bob", ["billing"], available=False)
    w1, w2, mine, pend, done = await arrive(rt, *(message("email", queue="support") for _ in range(5)))
    [other] = await arrive(rt, message("email", queue="billing"))
    ann_p, bob_p = await member(rt, ann), await member(rt, bob)
    await pull_ticket(rt, ticket_id=mine, principal=ann_p)
    for t, status in ((pend, TicketStatus.PENDING), (done, TicketStatus.SOLVED)):
        await pull_ticket(rt, ticket_id=t, principal=ann_p)
        await update_ticket(rt, ticket_id=t, principal=SUPERVISOR, data=TicketUpdate(status=status))
    assert await ids(rt, ann_p, View.WAITING) == [w1, w2]
    assert await ids(rt, ann_p, View.UNASSIGNED) == [w1, w2]
    assert await ids(rt, ann_p, View.MINE) == [mine, pend]
    assert await ids(rt, ann_p, View.PENDING) == [pend]
    assert await ids(rt, ann_p, View.SOLVED_RECENTLY) == [done]
    assert await ids(rt, bob_p, View.WAITING) == [other]
    assert await counts(rt, ann_p) == {
        "waiting": 2,
        "unassigned": 2,
        "mine": 2,
        "pending": 1,
        "solved_recently": 1,
    }
    with pytest.raises(Exception) as refused:
        await ids(rt, ann_p, View.ALL_OPEN)
    assert getattr(refused.value, "status", None) == 403
    assert await ids(rt, SUPERVISOR, View.ALL_OPEN) == [w1, w2, mine, pend, other]
    assert (await counts(rt, SUPERVISOR))["all_open"] == 5
    # Long solved is not "recently".
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.tickets).where(tables.tickets.c.id == done).values(solved_at=utcnow() - timedelta(days=8))
        )
    assert await ids(rt, ann_p, View.SOLVED_RECENTLY) == []


async def test_filters_and_sorts(rt: Runtime) -> None:
    """Channel, queue, priority, tag and SLA state narrow a view and its count; sorts order it."""
    support = await queue(rt, "support", sla_first_response_seconds=3600)
    await queue(rt, "billing")
    ann = await agent(rt, "ann", ["support", "billing"], available=False)
    p = await member(rt, ann)
    chat, mail, bill = await arrive(rt, message("webchat"), message("email"), message("email", queue="billing"))
    await update_ticket(
        rt, ticket_id=mail, principal=SUPERVISOR, data=TicketUpdate(priority=Priority.URGENT, tags=["VIP", "x y"])
    )
    # The routing pass stamped the SLA deadlines of support's work (an hour from now): make chat's breached.
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.tickets)
            .where(tables.tickets.c.id == chat)
            .values(first_response_due_at=utcnow() - timedelta(minutes=1))
        )
    assert await ids(rt, p, View.WAITING, channel="email") == [mail, bill]
    assert await ids(rt, p, View.WAITING, queue_id=support) == [chat, mail]
    assert await ids(rt, p, View.WAITING, priority=Priority.URGENT) == [mail]
    assert await ids(rt, p, View.WAITING, tag="vip") == [mail]
    assert await ids(rt, p, View.WAITING, tag="x y") == [mail]
    assert await ids(rt, p, View.WAITING, tag="nope") == []
    assert await ids(rt, p, View.WAITING, sla=SlaState.BREACHED) == [chat]
    assert await ids(rt, p, View.WAITING, sla=SlaState.DUE_SOON) == [mail]
    assert await ids(rt, p, View.WAITING, sla=SlaState.NONE) == [bill]
    assert await ids(rt, p, View.WAITING, sla=SlaState.ON_TRACK) == []
    assert (await counts(rt, p, channel="email"))["waiting"] == 2
    assert await ids(rt, p, View.WAITING, Sort.OLDEST) == [chat, mail, bill]
    assert (await ids(rt, p, View.WAITING, Sort.PRIORITY))[0] == mail
    assert await ids(rt, p, View.WAITING, Sort.DUE) == [chat, mail, bill]
    assert await ids(rt, p, View.WAITING, Sort.NEWEST) == [bill, mail, chat]


async def test_a_pull_respects_capacity_queues_and_who_holds_the_ticket(rt: Runtime) -> None:
    """Pulling assigns a waiting ticket of my queues; refused (with the reason) at capacity, for a ticket held by
    someone (offered or assigned), twice, or outside my queues; my own offer is taken like an accept."""
    await queue(rt, "support")
    await queue(rt, "billing")
    ann = await agent(rt, "ann", ["support"], capacity={"email": 1}, available=False)
    p = await member(rt, ann)
    t1, t2 = await arrive(rt, message("email"), message("email"))
    [billing] = await arrive(rt, message("email", queue="billing"))
    taken = await pull_ticket(rt, ticket_id=t1, principal=p)
    assert taken.assignee_id == ann and taken.status == TicketStatus.OPEN
    with pytest.raises(AtCapacity, match="at capacity on email"):
        await pull_ticket(rt, ticket_id=t2, principal=p)
    with pytest.raises(NotYourTicket):
        await pull_ticket(rt, ticket_id=billing, principal=p)
    await update_ticket(rt, ticket_id=t1, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.SOLVED))
    bob = await agent(rt, "bob", ["support"])  # available: t2 is offered to him
    assert (await ticket(rt, t2)).offered_agent_id == bob
    with pytest.raises(TicketTaken):
        await pull_ticket(rt, ticket_id=t2, principal=p)
    assert (await pull_ticket(rt, ticket_id=t2, principal=await member(rt, bob))).assignee_id == bob
    with pytest.raises(TicketTaken):
        await pull_ticket(rt, ticket_id=t2, principal=await member(rt, bob))
    await check_state(rt)
    async with rt.read() as conn:
        replay_events(await events_after(conn, 0), {ann: {"email": 1}, bob: {}})


async def test_two_agents_pulling_one_ticket_at_once_assign_it_once(rt: Runtime) -> None:
    """Concurrent pulls of one ticket (and of more than an agent's capacity): one wins, the rest are refused."""
    await queue(rt, "support")
    ann = await agent(rt, "ann", ["support"], capacity={"email": 2}, available=False)
    bob = await agent(rt, "bob", ["support"], capacity={"email": 2}, available=False)
    pa, pb = await member(rt, ann), await member(rt, bob)
    tickets_ = await arrive(rt, *(message("email") for _ in range(4)))
    attempts = [pull_ticket(rt, ticket_id=t, principal=who) for t in tickets_ for who in (pa, pb)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    won = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, AtCapacity | TicketTaken) for r in results if isinstance(r, BaseException))
    assert len({r.id for r in won}) == len(won) == 4
    await check_state(rt)
    async with rt.read() as conn:
        replay_events(await events_after(conn, 0), {ann: {"email": 2}, bob: {"email": 2}})


async def test_an_expired_burst_counts_as_one_miss(rt: Runtime, settings: Settings) -> None:
    """Six offers made at once on going available, all let expire: one miss, not six (the agent stays
    available below max_missed_offers)."""
    settings.max_missed_offers = 2
    await queue(rt, "support")
    await arrive(rt, *(message("email") for _ in range(6)))
    ann = await agent(rt, "ann", ["support"], capacity={"email": 6})
    async with rt.read() as conn:
        offered = (
            await conn.execute(
                select(tables.tickets.c.offer_expires_at).where(tables.tickets.c.offered_agent_id == ann)
            )
        ).all()
    assert len(offered) == 6
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.tickets)
            .where(tables.tickets.c.offered_agent_id == ann)
            .values(offer_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert await expire_offers(rt) == 6
    row = await agent_row(rt, ann)
    assert row.missed_offers == 1 and row.status == AgentStatus.AVAILABLE


# --- the API -------------------------------------------------------------------------------------------------


async def test_views_and_pull_over_http(rt: Runtime, client: httpx.AsyncClient) -> None:
    """GET /api/views answers counts, GET /api/views/{view} a page; POST .../pull assigns or answers 409 with
    the reason; bad filters are 422 with the field named."""
    await queue(rt, "support")
    await agent(rt, "ann", ["support"], available=False)
    [t] = await arrive(rt, message("email"))
    auth = await login(client, "ann", "password-123")
    views = (await client.get("/api/views", headers=auth)).json()
    assert {v["id"]: v["count"] for v in views}["waiting"] == 1
    assert "all_open" not in {v["id"] for v in views}
    page = (await client.get("/api/views/waiting?channel=email&sort=oldest", headers=auth)).json()
    assert [x["id"] for x in page["items"]] == [t] and page["total"] == 1
    assert (await client.get("/api/views/all_open", headers=auth)).status_code == 403
    bad = await client.get("/api/views/waiting?sla=late", headers=auth)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "sla"]
    assert (await client.get("/api/views/nope", headers=auth)).status_code == 422
    r = await client.post(f"/api/tickets/{t}/pull", headers=auth)
    assert r.status_code == 200 and r.json()["assignee_id"] is not None
    again = await client.post(f"/api/tickets/{t}/pull", headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "ticket_taken"


async def test_accept_all_takes_each_offer_on_its_own_in_one_call(rt: Runtime, client: httpx.AsyncClient) -> None:
    """POST /api/offers/accept takes a burst of offers in one call, one answer per ticket in the order asked:
    each offer still theirs is assigned (with its events, never twice), one that expired or went to someone
    else meanwhile and one that does not exist are refused with their reasons while the rest are taken; a
    repeated call takes nothing twice; bad bodies are 422."""
    await queue(rt, "support")
    ts = await arrive(rt, *(message("email") for _ in range(4)))
    ann = await agent(rt, "ann", ["support"], capacity={"email": 4})
    offered = {r.id for r in [await ticket(rt, t) for t in ts] if r.offered_agent_id == ann}
    assert offered == set(ts)
    # One offer expires before she clicks: it goes back to the queue (and nobody else is there to take it).
    await backdate(rt, ts[1], offer_seconds=1)
    await expire_offers(rt)
    auth = await login(client, "ann", "password-123")
    async with rt.read() as conn:
        _, before = await seq_bounds(conn)
    asked = [ts[3], ts[1], 999_999, ts[0], ts[2], ts[0]]
    r = await client.post("/api/offers/accept", json={"ticket_ids": asked}, headers=auth)
    assert r.status_code == 200, r.text
    answers = r.json()
    assert [a["ticket_id"] for a in answers] == [ts[3], ts[1], 999_999, ts[0], ts[2]]
    by_id = {a["ticket_id"]: a for a in answers}
    for t in (ts[0], ts[2], ts[3]):
        assert by_id[t]["accepted"] and by_id[t]["ticket"]["assignee_id"] == ann
        assert (await ticket(rt, t)).assignee_id == ann
    assert by_id[ts[1]]["accepted"] is False and by_id[ts[1]]["code"] == "offer_not_pending"
    assert "expired or was taken" in by_id[ts[1]]["detail"]
    assert (await ticket(rt, ts[1])).assignee_id is None
    assert by_id[999_999] == {
        "ticket_id": 999_999,
        "accepted": False,
        "ticket": None,
        "code": "ticket_not_found",
        "detail": "ticket 999999 does not exist",
    }
    async with rt.read() as conn:
        new = await events_after(conn, before)
    assert sorted(e.ticket_id for e in new if e.type == "offer.accepted") == sorted([ts[0], ts[2], ts[3]])
    again = (await client.post("/api/offers/accept", json={"ticket_ids": [ts[0]]}, headers=auth)).json()
    assert again[0]["accepted"] is False and again[0]["code"] == "offer_not_pending"
    for bad in (
        {"ticket_ids": []},
        {"ticket_ids": ["1"]},
        {"ticket_ids": [0]},
        {"ticket_ids": list(range(1, 200))},
        {},
    ):
        answer = await client.post("/api/offers/accept", json=bad, headers=auth)
        assert answer.status_code == 422, bad
    await check_state(rt)
    async with rt.read() as conn:
        replay_events(await events_after(conn, 0), {ann: {"email": 4}})


# --- property: views and pulls never exceed capacity nor assign twice ------------------------------------------------

AGENTS = [
    ("ana", ["support", "sales"], {"webchat": 2, "email": 1}),
    ("ben", ["support"], {"webchat": 1, "email": 2}),
    ("cho", ["sales"], {"webchat": 1, "voice": 1}),
]
op = st.one_of(
    st.tuples(st.just("arrive"), st.sampled_from(["webchat", "email", "voice"]), st.sampled_from(["support", "sales"])),
    st.tuples(st.just("pull"), st.integers(0, 2), st.sampled_from([View.WAITING, View.UNASSIGNED]), st.integers(0, 7)),
    st.tuples(st.just("pull"), st.integers(0, 2), st.just(View.WAITING), st.integers(0, 7)),
    st.tuples(st.just("accept"), st.integers(0, 5)),
    st.tuples(st.just("status"), st.integers(0, 2), st.sampled_from([AgentStatus.AVAILABLE, AgentStatus.AWAY])),
    st.tuples(st.just("solve"), st.integers(0, 7)),
)


@pytest.mark.timeout(600)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(op, min_size=1, max_size=25))
async def test_views_and_pulls_keep_the_routing_invariants(rt: Runtime, ops: list[tuple[Any, ...]]) -> None:
    """Random arrivals, pulls from the views, accepts of offers, status changes and solves: after every step
    nothing is both offered and assigned and no agent is over capacity; over the event log no ticket is assigned
    twice and nobody ever exceeds capacity; every view's count equals its list."""
    await empty_tables(rt.settings.database_url)
    await queue(rt, "support")
    await queue(rt, "sales")
    agent_ids = [await agent(rt, name, qs, capacity=cap, available=False) for name, qs, cap in AGENTS]
    principals = [await member(rt, a) for a in agent_ids]
    capacity = {a: cap for a, (_, _, cap) in zip(agent_ids, AGENTS, strict=True)}
    for o in ops:
        if o[0] == "arrive":
            await arrive(rt, message(o[1], queue=o[2]))
        elif o[0] == "pull":
            who, view, pick = principals[o[1]], o[2], o[3]
            listed = await ids(rt, who, view)
            if listed:
                try:
                    await pull_ticket(rt, ticket_id=listed[pick % len(listed)], principal=who)
                except (AtCapacity, TicketTaken):
                    pass
        elif o[0] == "accept":
            async with rt.read() as conn:
                offers = (
                    await conn.execute(
                        select(tables.tickets.c.id, tables.tickets.c.offered_agent_id)
                        .where(tables.tickets.c.offered_agent_id.is_not(None))
                        .order_by(tables.tickets.c.id)
                    )
                ).all()
            if offers:
                tid, holder = offers[o[1] % len(offers)]
                await accept_offer(rt, ticket_id=tid, principal=principals[agent_ids.index(holder)])
        elif o[0] == "status":
            await set_agent_status(rt, agent_id=agent_ids[o[1]], status=o[2])
        else:
            async with rt.read() as conn:
                held = [
                    r.id
                    for r in await conn.execute(
                        select(tables.tickets.c.id)
                        .where(
                            tables.tickets.c.assignee_id.is_not(None),
                            tables.tickets.c.status.in_(tables.OPEN_STATUS_VALUES),
                        )
                        .order_by(tables.tickets.c.id)
                    )
                ]
            if held:
                data = TicketUpdate(status=TicketStatus.SOLVED)
                await update_ticket(rt, ticket_id=held[o[1] % len(held)], principal=SUPERVISOR, data=data)
        await check_state(rt)
    for who in principals:
        for v in await view_counts(rt, principal=who, filters=ViewFilters()):
            assert v.count == len(await ids(rt, who, v.id))
    async with rt.read() as conn:
        replay_events(await events_after(conn, 0), capacity)

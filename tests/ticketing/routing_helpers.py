"""Helpers for the routing tests: building queues, agents and arrivals, and checking the routing invariants
on the database and over the event log."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event, func, select, update

from hub.db import utcnow
from hub.events import EventType, events_after
from hub.messages import Identity, InboundMessage
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing import routing, tables
from ticketing.agents import create_agent
from ticketing.ingest import ingest_batch
from ticketing.models import AgentCreate, AgentStatus, QueueCreate, Role
from ticketing.queues import create_queue
from ticketing.routing_service import set_agent_status

_ext = itertools.count(1)


@contextmanager
def executed(rt: Runtime, pick: Callable[[Any, str, Any], Any]) -> Iterator[list[Any]]:
    """For each statement run through SQLAlchemy while the block runs, what ``pick(connection, statement,
    parameters)`` returns, when that is not None. Statements ``hub.db`` sends to the driver directly (its
    ``fetch_all``, ``fetch_records``, ``execute`` and ``update_rows``, once a transaction has begun) are not seen."""
    seen: list[Any] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        picked = pick(conn, statement, parameters)
        if picked is not None:
            seen.append(picked)

    engines = [e.sync_engine for e in rt.db.engines]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def queue(rt: Runtime, name: str, **kw: Any) -> int:
    return (await create_queue(rt, data=QueueCreate(name=name, **kw))).id


async def agent(
    rt: Runtime,
    username: str,
    queues: list[str],
    *,
    skills: dict[str, int] | None = None,
    capacity: dict[str, int] | None = None,
    available: bool = True,
) -> int:
    a = await create_agent(
        rt,
        data=AgentCreate(
            username=username,
            password="password-123",
            role=Role.AGENT,
            queues=queues,
            skills=skills or {},
            capacity=capacity or {},
        ),
    )
    if available:
        await set_agent_status(rt, agent_id=a.id, status=AgentStatus.AVAILABLE)
    return a.id


def who(agent_id: int, role: str = "agent") -> Principal:
    return Principal(agent_id=agent_id, username=f"agent{agent_id}", display_name="", role=role, queue_ids=frozenset())


async def member(rt: Runtime, agent_id: int, role: str = "agent") -> Principal:
    """The agent as the API sees them: with their queues."""
    async with rt.read() as conn:
        qs = frozenset(
            r.queue_id
            for r in await conn.execute(
                select(tables.agent_queues.c.queue_id).where(tables.agent_queues.c.agent_id == agent_id)
            )
        )
    return Principal(agent_id=agent_id, username=f"a{agent_id}", display_name="", role=role, queue_ids=qs)


SUPERVISOR = Principal(agent_id=0, username="sup", display_name="Sup", role="supervisor", queue_ids=frozenset())


def message(channel: str = "webchat", sender: str | None = None, **kw: Any) -> InboundMessage:
    n = next(_ext)
    kinds = {"webchat": "webchat", "email": "email", "voice": "phone", "sms": "phone", "whatsapp": "whatsapp"}
    default_sender = {
        "webchat": f"visitor-{n}",
        "email": f"user{n}@example.com",
        "voice": f"+1415555{n:04d}",
        "sms": f"+1415555{n:04d}",
        "whatsapp": f"+1415555{n:04d}",
    }[channel]
    return InboundMessage(
        channel=channel,
        external_id=f"ext-{n}",
        sender=Identity(kind=kinds[channel], value=sender or default_sender),
        thread_key=f"thread-{n}" if channel == "webchat" else None,
        text=kw.pop("text", "hello"),
        **kw,
    )


async def arrive(rt: Runtime, *messages: InboundMessage) -> list[int]:
    """Ingest messages (one batch); the ticket ids, in order."""
    results = await ingest_batch(rt, list(messages))
    out = []
    for r in results:
        assert not isinstance(r, Exception), r
        out.append(r.ticket_id)
    return out


async def ticket(rt: Runtime, ticket_id: int) -> Any:
    async with rt.read() as conn:
        return (await conn.execute(select(tables.tickets).where(tables.tickets.c.id == ticket_id))).one()


async def agent_row(rt: Runtime, agent_id: int) -> Any:
    async with rt.read() as conn:
        return (await conn.execute(select(tables.agents).where(tables.agents.c.id == agent_id))).one()


async def event_types(rt: Runtime, ticket_id: int | None = None) -> list[str]:
    async with rt.read() as conn:
        evs = await events_after(conn, 0)
    return [e.type for e in evs if ticket_id is None or e.ticket_id == ticket_id]


async def backdate(rt: Runtime, ticket_id: int, *, queued_seconds: float = 0, offer_seconds: float = 0) -> None:
    """Pretend time passed: the ticket has waited ``queued_seconds`` longer; its offer expired."""
    values: dict[str, Any] = {}
    t = await ticket(rt, ticket_id)
    if queued_seconds:
        values["queued_at"] = t.queued_at - timedelta(seconds=queued_seconds)
    if offer_seconds:
        values["offer_expires_at"] = utcnow() - timedelta(seconds=offer_seconds)
    async with rt.db.begin() as conn:
        await conn.execute(update(tables.tickets).where(tables.tickets.c.id == ticket_id).values(**values))


async def check_state(rt: Runtime) -> None:
    """The invariants on the database: no ticket both offered and assigned, no agent holding more open work
    than its capacity on any channel, no pending offer to an agent who is not available."""
    async with rt.read() as conn:
        both = (
            await conn.execute(
                select(func.count())
                .select_from(tables.tickets)
                .where(tables.tickets.c.offered_agent_id.is_not(None), tables.tickets.c.assignee_id.is_not(None))
            )
        ).scalar_one()
        assert both == 0
        agents = {r.id: r for r in await conn.execute(select(tables.agents))}
        holder = func.coalesce(tables.tickets.c.assignee_id, tables.tickets.c.offered_agent_id)
        loads = (
            await conn.execute(
                select(holder, tables.tickets.c.channel, func.count())
                .where(tables.tickets.c.status.in_(tables.OPEN_STATUS_VALUES), holder.is_not(None))
                .group_by(holder, tables.tickets.c.channel)
            )
        ).all()
    for agent_id, channel, n in loads:
        slot = routing.AgentSlot(agent_id=agent_id, queue_ids=frozenset(), capacity=agents[agent_id].capacity or {})
        assert n <= slot.limit(channel), f"agent {agent_id} holds {n} {channel} items"


def replay_events(records: list[Any], capacity: Mapping[int, Mapping[str, int]]) -> dict[str, int]:
    """Replay the event log in ``seq`` (commit) order and check, at every step: a ticket is offered only
    when nobody holds it (never to two agents at once), accepted only by the agent it was offered to and
    at most once, pulled from a view only when nobody holds it, and no agent ever holds more than its
    capacity per channel. Returns counts per type."""
    holder: dict[int, tuple[int, str]] = {}  # ticket -> (agent, channel)
    accepted: dict[int, int] = {}
    load: dict[tuple[int, str], int] = {}
    counts: dict[str, int] = {}

    def release(ticket_id: int) -> None:
        held = holder.pop(ticket_id, None)
        if held:
            load[held] -= 1

    for e in records:
        counts[e.type] = counts.get(e.type, 0) + 1
        p = e.payload
        if e.type == EventType.TICKET_OFFERED:
            t = p["ticket"]
            assert e.ticket_id not in holder, f"ticket {e.ticket_id} offered while held by {holder[e.ticket_id]}"
            key = (t["offered_agent_id"], t["channel"])
            holder[e.ticket_id] = key
            load[key] = load.get(key, 0) + 1
            slot = routing.AgentSlot(agent_id=key[0], queue_ids=frozenset(), capacity=dict(capacity[key[0]]))
            assert load[key] <= slot.limit(key[1]), f"agent {key[0]} over capacity on {key[1]}"
        elif e.type == EventType.TICKET_ASSIGNED and p.get("pulled"):
            # Taken from a view: only while nobody held it, at most once, within the puller's capacity.
            t = p["ticket"]
            assert e.ticket_id not in holder, f"ticket {e.ticket_id} pulled while held by {holder[e.ticket_id]}"
            assert e.ticket_id not in accepted, f"ticket {e.ticket_id} assigned twice"
            key = (t["assignee_id"], t["channel"])
            holder[e.ticket_id] = key
            load[key] = load.get(key, 0) + 1
            slot = routing.AgentSlot(agent_id=key[0], queue_ids=frozenset(), capacity=dict(capacity[key[0]]))
            assert load[key] <= slot.limit(key[1]), f"agent {key[0]} over capacity on {key[1]} by a pull"
            accepted[e.ticket_id] = key[0]
        elif e.type == EventType.OFFER_ACCEPTED:
            assert holder.get(e.ticket_id, (None,))[0] == p["agent_id"], f"ticket {e.ticket_id} accepted unoffered"
            assert e.ticket_id not in accepted, f"ticket {e.ticket_id} assigned twice"
            accepted[e.ticket_id] = p["agent_id"]
        elif e.type in (EventType.OFFER_DECLINED, EventType.OFFER_EXPIRED):
            assert holder.get(e.ticket_id, (None,))[0] == p["agent_id"]
            assert e.ticket_id not in accepted
            release(e.ticket_id)
        elif e.type == EventType.TICKET_UPDATED and p["ticket"]["status"] in ("solved", "closed"):
            release(e.ticket_id)
            accepted.pop(e.ticket_id, None)
    return counts

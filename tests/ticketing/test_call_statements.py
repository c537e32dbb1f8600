"""The voice path's statements built once per dialect (accepting an offer, a call's answer stamp, its timeline
notes) write what the statements built per call wrote: the same columns, values stored as SQLAlchemy stores
them (a datetime compared through SQLAlchemy finds its row), and the same events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, update

from hub.events import EventType, events_after
from hub.ports import TimelineNote
from hub.runtime import Runtime
from tests.ticketing.routing_helpers import agent, agent_row, arrive, message, queue, ticket, who
from ticketing import routing_service
from ticketing.tables import agents, messages, tickets


async def _found(rt: Runtime, column: Any, value: datetime) -> int:
    """How many rows SQLAlchemy finds with ``column`` equal to ``value`` (as stored, not as read back)."""
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).where(column == value))).scalar_one())


async def _events(rt: Runtime, ticket_id: int, after: int) -> list[Any]:
    async with rt.read() as conn:
        return [e for e in await events_after(conn, after) if e.ticket_id == ticket_id]


async def _last_seq(rt: Runtime) -> int:
    async with rt.read() as conn:
        evs = await events_after(conn, 0)
    return evs[-1].seq if evs else 0


async def test_accepting_a_call_assigns_it_and_leaves_it_unanswered(rt: Runtime) -> None:
    """The offered agent takes the call: assignee set, offer cleared, open, ``answered_at`` left to the phone;
    the agent's ``last_assigned_at`` is the ticket's ``updated_at`` and their missed offers start over."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"], capacity={"voice": 1})
    [call] = await arrive(rt, message("voice"))
    assert (await ticket(rt, call)).offered_agent_id == a
    async with rt.write() as tx:
        await tx.conn.execute(update(agents).where(agents.c.id == a).values(missed_offers=2))
    seq = await _last_seq(rt)
    before = datetime.now(UTC)
    read = await routing_service.accept_offer(rt, ticket_id=call, principal=who(a))
    row = await ticket(rt, call)
    assert (row.assignee_id, row.offered_agent_id, row.offer_expires_at, row.status) == (a, None, None, "open")
    assert row.answered_at is None and read.answered_at is None and read.assignee_id == a
    assert before <= row.updated_at <= datetime.now(UTC)
    held = await agent_row(rt, a)
    assert held.last_assigned_at == row.updated_at and held.missed_offers == 0
    assert await _found(rt, tickets.c.updated_at, row.updated_at) == 1
    assert await _found(rt, agents.c.last_assigned_at, row.updated_at) == 1
    evs = await _events(rt, call, seq)
    assert [e.type for e in evs] == [EventType.OFFER_ACCEPTED, EventType.TICKET_ASSIGNED]
    assert evs[0].payload == {"ticket_id": call, "agent_id": a} and evs[0].agent_id == a


async def test_accepting_a_chat_stamps_it_answered_when_taken(rt: Runtime) -> None:
    """Work that is not a call is answered when taken: ``answered_at`` is the accept's time."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"], capacity={"webchat": 1})
    [chat] = await arrive(rt, message())
    await routing_service.accept_offer(rt, ticket_id=chat, principal=who(a))
    row = await ticket(rt, chat)
    assert row.assignee_id == a and row.answered_at == row.updated_at is not None
    assert await _found(rt, tickets.c.answered_at, row.answered_at) == 1


async def test_a_call_answered_stamps_the_time_it_was_given_and_notes_it(rt: Runtime) -> None:
    """``call_answered`` stores the given time (any zone, as UTC) as ``answered_at`` and ``updated_at``, and its
    note as a system message at that time; a second answer stamps nothing but still notes; ``add_timeline``
    moves ``updated_at`` to its note's time."""
    await queue(rt, "support")
    a = await agent(rt, "a", ["support"], capacity={"voice": 1})
    [call] = await arrive(rt, message("voice"))
    await routing_service.accept_offer(rt, ticket_id=call, principal=who(a))
    at = datetime(2026, 5, 6, 9, 10, 11, 654321, tzinfo=timezone(timedelta(hours=2)))
    seq = await _last_seq(rt)
    line = TimelineNote(text="Answered by A", metadata={"call_event": "answered", "legs": [1, 2]})
    assert await rt.ports.tickets.call_answered(ticket_id=call, at=at, note=line)
    row = await ticket(rt, call)
    assert row.answered_at == at and row.updated_at == at and row.answered_at.utcoffset() == timedelta(0)
    assert await _found(rt, tickets.c.answered_at, at) == 1
    async with rt.read() as conn:
        [note] = (
            await conn.execute(select(messages).where(messages.c.ticket_id == call, messages.c.direction == "note"))
        ).all()
    assert (note.channel, note.text, note.author_agent_id, note.attachments) == ("voice", "Answered by A", None, [])
    assert note.meta == {"system": True, "call_event": "answered", "legs": [1, 2]}
    assert (note.delivery_status, note.created_at) == ("received", at)
    assert await _found(rt, messages.c.created_at, at) == 1
    evs = await _events(rt, call, seq)
    assert [e.type for e in evs] == [EventType.TICKET_UPDATED, EventType.MESSAGE_CREATED]
    assert evs[0].payload["changes"] == ["answered_at"]

    later = at + timedelta(seconds=5)
    assert not await rt.ports.tickets.call_answered(ticket_id=call, at=later, note=line)
    row = await ticket(rt, call)
    assert row.answered_at == at
    note_id = await rt.ports.tickets.add_timeline(ticket_id=call, text="Call ended", metadata={})
    row = await ticket(rt, call)
    async with rt.read() as conn:
        ended = (await conn.execute(select(messages).where(messages.c.id == note_id))).one()
    assert ended.meta == {"system": True} and row.updated_at == ended.created_at
    assert await _found(rt, tickets.c.updated_at, row.updated_at) == 1

"""The ports the phone and messaging channels use, through ``rt.ports``: who a caller is (one person under SMS,
voice and WhatsApp), a ticket at a glance, timeline notes, abandoned calls, sending in an agent's name, and
receipts that only move forward."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from hub.db import utcnow
from hub.events import Event
from hub.messages import Identity, InboundMessage
from hub.ports import TimelineNote
from hub.runtime import Runtime
from tests.conftest import make_agent, make_queue
from ticketing.exceptions import TicketNotFound
from ticketing.ingest import ingest_batch
from ticketing.tables import messages, outbox, tickets

EVENTS = Event.__table__  # type: ignore[attr-defined]


async def sms(rt: Runtime, n: int, sender: str = "+14155550142", channel: str = "sms") -> int:
    kind = "whatsapp" if channel == "whatsapp" else "phone"
    [r] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel=channel,
                external_id=f"SM{n}",
                sender=Identity(kind=kind, value=sender, name="Maria"),
                recipient="+14155550199",
                text=f"message {n}",
            )
        ],
    )
    assert not isinstance(r, Exception)
    return r.ticket_id


async def test_summary_finds_one_person_under_every_phone_channel(rt: Runtime) -> None:
    await make_queue(rt, "support", ["sms", "whatsapp", "voice"])
    ticket = await sms(rt, 1, "whatsapp:+14155550142", channel="whatsapp")
    found = await rt.ports.contacts.summary(kind="phone", value="(415) 555-0142")
    assert found.contact_id is not None and found.name == "Maria"
    assert [t.id for t in found.open_tickets] == [ticket]
    assert found.open_tickets[0].channel == "whatsapp" and found.open_tickets[0].last_inbound_at is not None
    unknown = await rt.ports.contacts.summary(kind="phone", value="+14155550000")
    assert unknown.contact_id is None and unknown.open_tickets == []
    garbage = await rt.ports.contacts.summary(kind="phone", value="not a number")
    assert garbage.contact_id is None


async def test_brief_and_timeline(rt: Runtime) -> None:
    await make_queue(rt, "support", ["sms"])
    ticket = await sms(rt, 1)
    brief = await rt.ports.tickets.brief(ticket_id=ticket)
    assert brief is not None and brief.channel == "sms" and brief.assignee_id is None
    assert await rt.ports.tickets.brief(ticket_id=999_999) is None
    note = await rt.ports.tickets.add_timeline(ticket_id=ticket, text="Call ended after 3 s", metadata={"k": 1})
    async with rt.read() as conn:
        row = (await conn.execute(select(messages).where(messages.c.id == note))).one()
    assert row.direction == "note" and row.author_agent_id is None and row.meta == {"system": True, "k": 1}
    with pytest.raises(TicketNotFound):
        await rt.ports.tickets.add_timeline(ticket_id=999_999, text="x", metadata={})


async def test_a_timeline_line_commits_with_what_the_channel_writes_beside_it(rt: Runtime) -> None:
    """``add_timeline``'s ``also`` runs in the line's transaction: both are kept, or (it raises) neither."""
    await make_queue(rt, "support", ["sms"])
    ticket = await sms(rt, 1)

    async def touch(conn: Any) -> None:
        await conn.execute(update(tickets).where(tickets.c.id == ticket).values(tags=["touched"]))

    async def touch_then_fail(conn: Any) -> None:
        await touch(conn)
        raise RuntimeError("the channel's record failed")

    with pytest.raises(RuntimeError):
        await rt.ports.tickets.add_timeline(ticket_id=ticket, text="lost", metadata={}, also=touch_then_fail)
    await rt.ports.tickets.add_timeline(ticket_id=ticket, text="kept", metadata={}, also=touch)
    async with rt.read() as conn:
        texts = (await conn.execute(select(messages.c.text).where(messages.c.direction == "note"))).scalars().all()
        tags = (await conn.execute(select(tickets.c.tags).where(tickets.c.id == ticket))).scalar_one()
    assert texts == ["kept"] and tags == ["touched"]


async def test_a_call_answered_writes_its_timeline_line_with_the_stamp(rt: Runtime) -> None:
    """``call_answered``'s ``note`` is written in the transaction that stamps the ticket answered (also when it
    was stamped before: the line says who picked up this time)."""
    await make_queue(rt, "support", ["voice"])
    ticket = await sms(rt, 1)
    agent = await make_agent(rt, "ann", queues=["support"])
    async with rt.write() as tx:
        await tx.conn.execute(update(tickets).where(tickets.c.id == ticket).values(assignee_id=agent))
    line = TimelineNote(text="Answered by Ann", metadata={"call_event": "answered"})
    assert await rt.ports.tickets.call_answered(ticket_id=ticket, at=utcnow(), note=line)
    assert not await rt.ports.tickets.call_answered(ticket_id=ticket, at=utcnow(), note=line)
    async with rt.read() as conn:
        notes = (
            await conn.execute(select(messages.c.text, messages.c.meta).where(messages.c.direction == "note"))
        ).all()
        answered = (await conn.execute(select(tickets.c.answered_at).where(tickets.c.id == ticket))).scalar_one()
    assert answered is not None
    assert [n.text for n in notes] == ["Answered by Ann", "Answered by Ann"]
    assert notes[0].meta == {"system": True, "call_event": "answered"}


async def test_abandon_only_work_nobody_accepted(rt: Runtime) -> None:
    await make_queue(rt, "support", ["sms"])
    ticket = await sms(rt, 1)
    assert await rt.ports.tickets.abandon(ticket_id=ticket, reason="hung up")
    assert not await rt.ports.tickets.abandon(ticket_id=ticket, reason="again")  # solved now
    async with rt.read() as conn:
        row = (await conn.execute(select(tickets).where(tickets.c.id == ticket))).one()
        count = (
            await conn.execute(select(func.count()).select_from(EVENTS).where(EVENTS.c.type == "call.abandoned"))
        ).scalar_one()
    assert row.status == "solved" and row.tags == ["abandoned"] and row.queued_at is None and count == 1
    other = await sms(rt, 2, "+14155550143")
    agent = await make_agent(rt, "alice", queues=["support"])
    async with rt.write() as tx:
        await tx.conn.execute(update(tickets).where(tickets.c.id == other).values(assignee_id=agent))
    assert not await rt.ports.tickets.abandon(ticket_id=other, reason="hung up")


async def test_send_as_goes_through_the_outbox_once_and_receipts_move_forward(rt: Runtime) -> None:
    await make_queue(rt, "support", ["sms"])
    ticket = await sms(rt, 1)
    agent = await make_agent(rt, "alice", queues=["support"])
    first = await rt.ports.tickets.send_as(agent_id=agent, ticket_id=ticket, text="Calling back", client_key="cb:1")
    again = await rt.ports.tickets.send_as(agent_id=agent, ticket_id=ticket, text="Calling back", client_key="cb:1")
    assert first == again
    async with rt.read() as conn:
        rows = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
    assert rows == 1
    assert await rt.ports.tickets.set_delivery_status(message_id=first, status="delivered")
    assert not await rt.ports.tickets.set_delivery_status(message_id=first, status="sent")
    assert await rt.ports.tickets.set_delivery_status(message_id=first, status="failed", error="30003")
    async with rt.read() as conn:
        row = (await conn.execute(select(messages).where(messages.c.id == first))).one()
    assert row.delivery_status == "failed" and row.delivery_error == "30003"


async def test_last_inbound_counts_the_customers_messages_only(rt: Runtime) -> None:
    await make_queue(rt, "support", ["whatsapp"])
    ticket = await sms(rt, 1, "whatsapp:+14155550142", channel="whatsapp")
    long_ago = utcnow() - timedelta(hours=30)
    async with rt.write() as tx:
        await tx.conn.execute(update(messages).where(messages.c.ticket_id == ticket).values(created_at=long_ago))
    await rt.ports.tickets.add_timeline(ticket_id=ticket, text="a note", metadata={})
    brief = await rt.ports.tickets.brief(ticket_id=ticket)
    assert brief is not None and brief.last_inbound_at is not None
    assert abs((brief.last_inbound_at - long_ago).total_seconds()) < 1

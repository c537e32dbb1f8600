"""Agents' replies committed together (group commit), on the real database."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from hub.events import EventType, events_after, seq_bounds
from hub.messages import Identity, InboundMessage, OutboundMessage
from hub.principals import Principal
from hub.runtime import Runtime
from tests.conftest import make_agent, make_queue
from ticketing import replies, tables
from ticketing.agents import load_principal
from ticketing.exceptions import NoRecipient, NotYourTicket, TicketNotFound
from ticketing.ingest import ingest_batch
from ticketing.models import TicketStatus


async def chat_tickets(rt: Runtime, n: int, queue: str) -> list[int]:
    results = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="webchat",
                external_id=f"conv-{i}:c1",
                thread_key=f"conv-{i}",
                sender=Identity(kind="webchat", value=f"visitor:{i}"),
                text=f"question {i}",
                queue=queue,
            )
            for i in range(n)
        ],
    )
    return [r.ticket_id for r in results]  # type: ignore[union-attr]


async def principal(rt: Runtime, agent_id: int) -> Principal:
    loaded = await load_principal(rt, agent_id=agent_id)
    assert loaded is not None
    return loaded[0]


async def test_concurrent_replies_each_get_their_own_message_and_outbox_row(rt: Runtime) -> None:
    """Replies sent at once commit together, yet each caller gets its own message, on its own ticket, with
    its own outbox row, events in order, and the tickets' first response and status set."""
    await make_queue(rt, "chat", ["webchat"])
    agent = await principal(rt, await make_agent(rt, "ann", queues=["chat"]))
    tickets = await chat_tickets(rt, 6, "chat")
    async with rt.read() as conn:
        _, before = await seq_bounds(conn)
    texts = [f"answer {i}" for i in range(len(tickets))] + ["second answer to the first"]
    targets = [*tickets, tickets[0]]
    sent = await asyncio.gather(
        *(replies.reply(rt, ticket_id=t, principal=agent, text=x) for t, x in zip(targets, texts, strict=True))
    )
    assert [m.ticket_id for m in sent] == targets
    assert [m.text for m in sent] == texts
    assert len({m.id for m in sent}) == len(sent)
    assert len({m.created_at for m in sent}) < len(sent)  # committed together, not one by one
    assert all(m.direction == "outbound" and m.delivery_status == "pending" for m in sent)
    async with rt.read() as conn:
        outbox = {r.message_id: r for r in await conn.execute(select(tables.outbox))}
        rows = {r.id: r for r in await conn.execute(select(tables.tickets).where(tables.tickets.c.id.in_(tickets)))}
        events = await events_after(conn, before)
    assert set(outbox) == {m.id for m in sent}
    for m in sent:
        assert outbox[m.id].payload["text"] == m.text
        assert outbox[m.id].payload["metadata"]["thread_key"] == f"conv-{tickets.index(m.ticket_id)}"
    assert all(r.first_response_at is not None and r.status == TicketStatus.OPEN for r in rows.values())
    created = [e.payload["message"]["id"] for e in events if e.type == EventType.MESSAGE_CREATED]
    assert created == sorted(m.id for m in sent)
    # The first ticket's state comes after both of its messages.
    first = [(e.type, e.ticket_id) for e in events if e.ticket_id == tickets[0]]
    assert first[-1] == (EventType.TICKET_UPDATED, tickets[0])


async def test_a_refused_reply_does_not_take_the_others_down(rt: Runtime) -> None:
    """In one batch, replies to a missing ticket, to another queue's ticket and to a ticket with nobody to
    answer are refused with their own errors; the rest commit."""
    await make_queue(rt, "chat", ["webchat"])
    await make_queue(rt, "other", ["webchat"])
    agent = await principal(rt, await make_agent(rt, "ann", queues=["chat"]))
    mine = await chat_tickets(rt, 2, "chat")
    results = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="webchat",
                external_id="elsewhere:c1",
                thread_key="elsewhere",
                sender=Identity(kind="webchat", value="visitor:x"),
                text="hi",
                queue="other",
            )
        ],
    )
    theirs = results[0].ticket_id  # type: ignore[union-attr]
    outcomes = await asyncio.gather(
        replies.reply(rt, ticket_id=mine[0], principal=agent, text="one"),
        replies.reply(rt, ticket_id=999_999, principal=agent, text="nowhere"),
        replies.reply(rt, ticket_id=theirs, principal=agent, text="not mine"),
        replies.reply(rt, ticket_id=mine[1], principal=agent, text="two"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], TicketNotFound)
    assert isinstance(outcomes[2], NotYourTicket)
    assert [o.text for o in (outcomes[0], outcomes[3])] == ["one", "two"]  # type: ignore[union-attr]
    async with rt.read() as conn:
        stored = await conn.execute(select(tables.messages.c.text).where(tables.messages.c.direction == "outbound"))
        assert sorted(t for (t,) in stored) == ["one", "two"]


async def test_a_batch_that_fails_in_the_database_is_retried_reply_by_reply(rt: Runtime) -> None:
    """When the batch's transaction itself fails, each reply is committed on its own: the one that breaks
    the database gets its error, the others their messages."""
    await make_queue(rt, "chat", ["webchat"])
    agent = await principal(rt, await make_agent(rt, "ann", queues=["chat"]))
    tickets = await chat_tickets(rt, 3, "chat")

    def breaking(reply: OutboundMessage, *, ticket_subject: str) -> None:
        if reply.text == "bad":
            # The id of the customer's message on this channel: the database refuses a second message with it.
            reply.external_id = "conv-1:c1"

    rt.reply_hooks["webchat"] = breaking
    outcomes = await asyncio.gather(
        *(
            replies.reply(rt, ticket_id=t, principal=agent, text=x)
            for t, x in zip(tickets, ["good", "bad", "fine"], strict=True)
        ),
        return_exceptions=True,
    )
    assert not isinstance(outcomes[0], BaseException) and outcomes[0].text == "good"
    assert isinstance(outcomes[1], Exception)
    assert not isinstance(outcomes[2], BaseException) and outcomes[2].text == "fine"


async def test_reply_without_an_inbound_message_is_refused(rt: Runtime) -> None:
    """A ticket nobody wrote to has nobody to answer."""
    await make_queue(rt, "chat", ["webchat"])
    agent = await principal(rt, await make_agent(rt, "ann", queues=["chat"]))
    [ticket] = await chat_tickets(rt, 1, "chat")
    async with rt.write() as tx:
        await tx.conn.execute(tables.messages.delete().where(tables.messages.c.ticket_id == ticket))
    with pytest.raises(NoRecipient):
        await replies.reply(rt, ticket_id=ticket, principal=agent, text="hello?")

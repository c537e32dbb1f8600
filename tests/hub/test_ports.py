"""The core's ports (``hub.ports``), as a channel or the knowledge base calls them through ``rt.ports``: typed
answers, the core's own errors, and a clear error for a port used before the core registered it."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from hub.bus import EventHub, LocalTransport
from hub.config import Settings
from hub.db import Database
from hub.messages import Identity, InboundMessage
from hub.metrics import Metrics
from hub.ports import ConversationState, PortNotRegistered, Ports
from hub.principals import Principal
from hub.runtime import Runtime
from tests.conftest import make_agent, make_queue
from ticketing.agents import load_principal, update_agent
from ticketing.exceptions import NotYourTicket, TicketNotFound
from ticketing.ingest import ingest_batch
from ticketing.replies import add_note, reply
from ticketing.tables import outbox
from ticketing.tickets import get_ticket


def inbound(n: int, *, channel: str = "email", thread: str | None = None, text: str = "") -> InboundMessage:
    sender = (
        Identity(kind="email", value="ann@example.com")
        if channel == "email"
        else Identity(kind="webchat", value="visitor:1")
    )
    return InboundMessage(
        channel=channel,
        external_id=f"<m{n}@example.com>" if channel == "email" else f"{thread}:{n}",
        sender=sender,
        subject="Printer on fire" if channel == "email" else None,
        text=text or f"message {n}",
        thread_key=thread,
        references=[f"<m{n - 1}@example.com>"] if channel == "email" and n > 1 else [],
    )


async def agent(rt: Runtime, username: str, *, queues: list[str], available: bool = False) -> Principal:
    loaded = await load_principal(rt, agent_id=await make_agent(rt, username, queues=queues, available=available))
    assert loaded is not None
    return loaded[0]


async def test_ticket_port_answers_what_a_ticket_says_to_whom_may_see_it(rt: Runtime) -> None:
    """``customer_text`` gives the subject and the newest inbound texts, oldest first, to an agent of the
    ticket's queue; another agent gets the ticket API's 403, a missing ticket its 404; ``may_see`` says as
    much without raising."""
    await make_queue(rt, "support", ["email"])
    await make_queue(rt, "sales", ["email"])
    ann = await agent(rt, "ann", queues=["support"])
    bob = await agent(rt, "bob", queues=["sales"])
    results = await ingest_batch(rt, [inbound(1)])
    for n in (2, 3, 4):
        results += await ingest_batch(rt, [inbound(n)])
    ticket_id = results[0].ticket_id  # type: ignore[union-attr]
    assert {r.ticket_id for r in results} == {ticket_id}  # type: ignore[union-attr]

    text = await rt.ports.tickets.customer_text(principal=ann, ticket_id=ticket_id, messages=2)
    assert (text.ticket_id, text.channel, text.subject, text.texts) == (
        ticket_id,
        "email",
        "Printer on fire",
        ["message 3", "message 4"],
    )
    assert await rt.ports.tickets.may_see(principal=ann, ticket_id=ticket_id)
    assert not await rt.ports.tickets.may_see(principal=bob, ticket_id=ticket_id)
    assert not await rt.ports.tickets.may_see(principal=ann, ticket_id=ticket_id + 100)
    with pytest.raises(NotYourTicket):
        await rt.ports.tickets.customer_text(principal=bob, ticket_id=ticket_id)
    with pytest.raises(TicketNotFound):
        await rt.ports.tickets.customer_text(principal=ann, ticket_id=ticket_id + 100)


async def test_ticket_port_finds_a_message_by_its_channel_id(rt: Runtime) -> None:
    """What the email channel quotes under a reply: the stored message with that Message-ID on that channel
    (the same id on another channel is another message)."""
    await make_queue(rt, "support", ["email"])
    [result] = await ingest_batch(rt, [inbound(1, text="It is smoking.")])
    found = await rt.ports.tickets.message_by_external_id(channel="email", external_id="<m1@example.com>")
    assert found is not None
    assert (found.id, found.ticket_id, found.sender, found.text) == (
        result.message_id,  # type: ignore[union-attr]
        result.ticket_id,  # type: ignore[union-attr]
        "ann@example.com",
        "It is smoking.",
    )
    assert found.created_at.tzinfo is not None
    assert await rt.ports.tickets.message_by_external_id(channel="sms", external_id="<m1@example.com>") is None


async def test_ticket_port_says_which_replies_still_wait_in_the_outbox(rt: Runtime) -> None:
    """Of three replies, the one still pending in the outbox waits; one sent and one failed for good do not,
    nor does a note (never in the outbox) or a message id nobody has."""
    await make_queue(rt, "support", ["email"])
    ann = await agent(rt, "ann", queues=["support"])
    [result] = await ingest_batch(rt, [inbound(1)])
    ticket_id = result.ticket_id  # type: ignore[union-attr]
    waiting, sent, failed = [
        (await reply(rt, ticket_id=ticket_id, principal=ann, text=f"answer {n}")).id for n in range(3)
    ]
    note = await add_note(rt, ticket_id=ticket_id, principal=ann, text="internal")
    async with rt.db.begin() as conn:
        await conn.execute(update(outbox).where(outbox.c.message_id == sent).values(status="sent"))
        await conn.execute(update(outbox).where(outbox.c.message_id == failed).values(status="failed"))
    asked = [waiting, sent, failed, note.id, 10_000]
    assert await rt.ports.tickets.awaiting_delivery(message_ids=asked) == {waiting}
    assert await rt.ports.tickets.awaiting_delivery(message_ids=[]) == set()


async def test_conversation_and_queue_ports_answer_typed_state(rt: Runtime) -> None:
    """A conversation's state is its tickets and the customer's view of its messages (no notes); a queue's
    availability counts its available agents."""
    await make_queue(rt, "support", ["webchat"])
    ann = await agent(rt, "ann", queues=["support"], available=True)
    [r1] = await ingest_batch(rt, [inbound(1, channel="webchat", thread="c1")])
    await add_note(rt, ticket_id=r1.ticket_id, principal=ann, text="internal")  # type: ignore[union-attr]
    state = await rt.ports.conversations.state(channel="webchat", thread_key="c1")
    assert isinstance(state, ConversationState)
    assert [t.id for t in state.tickets] == [r1.ticket_id]  # type: ignore[union-attr]
    assert state.current is not None and state.current.id == r1.ticket_id  # type: ignore[union-attr]
    assert [(m.direction, m.text) for m in state.messages] == [("inbound", "message 1")]
    assert (await rt.ports.conversations.state(channel="email", thread_key="c1")).tickets == []
    availability = await rt.ports.queues.availability(channel="webchat", queue=None)
    assert (availability.queue, availability.available, availability.agents_available) == ("support", True, 1)


async def test_a_conversation_an_article_answered_closes_as_deflected(rt: Runtime) -> None:
    """``close_deflected``: the conversation's open ticket (offered to an agent meanwhile) closes, tagged
    ``deflected``, the offer withdrawn, with a note naming the article that agents see and the customer never
    does; its state says deflected. Without an open ticket nothing closes (None). Writing again opens a new
    ticket, not deflected."""
    await make_queue(rt, "support", ["webchat"])
    ann = await agent(rt, "ann", queues=["support"], available=True)
    port = rt.ports.conversations
    assert await port.close_deflected(channel="webchat", thread_key="c1", article_id=7, article_title="Returns") is None
    [r1] = await ingest_batch(rt, [inbound(1, channel="webchat", thread="c1")])
    tid = r1.ticket_id  # type: ignore[union-attr]
    assert (await get_ticket(rt, ticket_id=tid, principal=ann)).offered_agent_id == ann.agent_id

    closed = await port.close_deflected(
        channel="webchat", thread_key="c1", article_id=7, article_title="  Return\nan item "
    )
    assert closed == tid
    ticket = await get_ticket(rt, ticket_id=tid, principal=ann)
    assert (ticket.status, ticket.tags, ticket.offered_agent_id) == ("closed", ["deflected"], None)
    [note] = [m for m in ticket.messages if m.direction == "note"]
    assert "“Return an item” (#7) answered" in note.text
    state = await port.state(channel="webchat", thread_key="c1")
    assert state.current is not None and state.current.deflected and state.current.status == "closed"
    assert [m.direction for m in state.messages] == ["inbound"]
    # closed already: a second "this solved it" finds nothing open
    assert await port.close_deflected(channel="webchat", thread_key="c1", article_id=7, article_title="x") is None
    # another conversation is untouched by this one's deflection
    [other] = await ingest_batch(rt, [inbound(1, channel="webchat", thread="c2")])
    assert (await get_ticket(rt, ticket_id=other.ticket_id, principal=ann)).status != "closed"  # type: ignore[union-attr]

    [r2] = await ingest_batch(rt, [inbound(2, channel="webchat", thread="c1")])
    assert r2.ticket_id != tid  # type: ignore[union-attr]
    state = await port.state(channel="webchat", thread_key="c1")
    assert state.current is not None and state.current.id == r2.ticket_id and not state.current.deflected  # type: ignore[union-attr]


async def test_agent_port_loads_active_agents_only(rt: Runtime) -> None:
    """What authentication reads on a cache miss: the principal and its password hash; none for a
    deactivated agent or an unknown id."""
    from ticketing.models import AgentUpdate

    ann_id = await make_agent(rt, "ann", queues=[])
    record = await rt.ports.agents.principal(ann_id)
    assert record is not None and record.principal.username == "ann" and record.password_hash.startswith("$argon2")
    assert await rt.ports.agents.public_name(ann_id) == "ann"
    await update_agent(rt, agent_id=ann_id, data=AgentUpdate(active=False))
    assert await rt.ports.agents.principal(ann_id) is None
    assert await rt.ports.agents.principal(ann_id + 100) is None


async def test_a_port_used_before_the_core_registered_it_says_so(settings: Settings) -> None:
    """A runtime without the core's ports (a script that forgot ``register_ports``) fails with the port's name
    and where it is registered, not with an AttributeError deep inside a channel."""
    db = Database(settings.database_url)
    try:
        bare = Runtime(settings=settings, db=db, events=EventHub(db, LocalTransport()), metrics=Metrics())
        assert not bare.ports.registered
        with pytest.raises(PortNotRegistered, match=r"rt\.ports\.tickets .*register_ports"):
            await bare.ports.tickets.may_see(principal=None, ticket_id=1)  # type: ignore[arg-type]
        assert Ports().registered is False
    finally:
        await db.dispose()


async def test_the_core_registers_every_port(rt: Runtime) -> None:
    """``register_ports`` (the ``rt`` fixture runs it, as ``hub/app.py`` does at start) fills every port."""
    assert rt.ports.registered

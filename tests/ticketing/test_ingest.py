"""Ingest: idempotency, contact resolution across channels, and threading, on the real database."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from hub.config import Settings
from hub.db import utcnow
from hub.events import events_after
from hub.messages import Identity, InboundMessage
from hub.principals import Principal
from hub.runtime import Runtime, Tx, standalone
from tests.conftest import make_queue, racing
from tests.ticketing.routing_helpers import executed
from ticketing import tables
from ticketing.ingest import IngestItem, IngestPipeline, claim_openings, ingest_batch, store_batch
from ticketing.models import TicketStatus, TicketUpdate
from ticketing.ticket_updates import transfer, update_ticket
from ticketing.tickets import get_contact_history, get_ticket

ADMIN = Principal(agent_id=0, username="root", display_name="Root", role="admin", queue_ids=frozenset())


def email(ext: str, sender: str = "ann@example.com", **kw: object) -> InboundMessage:
    return InboundMessage(
        channel="email",
        external_id=ext,
        sender=Identity(kind="email", value=sender),
        subject=kw.pop("subject", "Help"),
        text=kw.pop("text", "hello"),
        **kw,
    )  # type: ignore[arg-type]


async def count(rt: Runtime, table: object) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


async def ingest_one(rt: Runtime, msg: InboundMessage) -> object:
    [result] = await ingest_batch(rt, [msg])
    assert not isinstance(result, Exception), result
    return result


async def test_same_external_id_is_stored_once(rt: Runtime) -> None:
    """A retried webhook or re-fetched email returns the stored message and adds no row."""
    first = await ingest_one(rt, email("<m1@example.com>"))
    again = await ingest_one(rt, email("<m1@example.com>", text="changed"))
    assert first.created and not again.created  # type: ignore[attr-defined]
    assert again.message_id == first.message_id  # type: ignore[attr-defined]
    assert await count(rt, tables.messages) == 1


async def test_copies_inside_one_batch_are_stored_once(rt: Runtime) -> None:
    """Two copies committed together still make one message; both callers get its id."""
    results = await ingest_batch(rt, [email("<dup@x>"), email("<dup@x>")])
    assert results[0].message_id == results[1].message_id  # type: ignore[union-attr]
    assert [r.created for r in results] == [True, False]  # type: ignore[union-attr]
    assert await count(rt, tables.messages) == 1


async def test_same_external_id_on_another_channel_is_another_message(rt: Runtime) -> None:
    """External ids are unique per channel, not globally."""
    await ingest_one(
        rt, InboundMessage(channel="sms", external_id="X1", sender=Identity(kind="phone", value="+14155550100"))
    )
    await ingest_one(
        rt, InboundMessage(channel="telegram", external_id="X1", sender=Identity(kind="telegram", value="55"))
    )
    assert await count(rt, tables.messages) == 2


async def test_concurrent_submissions_are_group_committed_and_deduplicated(rt: Runtime) -> None:
    """Many concurrent submits through the pipeline all commit; retries of the same id resolve to one row."""
    pipeline = IngestPipeline(rt)
    await pipeline.start()
    try:
        msgs = [email(f"<c{i % 50}@x>", sender=f"user{i % 50}@example.com") for i in range(200)]
        results = await asyncio.gather(*(pipeline.submit(m) for m in msgs))
    finally:
        await pipeline.stop()
    assert len({r.message_id for r in results}) == 50
    assert sum(r.created for r in results) == 50
    assert await count(rt, tables.messages) == 50
    assert await count(rt, tables.contacts) == 50


async def test_a_batch_submitted_together_commits_together_and_each_message_gets_its_outcome(rt: Runtime) -> None:
    """``submit_all`` (a webhook's batch): one commit for the whole batch, each message's outcome in order, a
    message ingest refuses answered with its error while its neighbours are stored."""
    pipeline = IngestPipeline(rt)
    await pipeline.start()
    try:
        batch = [email(f"<all{i}@x>", sender=f"all{i}@example.com") for i in range(5)]
        batch[2] = InboundMessage(channel="nowhere", external_id="x1", sender=Identity(kind="email", value="a@b.c"))
        before = _batches(rt)
        outcomes = await pipeline.submit_all(batch)
    finally:
        await pipeline.stop()
    assert [type(o).__name__ for o in outcomes] == ["IngestResult"] * 2 + ["UnknownChannel"] + ["IngestResult"] * 2
    assert await count(rt, tables.messages) == 4
    assert (_batches(rt)[0] - before[0], _batches(rt)[1] - before[1]) == (1, 5)  # one commit of the five


def _batches(rt: Runtime) -> tuple[int, int]:
    """How many ingest commits there were, and how many messages they held."""
    samples = {s.name: s.value for s in rt.metrics.ingest_batch_size.collect()[0].samples}
    return int(samples["switchboard_ingest_batch_size_count"]), int(samples["switchboard_ingest_batch_size_sum"])


async def test_email_address_resolves_case_insensitively_to_one_contact(rt: Runtime) -> None:
    """Ann@Example.COM and ann@example.com are the same person."""
    a = await ingest_one(rt, email("<a@x>", sender="Ann@Example.COM"))
    b = await ingest_one(rt, email("<b@x>", sender="ann@example.com"))
    assert a.contact_id == b.contact_id  # type: ignore[attr-defined]


async def test_phone_number_on_sms_voice_and_whatsapp_is_one_contact(rt: Runtime) -> None:
    """The same number, written three ways on three channels, resolves to one contact with E.164 identities."""
    sms = await ingest_one(
        rt, InboundMessage(channel="sms", external_id="SM1", sender=Identity(kind="phone", value="+1 (415) 555-0123"))
    )
    wa = await ingest_one(
        rt,
        InboundMessage(
            channel="whatsapp", external_id="SM2", sender=Identity(kind="whatsapp", value="whatsapp:+14155550123")
        ),
    )
    call = await ingest_one(
        rt, InboundMessage(channel="voice", external_id="CA1", sender=Identity(kind="phone", value="4155550123"))
    )
    assert sms.contact_id == wa.contact_id == call.contact_id  # type: ignore[attr-defined]
    history = await get_contact_history(rt, contact_id=sms.contact_id, principal=ADMIN)  # type: ignore[attr-defined]
    assert {(i.kind, i.value) for i in history.identities} == {("phone", "+14155550123"), ("whatsapp", "+14155550123")}
    assert sorted(t.channel for t in history.tickets) == ["sms", "voice", "whatsapp"]


async def test_invalid_phone_number_is_refused_alone(rt: Runtime) -> None:
    """A message whose sender cannot be attributed gets an error; its batch neighbours are stored."""
    results = await ingest_batch(
        rt,
        [
            InboundMessage(channel="sms", external_id="bad", sender=Identity(kind="phone", value="not a number")),
            email("<ok@x>"),
        ],
    )
    assert isinstance(results[0], Exception) and "phone number" in str(results[0])
    assert not isinstance(results[1], Exception)
    assert await count(rt, tables.messages) == 1


async def test_reply_threads_by_references(rt: Runtime) -> None:
    """An email that references an earlier message joins that ticket, even from another address."""
    first = await ingest_one(rt, email("<root@x>", sender="ann@example.com"))
    reply = await ingest_one(rt, email("<r1@x>", sender="boss@example.com", references=["<unknown@y>", "<root@x>"]))
    assert reply.ticket_id == first.ticket_id  # type: ignore[attr-defined]


async def test_thread_key_keeps_conversations_apart(rt: Runtime) -> None:
    """Two chat conversations of one visitor are two tickets; messages follow their conversation."""

    def chat(ext: str, key: str) -> InboundMessage:
        return InboundMessage(
            channel="webchat",
            external_id=ext,
            thread_key=key,
            sender=Identity(kind="webchat", value="visitor-1"),
            text="hi",
        )

    a1, b1, a2 = [await ingest_one(rt, m) for m in (chat("1", "conv-a"), chat("2", "conv-b"), chat("3", "conv-a"))]
    assert a1.ticket_id == a2.ticket_id != b1.ticket_id  # type: ignore[attr-defined]


async def test_open_ticket_of_contact_on_channel_is_reused_until_solved(rt: Runtime) -> None:
    """SMS without thread ids: the contact's open SMS ticket takes the next message; a solved one reopens
    only when referenced, otherwise a new ticket starts."""
    sender = Identity(kind="phone", value="+14155550111")
    t1 = await ingest_one(rt, InboundMessage(channel="sms", external_id="a", sender=sender))
    t2 = await ingest_one(rt, InboundMessage(channel="sms", external_id="b", sender=sender))
    assert t1.ticket_id == t2.ticket_id  # type: ignore[attr-defined]
    await update_ticket(
        rt,
        ticket_id=t1.ticket_id,
        principal=ADMIN,  # type: ignore[attr-defined]
        data=TicketUpdate(status=TicketStatus.SOLVED),
    )
    t3 = await ingest_one(rt, InboundMessage(channel="sms", external_id="c", sender=sender))
    assert t3.ticket_id != t1.ticket_id  # type: ignore[attr-defined]


async def test_reply_to_solved_ticket_reopens_it_and_to_closed_opens_linked_ticket(rt: Runtime) -> None:
    """A referenced solved ticket reopens; a referenced closed ticket gets a new ticket linked to it."""
    first = await ingest_one(rt, email("<s1@x>"))
    tid = first.ticket_id  # type: ignore[attr-defined]
    await update_ticket(rt, ticket_id=tid, principal=ADMIN, data=TicketUpdate(status=TicketStatus.SOLVED))
    again = await ingest_one(rt, email("<s2@x>", references=["<s1@x>"]))
    assert again.ticket_id == tid  # type: ignore[attr-defined]
    assert (await get_ticket(rt, ticket_id=tid, principal=ADMIN)).status == "open"
    await update_ticket(rt, ticket_id=tid, principal=ADMIN, data=TicketUpdate(status=TicketStatus.CLOSED))
    late = await ingest_one(rt, email("<s3@x>", references=["<s2@x>"]))
    assert late.ticket_id != tid  # type: ignore[attr-defined]
    detail = await get_ticket(rt, ticket_id=late.ticket_id, principal=ADMIN)  # type: ignore[attr-defined]
    assert detail.linked_ticket_id == tid


async def test_ticket_number_hint_is_honoured_only_for_participants(rt: Runtime) -> None:
    """A subject tag [#N] threads a participant's mail into N; a stranger naming N gets a new ticket."""
    first = await ingest_one(rt, email("<h1@x>", sender="ann@example.com"))
    tid = first.ticket_id  # type: ignore[attr-defined]
    mine = await ingest_one(rt, email("<h2@x>", sender="ann@example.com", ticket_hint=tid))
    stranger = await ingest_one(rt, email("<h3@x>", sender="eve@example.com", ticket_hint=tid))
    assert mine.ticket_id == tid  # type: ignore[attr-defined]
    assert stranger.ticket_id != tid  # type: ignore[attr-defined]


async def test_queue_is_chosen_by_name_then_by_channel(rt: Runtime) -> None:
    """The adapter's queue name wins; else the first queue serving the channel."""
    await make_queue(rt, "general")
    chat_q = await make_queue(rt, "chat", channels=["webchat"])
    billing = await make_queue(rt, "billing")
    named = await ingest_one(rt, email("<q1@x>", queue="billing"))
    chat = await ingest_one(
        rt,
        InboundMessage(channel="webchat", external_id="w", thread_key="k", sender=Identity(kind="webchat", value="v")),
    )
    t_named = await get_ticket(rt, ticket_id=named.ticket_id, principal=ADMIN)  # type: ignore[attr-defined]
    t_chat = await get_ticket(rt, ticket_id=chat.ticket_id, principal=ADMIN)  # type: ignore[attr-defined]
    assert (t_named.queue_id, t_chat.queue_id) == (billing, chat_q)


async def test_ingest_appends_events_in_order(rt: Runtime) -> None:
    """A new conversation appends ticket.created then message.created, with increasing seq."""
    await ingest_one(rt, email("<e1@x>"))
    from hub.events import events_after

    async with rt.read() as conn:
        events = await events_after(conn, 0)
    assert [e.type for e in events] == ["ticket.created", "message.created"]
    assert events[0].seq < events[1].seq


async def test_contact_learns_a_name_it_lacked_but_keeps_one_it_has(rt: Runtime) -> None:
    """A contact first seen without a name takes the name from a later message; a named one keeps its name."""
    anon = await ingest_one(
        rt, InboundMessage(channel="sms", external_id="n1", sender=Identity(kind="phone", value="+14155550188"))
    )
    await ingest_one(
        rt,
        InboundMessage(
            channel="sms", external_id="n2", sender=Identity(kind="phone", value="+14155550188", name="Rosa")
        ),
    )
    await ingest_one(
        rt,
        InboundMessage(
            channel="sms", external_id="n3", sender=Identity(kind="phone", value="+14155550188", name="Someone Else")
        ),
    )
    history = await get_contact_history(rt, contact_id=anon.contact_id, principal=ADMIN)  # type: ignore[attr-defined]
    assert history.name == "Rosa"


async def _queued_at(rt: Runtime, ticket_id: int) -> object:
    async with rt.read() as conn:
        return (
            await conn.execute(select(tables.tickets.c.queued_at).where(tables.tickets.c.id == ticket_id))
        ).scalar_one()


async def test_work_stored_but_never_routed_is_routed_when_the_pipeline_starts(rt: Runtime) -> None:
    """Storing and routing are two transactions: work stored by a process that stopped before routing it
    (here: stored alone) is queued, with its SLA clock, by the next pipeline start; routed work is left alone."""
    await make_queue(rt, "support", ["email"])
    [stored], waiting = await store_batch(rt, [email("<lost@x>")])
    assert waiting == [stored.ticket_id]  # type: ignore[union-attr]
    assert await _queued_at(rt, stored.ticket_id) is None  # type: ignore[union-attr]
    routed = await ingest_one(rt, email("<fine@x>", sender="bob@example.com"))
    first_queued = await _queued_at(rt, routed.ticket_id)  # type: ignore[attr-defined]
    assert first_queued is not None

    pipeline = IngestPipeline(rt)
    await pipeline.start()
    await pipeline.stop()
    assert await _queued_at(rt, stored.ticket_id) is not None  # type: ignore[union-attr]
    assert await _queued_at(rt, routed.ticket_id) == first_queued  # type: ignore[attr-defined]
    async with rt.read() as conn:
        events = await events_after(conn, 0)
    assert sorted(e.ticket_id for e in events if e.type == "ticket.queued") == sorted(
        [stored.ticket_id, routed.ticket_id]  # type: ignore[union-attr, attr-defined]
    )


async def test_metrics_count_each_stored_message_and_each_retry_by_channel(rt: Runtime) -> None:
    """Batches over several channels: the ingested count per channel is the messages stored, the duplicate
    count the messages that arrived again after they were stored."""
    await make_queue(rt, "support", ["email", "sms"])
    sms = InboundMessage(channel="sms", external_id="SM1", sender=Identity(kind="phone", value="+14155550100"))
    await ingest_batch(rt, [email("<m1@x>"), email("<m2@x>"), sms])
    await ingest_batch(rt, [email("<m2@x>"), email("<m3@x>")])
    await ingest_batch(rt, [email("<m1@x>")])

    def value(name: str, channel: str) -> float | None:
        return rt.metrics.registry.get_sample_value(name, {"channel": channel})

    assert value("switchboard_messages_ingested_total", "email") == 3
    assert value("switchboard_messages_ingested_total", "sms") == 1
    assert value("switchboard_messages_duplicate_total", "email") == 2
    assert value("switchboard_messages_duplicate_total", "sms") is None


def chat(ext: str, conversation: str = "conv-1", visitor: str = "visitor-1", text: str = "hi") -> InboundMessage:
    return InboundMessage(
        channel="webchat",
        external_id=ext,
        thread_key=conversation,
        sender=Identity(kind="webchat", value=visitor),
        text=text,
    )


async def _message_events(rt: Runtime) -> dict[int, object]:
    async with rt.read() as conn:
        return {e.payload["message"]["id"]: e for e in await events_after(conn, 0) if e.type == "message.created"}


async def test_known_visitor_follows_what_happens_to_the_conversations_ticket(rt: Runtime) -> None:
    """Once this process knows a visitor (their messages skip the identity lookup), each message still threads
    by the ticket as stored: after a transfer its event carries the new queue; after a solve or a close, the
    next message opens a new ticket for the same contact."""
    await make_queue(rt, "one", ["webchat"])
    two = await make_queue(rt, "two", ["webchat"])
    first = await ingest_one(rt, chat("1"))
    second = await ingest_one(rt, chat("2"))
    tid = first.ticket_id  # type: ignore[attr-defined]
    assert (second.ticket_id, second.contact_id) == (tid, first.contact_id)  # type: ignore[attr-defined]

    await transfer(rt, ticket_id=tid, principal=ADMIN, queue_id=two, agent_id=None)
    third = await ingest_one(rt, chat("3"))
    assert third.ticket_id == tid  # type: ignore[attr-defined]
    assert (await _message_events(rt))[third.message_id].queue_id == two  # type: ignore[attr-defined]

    await update_ticket(rt, ticket_id=tid, principal=ADMIN, data=TicketUpdate(status=TicketStatus.SOLVED))
    fourth = await ingest_one(rt, chat("4"))
    assert fourth.ticket_id != tid and fourth.ticket_created  # type: ignore[attr-defined]
    assert fourth.contact_id == first.contact_id  # type: ignore[attr-defined]
    await update_ticket(
        rt,
        ticket_id=fourth.ticket_id,  # type: ignore[attr-defined]
        principal=ADMIN,
        data=TicketUpdate(status=TicketStatus.CLOSED),
    )
    fifth = await ingest_one(rt, chat("5"))
    assert fifth.ticket_id not in (tid, fourth.ticket_id)  # type: ignore[attr-defined]
    assert fifth.contact_id == first.contact_id  # type: ignore[attr-defined]


async def test_known_visitor_sees_what_another_process_changed(rt: Runtime, settings: Settings) -> None:
    """Another process solving a conversation's ticket, which nothing in this process hears of: the next
    message here opens a new ticket all the same."""
    first = await ingest_one(rt, chat("1"))
    await ingest_one(rt, chat("2"))
    async with standalone(settings) as other:
        await update_ticket(
            other,
            ticket_id=first.ticket_id,  # type: ignore[attr-defined]
            principal=ADMIN,
            data=TicketUpdate(status=TicketStatus.SOLVED),
        )
    third = await ingest_one(rt, chat("3"))
    assert third.ticket_id != first.ticket_id  # type: ignore[attr-defined]
    assert third.contact_id == first.contact_id  # type: ignore[attr-defined]


async def test_two_processes_writing_into_the_same_conversations_store_every_message_once(
    rt: Runtime, settings: Settings
) -> None:
    """Two processes ingest chat batches into the same open conversations at once (on PostgreSQL they lock the
    same tickets): every message is stored once, each conversation keeps its one ticket, none fails."""
    opened = [await ingest_one(rt, chat(f"open-{c}", conversation=f"conv-{c}", visitor=f"v{c}")) for c in range(5)]
    tickets = {f"conv-{c}": r.ticket_id for c, r in enumerate(opened)}  # type: ignore[attr-defined]

    def batch(process: str, k: int) -> list[InboundMessage]:
        order = range(5) if k % 2 else reversed(range(5))
        return [chat(f"{process}-{k}-{c}", conversation=f"conv-{c}", visitor=f"v{c}") for c in order]

    async with standalone(settings) as other:
        here, there = IngestPipeline(rt), IngestPipeline(other)
        await here.start()
        await there.start()
        try:
            results = await asyncio.gather(
                *(here.submit(m) for k in range(8) for m in batch("a", k)),
                *(there.submit(m) for k in range(8) for m in batch("b", k)),
                *(there.submit(m) for k in range(8) for m in batch("a", k)),  # the same messages again, elsewhere
                return_exceptions=True,
            )
        finally:
            await here.stop()
            await there.stop()
    assert not [r for r in results if isinstance(r, BaseException)]
    assert await count(rt, tables.messages) == 5 + 2 * 8 * 5
    async with rt.read() as conn:
        rows = (await conn.execute(select(tables.messages.c.external_id, tables.messages.c.ticket_id))).all()
    for external_id, ticket_id in rows:
        assert ticket_id == tickets["conv-" + external_id.rsplit("-", 1)[1]]


async def test_visitor_of_a_batch_that_rolled_back_is_not_remembered(rt: Runtime) -> None:
    """A batch whose transaction fails after its contact was created leaves nothing behind, in this process's
    memory neither: the visitor's next message creates their contact again instead of pointing at one that
    was never committed (whose key another contact has taken meanwhile)."""
    trigger = "CREATE TRIGGER refuse_boom BEFORE INSERT ON messages "
    async with rt.db.begin() as conn:
        if rt.db.is_sqlite:
            await conn.exec_driver_sql(trigger + "WHEN NEW.text = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END")
        else:
            await conn.exec_driver_sql(
                "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.text = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$"
            )
            await conn.exec_driver_sql(trigger + "FOR EACH ROW EXECUTE FUNCTION refuse_boom()")
    try:
        with pytest.raises(Exception, match="boom"):
            await store_batch(rt, [chat("1", text="boom")])
        someone = await ingest_one(rt, chat("x", conversation="conv-2", visitor="visitor-2"))
        again = await ingest_one(rt, chat("2"))
        assert again.contact_id != someone.contact_id  # type: ignore[attr-defined]
        async with rt.read() as conn:
            contacts = set((await conn.execute(select(tables.contacts.c.id))).scalars())
        assert {again.contact_id, someone.contact_id} <= contacts  # type: ignore[attr-defined]
    finally:
        async with rt.db.begin() as conn:
            await conn.exec_driver_sql("DROP TRIGGER refuse_boom" + ("" if rt.db.is_sqlite else " ON messages"))
            if not rt.db.is_sqlite:
                await conn.exec_driver_sql("DROP FUNCTION refuse_boom()")


async def test_only_work_not_yet_waiting_in_its_queue_goes_to_routing(rt: Runtime) -> None:
    """A new conversation goes to routing; another message into a conversation already waiting in its queue
    does not (it is offered in its turn when capacity frees, or by the routing tick): a busy chat with no free
    agent used to run a routing pass per batch for nothing."""

    def chat(n: int, key: str) -> InboundMessage:
        return InboundMessage(
            channel="webchat",
            external_id=f"{key}:{n}",
            sender=Identity(kind="webchat", value=f"visitor:{key}"),
            text=f"message {n}",
            thread_key=key,
            queue="support",
        )

    await make_queue(rt, "support", ["webchat"])
    [first] = await ingest_batch(rt, [chat(1, "a")])  # no agent: it waits in its queue
    assert not isinstance(first, Exception)
    async with rt.read() as conn:
        queued_at = (
            await conn.execute(select(tables.tickets.c.queued_at).where(tables.tickets.c.id == first.ticket_id))
        ).scalar()
    assert queued_at is not None
    [again], waiting = await store_batch(rt, [chat(2, "a")])
    assert not isinstance(again, Exception) and again.ticket_id == first.ticket_id and waiting == []
    [other], waiting = await store_batch(rt, [chat(1, "b")])
    assert not isinstance(other, Exception) and waiting == [other.ticket_id]


async def test_a_customer_writing_into_a_pending_conversation_reopens_it(rt: Runtime) -> None:
    """Pending means waiting on the customer: their next message, by chat (thread key) or SMS (the contact's
    open conversation), sets it open again, announces the change, and sends it to routing."""
    await make_queue(rt, "support", ["webchat", "sms"])
    chat = InboundMessage(
        channel="webchat",
        external_id="k:1",
        sender=Identity(kind="webchat", value="visitor:k"),
        text="one",
        thread_key="k",
        queue="support",
    )
    sms = InboundMessage(
        channel="sms", external_id="SM1", sender=Identity(kind="phone", value="+14155550123"), text="one"
    )
    [c, s] = await ingest_batch(rt, [chat, sms])
    assert not isinstance(c, Exception) and not isinstance(s, Exception)
    for t in (c.ticket_id, s.ticket_id):
        await update_ticket(rt, ticket_id=t, principal=ADMIN, data=TicketUpdate(status=TicketStatus.PENDING))
    results, waiting = await store_batch(
        rt,
        [chat.model_copy(update={"external_id": "k:2"}), sms.model_copy(update={"external_id": "SM2"})],
    )
    assert [r.ticket_id for r in results] == [c.ticket_id, s.ticket_id]  # type: ignore[union-attr]
    assert sorted(waiting) == sorted([c.ticket_id, s.ticket_id])
    for t in (c.ticket_id, s.ticket_id):
        assert (await get_ticket(rt, ticket_id=t, principal=ADMIN)).status == TicketStatus.OPEN
    async with rt.read() as conn:
        updates = [e for e in await events_after(conn, 0) if e.type == "ticket.updated"]
    assert {(e.ticket_id, e.payload["ticket"]["status"]) for e in updates[-2:]} == {
        (c.ticket_id, "open"),
        (s.ticket_id, "open"),
    }


async def _while_held(rt: Runtime, ticket_id: int, status: TicketStatus, msg: InboundMessage) -> object:
    """Ingest ``msg`` while another transaction has changed the ticket's status and not yet committed; the
    result once that transaction has committed."""

    async def change(tx: Tx) -> None:
        await tx.conn.execute(
            tables.tickets.update().where(tables.tickets.c.id == ticket_id).values(status=status.value, closed_at=None)
        )

    [result] = await racing(rt, change, ingest_batch(rt, [msg]))
    assert not isinstance(result, Exception), result
    return result


async def test_a_message_threads_by_the_ticket_status_in_force_when_it_commits(rt: Runtime) -> None:
    """A customer's message arrives while an agent solves (or closes) the ticket it would join: the message
    must be threaded as if it came after that change, not by the status read before it. An SMS then starts
    a new ticket instead of landing, unseen, in the solved one; an email reply to a closed ticket opens a
    linked one instead of reopening it. PostgreSQL only: SQLite runs one writer at a time."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    sender = Identity(kind="phone", value="+14155550111")
    first = await ingest_one(rt, InboundMessage(channel="sms", external_id="a", sender=sender))
    sms = first.ticket_id  # type: ignore[attr-defined]
    # An agent taking the new ticket (new to open) changes nothing for threading: the message joins it.
    taken = await _while_held(
        rt, sms, TicketStatus.OPEN, InboundMessage(channel="sms", external_id="a2", sender=sender)
    )
    assert taken.ticket_id == sms  # type: ignore[attr-defined]
    later = await _while_held(
        rt, sms, TicketStatus.SOLVED, InboundMessage(channel="sms", external_id="b", sender=sender)
    )
    assert later.ticket_id != sms  # type: ignore[attr-defined]
    assert (await get_ticket(rt, ticket_id=sms, principal=ADMIN)).status == "solved"

    mail = (await ingest_one(rt, email("<c1@x>"))).ticket_id  # type: ignore[attr-defined]
    await update_ticket(rt, ticket_id=mail, principal=ADMIN, data=TicketUpdate(status=TicketStatus.SOLVED))
    reply = await _while_held(rt, mail, TicketStatus.CLOSED, email("<c2@x>", references=["<c1@x>"]))
    assert reply.ticket_id != mail  # type: ignore[attr-defined]
    assert (await get_ticket(rt, ticket_id=mail, principal=ADMIN)).status == "closed"
    detail = await get_ticket(rt, ticket_id=reply.ticket_id, principal=ADMIN)  # type: ignore[attr-defined]
    assert detail.linked_ticket_id == mail


async def _opened_elsewhere(rt: Runtime, like: object, msg: InboundMessage) -> object:
    """Ingest ``msg``, the first message of a conversation, while another process's transaction is opening
    that conversation's ticket (it holds the conversation's lock, as ingest takes it, and has inserted the
    ticket, not yet committed); the result once that transaction has committed, and the other's ticket."""
    async with rt.read() as conn:
        contact = (
            await conn.execute(select(tables.tickets.c.contact_id).where(tables.tickets.c.id == like))
        ).scalar_one()
    opened: list[int] = []

    async def open_elsewhere(tx: Tx) -> None:
        await claim_openings(tx.conn, [IngestItem(0, msg, "", "", contact_id=contact)])
        now = utcnow()
        row = {"subject": "elsewhere", "status": "new", "priority": "normal", "channel": msg.channel, "tags": []}
        opened.append(
            (
                await tx.conn.execute(
                    tables.tickets.insert()
                    .values(**row, thread_key=msg.thread_key, contact_id=contact, created_at=now, updated_at=now)
                    .returning(tables.tickets.c.id)
                )
            ).scalar_one()
        )

    [result] = await racing(rt, open_elsewhere, ingest_batch(rt, [msg]))
    assert not isinstance(result, Exception), result
    return result, opened[0]


async def test_a_conversations_first_messages_in_two_processes_open_one_ticket(rt: Runtime) -> None:
    """Two processes receive the first messages of one conversation at once (a chat's, by its thread key;
    an SMS contact's, by the contact): the second waits for the first to open the ticket, then joins it,
    rather than opening a second one. PostgreSQL only: SQLite runs one writer at a time."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    visitor = Identity(kind="webchat", value="visitor-1")
    chat = await ingest_one(rt, InboundMessage(channel="webchat", external_id="c0:1", sender=visitor, thread_key="c0"))
    result, theirs = await _opened_elsewhere(
        rt,
        chat.ticket_id,  # type: ignore[attr-defined]
        InboundMessage(channel="webchat", external_id="c1:1", sender=visitor, thread_key="c1", text="hi"),
    )
    assert result.ticket_id == theirs  # type: ignore[attr-defined]

    phone = Identity(kind="phone", value="+14155550122")
    sms = (await ingest_one(rt, InboundMessage(channel="sms", external_id="s0", sender=phone))).ticket_id  # type: ignore[attr-defined]
    await update_ticket(rt, ticket_id=sms, principal=ADMIN, data=TicketUpdate(status=TicketStatus.CLOSED))
    result, theirs = await _opened_elsewhere(
        rt, sms, InboundMessage(channel="sms", external_id="s1", sender=phone, text="back again")
    )
    assert result.ticket_id == theirs  # type: ignore[attr-defined]
    async with rt.read() as conn:
        open_tickets = (
            await conn.execute(
                select(func.count()).where(tables.tickets.c.status == "new", tables.tickets.c.id >= theirs)
            )
        ).scalar_one()
    assert open_tickets == 1


async def test_an_adapters_priority_and_skills_are_the_new_tickets_and_reach_work_already_waiting(
    rt: Runtime,
) -> None:
    """An adapter's routing asks (an IVR's ``set`` nodes): a new ticket takes the message's priority and skills;
    a later message of the same conversation, while nobody holds the ticket, sets its priority and adds its
    skills (with a ticket.updated event naming them)."""
    await make_queue(rt, "support", channels=["voice"])

    def call(ext: str, **asks: object) -> InboundMessage:
        return InboundMessage(
            channel="voice", external_id=ext, sender=Identity(kind="phone", value="+14155550142"), text="call",
            queue="support", **asks,  # type: ignore[arg-type]
        )  # fmt: skip

    first = await ingest_one(rt, call("CA1", priority="high", skills={"spanish": 2}))
    again = await ingest_one(rt, call("CA2", priority="urgent", skills={"billing": 1}))
    assert again.ticket_id == first.ticket_id  # type: ignore[attr-defined]
    async with rt.read() as conn:
        row = (await conn.execute(select(tables.tickets).where(tables.tickets.c.id == first.ticket_id))).one()  # type: ignore[attr-defined]
        updates = [e for e in await events_after(conn, 0) if e.type == "ticket.updated"]
    assert row.priority == "urgent" and row.skills == {"spanish": 2, "billing": 1}
    assert updates and updates[-1].payload["changes"] == ["priority", "skills"]


async def test_a_batch_where_a_customer_writes_twice_locks_its_tickets_as_it_threads_them(rt: Runtime) -> None:
    """A chat or webhook batch threads every message by its conversation key, several of them often by one
    (a customer who wrote twice): the tickets are locked by the read that threads them, with no second
    statement to lock them again, and each message lands in its conversation's ticket. PostgreSQL only:
    SQLite takes no row locks."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite takes no row locks")

    def chat(ext: str, who: str) -> InboundMessage:
        return InboundMessage(
            channel="whatsapp",
            external_id=ext,
            sender=Identity(kind="whatsapp", value=who),
            thread_key=f"wa:1:{who}",
            text="hi",
        )

    ann, bob = "+14155550120", "+14155550121"
    opened = await ingest_batch(rt, [chat("w1", ann), chat("w2", bob)])

    def locking_by_id(conn: object, statement: str, parameters: object) -> str | None:
        # Ingest's separate statement locking the touched tickets by id. With the fast paths off, the threading
        # read (which locks by key) and the routing pass's claims (SKIP LOCKED) are seen too: they are not it.
        by_id = "FOR UPDATE" in statement and "WHERE tickets.id" in statement and "SKIP LOCKED" not in statement
        return statement if by_id else None

    with executed(rt, locking_by_id) as locks:
        results = await ingest_batch(rt, [chat("w3", ann), chat("w4", ann), chat("w5", bob)])
    assert [r.ticket_id for r in results] == [opened[0].ticket_id, opened[0].ticket_id, opened[1].ticket_id]  # type: ignore[union-attr]
    assert all(r.created for r in results)  # type: ignore[union-attr]
    assert locks == []

"""Delivery receipts from chat widgets: committed together, each visitor's only for their own conversation."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select, update

from hub.db import utcnow
from hub.events import Event, EventType
from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.conftest import make_queue
from ticketing.ingest import ingest_batch
from ticketing.tables import messages as M


async def mark_delivered(rt: Runtime, *, thread_key: str, message_ids: list[int]) -> None:
    """A visitor's receipt, as the chat channel hands it to the core."""
    await rt.ports.conversations.mark_delivered(channel="webchat", thread_key=thread_key, message_ids=message_ids)


_events = Event.__table__  # type: ignore[attr-defined]


async def _conversations_with_replies(rt: Runtime) -> tuple[int, int]:
    """Two webchat conversations, c1 and c2, each with one agent message sent; their ids."""
    await make_queue(rt, "support", channels=["webchat"])
    results = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="webchat",
                external_id=f"{key}:1",
                sender=Identity(kind="webchat", value=f"visitor:{key}"),
                text="hello",
                thread_key=key,
            )
            for key in ("c1", "c2")
        ],
    )
    ids = []
    async with rt.write() as tx:
        for r in results:
            row = {
                "ticket_id": r.ticket_id,  # type: ignore[union-attr]
                "direction": "outbound",
                "channel": "webchat",
                "text": "an answer",
                "attachments": [],
                "meta": {},
                "delivery_status": "sent",
                "created_at": utcnow(),
            }
            ids.append((await tx.conn.execute(M.insert().values(**row).returning(M.c.id))).scalar_one())
    return ids[0], ids[1]


async def _statuses(rt: Runtime) -> dict[int, str]:
    async with rt.read() as conn:
        return {r.id: r.delivery_status for r in await conn.execute(select(M.c.id, M.c.delivery_status))}


async def test_receipts_of_many_visitors_commit_together_and_only_for_their_own_conversation(rt: Runtime) -> None:
    """A visitor's receipt for another conversation's message changes nothing; receipts sent at the same time
    by two visitors are committed in one transaction (their events share one append), one event per message."""
    o1, o2 = await _conversations_with_replies(rt)
    await mark_delivered(rt, thread_key="c2", message_ids=[o1])
    assert (await _statuses(rt))[o1] == "sent"
    await asyncio.gather(
        mark_delivered(rt, thread_key="c1", message_ids=[o1, o2]),
        mark_delivered(rt, thread_key="c2", message_ids=[o2]),
    )
    statuses = await _statuses(rt)
    assert (statuses[o1], statuses[o2]) == ("delivered", "delivered")
    async with rt.read() as conn:
        events = (
            await conn.execute(
                select(_events).where(_events.c.type == EventType.MESSAGE_STATUS).order_by(_events.c.seq)
            )
        ).all()
    assert [e.payload["message_id"] for e in events] == [o1, o2]
    assert events[0].created_at == events[1].created_at  # one transaction
    await rt.ports.conversations.mark_delivered(
        channel="webchat", thread_key="c1", message_ids=[o1]
    )  # a repeated receipt moves nothing
    async with rt.read() as conn:
        again = (await conn.execute(select(_events.c.seq).where(_events.c.type == EventType.MESSAGE_STATUS))).all()
    assert len(again) == 2


async def test_a_receipt_that_moves_nothing_does_not_take_the_writer(rt: Runtime, monkeypatch: Any) -> None:
    """A receipt repeated, or for a message already read, changes nothing and is answered from a read: the
    database's one writer, which customers' messages wait for, is not taken for it."""
    o1, o2 = await _conversations_with_replies(rt)
    await mark_delivered(rt, thread_key="c1", message_ids=[o1])
    async with rt.write() as tx:
        await tx.conn.execute(update(M).where(M.c.id == o2).values(delivery_status="read"))
    writes = 0
    begin = rt.db.begin

    def counted() -> Any:
        nonlocal writes
        writes += 1
        return begin()

    monkeypatch.setattr(rt.db, "begin", counted)
    await mark_delivered(rt, thread_key="c1", message_ids=[o1])
    await mark_delivered(rt, thread_key="c2", message_ids=[o2])
    assert writes == 0
    statuses = await _statuses(rt)
    assert (statuses[o1], statuses[o2]) == ("delivered", "read")

"""A call's row and the ticket's timeline change together, through the voice service itself (no HTTP): the
call answered by the agent who took it, and the call ended, are each written with the timeline's line in one
transaction, so a line that cannot be written leaves the call as it was and Twilio's retry (or the next take
of the ticket) writes both. Each webhook also writes one transaction, whatever it asks of the core."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, insert, select

from channels.twilio.rest import Rest
from channels.twilio.voice import CALLS, VoiceService
from hub.db import utcnow
from hub.messages import AlsoInTransaction, Identity, InboundMessage, IngestResult
from hub.runtime import Runtime
from tests.conftest import make_queue
from ticketing.ingest import ingest_batch
from ticketing.tables import messages

SID = "CA" + "7" * 32


class LineFails(Exception):
    """The timeline's line could not be written (after the channel's own change, in the same transaction)."""


class FailingOnce:
    """``rt.ports.tickets``, whose first ``add_timeline`` and ``call_answered`` fail inside their transaction,
    after running the channel's ``also`` there."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.failed: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def _failing(self, name: str, also: AlsoInTransaction | None) -> AlsoInTransaction | None:
        if name in self.failed:
            return also
        self.failed.add(name)

        async def then_fail(conn: Any) -> None:
            if also is not None:
                await also(conn)
            raise LineFails(name)

        return then_fail

    async def add_timeline(self, *, also: AlsoInTransaction | None = None, **kwargs: Any) -> int:
        return int(await self.real.add_timeline(also=self._failing("add_timeline", also), **kwargs))

    async def call_answered(self, *, also: AlsoInTransaction | None = None, **kwargs: Any) -> bool:
        return bool(await self.real.call_answered(also=self._failing("call_answered", also), **kwargs))


async def no_ingest(message: InboundMessage, *, also: Any = None) -> IngestResult:
    raise AssertionError("nothing is ingested here")


async def waiting_call(rt: Runtime, **row: Any) -> tuple[VoiceService, int]:
    """A call waiting in support on its ticket, and the voice service, whose timeline lines fail once."""
    await make_queue(rt, "support", ["voice"])
    [stored] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="voice",
                external_id=SID,
                sender=Identity(kind="phone", value="+14155550142"),
                text="Phone call",
                queue="support",
            )
        ],
    )
    assert not isinstance(stored, Exception)
    async with rt.write() as tx:
        await tx.conn.execute(
            insert(CALLS).values(
                call_sid=SID,
                caller="+14155550142",
                called="+14155550199",
                flow="demo",
                state={},
                ticket_id=stored.ticket_id,
                queue="support",
                status="in-progress",
                statuses_seen=[],
                created_at=utcnow(),
                updated_at=utcnow(),
                **row,
            )
        )
    rt.ports.tickets = FailingOnce(rt.ports.tickets)  # type: ignore[assignment]
    return VoiceService(rt, no_ingest, rt.settings, Rest(rt.settings)), stored.ticket_id


async def call_row(rt: Runtime) -> Any:
    async with rt.read() as conn:
        return (await conn.execute(select(CALLS).where(CALLS.c.call_sid == SID))).one()


async def lines(rt: Runtime, ticket_id: int, event: str) -> int:
    async with rt.read() as conn:
        notes = (
            await conn.execute(
                select(messages.c.meta).where(messages.c.ticket_id == ticket_id, messages.c.direction == "note")
            )
        ).scalars()
        return sum(1 for meta in notes if meta.get("call_event") == event)


async def test_a_call_ends_with_its_timeline_line_or_not_at_all(rt: Runtime) -> None:
    """The status callback that ends a call closes its row in the transaction of the line "Call ended": when
    the line fails, the call stays open (the callback fails, so Twilio sends it again), and the retry closes
    it with one line."""
    voice, ticket_id = await waiting_call(rt, answered_at=utcnow(), answered_by=None)
    ended = {"CallSid": SID, "CallStatus": "completed", "CallDuration": "42", "SequenceNumber": "3"}
    with pytest.raises(LineFails):
        await voice.status(ended)
    row = await call_row(rt)
    assert row.ended_at is None and row.status == "in-progress"
    assert await lines(rt, ticket_id, "ended") == 0
    await voice.status(ended)  # Twilio's retry
    row = await call_row(rt)
    assert row.ended_at is not None and row.duration_seconds == 42 and row.statuses_seen == ["completed:3"]
    assert await lines(rt, ticket_id, "ended") == 1
    await voice.status(ended)  # a retry of the answered callback changes nothing
    assert await lines(rt, ticket_id, "ended") == 1


async def test_an_abandoned_call_is_closed_with_its_timeline_line(rt: Runtime) -> None:
    """A caller who hangs up while waiting: the call's row is closed as abandoned with its line, or not at
    all; the retry abandons the ticket again harmlessly and writes both."""
    voice, ticket_id = await waiting_call(rt, waiting_since=utcnow())
    ended = {"CallSid": SID, "CallStatus": "completed", "CallDuration": "20", "SequenceNumber": "2"}
    with pytest.raises(LineFails):
        await voice.status(ended)
    row = await call_row(rt)
    assert row.ended_at is None and row.outcome is None and row.waiting_since is not None
    await voice.status(ended)
    row = await call_row(rt)
    assert row.ended_at is not None and row.outcome == "abandoned" and row.waiting_since is None
    assert await lines(rt, ticket_id, "abandoned") == 1


async def test_a_call_is_answered_with_its_timeline_line_or_not_at_all(rt: Runtime) -> None:
    """The agent who took a waiting call's ticket (answering in the console) is connected in the transaction
    that stamps the ticket answered and writes the line "Answered by": when the line fails, the call is still
    nobody's, and connecting again answers it once."""
    voice, ticket_id = await waiting_call(rt, waiting_since=utcnow())
    with pytest.raises(LineFails):
        await voice.connect(ticket_id, 1)
    row = await call_row(rt)
    assert row.answered_by is None and row.answered_at is None and row.waiting_since is not None
    assert await lines(rt, ticket_id, "answered") == 0
    assert await voice.connect(ticket_id, 1)
    row = await call_row(rt)
    assert row.answered_by == 1 and row.answered_at is not None and row.waiting_since is None
    assert await lines(rt, ticket_id, "answered") == 1
    assert not await voice.connect(ticket_id, 2)  # taken once
    async with rt.read() as conn:
        notes = (
            await conn.execute(select(func.count()).select_from(messages).where(messages.c.ticket_id == ticket_id))
        ).scalar()
    assert notes == 2  # the call's message and one line

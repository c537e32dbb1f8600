"""A chat's satisfaction rating: given once the conversation is solved, and never twice, even when two
ratings of the same ticket arrive together."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime, Tx
from tests.conftest import make_queue, racing
from ticketing.exceptions import AlreadyRated, NotRateable
from ticketing.ingest import ingest_batch
from ticketing.tables import tickets as T


async def rate(rt: Runtime, *, thread_key: str, ticket_id: int, rating: int, comment: str | None) -> None:
    """A visitor's rating, as the chat channel hands it to the core."""
    await rt.ports.conversations.rate(
        channel="webchat", thread_key=thread_key, ticket_id=ticket_id, rating=rating, comment=comment
    )


async def _chat(rt: Runtime) -> int:
    await make_queue(rt, "support", channels=["webchat"])
    sender = Identity(kind="webchat", value="visitor:c1")
    [r] = await ingest_batch(
        rt, [InboundMessage(channel="webchat", external_id="c1:1", sender=sender, text="hello", thread_key="c1")]
    )
    return r.ticket_id  # type: ignore[union-attr]


async def _solve(rt: Runtime, ticket_id: int) -> None:
    async with rt.write() as tx:
        await tx.conn.execute(update(T).where(T.c.id == ticket_id).values(status="solved"))


async def test_a_chat_is_rated_once_it_is_solved_and_only_once(rt: Runtime) -> None:
    tid = await _chat(rt)
    with pytest.raises(NotRateable):
        await rate(rt, thread_key="c1", ticket_id=tid, rating=5, comment=None)
    await _solve(rt, tid)
    await rt.ports.conversations.rate(
        channel="webchat", thread_key="c1", ticket_id=tid, rating=4, comment="  quick, thanks "
    )
    with pytest.raises(AlreadyRated):
        await rt.ports.conversations.rate(
            channel="webchat", thread_key="c1", ticket_id=tid, rating=1, comment="changed my mind"
        )
    async with rt.read() as conn:
        row = (await conn.execute(select(T.c.rating, T.c.rating_comment).where(T.c.id == tid))).one()
    assert tuple(row) == (4, "quick, thanks")


async def test_a_rating_racing_another_does_not_overwrite_it(rt: Runtime) -> None:
    """Two ratings of one ticket at once (a double click, two tabs): the one that commits first stands and
    the other is refused as already rated, rather than both reading "not rated yet" and the later one
    overwriting the first. PostgreSQL only: SQLite runs one writer at a time."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    tid = await _chat(rt)
    await _solve(rt, tid)

    async def first(tx: Tx) -> None:
        await tx.conn.execute(update(T).where(T.c.id == tid).values(rating=5, rating_comment="first"))

    with pytest.raises(AlreadyRated):
        await racing(
            rt,
            first,
            rate(rt, thread_key="c1", ticket_id=tid, rating=1, comment="second"),
        )
    async with rt.read() as conn:
        row = (await conn.execute(select(T.c.rating, T.c.rating_comment).where(T.c.id == tid))).one()
    assert tuple(row) == (5, "first")

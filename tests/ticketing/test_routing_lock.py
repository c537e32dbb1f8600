"""The routing lock on PostgreSQL: taken once per transaction, held until it ends, taken again by the next."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text

from hub.db import Database
from hub.runtime import Runtime
from tests.ticketing.routing_helpers import agent, arrive, message, queue, ticket, who
from ticketing import routing_service


@contextmanager
def _lock_statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The transaction of each statement taking the routing lock, while the block runs. The lock statement is
    sent to the driver directly (SQLAlchemy's statement events do not see it): ``routing_service.execute`` is
    watched."""
    seen: list[Any] = []
    original = routing_service.execute

    async def watched(conn: Any, statement: Any, params: Any = None) -> None:
        if statement is routing_service.ROUTING_LOCK_STATEMENT and params == {"k": routing_service.ROUTING_LOCK_KEY}:
            seen.append(conn.sync_connection.get_transaction())
        await original(conn, statement, params)

    with monkeypatch.context() as patch:
        patch.setattr(routing_service, "execute", watched)
        yield seen


async def _lock_free_elsewhere(url: str) -> bool:
    """Whether another connection could take the routing lock now (it lets go of it at once)."""
    other = Database(url)
    try:
        async with other.begin() as conn:
            stmt = text("SELECT pg_try_advisory_xact_lock(:k)")
            return bool((await conn.execute(stmt, {"k": routing_service.ROUTING_LOCK_KEY})).scalar_one())
    finally:
        await other.dispose()


async def test_routing_lock_is_taken_once_per_transaction_and_held_to_its_end(
    rt: Runtime, is_postgres: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Declining routes twice (the ticket, then the decliner's freed slot) after taking the lock itself: the
    transaction sends one lock statement, and meanwhile no other connection can take the lock; once it has
    ended the lock is free. The next transaction takes it again, once."""
    if not is_postgres:
        pytest.skip("SQLite's write lock is the routing lock")
    await queue(rt, "support")
    first = await agent(rt, "first", ["support"])
    second = await agent(rt, "second", ["support"])
    [t] = await arrive(rt, message(queue="support"))
    offered = (await ticket(rt, t)).offered_agent_id
    assert offered in (first, second)

    with _lock_statements(monkeypatch) as locks:
        async with rt.write() as tx:
            declining = tx.conn.sync_connection.get_transaction()
            back = await routing_service.return_offers(
                tx, [(t, offered)], event_type="offer.declined", reason="declined", now=routing_service.utcnow()
            )
            await routing_service.take_routing_lock(tx.conn)
            assert not await _lock_free_elsewhere(rt.settings.database_url)
            await routing_service.route_tickets(rt, tx, back, returned=back)
            await routing_service.route_tickets(rt, tx, agent_ids=[offered])
    assert [t for t in locks if t is declining] == [declining]
    assert await _lock_free_elsewhere(rt.settings.database_url)

    with _lock_statements(monkeypatch) as locks:
        await routing_service.decline_offer(rt, ticket_id=t, principal=who((await ticket(rt, t)).offered_agent_id))
    assert locks and len({id(t) for t in locks}) == len(locks)  # no transaction took it twice
    assert await _lock_free_elsewhere(rt.settings.database_url)

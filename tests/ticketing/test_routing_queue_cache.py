"""Routing keeps each runtime's parse of the queues and checks it against a fingerprint of the stored queues
on every pass: a change made anywhere (another process, another engine, plain SQL) is seen by the next
pass, and an unchanged queue set is not read again."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, null, select, text

from hub.db import Database, JSONType, utcnow
from hub.runtime import Runtime
from tests.ticketing.routing_helpers import SUPERVISOR, agent, arrive, executed, message, queue, ticket
from ticketing import routing_reads, tables
from ticketing.models import AgentStatus
from ticketing.routing_service import explain_routing, set_agent_status


def _closed_all_week() -> dict[str, Any]:
    today = utcnow().date()
    return {
        "timezone": "UTC",
        "weekly": {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        "holidays": [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)],
    }


async def _set_hours_elsewhere(url: str, queue_id: int, hours: dict[str, Any] | None) -> None:
    """Change a queue's hours as another process would: its own engine, plain SQL, no service function."""
    other = Database(url)
    try:
        async with other.begin() as conn:
            stmt = text("UPDATE queues SET hours = :hours WHERE id = :id").bindparams(
                bindparam("hours", type_=JSONType)
            )
            await conn.execute(stmt, {"hours": hours, "id": queue_id})
    finally:
        await other.dispose()


def _queue_reads(rt: Runtime) -> AbstractContextManager[list[str]]:
    """The statements that read the queues' rows, while the block runs."""

    def pick(conn: Any, statement: str, parameters: Any) -> str | None:
        return statement if statement.lstrip().startswith("SELECT queues.id") else None

    return executed(rt, pick)


async def _sweep_for(rt: Runtime, agent_id: int) -> None:
    """The agent goes away and comes back: a sweep for that agent's freed capacity."""
    await set_agent_status(rt, agent_id=agent_id, status=AgentStatus.AWAY)
    await set_agent_status(rt, agent_id=agent_id, status=AgentStatus.AVAILABLE)


async def test_a_queue_closed_and_reopened_by_another_process_is_followed_by_the_next_sweep(rt: Runtime) -> None:
    """This runtime has routed with the queue open (and kept its parse). Another process closes the queue
    with plain SQL: the next sweep for a free agent leaves the work waiting. It reopens it: the next sweep
    offers the work. A stale parse would offer in the first case and wait in the second."""
    q = await queue(rt, "support")
    solo = await agent(rt, "solo", ["support"], available=False)
    [t] = await arrive(rt, message(queue="support"))
    assert (await ticket(rt, t)).offered_agent_id is None  # nobody available; the queues are now cached

    await _set_hours_elsewhere(rt.settings.database_url, q, _closed_all_week())
    await _sweep_for(rt, solo)
    row = await ticket(rt, t)
    assert row.offered_agent_id is None
    explained = await explain_routing(rt, ticket_id=t, principal=SUPERVISOR)
    assert explained.now == "outside business hours"

    await _set_hours_elsewhere(rt.settings.database_url, q, None)
    await _sweep_for(rt, solo)
    assert (await ticket(rt, t)).offered_agent_id == solo


async def test_a_sweep_reads_the_queues_only_when_they_changed(rt: Runtime) -> None:
    """With the queues unchanged, a sweep for an agent's freed capacity takes them from the runtime's cache
    (their fingerprint matches); after a change by another writer it reads them once, then no more."""
    q = await queue(rt, "support")
    solo = await agent(rt, "solo", ["support"], available=False)
    [t] = await arrive(rt, message(queue="support"))
    with _queue_reads(rt) as reads:
        await _sweep_for(rt, solo)
    assert reads == [] and (await ticket(rt, t)).offered_agent_id == solo

    await _set_hours_elsewhere(rt.settings.database_url, q, _closed_all_week())
    with _queue_reads(rt) as reads:
        await _sweep_for(rt, solo)
        assert len(reads) == 1
        await _sweep_for(rt, solo)
    assert len(reads) == 1


async def test_the_queues_fingerprint_changes_with_every_column(rt: Runtime) -> None:
    """Each change below, to any column (NULL against empty, JSON null against SQL NULL, characters moved
    from one column to another), gives a fingerprint not seen before."""
    q = await queue(rt, "support")
    await queue(rt, "sales")
    changes: list[tuple[str, Any]] = [
        ("name", "support2"),
        ("description", "x"),
        ("channels", ["webchat"]),
        ("required_skills", {"billing": 2}),
        ("required_skills", {"billing": 3}),
        ("priority", 1),
        ("hours", null()),  # SQL NULL against the JSON null stored for no hours
        ("hours", {"timezone": "UTC", "weekly": {}}),
        ("sla_first_response_seconds", 60),
        ("sla_resolution_seconds", 600),
        ("overflow", [{"after_seconds": 30, "drop_skills": ["billing"]}]),
        ("max_wait_seconds", 90),
        ("overflow_queue", ""),  # empty against NULL
        ("overflow_queue", "sales"),
        ("overflow_queue", "sale"),
        ("description", "sx"),  # "sale", "sx" against "sales", "x": the same characters, shifted
        ("created_at", utcnow() - timedelta(days=1)),
    ]
    seen = {await _fingerprint(rt)}
    for column, value in changes:
        async with rt.db.begin() as conn:
            await conn.execute(tables.queues.update().where(tables.queues.c.id == q).values({column: value}))
        fingerprint = await _fingerprint(rt)
        assert fingerprint not in seen, (column, value)
        seen.add(fingerprint)


async def _fingerprint(rt: Runtime) -> str:
    async with rt.read() as conn:
        postgres = conn.dialect.name == "postgresql"
        return str((await conn.execute(select(routing_reads.QUEUES_FINGERPRINT[postgres]))).scalar_one())

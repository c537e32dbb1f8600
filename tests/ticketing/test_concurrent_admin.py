"""Admin writes that race on PostgreSQL. Names that must be unique (a queue's name, an agent's username, a
canned response's shortcut) are refused with a 409 Conflict when taken, including by a create running at
the same moment, which the look-up before the insert cannot see yet: that one must not become a 500. Two
edits of one agent's queues at once end with the second's queues."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from hub.db import utcnow
from hub.errors import Conflict
from hub.runtime import Runtime, Tx
from tests.conftest import make_agent, make_queue, racing
from ticketing import canned, tables
from ticketing.agents import create_agent, update_agent
from ticketing.canned import CannedCreate
from ticketing.models import AgentCreate, AgentUpdate, QueueCreate
from ticketing.queues import create_queue

# (table, its unique column, a row the other transaction inserts, the create under test)
Case = tuple[Any, str, dict[str, Any], Callable[[Runtime], Awaitable[Any]]]

CASES: dict[str, Case] = {
    "queue": (
        tables.queues,
        "name",
        {"name": "billing", "description": "", "channels": [], "required_skills": {}, "priority": 0},
        lambda rt: create_queue(rt, data=QueueCreate(name="billing")),
    ),
    "agent": (
        tables.agents,
        "username",
        {
            "username": "alice",
            "display_name": "Alice",
            "password_hash": "x",
            "role": "agent",
            "status": "offline",
            "status_changed_at": utcnow(),
            "skills": {},
            "capacity": {},
            "active": True,
        },
        lambda rt: create_agent(rt, data=AgentCreate(username="alice", password="long-enough-1")),
    ),
    "canned response": (
        canned.CR,
        "shortcut",
        {"shortcut": "hello", "title": "Hello", "text": "Hello!"},
        lambda rt: canned.create_canned(rt, data=CannedCreate(shortcut="hello", title="Hi", text="Hi!")),
    ),
}


async def count(rt: Runtime, table: Any, column: str, value: str) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).where(table.c[column] == value))).scalar_one())


@pytest.mark.parametrize("kind", list(CASES))
async def test_a_taken_name_is_a_conflict(rt: Runtime, kind: str) -> None:
    table, column, row, create = CASES[kind]
    await create(rt)
    with pytest.raises(Conflict):
        await create(rt)
    assert await count(rt, table, column, row[column]) == 1


@pytest.mark.parametrize("kind", list(CASES))
async def test_a_name_taken_by_a_create_at_the_same_moment_is_a_conflict(rt: Runtime, kind: str) -> None:
    """The other transaction has inserted the name and not committed: this create's look-up finds nothing,
    its insert waits on the unique index, and fails once the other commits. PostgreSQL only: SQLite runs one
    writing transaction at a time."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    table, column, row, create = CASES[kind]

    async def other(tx: Tx) -> None:
        await tx.conn.execute(table.insert().values(**row, created_at=utcnow()))

    with pytest.raises(Conflict):
        await racing(rt, other, create(rt))
    assert await count(rt, table, column, row[column]) == 1


async def test_two_edits_of_an_agents_queues_at_once_leave_the_second_edits_queues(rt: Runtime) -> None:
    """Another edit of the agent's queues has replaced them and not committed: this edit waits for it, then
    replaces them in turn (not a key violation, nor both sets). PostgreSQL only: SQLite runs one writer at a
    time."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    support, billing = (await make_queue(rt, "support")), (await make_queue(rt, "billing"))
    agent = await make_agent(rt, "alice", queues=["support"])

    async def other_edit(tx: Tx) -> None:
        await tx.conn.execute(select(tables.agents.c.id).where(tables.agents.c.id == agent).with_for_update())
        await tx.conn.execute(tables.agent_queues.delete().where(tables.agent_queues.c.agent_id == agent))
        await tx.conn.execute(
            tables.agent_queues.insert(), [{"agent_id": agent, "queue_id": q} for q in (support, billing)]
        )

    edited = await racing(rt, other_edit, update_agent(rt, agent_id=agent, data=AgentUpdate(queues=["billing"])))
    assert edited.queue_ids == [billing]
    async with rt.read() as conn:
        rows = (
            await conn.execute(select(tables.agent_queues.c.queue_id).where(tables.agent_queues.c.agent_id == agent))
        ).scalars()
        assert list(rows) == [billing]

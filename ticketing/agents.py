"""Agent accounts: creating, changing and listing agents, and the agent behind a login or a token.

A change made by a person (``actor``: the API's caller) is written to the audit log (``hub.audit``) in its own
transaction; seeds, the CLI and a rules file read at start pass no actor and are not audited."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import audit
from hub.auth import hash_password
from hub.db import taken_as, utcnow
from hub.events import NewEvent
from hub.principals import Principal, forget_principal
from hub.runtime import Runtime
from ticketing.exceptions import AgentNotFound, QueueNotFound, UsernameTaken
from ticketing.models import AgentCreate, AgentRead, AgentStatus, AgentUpdate
from ticketing.tables import agent_queues, agents, queues


async def agent_read(conn: AsyncConnection, row: Any) -> AgentRead:
    qids = [
        q for (q,) in (await conn.execute(select(agent_queues.c.queue_id).where(agent_queues.c.agent_id == row.id)))
    ]
    return AgentRead.model_validate({**row._mapping, "queue_ids": sorted(qids)})


async def get_agent(rt: Runtime, *, agent_id: int) -> AgentRead:
    """One agent with its queues."""
    async with rt.read() as conn:
        row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).first()
        if row is None:
            raise AgentNotFound(f"agent {agent_id} does not exist")
        return await agent_read(conn, row)


async def load_principal(rt: Runtime, *, agent_id: int) -> tuple[Principal, str] | None:
    """The active agent behind a token, with its password hash (to check the token's fingerprint)."""
    async with rt.read() as conn:
        row = (await conn.execute(select(agents).where(agents.c.id == agent_id, agents.c.active.is_(True)))).first()
        if row is None:
            return None
        qids = frozenset(
            q for (q,) in await conn.execute(select(agent_queues.c.queue_id).where(agent_queues.c.agent_id == agent_id))
        )
    principal = Principal(
        agent_id=row.id,
        username=row.username,
        display_name=row.display_name or row.username,
        role=row.role,
        queue_ids=qids,
    )
    return principal, row.password_hash


async def agent_for_login(rt: Runtime, *, username: str) -> Any:
    async with rt.read() as conn:
        return (
            await conn.execute(select(agents).where(agents.c.username == username, agents.c.active.is_(True)))
        ).first()


async def _queue_ids_by_name(conn: AsyncConnection, names: Sequence[str]) -> list[int]:
    if not names:
        return []
    found = await conn.execute(select(queues.c.name, queues.c.id).where(queues.c.name.in_(list(names))))
    rows: dict[str, int] = {name: id_ for name, id_ in found}
    missing = [n for n in names if n not in rows]
    if missing:
        raise QueueNotFound(f"no queue named {', '.join(missing)}")
    return [rows[n] for n in names]


async def create_agent(rt: Runtime, *, data: AgentCreate, actor: Principal | None = None) -> AgentRead:
    """A new agent, supervisor or admin, member of the named queues."""
    pw_hash = hash_password(data.password)
    async with rt.write() as tx:
        taken = UsernameTaken(f"username {data.username!r} is taken")
        exists = (await tx.conn.execute(select(agents.c.id).where(agents.c.username == data.username))).first()
        if exists:
            raise taken
        qids = await _queue_ids_by_name(tx.conn, data.queues)
        with taken_as(taken):
            inserted = await tx.conn.execute(
                agents.insert()
                .values(
                    username=data.username,
                    display_name=data.display_name or data.username,
                    password_hash=pw_hash,
                    role=data.role.value,
                    status=AgentStatus.OFFLINE,
                    status_changed_at=utcnow(),
                    skills=data.skills,
                    capacity=data.capacity,
                    active=True,
                    created_at=utcnow(),
                )
                .returning(*agents.c)
            )
        row = inserted.one()
        if qids:
            await tx.conn.execute(agent_queues.insert(), [{"agent_id": row.id, "queue_id": q} for q in qids])
        result = await agent_read(tx.conn, row)
        if actor is not None:
            await audit.record(
                tx.conn,
                actor=actor,
                action="agent.create",
                target=f"agent:{row.id}",
                detail=data.model_dump(mode="json", exclude={"password"}),
            )
        tx.emit(NewEvent(type="agent.created", payload={"agent": _public_agent(result)}, agent_id=row.id))
    return result


def _public_agent(agent: AgentRead) -> dict[str, Any]:
    return agent.model_dump(mode="json")


async def update_agent(rt: Runtime, *, agent_id: int, data: AgentUpdate, actor: Principal | None = None) -> AgentRead:
    values: dict[str, Any] = data.model_dump(exclude_unset=True, exclude={"queues", "password"})
    if "role" in values and values["role"] is not None:
        values["role"] = values["role"].value
    if data.password:
        values["password_hash"] = hash_password(data.password)
    async with rt.write() as tx:
        old = await _audited_state(tx.conn, agent_id)
        if values:
            done = await tx.conn.execute(update(agents).where(agents.c.id == agent_id).values(**values))
            if not done.rowcount:
                raise AgentNotFound(f"agent {agent_id} does not exist")
        # Locked (PostgreSQL): two edits of one agent's queues at once would each delete the memberships they
        # saw and insert their own, and the second fail on the key or leave both sets.
        row = (await tx.conn.execute(select(agents).where(agents.c.id == agent_id).with_for_update())).first()
        if row is None:
            raise AgentNotFound(f"agent {agent_id} does not exist")
        if data.queues is not None:
            qids = await _queue_ids_by_name(tx.conn, data.queues)
            await tx.conn.execute(agent_queues.delete().where(agent_queues.c.agent_id == agent_id))
            if qids:
                await tx.conn.execute(agent_queues.insert(), [{"agent_id": agent_id, "queue_id": q} for q in qids])
        result = await agent_read(tx.conn, row)
        if actor is not None:
            await _audit_update(tx.conn, actor, old, result, password_reset=bool(data.password))
        tx.emit(NewEvent(type="agent.updated", payload={"agent": _public_agent(result)}, agent_id=agent_id))
        # Before the caller hears of the change: no request of this process authenticates as the old agent.
        tx.after_commit.append(lambda: forget_principal(rt, agent_id))
    return result


_AUDITED = ("display_name", "role", "skills", "capacity", "active", "queue_ids")


async def _audited_state(conn: AsyncConnection, agent_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(agents).where(agents.c.id == agent_id))).first()
    return None if row is None else (await agent_read(conn, row)).model_dump(mode="json", include=set(_AUDITED))


async def _audit_update(
    conn: AsyncConnection, actor: Principal | None, old: dict[str, Any] | None, new: AgentRead, *, password_reset: bool
) -> None:
    """One entry naming what changed (old and new values; a password only as reset)."""
    after = new.model_dump(mode="json", include=set(_AUDITED))
    changed = [k for k in _AUDITED if old is None or old.get(k) != after[k]]
    detail: dict[str, Any] = {
        "username": new.username,
        "before": {k: old.get(k) for k in changed} if old else {},
        "after": {k: after[k] for k in changed},
    }
    if password_reset:
        detail["password"] = "reset"
    if changed == ["active"]:
        action = "agent.reactivate" if new.active else "agent.deactivate"
    elif password_reset and not changed:
        action = "agent.password_reset"
    else:
        action = "agent.update"
    await audit.record(conn, actor=actor, action=action, target=f"agent:{new.id}", detail=detail)


async def list_agents(rt: Runtime) -> list[AgentRead]:
    async with rt.read() as conn:
        rows = (await conn.execute(select(agents).order_by(agents.c.id))).all()
        members = (await conn.execute(select(agent_queues.c.agent_id, agent_queues.c.queue_id))).all()
    by_agent: dict[int, list[int]] = {}
    for a, q in members:
        by_agent.setdefault(a, []).append(q)
    return [AgentRead.model_validate({**r._mapping, "queue_ids": sorted(by_agent.get(r.id, []))}) for r in rows]

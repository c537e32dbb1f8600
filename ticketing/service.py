"""Ticketing actions. Every state change goes through one function here, inside ``Runtime.write()``,
which commits and then publishes the events the change produced. Views never write rows themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.auth import hash_password
from hub.db import utcnow
from hub.events import EventType, NewEvent
from hub.messages import OutboundMessage
from hub.runtime import Runtime, Tx
from ticketing import routing
from ticketing.exceptions import (
    AgentNotFound,
    ContactNotFound,
    NoRecipient,
    NotYourTicket,
    OfferNotPending,
    QueueNameTaken,
    QueueNotFound,
    TicketNotFound,
    UsernameTaken,
)
from ticketing.models import (
    OPEN_STATUSES,
    Agent,
    AgentCreate,
    AgentQueue,
    AgentRead,
    AgentStatus,
    AgentUpdate,
    Contact,
    ContactHistory,
    ContactIdentity,
    ContactRead,
    DeliveryStatus,
    Direction,
    IdentityRead,
    Message,
    MessageRead,
    Outbox,
    Queue,
    QueueCreate,
    QueueRead,
    Ticket,
    TicketDetail,
    TicketPage,
    TicketRead,
    TicketStatus,
    TicketUpdate,
)
from ticketing.permissions import Principal

T = Ticket.__table__  # type: ignore[attr-defined]
M = Message.__table__  # type: ignore[attr-defined]
C = Contact.__table__  # type: ignore[attr-defined]
I = ContactIdentity.__table__  # type: ignore[attr-defined]  # noqa: E741
Q = Queue.__table__  # type: ignore[attr-defined]
A = Agent.__table__  # type: ignore[attr-defined]
AQ = AgentQueue.__table__  # type: ignore[attr-defined]
O = Outbox.__table__  # type: ignore[attr-defined]  # noqa: E741

_OPEN = [s.value for s in OPEN_STATUSES]
EVENT_TEXT_LIMIT = 10_000


# --- event payloads ---------------------------------------------------------------------------------------


def ticket_summary(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    return {
        "id": m["id"],
        "number": f"#{m['id']}",
        "subject": m["subject"],
        "status": m["status"],
        "priority": m["priority"],
        "channel": m["channel"],
        "contact_id": m["contact_id"],
        "queue_id": m["queue_id"],
        "assignee_id": m["assignee_id"],
        "offered_agent_id": m["offered_agent_id"],
        "offer_expires_at": _iso(m["offer_expires_at"]),
        "tags": list(m["tags"] or []),
        "created_at": _iso(m["created_at"]),
        "updated_at": _iso(m["updated_at"]),
        "last_message_at": _iso(m["last_message_at"]),
    }


def message_summary(m: dict[str, Any]) -> dict[str, Any]:
    text = m.get("text") or ""
    return {
        "id": m["id"],
        "ticket_id": m["ticket_id"],
        "direction": m["direction"],
        "channel": m["channel"],
        "author_agent_id": m.get("author_agent_id"),
        "sender": m.get("sender"),
        "subject": m.get("subject"),
        "text": text[:EVENT_TEXT_LIMIT],
        "truncated": len(text) > EVENT_TEXT_LIMIT,
        "attachments": m.get("attachments") or [],
        "delivery_status": m.get("delivery_status"),
        "created_at": _iso(m.get("created_at")),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def ticket_event(type_: str, row: Any, **extra: Any) -> NewEvent:
    m = row._mapping if hasattr(row, "_mapping") else row
    return NewEvent(
        type=type_,
        payload={"ticket": ticket_summary(m), **extra},
        ticket_id=m["id"],
        queue_id=m["queue_id"],
        agent_id=m["assignee_id"] or m["offered_agent_id"],
    )


# --- reading ----------------------------------------------------------------------------------------------


async def _ticket_row(conn: AsyncConnection, ticket_id: int, *, lock: bool = False) -> Any:
    stmt = select(T).where(T.c.id == ticket_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    return row


def _check_visible(principal: Principal, row: Any) -> None:
    if not principal.can_see_ticket(
        queue_id=row.queue_id, assignee_id=row.assignee_id, offered_agent_id=row.offered_agent_id
    ):
        raise NotYourTicket(f"ticket {row.id} is not in your queues")


async def get_ticket(rt: Runtime, *, ticket_id: int, principal: Principal) -> TicketDetail:
    """A ticket with its contact and every message, oldest first."""
    async with rt.read() as conn:
        row = await _ticket_row(conn, ticket_id)
        _check_visible(principal, row)
        messages = (await conn.execute(select(M).where(M.c.ticket_id == ticket_id).order_by(M.c.id))).all()
        contact = await _contact_read(conn, row.contact_id)
    return TicketDetail.model_validate(
        {**row._mapping, "contact": contact, "messages": [MessageRead.model_validate(m._mapping) for m in messages]}
    )


async def list_tickets(
    rt: Runtime,
    *,
    principal: Principal,
    status: Sequence[str] = (),
    queue_id: int | None = None,
    assignee_id: int | None = None,
    channel: str | None = None,
    contact_id: int | None = None,
    mine: bool = False,
    offset: int = 0,
    limit: int = 50,
) -> TicketPage:
    """Tickets the principal may see, newest activity first."""
    conds = []
    if not principal.sees_all:
        conds.append(
            or_(
                T.c.queue_id.in_(principal.queue_ids or {-1}),
                T.c.assignee_id == principal.agent_id,
                T.c.offered_agent_id == principal.agent_id,
            )
        )
    if status:
        conds.append(T.c.status.in_(list(status)))
    if queue_id is not None:
        conds.append(T.c.queue_id == queue_id)
    if assignee_id is not None:
        conds.append(T.c.assignee_id == assignee_id)
    if mine:
        conds.append(T.c.assignee_id == principal.agent_id)
    if channel:
        conds.append(T.c.channel == channel)
    if contact_id is not None:
        conds.append(T.c.contact_id == contact_id)
    where = and_(*conds) if conds else True
    async with rt.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(T).where(where))).scalar_one()
        rows = (
            await conn.execute(
                select(T)
                .where(where)
                .order_by(func.coalesce(T.c.last_message_at, T.c.created_at).desc(), T.c.id.desc())
                .offset(offset)
                .limit(limit)
            )
        ).all()
    return TicketPage(
        items=[TicketRead.model_validate(r._mapping) for r in rows], total=total, offset=offset, limit=limit
    )


async def _contact_read(conn: AsyncConnection, contact_id: int) -> ContactRead:
    row = (await conn.execute(select(C).where(C.c.id == contact_id))).first()
    if row is None:
        raise ContactNotFound(f"contact {contact_id} does not exist")
    idents = (
        await conn.execute(select(I.c.kind, I.c.value).where(I.c.contact_id == contact_id).order_by(I.c.id))
    ).all()
    return ContactRead.model_validate(
        {**row._mapping, "identities": [IdentityRead(kind=k, value=v) for k, v in idents]}
    )


async def get_contact_history(rt: Runtime, *, contact_id: int, principal: Principal) -> ContactHistory:
    """A contact with every ticket and message across all channels (the tickets the principal may see)."""
    async with rt.read() as conn:
        contact = await _contact_read(conn, contact_id)
        rows = (await conn.execute(select(T).where(T.c.contact_id == contact_id).order_by(T.c.id))).all()
        visible = [
            r
            for r in rows
            if principal.can_see_ticket(
                queue_id=r.queue_id, assignee_id=r.assignee_id, offered_agent_id=r.offered_agent_id
            )
        ]
        if rows and not visible:
            raise NotYourTicket(f"contact {contact_id} has no tickets in your queues")
        ids = [r.id for r in visible]
        msgs = (await conn.execute(select(M).where(M.c.ticket_id.in_(ids)).order_by(M.c.id))).all() if ids else []
    by_ticket: dict[int, list[MessageRead]] = {}
    for m in msgs:
        by_ticket.setdefault(m.ticket_id, []).append(MessageRead.model_validate(m._mapping))
    tickets = [
        TicketDetail.model_validate({**r._mapping, "contact": contact, "messages": by_ticket.get(r.id, [])})
        for r in visible
    ]
    return ContactHistory.model_validate({**contact.model_dump(), "tickets": tickets})


# --- routing I/O --------------------------------------------------------------------------------------------


async def _take_routing_lock(conn: AsyncConnection) -> None:
    # One routing decision at a time across processes on PostgreSQL, so two processes never offer the
    # same agent past capacity. (SQLite has one writer anyway.)
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x5B0A_4D02})


async def _agent_slots(conn: AsyncConnection, queue_ids: Iterable[int]) -> dict[int, routing.AgentSlot]:
    queue_ids = set(queue_ids)
    if not queue_ids:
        return {}
    members = (
        await conn.execute(
            select(A.c.id, A.c.capacity, A.c.last_assigned_at, AQ.c.queue_id)
            .join(AQ, AQ.c.agent_id == A.c.id)
            .where(A.c.status == AgentStatus.AVAILABLE, A.c.active.is_(True))
        )
    ).all()
    slots: dict[int, routing.AgentSlot] = {}
    for agent_id, capacity, last_assigned_at, queue_id in members:
        slot = slots.setdefault(
            agent_id,
            routing.AgentSlot(
                agent_id=agent_id,
                queue_ids=frozenset(),
                capacity=dict(capacity or {}),
                last_assigned_at=last_assigned_at,
            ),
        )
        slot.queue_ids = slot.queue_ids | {queue_id}
    slots = {k: v for k, v in slots.items() if v.queue_ids & queue_ids}
    if not slots:
        return {}
    holder = func.coalesce(T.c.assignee_id, T.c.offered_agent_id)
    loads = (
        await conn.execute(
            select(holder, T.c.channel, func.count())
            .where(T.c.status.in_(_OPEN), holder.in_(list(slots)))
            .group_by(holder, T.c.channel)
        )
    ).all()
    for agent_id, channel, count in loads:
        slots[agent_id].load[channel] = count
    return slots


async def route_tickets(
    rt: Runtime, tx: Tx, ticket_ids: Sequence[int], *, exclude: dict[int, set[int]] | None = None
) -> None:
    """Offer each waiting ticket (unassigned, no pending offer) to the best eligible agent, oldest first."""
    if not ticket_ids:
        return
    conn = tx.conn
    await _take_routing_lock(conn)
    rows = (
        await conn.execute(
            select(T)
            .where(
                T.c.id.in_(list(ticket_ids)),
                T.c.assignee_id.is_(None),
                T.c.offered_agent_id.is_(None),
                T.c.status.in_(_OPEN),
            )
            .order_by(T.c.id)
        )
    ).all()
    if not rows:
        return
    slots = await _agent_slots(conn, {r.queue_id for r in rows if r.queue_id is not None})
    if not slots:
        return
    contact_ids = {r.contact_id for r in rows}
    previous = dict(
        (
            await conn.execute(
                select(T.c.contact_id, T.c.assignee_id)
                .where(T.c.contact_id.in_(contact_ids), T.c.assignee_id.is_not(None))
                .order_by(T.c.id)
            )
        ).all()
    )
    now = utcnow()
    expires = now + timedelta(seconds=rt.settings.offer_timeout_seconds)
    for r in rows:
        item = routing.WorkItem(
            ticket_id=r.id,
            queue_id=r.queue_id,
            channel=r.channel,
            previous_agent_id=previous.get(r.contact_id),
            excluded=frozenset((exclude or {}).get(r.id, set())),
        )
        chosen = routing.choose_agent(item, slots.values())
        if chosen is None:
            continue
        chosen.take(r.channel, now)
        updated = (
            await conn.execute(
                update(T)
                .where(T.c.id == r.id, T.c.offered_agent_id.is_(None), T.c.assignee_id.is_(None))
                .values(offered_agent_id=chosen.agent_id, offer_expires_at=expires, updated_at=now)
                .returning(*T.c)
            )
        ).first()
        if updated is not None:
            tx.emit(ticket_event(EventType.TICKET_OFFERED, updated, offer_timeout=rt.settings.offer_timeout_seconds))


async def waiting_ticket_ids(conn: AsyncConnection, queue_ids: Iterable[int], limit: int = 200) -> list[int]:
    queue_ids = list(queue_ids)
    if not queue_ids:
        return []
    rows = await conn.execute(
        select(T.c.id)
        .where(
            T.c.queue_id.in_(queue_ids),
            T.c.assignee_id.is_(None),
            T.c.offered_agent_id.is_(None),
            T.c.status.in_(_OPEN),
        )
        .order_by(T.c.id)
        .limit(limit)
    )
    return [r[0] for r in rows]


async def accept_offer(rt: Runtime, *, ticket_id: int, principal: Principal) -> TicketRead:
    """The offered agent takes the ticket. Atomic: a ticket is never assigned twice."""
    now = utcnow()
    async with rt.write() as tx:
        row = (
            await tx.conn.execute(
                update(T)
                .where(T.c.id == ticket_id, T.c.offered_agent_id == principal.agent_id, T.c.assignee_id.is_(None))
                .values(
                    assignee_id=principal.agent_id,
                    offered_agent_id=None,
                    offer_expires_at=None,
                    status=TicketStatus.OPEN,
                    updated_at=now,
                )
                .returning(*T.c)
            )
        ).first()
        if row is None:
            await _ticket_row(tx.conn, ticket_id)  # 404 when it does not exist
            raise OfferNotPending(f"ticket {ticket_id} is not offered to you (it expired or was taken)")
        await tx.conn.execute(update(A).where(A.c.id == principal.agent_id).values(last_assigned_at=now))
        tx.emit(ticket_event(EventType.TICKET_ASSIGNED, row, by=principal.agent_id))
    return TicketRead.model_validate(row._mapping)


async def _return_offer(rt: Runtime, tx: Tx, row: Any, event_type: str) -> None:
    tx.emit(
        NewEvent(
            type=event_type,
            payload={"ticket_id": row.id, "agent_id": row.offered_agent_id},
            ticket_id=row.id,
            queue_id=row.queue_id,
            agent_id=row.offered_agent_id,
        )
    )
    await route_tickets(rt, tx, [row.id], exclude={row.id: {row.offered_agent_id}})


async def decline_offer(rt: Runtime, *, ticket_id: int, principal: Principal) -> None:
    """The offered agent passes; the offer moves on to the next eligible agent."""
    async with rt.write() as tx:
        row = (
            await tx.conn.execute(
                update(T)
                .where(T.c.id == ticket_id, T.c.offered_agent_id == principal.agent_id)
                .values(offered_agent_id=None, offer_expires_at=None, updated_at=utcnow())
                .returning(T.c.id, T.c.queue_id)
            )
        ).first()
        if row is None:
            await _ticket_row(tx.conn, ticket_id)
            raise OfferNotPending(f"ticket {ticket_id} is not offered to you")
        tx.emit(
            NewEvent(
                type=EventType.OFFER_DECLINED,
                payload={"ticket_id": ticket_id, "agent_id": principal.agent_id},
                ticket_id=ticket_id,
                queue_id=row.queue_id,
                agent_id=principal.agent_id,
            )
        )
        await route_tickets(rt, tx, [ticket_id], exclude={ticket_id: {principal.agent_id}})


async def expire_offers(rt: Runtime) -> int:
    """Move offers past their deadline on to the next agent; the number expired."""
    now = utcnow()
    async with rt.write() as tx:
        rows = (
            await tx.conn.execute(
                select(T.c.id, T.c.queue_id, T.c.offered_agent_id).where(
                    T.c.offered_agent_id.is_not(None), T.c.offer_expires_at < now
                )
            )
        ).all()
        exclude: dict[int, set[int]] = {}
        for r in rows:
            done = await tx.conn.execute(
                update(T)
                .where(T.c.id == r.id, T.c.offered_agent_id == r.offered_agent_id)
                .values(offered_agent_id=None, offer_expires_at=None)
            )
            if done.rowcount:
                exclude[r.id] = {r.offered_agent_id}
                tx.emit(
                    NewEvent(
                        type=EventType.OFFER_EXPIRED,
                        payload={"ticket_id": r.id, "agent_id": r.offered_agent_id},
                        ticket_id=r.id,
                        queue_id=r.queue_id,
                        agent_id=r.offered_agent_id,
                    )
                )
        await route_tickets(rt, tx, list(exclude), exclude=exclude)
    return len(exclude)


# --- agents -------------------------------------------------------------------------------------------------


async def _agent_read(conn: AsyncConnection, row: Any) -> AgentRead:
    qids = [q for (q,) in (await conn.execute(select(AQ.c.queue_id).where(AQ.c.agent_id == row.id)))]
    return AgentRead.model_validate({**row._mapping, "queue_ids": sorted(qids)})


async def load_principal(rt: Runtime, *, agent_id: int) -> tuple[Principal, str] | None:
    """The active agent behind a token, with its password hash (to check the token's fingerprint)."""
    async with rt.read() as conn:
        row = (await conn.execute(select(A).where(A.c.id == agent_id, A.c.active.is_(True)))).first()
        if row is None:
            return None
        qids = frozenset(q for (q,) in await conn.execute(select(AQ.c.queue_id).where(AQ.c.agent_id == agent_id)))
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
        return (await conn.execute(select(A).where(A.c.username == username, A.c.active.is_(True)))).first()


async def _queue_ids_by_name(conn: AsyncConnection, names: Sequence[str]) -> list[int]:
    if not names:
        return []
    rows = dict((await conn.execute(select(Q.c.name, Q.c.id).where(Q.c.name.in_(list(names))))).all())
    missing = [n for n in names if n not in rows]
    if missing:
        raise QueueNotFound(f"no queue named {', '.join(missing)}")
    return [rows[n] for n in names]


async def create_agent(rt: Runtime, *, data: AgentCreate) -> AgentRead:
    """A new agent, supervisor or admin, member of the named queues."""
    pw_hash = hash_password(data.password)
    async with rt.write() as tx:
        exists = (await tx.conn.execute(select(A.c.id).where(A.c.username == data.username))).first()
        if exists:
            raise UsernameTaken(f"username {data.username!r} is taken")
        qids = await _queue_ids_by_name(tx.conn, data.queues)
        row = (
            await tx.conn.execute(
                A.insert()
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
                .returning(*A.c)
            )
        ).one()
        if qids:
            await tx.conn.execute(AQ.insert(), [{"agent_id": row.id, "queue_id": q} for q in qids])
        result = await _agent_read(tx.conn, row)
        tx.emit(NewEvent(type="agent.created", payload={"agent": _public_agent(result)}, agent_id=row.id))
    return result


def _public_agent(agent: AgentRead) -> dict[str, Any]:
    return agent.model_dump(mode="json")


async def update_agent(rt: Runtime, *, agent_id: int, data: AgentUpdate) -> AgentRead:
    values: dict[str, Any] = data.model_dump(exclude_unset=True, exclude={"queues", "password"})
    if "role" in values and values["role"] is not None:
        values["role"] = values["role"].value
    if data.password:
        values["password_hash"] = hash_password(data.password)
    async with rt.write() as tx:
        if values:
            done = await tx.conn.execute(update(A).where(A.c.id == agent_id).values(**values))
            if not done.rowcount:
                raise AgentNotFound(f"agent {agent_id} does not exist")
        row = (await tx.conn.execute(select(A).where(A.c.id == agent_id))).first()
        if row is None:
            raise AgentNotFound(f"agent {agent_id} does not exist")
        if data.queues is not None:
            qids = await _queue_ids_by_name(tx.conn, data.queues)
            await tx.conn.execute(AQ.delete().where(AQ.c.agent_id == agent_id))
            if qids:
                await tx.conn.execute(AQ.insert(), [{"agent_id": agent_id, "queue_id": q} for q in qids])
        result = await _agent_read(tx.conn, row)
        tx.emit(NewEvent(type="agent.updated", payload={"agent": _public_agent(result)}, agent_id=agent_id))
    return result


async def list_agents(rt: Runtime) -> list[AgentRead]:
    async with rt.read() as conn:
        rows = (await conn.execute(select(A).order_by(A.c.id))).all()
        members = (await conn.execute(select(AQ.c.agent_id, AQ.c.queue_id))).all()
    by_agent: dict[int, list[int]] = {}
    for a, q in members:
        by_agent.setdefault(a, []).append(q)
    return [AgentRead.model_validate({**r._mapping, "queue_ids": sorted(by_agent.get(r.id, []))}) for r in rows]


async def set_agent_status(rt: Runtime, *, agent_id: int, status: AgentStatus) -> AgentRead:
    """Change an agent's status. Going available pulls waiting work; leaving returns pending offers."""
    now = utcnow()
    async with rt.write() as tx:
        row = (
            await tx.conn.execute(
                update(A).where(A.c.id == agent_id).values(status=status.value, status_changed_at=now).returning(*A.c)
            )
        ).first()
        if row is None:
            raise AgentNotFound(f"agent {agent_id} does not exist")
        agent = await _agent_read(tx.conn, row)
        tx.emit(
            NewEvent(
                type=EventType.AGENT_STATUS, payload={"agent_id": agent_id, "status": status.value}, agent_id=agent_id
            )
        )
        if status is AgentStatus.AVAILABLE:
            await route_tickets(rt, tx, await waiting_ticket_ids(tx.conn, agent.queue_ids))
        else:
            offered = (
                await tx.conn.execute(
                    update(T)
                    .where(T.c.offered_agent_id == agent_id)
                    .values(offered_agent_id=None, offer_expires_at=None)
                    .returning(T.c.id, T.c.queue_id)
                )
            ).all()
            for r in offered:
                tx.emit(
                    NewEvent(
                        type=EventType.OFFER_EXPIRED,
                        payload={"ticket_id": r.id, "agent_id": agent_id, "reason": status.value},
                        ticket_id=r.id,
                        queue_id=r.queue_id,
                        agent_id=agent_id,
                    )
                )
            await route_tickets(rt, tx, [r.id for r in offered], exclude={r.id: {agent_id} for r in offered})
    return agent


# --- queues ----------------------------------------------------------------------------------------------------


async def create_queue(rt: Runtime, *, data: QueueCreate) -> QueueRead:
    async with rt.write() as tx:
        if (await tx.conn.execute(select(Q.c.id).where(Q.c.name == data.name))).first():
            raise QueueNameTaken(f"a queue named {data.name!r} exists")
        row = (await tx.conn.execute(Q.insert().values(**data.model_dump(), created_at=utcnow()).returning(*Q.c))).one()
        tx.emit(NewEvent(type="queue.created", payload={"queue": {"id": row.id, "name": row.name}}, queue_id=row.id))
    return QueueRead.model_validate(row._mapping)


async def list_queues(rt: Runtime) -> list[QueueRead]:
    async with rt.read() as conn:
        rows = (await conn.execute(select(Q).order_by(Q.c.id))).all()
    return [QueueRead.model_validate(r._mapping) for r in rows]


# --- agent actions on tickets ------------------------------------------------------------------------------------


def new_message_id(domain: str) -> str:
    return f"<{uuid.uuid4().hex}@{domain}>"


async def reply(rt: Runtime, *, ticket_id: int, principal: Principal, text: str) -> MessageRead:
    """An agent's reply: the message and its outbox row commit together; the dispatcher delivers it."""
    now = utcnow()
    async with rt.write() as tx:
        row = await _ticket_row(tx.conn, ticket_id, lock=True)
        _check_visible(principal, row)
        last_in = (
            await tx.conn.execute(
                select(M)
                .where(M.c.ticket_id == ticket_id, M.c.direction == Direction.INBOUND)
                .order_by(M.c.id.desc())
                .limit(1)
            )
        ).first()
        if last_in is None or not last_in.sender:
            raise NoRecipient(f"ticket {ticket_id} has no inbound message to reply to")
        # A conversation moved to another channel (a chat left for email) is answered there.
        channel = row.reply_channel or row.channel
        recipient = row.reply_to or last_in.sender
        moved = channel != last_in.channel
        external_id = new_message_id(rt.settings.mail_domain) if channel == "email" else None
        subject = _reply_subject(row.subject, ticket_id) if channel == "email" else None
        references = (
            [*(last_in.meta or {}).get("references", []), last_in.external_id]
            if last_in.external_id and not moved
            else []
        )
        msg = {
            "ticket_id": ticket_id,
            "direction": Direction.OUTBOUND.value,
            "channel": channel,
            "external_id": external_id,
            "author_agent_id": principal.agent_id,
            "sender": None,
            "recipient": recipient,
            "subject": subject,
            "text": text,
            "html": None,
            "attachments": [],
            "meta": {"references": references} if references else {},
            "delivery_status": DeliveryStatus.PENDING.value,
            "created_at": now,
            "contact_id": row.contact_id,
        }
        msg_row = (await tx.conn.execute(M.insert().values(**msg).returning(*M.c))).one()
        outbound = OutboundMessage(
            message_id=msg_row.id,
            ticket_id=ticket_id,
            channel=channel,
            recipient=recipient,
            text=text,
            subject=subject,
            external_id=external_id,
            in_reply_to=last_in.external_id if channel == "email" and not moved else None,
            references=references,
            sender_address=None if moved else last_in.recipient,
            agent_name=principal.display_name,
            metadata={"thread_key": row.thread_key} if row.thread_key else {},
        )
        await tx.conn.execute(
            O.insert().values(
                message_id=msg_row.id,
                channel=channel,
                payload=outbound.model_dump(mode="json"),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        values: dict[str, Any] = {"updated_at": now, "last_message_at": now}
        if row.first_response_at is None:
            values["first_response_at"] = now
        if row.status == TicketStatus.NEW:
            values["status"] = TicketStatus.OPEN.value
        updated = (await tx.conn.execute(update(T).where(T.c.id == ticket_id).values(**values).returning(*T.c))).one()
        tx.emit(_message_event(dict(msg_row._mapping), updated))
        tx.emit(ticket_event(EventType.TICKET_UPDATED, updated))
        tx.after_commit.append(rt.outbox_wakeup.set)
    return MessageRead.model_validate(msg_row._mapping)


def _reply_subject(subject: str, ticket_id: int) -> str:
    tag = f"[#{ticket_id}]"
    base = subject or "Your request"
    if tag not in base:
        base = f"{base} {tag}"
    return base if base.lower().startswith("re:") else f"Re: {base}"


def _message_event(msg: dict[str, Any], ticket_row: Any) -> NewEvent:
    t = ticket_row._mapping if hasattr(ticket_row, "_mapping") else ticket_row
    return NewEvent(
        type=EventType.MESSAGE_CREATED,
        payload={"message": message_summary(msg)},
        ticket_id=t["id"],
        queue_id=t["queue_id"],
        agent_id=t["assignee_id"] or t["offered_agent_id"],
    )


async def add_note(rt: Runtime, *, ticket_id: int, principal: Principal, text: str) -> MessageRead:
    """An internal note: visible to agents only, never sent to the customer."""
    now = utcnow()
    async with rt.write() as tx:
        row = await _ticket_row(tx.conn, ticket_id)
        _check_visible(principal, row)
        msg = {
            "ticket_id": ticket_id,
            "direction": Direction.NOTE.value,
            "channel": row.channel,
            "author_agent_id": principal.agent_id,
            "text": text,
            "attachments": [],
            "meta": {},
            "delivery_status": DeliveryStatus.RECEIVED.value,
            "created_at": now,
        }
        msg_row = (await tx.conn.execute(M.insert().values(**msg).returning(*M.c))).one()
        updated = (
            await tx.conn.execute(update(T).where(T.c.id == ticket_id).values(updated_at=now).returning(*T.c))
        ).one()
        tx.emit(_message_event(dict(msg_row._mapping), updated))
    return MessageRead.model_validate(msg_row._mapping)


async def update_ticket(rt: Runtime, *, ticket_id: int, principal: Principal, data: TicketUpdate) -> TicketRead:
    """Change status, priority, tags or subject."""
    now = utcnow()
    values: dict[str, Any] = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    async with rt.write() as tx:
        row = await _ticket_row(tx.conn, ticket_id, lock=True)
        _check_visible(principal, row)
        if "status" in values:
            status = TicketStatus(values["status"])
            values["status"] = status.value
            if status is TicketStatus.SOLVED and row.solved_at is None:
                values["solved_at"] = now
            if status is TicketStatus.CLOSED:
                values["closed_at"] = now
            if status in OPEN_STATUSES:
                values["solved_at"] = None
                values["closed_at"] = None
            if status not in OPEN_STATUSES:
                values["offered_agent_id"] = None
                values["offer_expires_at"] = None
        if "priority" in values:
            values["priority"] = (
                values["priority"].value if hasattr(values["priority"], "value") else values["priority"]
            )
        values["updated_at"] = now
        updated = (await tx.conn.execute(update(T).where(T.c.id == ticket_id).values(**values).returning(*T.c))).one()
        tx.emit(
            ticket_event(
                EventType.TICKET_UPDATED,
                updated,
                changes=sorted(k for k in values if k != "updated_at"),
                by=principal.agent_id,
            )
        )
    return TicketRead.model_validate(updated._mapping)


async def assign(rt: Runtime, *, ticket_id: int, principal: Principal, agent_id: int | None) -> TicketRead:
    """A supervisor assigns a ticket to an agent, or unassigns it (back to its queue)."""
    principal.require_supervisor()
    now = utcnow()
    async with rt.write() as tx:
        await _ticket_row(tx.conn, ticket_id, lock=True)
        if agent_id is not None and not (await tx.conn.execute(select(A.c.id).where(A.c.id == agent_id))).first():
            raise AgentNotFound(f"agent {agent_id} does not exist")
        updated = (
            await tx.conn.execute(
                update(T)
                .where(T.c.id == ticket_id)
                .values(assignee_id=agent_id, offered_agent_id=None, offer_expires_at=None, updated_at=now)
                .returning(*T.c)
            )
        ).one()
        tx.emit(ticket_event(EventType.TICKET_ASSIGNED, updated, by=principal.agent_id))
        if agent_id is None:
            await route_tickets(rt, tx, [ticket_id])
    return TicketRead.model_validate(updated._mapping)


async def transfer(
    rt: Runtime, *, ticket_id: int, principal: Principal, queue_id: int | None, agent_id: int | None
) -> TicketRead:
    """Hand a ticket to another queue (it is routed there afresh) or straight to another agent."""
    now = utcnow()
    async with rt.write() as tx:
        row = await _ticket_row(tx.conn, ticket_id, lock=True)
        _check_visible(principal, row)
        values: dict[str, Any] = {
            "updated_at": now,
            "offered_agent_id": None,
            "offer_expires_at": None,
            "assignee_id": agent_id,
        }
        if queue_id is not None:
            if not (await tx.conn.execute(select(Q.c.id).where(Q.c.id == queue_id))).first():
                raise QueueNotFound(f"queue {queue_id} does not exist")
            values["queue_id"] = queue_id
        if agent_id is not None and not (await tx.conn.execute(select(A.c.id).where(A.c.id == agent_id))).first():
            raise AgentNotFound(f"agent {agent_id} does not exist")
        updated = (await tx.conn.execute(update(T).where(T.c.id == ticket_id).values(**values).returning(*T.c))).one()
        tx.emit(
            ticket_event(
                EventType.TICKET_UPDATED,
                updated,
                changes=["transfer"],
                by=principal.agent_id,
                from_queue_id=row.queue_id,
                from_agent_id=row.assignee_id,
            )
        )
        if agent_id is None:
            await route_tickets(rt, tx, [ticket_id], exclude={ticket_id: {principal.agent_id}})
    return TicketRead.model_validate(updated._mapping)

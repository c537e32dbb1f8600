"""Reading tickets and contacts, who may see a ticket, and the payloads of ticket and message events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.channels import SPECS, CapacityClass
from hub.db import KeptStatements
from hub.events import EventType, NewEvent
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing.exceptions import ContactNotFound, NotYourTicket, TicketNotFound
from ticketing.identities import identity_read
from ticketing.models import (
    ContactHistory,
    ContactRead,
    MessageRead,
    TicketDetail,
    TicketPage,
    TicketRead,
)
from ticketing.tables import contact_identities, contacts, messages, tickets

# A call is answered when the agent's phone leg picks up, which only the channel hears (``TicketPort.call_answered``):
# taking a call's ticket (accepting, being assigned it) does not stamp ``answered_at`` the way taking other work does.
ANSWERED_BY_CHANNEL = frozenset(n for n, spec in SPECS.items() if spec.capacity_class == CapacityClass.VOICE)


def answered_on_take(now: datetime | ColumnElement[datetime]) -> Any:
    """``answered_at`` for a ticket an agent takes now: kept as it is for a call (its channel stamps it), else the
    first time taken."""
    return case(
        (tickets.c.channel.in_(sorted(ANSWERED_BY_CHANNEL)), tickets.c.answered_at),
        else_=func.coalesce(tickets.c.answered_at, now),
    )


EVENT_TEXT_LIMIT = 10_000
TICKET_ABANDONED = "ticket.abandoned"


# --- event payloads ---------------------------------------------------------------------------------------


def ticket_summary(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    # The rating is read with get(): a ticket just created is summarized from the values inserted, which leave
    # the rating out (it has none). Rows read back (routing's claim included) carry it.
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
        "offer_expires_at": iso(m["offer_expires_at"]),
        "tags": list(m["tags"] or []),
        "created_at": iso(m["created_at"]),
        "updated_at": iso(m["updated_at"]),
        "last_message_at": iso(m["last_message_at"]),
        "rating": m.get("rating"),
        "rating_comment": m.get("rating_comment"),
        # For the wallboard and the console's SLA timers (a ticket just inserted has none of them yet).
        "queued_at": iso(m.get("queued_at")),
        "answered_at": iso(m.get("answered_at")),
        "first_response_at": iso(m.get("first_response_at")),
        "first_response_due_at": iso(m.get("first_response_due_at")),
        "resolution_due_at": iso(m.get("resolution_due_at")),
        "sla_paused_at": iso(m.get("sla_paused_at")),
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
        "created_at": iso(m.get("created_at")),
    }


def iso(value: datetime | None) -> str | None:
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


def abandoned_event(row: Any, now: datetime) -> NewEvent:
    """``ticket.abandoned``: the ticket left its queue unanswered (its customer gave up, or it was closed
    while waiting); ``waited`` is the seconds it waited."""
    m = row._mapping if hasattr(row, "_mapping") else row
    queued = m.get("queued_at") or m["created_at"]
    return NewEvent(
        type=TICKET_ABANDONED,
        payload={"ticket": ticket_summary(m), "waited": max(0.0, (now - queued).total_seconds())},
        ticket_id=m["id"],
        queue_id=m["queue_id"],
        agent_id=None,
    )


def message_event(msg: dict[str, Any], ticket_row: Any) -> NewEvent:
    t = ticket_row._mapping if hasattr(ticket_row, "_mapping") else ticket_row
    return NewEvent(
        type=EventType.MESSAGE_CREATED,
        payload={"message": message_summary(msg)},
        ticket_id=t["id"],
        queue_id=t["queue_id"],
        agent_id=t["assignee_id"] or t["offered_agent_id"],
    )


# --- reading ----------------------------------------------------------------------------------------------


def _build(dialect: str, name: str) -> Any:
    if name in ("row", "row_locked"):
        query = select(tickets).where(tickets.c.id == bindparam("ticket_id"))
        return query.with_for_update() if name == "row_locked" else query
    raise KeyError(name)


# Built once per dialect: every change to a ticket reads its row first (a call's timeline notes among them).
_STATEMENTS = KeptStatements(_build)


async def ticket_row(conn: AsyncConnection, ticket_id: int, *, lock: bool = False) -> Any:
    """The ticket's row (on PostgreSQL locked, with ``lock``), or ``TicketNotFound``."""
    name = "row_locked" if lock and conn.dialect.name == "postgresql" else "row"
    rows = await _STATEMENTS.fetch_all(conn, name, {"ticket_id": ticket_id})
    if not rows:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    return rows[0]


def check_visible(principal: Principal, row: Any) -> None:
    if not principal.can_see_ticket(
        queue_id=row.queue_id, assignee_id=row.assignee_id, offered_agent_id=row.offered_agent_id
    ):
        raise NotYourTicket(f"ticket {row.id} is not in your queues")


def visible_tickets(principal: Principal) -> ColumnElement[bool] | None:
    """``Principal.can_see_ticket`` as a condition on ``tickets`` (None: the principal sees every ticket)."""
    if principal.sees_all:
        return None
    return or_(
        tickets.c.queue_id.in_(principal.queue_ids or {-1}),
        tickets.c.assignee_id == principal.agent_id,
        tickets.c.offered_agent_id == principal.agent_id,
    )


async def get_ticket(rt: Runtime, *, ticket_id: int, principal: Principal) -> TicketDetail:
    """A ticket with its contact and every message, oldest first."""
    async with rt.read() as conn:
        row = await ticket_row(conn, ticket_id)
        check_visible(principal, row)
        message_rows = (
            await conn.execute(select(messages).where(messages.c.ticket_id == ticket_id).order_by(messages.c.id))
        ).all()
        contact = await contact_read(conn, row.contact_id)
    return TicketDetail.model_validate(
        {**row._mapping, "contact": contact, "messages": [MessageRead.model_validate(m._mapping) for m in message_rows]}
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
    visible = visible_tickets(principal)
    if visible is not None:
        conds.append(visible)
    if status:
        conds.append(tickets.c.status.in_(list(status)))
    if queue_id is not None:
        conds.append(tickets.c.queue_id == queue_id)
    if assignee_id is not None:
        conds.append(tickets.c.assignee_id == assignee_id)
    if mine:
        conds.append(tickets.c.assignee_id == principal.agent_id)
    if channel:
        conds.append(tickets.c.channel == channel)
    if contact_id is not None:
        conds.append(tickets.c.contact_id == contact_id)
    async with rt.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(tickets).where(*conds))).scalar_one()
        rows = (
            await conn.execute(
                select(tickets)
                .where(*conds)
                .order_by(func.coalesce(tickets.c.last_message_at, tickets.c.created_at).desc(), tickets.c.id.desc())
                .offset(offset)
                .limit(limit)
            )
        ).all()
    return TicketPage(
        items=[TicketRead.model_validate(r._mapping) for r in rows], total=total, offset=offset, limit=limit
    )


async def contact_read(conn: AsyncConnection, contact_id: int) -> ContactRead:
    row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).first()
    if row is None:
        raise ContactNotFound(f"contact {contact_id} does not exist")
    idents = (
        await conn.execute(
            select(contact_identities.c.kind, contact_identities.c.value)
            .where(contact_identities.c.contact_id == contact_id)
            .order_by(contact_identities.c.id)
        )
    ).all()
    return ContactRead.model_validate({**row._mapping, "identities": [identity_read(k, v) for k, v in idents]})


async def get_contact_history(rt: Runtime, *, contact_id: int, principal: Principal) -> ContactHistory:
    """A contact with every ticket and message across all channels (the tickets the principal may see)."""
    async with rt.read() as conn:
        contact = await contact_read(conn, contact_id)
        rows = (
            await conn.execute(select(tickets).where(tickets.c.contact_id == contact_id).order_by(tickets.c.id))
        ).all()
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
        msgs = (
            (await conn.execute(select(messages).where(messages.c.ticket_id.in_(ids)).order_by(messages.c.id))).all()
            if ids
            else []
        )
    by_ticket: dict[int, list[MessageRead]] = {}
    for m in msgs:
        by_ticket.setdefault(m.ticket_id, []).append(MessageRead.model_validate(m._mapping))
    details = [
        TicketDetail.model_validate({**r._mapping, "contact": contact, "messages": by_ticket.get(r.id, [])})
        for r in visible
    ]
    return ContactHistory.model_validate({**contact.model_dump(), "tickets": details})

"""What the phone and messaging channels ask of the core beyond ingest (``hub.ports``): who a caller is, a
ticket at a glance, the system's lines on a ticket's timeline, abandoned calls, and providers' receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from hub.db import KeptStatements, UTCDateTime, fetch_records, utcnow
from hub.events import EventType
from hub.messages import AlsoInTransaction
from hub.ports import ContactSummary, TicketBrief, TimelineNote
from hub.runtime import Runtime, Tx
from ticketing import agents, replies, search_index
from ticketing.exceptions import AgentNotFound, InvalidIdentity
from ticketing.identities import lookup_kinds, normalize
from ticketing.models import AgentStatus, DeliveryStatus, Direction, TicketStatus
from ticketing.outbox import set_delivery_status
from ticketing.routing_service import requeue_from_agent
from ticketing.tables import OPEN_STATUS_VALUES, contact_identities, contacts, messages, tickets
from ticketing.tables import agents as agent_rows
from ticketing.tickets import ANSWERED_BY_CHANNEL, abandoned_event, message_event, ticket_event, ticket_row

OPEN_TICKETS_LISTED = 10


def _last_inbound() -> Any:
    return (
        select(func.max(messages.c.created_at))
        .where(messages.c.ticket_id == tickets.c.id, messages.c.direction == Direction.INBOUND.value)
        .correlate(tickets)
        .scalar_subquery()
    )


def _brief(row: Any) -> TicketBrief:
    return TicketBrief(
        id=row.id,
        subject=row.subject or "",
        status=row.status,
        channel=row.channel,
        contact_id=row.contact_id,
        queue_id=row.queue_id,
        assignee_id=row.assignee_id,
        last_inbound_at=row.last_inbound_at,
    )


_BRIEF_COLUMNS = (
    tickets.c.id,
    tickets.c.subject,
    tickets.c.status,
    tickets.c.channel,
    tickets.c.contact_id,
    tickets.c.queue_id,
    tickets.c.assignee_id,
)


async def contact_summary(rt: Runtime, *, kind: str, value: str) -> ContactSummary:
    """The contact reached as (kind, value) and their open tickets, newest first (``ContactPort.summary``)."""
    try:
        kind, value = normalize(kind, value, default_region=rt.settings.default_phone_region)
    except InvalidIdentity:
        return ContactSummary(contact_id=None, name=None, open_tickets=[])
    async with rt.read() as conn:
        found = (
            await conn.execute(
                select(contacts.c.id, contacts.c.name)
                .join(contact_identities, contact_identities.c.contact_id == contacts.c.id)
                .where(contact_identities.c.kind.in_(lookup_kinds(kind)), contact_identities.c.value == value)
                .order_by(contact_identities.c.id)
                .limit(1)
            )
        ).first()
        if found is None:
            return ContactSummary(contact_id=None, name=None, open_tickets=[])
        rows = (
            await conn.execute(
                select(*_BRIEF_COLUMNS, _last_inbound().label("last_inbound_at"))
                .where(tickets.c.contact_id == found.id, tickets.c.status.in_(OPEN_STATUS_VALUES))
                .order_by(tickets.c.id.desc())
                .limit(OPEN_TICKETS_LISTED)
            )
        ).all()
    return ContactSummary(contact_id=found.id, name=found.name, open_tickets=[_brief(r) for r in rows])


# Built once and sent to the driver directly (``hub.db.fetch_records``): the phone asks it of every call queued.
_BRIEF = select(*_BRIEF_COLUMNS, _last_inbound().label("last_inbound_at")).where(tickets.c.id == bindparam("ticket_id"))


async def ticket_brief(rt: Runtime, *, ticket_id: int) -> TicketBrief | None:
    """A ticket at a glance (``TicketPort.brief``)."""
    async with rt.read() as conn:
        rows = await fetch_records(conn, _BRIEF, {"ticket_id": ticket_id})
    return _brief(rows[0]) if rows else None


# A system note's message: every column it writes (none left to a column's default, which a statement built once
# would not compute per call).
_NOTE_COLUMNS = (
    "ticket_id",
    "direction",
    "channel",
    "author_agent_id",
    "text",
    "attachments",
    "meta",
    "delivery_status",
    "created_at",
)


def _build(dialect: str, name: str) -> Any:
    at = bindparam("at", type_=UTCDateTime())
    if name == "note":
        # Bound as ``m_<column>``: a parameter named as its column is SQLAlchemy's own, refused in VALUES.
        return (
            messages.insert()
            .values({c: bindparam(f"m_{c}", type_=messages.c[c].type) for c in _NOTE_COLUMNS})
            .returning(*messages.c)
        )
    if name == "touch":
        return update(tickets).where(tickets.c.id == bindparam("ticket_id")).values(updated_at=at).returning(*tickets.c)
    if name == "answered":
        return (
            update(tickets)
            .where(
                tickets.c.id == bindparam("ticket_id"),
                tickets.c.answered_at.is_(None),
                tickets.c.assignee_id.is_not(None),
            )
            .values(answered_at=at, updated_at=at)
            .returning(*tickets.c)
        )
    raise KeyError(name)


# A call's answer stamp and timeline notes, built once per dialect: a call writes several of them.
_STATEMENTS = KeptStatements(_build)


async def add_timeline(
    rt: Runtime, *, ticket_id: int, text: str, metadata: dict[str, Any], also: AlsoInTransaction | None = None
) -> int:
    """A system note on the ticket's timeline (``TicketPort.add_timeline``), after ``also`` in its transaction."""
    async with rt.write() as tx:
        if also is not None:
            await also(tx.conn)
        return await _note(tx, ticket_id=ticket_id, text=text, metadata=metadata, now=utcnow())


async def _note(
    tx: Tx, *, ticket_id: int, text: str, metadata: dict[str, Any], now: datetime, touched: Any = None
) -> int:
    """A system note on the ticket's timeline, in ``tx``: the message, its ticket's ``updated_at``, the event.
    ``touched``: the ticket's row as this transaction just updated it (``updated_at`` set), not read again."""
    row = touched if touched is not None else await ticket_row(tx.conn, ticket_id)
    msg = {
        "ticket_id": ticket_id,
        "direction": Direction.NOTE.value,
        "channel": row.channel,
        "author_agent_id": None,
        "text": text,
        "attachments": [],
        "meta": {"system": True, **metadata},
        "delivery_status": DeliveryStatus.RECEIVED.value,
        "created_at": now,
    }
    [msg_row] = await _STATEMENTS.fetch_all(tx.conn, "note", {f"m_{c}": v for c, v in msg.items()})
    await search_index.index_new(tx.conn, tickets=False)
    updated = touched
    if updated is None:
        [updated] = await _STATEMENTS.fetch_all(tx.conn, "touch", {"ticket_id": ticket_id, "at": now})
    tx.emit(message_event(dict(msg_row._mapping), updated))
    return int(msg_row.id)


async def abandon(rt: Runtime, *, ticket_id: int, reason: str) -> bool:
    """The customer gave up waiting (``TicketPort.abandon``): also while an agent's phone was ringing for a
    call they had taken (a call's ticket is answered only when that phone picks up)."""
    now = utcnow()
    async with rt.write() as tx:
        row = await ticket_row(tx.conn, ticket_id, lock=True)
        if row.answered_at is not None or row.status not in OPEN_STATUS_VALUES:
            return False
        if row.assignee_id is not None and row.channel not in ANSWERED_BY_CHANNEL:
            return False
        tags = list(row.tags or [])
        if "abandoned" not in tags:
            tags.append("abandoned")
        updated = (
            await tx.conn.execute(
                update(tickets)
                .where(tickets.c.id == ticket_id)
                .values(
                    status=TicketStatus.SOLVED.value,
                    solved_at=now,
                    assignee_id=None,
                    offered_agent_id=None,
                    offer_expires_at=None,
                    queued_at=None,
                    abandoned_at=now,
                    tags=tags,
                    updated_at=now,
                )
                .returning(*tickets.c)
            )
        ).one()
        tx.emit(ticket_event(EventType.TICKET_UPDATED, updated, changes=["offered_agent_id", "status", "tags"]))
        # Counted by the wallboard and the reports as any ticket that left its queue unanswered.
        # (its wait measured from when it was queued: the updated row no longer says)
        tx.emit(abandoned_event({**updated._mapping, "queued_at": row.queued_at}, now))
        # Sent to the agent the ticket was offered to as well, so their console drops the offer.
        event = ticket_event(EventType.CALL_ABANDONED, updated, reason=reason)
        event.agent_id = row.offered_agent_id or row.assignee_id
        tx.emit(event)
    return True


async def call_answered(
    rt: Runtime,
    *,
    ticket_id: int,
    at: datetime,
    note: TimelineNote | None = None,
    also: AlsoInTransaction | None = None,
) -> bool:
    """The agent who took a call's ticket picked up (``TicketPort.call_answered``): its ``answered_at``, and the
    timeline's ``note``, after ``also``, in one transaction."""
    async with rt.write() as tx:
        if also is not None:
            await also(tx.conn)
        rows = await _STATEMENTS.fetch_all(tx.conn, "answered", {"ticket_id": ticket_id, "at": at})
        updated = rows[0] if rows else None
        if updated is not None:
            tx.emit(ticket_event(EventType.TICKET_UPDATED, updated, changes=["answered_at"]))
        if note is not None:
            # The row the stamp returned is the ticket as the note leaves it (``updated_at`` = ``at``).
            await _note(tx, ticket_id=ticket_id, text=note.text, metadata=note.metadata, now=at, touched=updated)
    return updated is not None


async def call_missed(rt: Runtime, *, ticket_id: int, agent_id: int, reason: str) -> bool:
    """The agent who took a call's ticket did not pick up (``TicketPort.call_missed``): the call goes back in
    line, keeping its place (``queued_at``), and is offered to another agent. The ticket may have been
    answered before (a repeat call rang its holder): the call's own row says this leg was not."""
    async with rt.write() as tx:
        taken = await requeue_from_agent(rt, tx, agent_id=agent_id, reason=reason, only=[tickets.c.id == ticket_id])
    return bool(taken)


async def call_again(rt: Runtime, *, ticket_id: int, reason: str) -> int | None:
    """A repeat call joined a ticket an agent holds (``TicketPort.call_again``): theirs when they are
    available, else back to the queue for routing to offer to anyone but them."""
    async with rt.write() as tx:
        row = await ticket_row(tx.conn, ticket_id)
        if row.assignee_id is None or row.status not in OPEN_STATUS_VALUES:
            return None
        status = (await tx.conn.execute(select(agent_rows.c.status).where(agent_rows.c.id == row.assignee_id))).scalar()
        if status == AgentStatus.AVAILABLE.value:
            return int(row.assignee_id)
        await requeue_from_agent(rt, tx, agent_id=row.assignee_id, reason=reason, only=[tickets.c.id == ticket_id])
    return None


async def send_as(
    rt: Runtime,
    *,
    agent_id: int,
    ticket_id: int,
    text: str,
    client_key: str,
    metadata: dict[str, Any] | None = None,
) -> int:
    """A message in an agent's name through the outbox (``TicketPort.send_as``)."""
    loaded = await agents.load_principal(rt, agent_id=agent_id)
    if loaded is None:
        raise AgentNotFound(f"agent {agent_id} does not exist")
    sent = await replies.reply(
        rt, ticket_id=ticket_id, principal=loaded[0], text=text, client_key=client_key, metadata=metadata
    )
    return sent.id


async def move_delivery_status(rt: Runtime, *, message_id: int, status: str, error: str | None = None) -> bool:
    """A provider's receipt (``TicketPort.set_delivery_status``)."""
    async with rt.write() as tx:
        return await set_delivery_status(tx, message_id, DeliveryStatus(status), error=error)

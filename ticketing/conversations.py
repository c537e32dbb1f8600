"""Conversations: a channel's thread as its customer sees it, its ratings and receipts, moving it to email;
verified customers' contacts; whether a queue has anyone available; agents' typing indicators.

A conversation is every ticket of one channel with one thread key (a webchat conversation id, a messaging
app's chat): a customer writing again after a solve opens a new ticket in the same conversation. The
customer sees the inbound and outbound messages of those tickets, never internal notes. Channels reach
these functions through the ports (``hub.ports``, implemented in ``ticketing.ports``), never directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update

from hub.channels import IdentityKind
from hub.db import fetch_all, lock_keys, one_of_param, utcnow
from hub.errors import InvalidInput, SwitchboardError
from hub.events import EventType, NewEvent
from hub.group_commit import GroupCommit
from hub.inputs import is_id
from hub.messages import Identity
from hub.ports import ConversationMessage, ConversationState, ConversationTicket, EmailFallback, QueueAvailability
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing import search_index, sla
from ticketing.exceptions import AlreadyRated, InvalidRating, NotRateable, TicketNotFound
from ticketing.identities import normalize
from ticketing.models import AgentStatus, DeliveryStatus, Direction, TicketStatus
from ticketing.outbox import StatusChange, set_delivery_statuses, unmoved_by
from ticketing.routing_service import work_done
from ticketing.tables import (
    OPEN_STATUS_VALUES,
    agent_queues,
    agents,
    contact_identities,
    contacts,
    messages,
    queues,
    tickets,
)
from ticketing.tickets import check_visible, message_event, ticket_event, ticket_row

DEFLECTED = "deflected"  # the tag of a ticket its customer closed: a knowledge-base article answered them


def _visible_message(row: Any, names: dict[int, str]) -> ConversationMessage:
    return ConversationMessage(
        id=row.id,
        ticket_id=row.ticket_id,
        direction=row.direction,
        channel=row.channel,
        text=row.text,
        attachments=row.attachments or [],
        author_name=names.get(row.author_agent_id) if row.author_agent_id else None,
        delivery_status=row.delivery_status,
        metadata=row.meta or {},
        created_at=row.created_at,
    )


async def _names(conn: Any, agent_ids: Iterable[int | None]) -> dict[int, str]:
    ids = {a for a in agent_ids if a}
    if not ids:
        return {}
    rows = await conn.execute(select(agents.c.id, agents.c.display_name, agents.c.username).where(agents.c.id.in_(ids)))
    return {r.id: r.display_name or r.username for r in rows}


async def conversation(rt: Runtime, *, channel: str, thread_key: str, after_message_id: int = 0) -> ConversationState:
    """The conversation as its customer sees it: messages after ``after_message_id`` (no notes), and its
    tickets' state (who holds them, their ratings, whether they are answered on another channel)."""
    async with rt.read() as conn:
        found = (
            await conn.execute(
                select(tickets)
                .where(tickets.c.channel == channel, tickets.c.thread_key == thread_key)
                .order_by(tickets.c.id)
            )
        ).all()
        ids = [t.id for t in found]
        rows = (
            (
                await conn.execute(
                    select(messages)
                    .where(
                        messages.c.ticket_id.in_(ids),
                        messages.c.id > after_message_id,
                        messages.c.direction.in_([Direction.INBOUND.value, Direction.OUTBOUND.value]),
                    )
                    .order_by(messages.c.id)
                )
            ).all()
            if ids
            else []
        )
        current = found[-1] if found else None
        names = await _names(conn, [r.author_agent_id for r in rows] + ([current.assignee_id] if current else []))
    return ConversationState(
        tickets=[_ticket_state(t, names) for t in found], messages=[_visible_message(r, names) for r in rows]
    )


def _ticket_state(t: Any, names: dict[int, str]) -> ConversationTicket:
    return ConversationTicket(
        id=t.id,
        status=t.status,
        queue_id=t.queue_id,
        assignee_id=t.assignee_id,
        offered_agent_id=t.offered_agent_id,
        assignee_name=names.get(t.assignee_id) if t.assignee_id else None,
        rating=t.rating,
        reply_channel=t.reply_channel,
        reply_to=t.reply_to,
        deflected=DEFLECTED in (t.tags or ()),
    )


# Built once and sent to the driver directly (``hub.db.fetch_all``): the phone asks it of every call answered,
# held (the hold loop's "connected to") and ended.
_NAME = select(agents.c.display_name, agents.c.username).where(agents.c.id == bindparam("agent_id"))


async def agent_name(rt: Runtime, *, agent_id: int) -> str | None:
    """The name customers see for an agent."""
    async with rt.read() as conn:
        rows = await fetch_all(conn, _NAME, {"agent_id": agent_id})
    return (rows[0][0] or rows[0][1]) if rows else None


async def _queue_row(conn: Any, channel: str, queue: str | None) -> Any:
    rows = (
        await conn.execute(select(queues.c.id, queues.c.name, queues.c.channels, queues.c.hours).order_by(queues.c.id))
    ).all()
    if queue:
        for r in rows:
            if r.name == queue:
                return r
    for r in rows:
        if channel in (r.channels or []):
            return r
    return rows[0] if rows else None


async def availability(rt: Runtime, *, channel: str, queue: str | None) -> QueueAvailability:
    """Whether anyone could answer in ``queue`` (else the first queue listing ``channel``, else the first
    queue) now: the queue is within its business hours and an active agent of it is available."""
    async with rt.read() as conn:
        q = await _queue_row(conn, channel, queue)
        if q is None:
            return QueueAvailability(queue=None, available=False, open=False, agents_available=0)
        try:
            open_now = sla.is_open(sla.BusinessHours.parse(q.hours), utcnow())
        except ValueError:  # hours that do not validate: routing reports them; chat treats the queue as open
            open_now = True
        count = len(
            (
                await conn.execute(
                    select(agents.c.id)
                    .join(agent_queues, agent_queues.c.agent_id == agents.c.id)
                    .where(
                        agent_queues.c.queue_id == q.id,
                        agents.c.status == AgentStatus.AVAILABLE.value,
                        agents.c.active.is_(True),
                    )
                )
            ).all()
        )
    return QueueAvailability(queue=q.name, available=open_now and count > 0, open=open_now, agents_available=count)


async def rate(rt: Runtime, *, channel: str, thread_key: str, ticket_id: int, rating: int, comment: str | None) -> None:
    """Store the customer's satisfaction rating (1-5) and comment on a solved ticket of their conversation,
    once."""
    if not 1 <= rating <= 5:
        raise InvalidRating("a rating is from 1 to 5")
    comment = (comment or "").strip()[:2000] or None
    async with rt.write() as tx:
        # Locked (PostgreSQL): two ratings at once, or a reopen, must not both act on the row as it was.
        row = (
            await tx.conn.execute(
                select(tickets)
                .where(tickets.c.id == ticket_id, tickets.c.channel == channel, tickets.c.thread_key == thread_key)
                .with_for_update()
            )
        ).first()
        if row is None:
            raise TicketNotFound(f"ticket {ticket_id} is not part of this conversation")
        if row.status not in (TicketStatus.SOLVED.value, TicketStatus.CLOSED.value):
            raise NotRateable("a conversation is rated once it is solved")
        if row.rating is not None:
            raise AlreadyRated("this conversation is rated already")
        updated = (
            await tx.conn.execute(
                update(tickets)
                .where(tickets.c.id == ticket_id)
                .values(rating=rating, rating_comment=comment, updated_at=utcnow())
                .returning(*tickets.c)
            )
        ).one()
        tx.emit(ticket_event(EventType.TICKET_UPDATED, updated, changes=["rating"], rating=rating, comment=comment))


async def answer_by_email(rt: Runtime, *, channel: str, thread_key: str, email: str, verified: bool) -> EmailFallback:
    """Nobody can answer on the conversation's channel now: its open ticket stays in its queue and is answered
    by email.

    The address becomes one of the contact's identities only for a verified customer, and only if no other
    contact has it: an unverified visitor could type anyone's address, so theirs is kept on the ticket
    (``reply_to``) and in the contact's attributes, never linked."""
    _, address = normalize(IdentityKind.EMAIL, email)
    now = utcnow()
    async with rt.write() as tx:
        row = (
            await tx.conn.execute(
                select(tickets)
                .where(
                    tickets.c.channel == channel,
                    tickets.c.thread_key == thread_key,
                    tickets.c.status.in_(OPEN_STATUS_VALUES),
                )
                .order_by(tickets.c.id.desc())
                .limit(1)
            )
        ).first()
        if row is None:
            raise TicketNotFound("write a message first: this conversation has no open ticket")
        updated = (
            await tx.conn.execute(
                update(tickets)
                .where(tickets.c.id == row.id)
                .values(reply_channel="email", reply_to=address, updated_at=now)
                .returning(*tickets.c)
            )
        ).one()
        contact = (await tx.conn.execute(select(contacts).where(contacts.c.id == row.contact_id))).one()
        owner = (
            await tx.conn.execute(
                select(contact_identities.c.contact_id).where(
                    contact_identities.c.kind == IdentityKind.EMAIL.value, contact_identities.c.value == address
                )
            )
        ).first()
        linked = False
        if verified and owner is None:
            await tx.conn.execute(
                contact_identities.insert().values(
                    contact_id=row.contact_id, kind=IdentityKind.EMAIL.value, value=address, created_at=now
                )
            )
            linked = True
        tx.emit(ticket_event(EventType.TICKET_UPDATED, updated, changes=["reply_channel", "reply_to"]))
        await _record_contact_email(
            tx,
            row.contact_id,
            contact.attributes,
            address,
            verified=bool(verified),
            linked=linked,
            ticket=(row.id, row.queue_id, row.assignee_id),
            now=now,
        )
    return EmailFallback(ticket_id=row.id, reply_to=address, linked=linked)


async def close_deflected(
    rt: Runtime, *, channel: str, thread_key: str, article_id: int, article_title: str
) -> int | None:
    """The customer says an article answered their question: the conversation's open ticket is closed as
    deflected (status closed, the tag ``deflected``, an internal note naming the article for agents), an agent
    it was offered to loses the offer and one it was assigned to is freed. Answers the ticket's id, or None
    when the conversation has no open ticket (the customer had asked nothing yet)."""
    now = utcnow()
    title = " ".join(article_title.split())[:300] or f"#{article_id}"
    async with rt.write() as tx:
        # Locked (PostgreSQL): an agent accepting or a message reopening it meanwhile acts on the closed row.
        row = (
            await tx.conn.execute(
                select(tickets)
                .where(
                    tickets.c.channel == channel,
                    tickets.c.thread_key == thread_key,
                    tickets.c.status.in_(OPEN_STATUS_VALUES),
                )
                .order_by(tickets.c.id.desc())
                .limit(1)
                .with_for_update()
            )
        ).first()
        if row is None:
            return None
        updated = (
            await tx.conn.execute(
                update(tickets)
                .where(tickets.c.id == row.id)
                .values(
                    status=TicketStatus.CLOSED.value,
                    closed_at=now,
                    offered_agent_id=None,
                    offer_expires_at=None,
                    tags=list(dict.fromkeys([*(row.tags or []), DEFLECTED])),
                    updated_at=now,
                )
                .returning(*tickets.c)
            )
        ).one()
        note = {
            "ticket_id": row.id,
            "direction": Direction.NOTE.value,
            "channel": row.channel,
            "author_agent_id": None,
            "text": f"The customer closed this conversation: the article “{title}” (#{article_id}) answered "
            "their question.",
            "attachments": [],
            "meta": {"deflected_by": article_id},
            "delivery_status": DeliveryStatus.RECEIVED.value,
            "created_at": now,
        }
        stored = (await tx.conn.execute(messages.insert().values(**note).returning(*messages.c))).one()
        await search_index.index_new(tx.conn, tickets=False)
        tx.emit(
            ticket_event(
                EventType.TICKET_UPDATED,
                updated,
                changes=["closed_at", "status", "tags"],
                deflected={"article_id": article_id},
            )
        )
        tx.emit(message_event(dict(stored._mapping), updated))
        if row.assignee_id is not None:
            await work_done(rt, tx, agent_id=row.assignee_id, channel=row.channel)
    return int(row.id)


async def _record_contact_email(
    tx: Any,
    contact_id: int,
    attributes: dict[str, Any] | None,
    address: str,
    *,
    verified: bool,
    linked: bool,
    ticket: tuple[int, int | None, int | None],
    now: Any,
) -> None:
    """Put ``address`` in the contact's attributes (``email``, and whether it is ``email_verified``), where the
    console shows it, and say so in an event about the conversation's ticket (its id, queue and assignee)."""
    attributes = {**(attributes or {}), "email": address, "email_verified": verified}
    await tx.conn.execute(
        update(contacts).where(contacts.c.id == contact_id).values(attributes=attributes, updated_at=now)
    )
    ticket_id, queue_id, assignee_id = ticket
    tx.emit(
        NewEvent(
            type=EventType.CONTACT_UPDATED,
            payload={"contact_id": contact_id, "email": address, "linked": linked},
            ticket_id=ticket_id,
            queue_id=queue_id,
            agent_id=assignee_id,
        )
    )


async def note_unverified_email(rt: Runtime, *, ticket_id: int, contact_id: int, email: str) -> None:
    """Keep an address a customer gave but nobody verified (a chat's pre-chat form) on their contact, where the
    agent sees it, marked as not verified (the attributes ``answer_by_email`` sets). Never an identity: an
    address nobody vouched for links the customer to no one. A contact whose address is verified keeps it."""
    try:
        address = normalize(IdentityKind.EMAIL, email)[1]
    except SwitchboardError:
        return  # the widget checks the form; a bad address is not worth refusing the chat over
    async with rt.write() as tx:
        contact = (
            await tx.conn.execute(select(contacts.c.attributes).where(contacts.c.id == contact_id).with_for_update())
        ).first()
        ticket = (
            await tx.conn.execute(select(tickets.c.queue_id, tickets.c.assignee_id).where(tickets.c.id == ticket_id))
        ).first()
        attributes = (contact.attributes if contact else None) or {}
        if contact is None or attributes.get("email_verified") or attributes.get("email") == address:
            return
        await _record_contact_email(
            tx,
            contact_id,
            attributes,
            address,
            verified=False,
            linked=False,
            ticket=(ticket_id, ticket.queue_id if ticket else None, ticket.assignee_id if ticket else None),
            now=utcnow(),
        )


VERIFIED_IDENTITY_LOCK_SPACE = 0x715170  # names the locks (``hub.db.lock_keys``) on verified identities


async def link_verified(rt: Runtime, *, identities: Sequence[Identity], name: str | None) -> int:
    """Make sure identities someone vouched for (a site's signed-in user: their user id, their email address)
    belong to one contact: the contact of the first of them already known, else a new one; the others are
    added to it unless another contact has them. Returns the contact id. Call only for verified identities."""
    now = utcnow()
    region = rt.settings.default_phone_region
    pairs = list(dict.fromkeys(normalize(i.kind, i.value, default_region=region) for i in identities))
    async with rt.write() as tx:
        conn = tx.conn
        # Two first sessions of one customer at once (two tabs) would each find no contact and create one;
        # the second's identities are then ignored as taken, leaving its contact empty.
        await lock_keys(conn, VERIFIED_IDENTITY_LOCK_SPACE, [f"{kind}\x1f{value}" for kind, value in pairs])
        conds = [and_(contact_identities.c.kind == k, contact_identities.c.value == v) for k, v in pairs]
        found = {
            (r.kind, r.value): r.contact_id for r in await conn.execute(select(contact_identities).where(or_(*conds)))
        }
        contact_id = next((found[pair] for pair in pairs if pair in found), None)
        if contact_id is None:
            contact_id = (
                await conn.execute(
                    contacts.insert()
                    .values(name=name, attributes={}, created_at=now, updated_at=now)
                    .returning(contacts.c.id)
                )
            ).scalar_one()
        missing = [
            {"kind": k, "value": v, "contact_id": contact_id, "created_at": now}
            for k, v in pairs
            if (k, v) not in found
        ]
        if missing:
            await conn.execute(rt.db.insert_ignore(contact_identities), missing)
        if name:
            await conn.execute(
                update(contacts)
                .where(contacts.c.id == contact_id, contacts.c.name.is_(None))
                .values(name=name, updated_at=now)
            )
    return int(contact_id)


async def mark_delivered(rt: Runtime, *, channel: str, thread_key: str, message_ids: Sequence[int]) -> None:
    """The customer's app showed these agent messages of their conversation: their delivery status becomes
    ``delivered``. Returns once that is committed; receipts arriving together from many customers commit in
    one transaction."""
    if not message_ids:
        return
    receipts = rt.caches.get("receipts")
    if receipts is None:
        # Every widget acknowledges every agent message it shows: one transaction each would hold the
        # database's writer about as long as a whole batch of them does.
        receipts = rt.caches["receipts"] = GroupCommit(
            lambda batch: _commit_receipts(rt, batch), max_batch=RECEIPT_BATCH_MAX, name="chat-receipts"
        )
    await receipts.submit((channel, thread_key, list(message_ids[:200])))


RECEIPT_BATCH_MAX = 500


async def _commit_receipts(rt: Runtime, receipts: list[tuple[str, str, list[int]]]) -> list[None]:
    await _mark_delivered(rt, receipts)
    return [None] * len(receipts)


# The agent messages among ``ids`` that "delivered" would move (see ticketing.outbox.moves), with their
# conversation (channel and thread key); built once.
_RECEIPTS = {
    dialect: select(messages.c.id, tickets.c.channel, tickets.c.thread_key)
    .join(tickets, tickets.c.id == messages.c.ticket_id)
    .where(
        one_of_param(dialect, messages.c.id, "ids"),
        messages.c.direction == Direction.OUTBOUND.value,
        messages.c.delivery_status.not_in(unmoved_by(DeliveryStatus.DELIVERED)),
    )
    for dialect in ("sqlite", "postgresql")
}


async def _mark_delivered(rt: Runtime, receipts: list[tuple[str, str, list[int]]]) -> None:
    wanted = {(channel, key, i) for channel, key, ids in receipts for i in ids}
    # Which messages are the visitors' to acknowledge does not change once they exist: read before taking the
    # writer's turn, and take it only when there is something to mark (a receipt repeated, or for a message
    # already read, changes nothing).
    async with rt.read() as conn:
        rows = await fetch_all(conn, _RECEIPTS[conn.dialect.name], {"ids": sorted({i for _, _, i in wanted})})
    # A customer acknowledges only messages of their own conversation.
    ids = sorted(i for i, channel, thread_key in rows if (channel, thread_key, i) in wanted)
    if not ids:
        return
    async with rt.write() as tx:
        await set_delivery_statuses(tx, [StatusChange(i, DeliveryStatus.DELIVERED) for i in ids])


async def agent_typing(rt: Runtime, *, principal: Principal, ticket_id: int, active: bool) -> None:
    """An agent is (or stopped) typing in a ticket: an ephemeral frame for the customer and other agents."""
    async with rt.read() as conn:
        row = await ticket_row(conn, ticket_id)
    check_visible(principal, row)
    await rt.events.broadcast_ephemeral(
        EventType.TYPING,
        {"who": "agent", "name": principal.display_name, "agent_id": principal.agent_id, "active": bool(active)},
        ticket_id=ticket_id,
        queue_id=row.queue_id,
        agent_id=row.assignee_id,
    )


async def on_console_frame(rt: Runtime, principal: Principal, data: dict[str, Any]) -> None:
    """Frames the console sends on ``/ws/agent``: ``{"type": "typing", "ticket_id": N, "active": bool}``; any
    other frame is refused (``bad_frame``)."""
    if data.get("type") != "typing":
        raise InvalidInput(f"unknown frame type {data.get('type')!r}", code="bad_frame")
    if not is_id(data.get("ticket_id")):
        raise InvalidInput("a typing frame needs a ticket_id", code="bad_frame")
    # A typing frame about a ticket one may not see, or that does not exist, is dropped.
    with contextlib.suppress(SwitchboardError):
        await agent_typing(rt, principal=principal, ticket_id=data["ticket_id"], active=bool(data.get("active")))

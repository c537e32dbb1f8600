"""What the live chat needs from the ticketing core: a conversation's history as its visitor may see it,
whether a queue has anyone available, satisfaction ratings, moving a chat to email, verified visitors'
contacts, and agents' typing indicators.

A webchat conversation is every ticket with channel ``webchat`` and the conversation id as thread key (a
customer writing again after a solve opens a new ticket in the same conversation). A visitor sees the
inbound and outbound messages of those tickets, never internal notes. These functions answer plain
dicts: ``channels.webchat`` does not import ``ticketing``; ``hub/app.py`` hands it these functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, or_, select, update

from hub.db import fetch_all, lock_keys, one_of_param, utcnow
from hub.errors import Conflict, InvalidInput, SwitchboardError
from hub.events import EventType, NewEvent
from hub.group_commit import GroupCommit
from hub.inputs import is_id
from hub.runtime import Runtime
from ticketing import sla
from ticketing.exceptions import TicketNotFound
from ticketing.identities import normalize
from ticketing.models import AgentStatus, DeliveryStatus, Direction, IdentityKind, TicketStatus
from ticketing.outbox import StatusChange, set_delivery_statuses, unmoved_by
from ticketing.permissions import Principal
from ticketing.tables import agent_queues as AQ
from ticketing.tables import agents as A
from ticketing.tables import contact_identities as I
from ticketing.tables import contacts as C
from ticketing.tables import messages as M
from ticketing.tables import queues as Q
from ticketing.tables import tickets as T
from ticketing.tickets import check_visible, iso, ticket_event, ticket_row

WEBCHAT = "webchat"


class AlreadyRated(Conflict):
    code = "already_rated"


class NotRateable(Conflict):
    code = "not_rateable"


class InvalidRating(InvalidInput):
    code = "invalid_rating"


def _visible_message(row: Any, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": row.id,
        "ticket_id": row.ticket_id,
        "direction": row.direction,
        "text": row.text,
        "attachments": row.attachments or [],
        "agent_name": names.get(row.author_agent_id) if row.author_agent_id else None,
        "delivery_status": row.delivery_status,
        "client_id": (row.meta or {}).get("client_id"),
        "created_at": iso(row.created_at),
    }


async def _names(conn: Any, agent_ids: Iterable[int | None]) -> dict[int, str]:
    ids = {a for a in agent_ids if a}
    if not ids:
        return {}
    rows = await conn.execute(select(A.c.id, A.c.display_name, A.c.username).where(A.c.id.in_(ids)))
    return {r.id: r.display_name or r.username for r in rows}


async def conversation(rt: Runtime, *, thread_key: str, after_message_id: int = 0) -> dict[str, Any]:
    """The conversation as its visitor sees it: messages after ``after_message_id`` (no notes), and the
    newest ticket's state (who holds it, whether it waits for a rating, whether it is answered by email)."""
    async with rt.read() as conn:
        tickets = (
            await conn.execute(select(T).where(T.c.channel == WEBCHAT, T.c.thread_key == thread_key).order_by(T.c.id))
        ).all()
        ids = [t.id for t in tickets]
        rows = (
            (
                await conn.execute(
                    select(M)
                    .where(
                        M.c.ticket_id.in_(ids),
                        M.c.id > after_message_id,
                        M.c.direction.in_([Direction.INBOUND.value, Direction.OUTBOUND.value]),
                    )
                    .order_by(M.c.id)
                )
            ).all()
            if ids
            else []
        )
        current = tickets[-1] if tickets else None
        names = await _names(conn, [r.author_agent_id for r in rows] + ([current.assignee_id] if current else []))
    return {
        "tickets": [_ticket_state(t, names) for t in tickets],
        "ticket": _ticket_state(current, names) if current is not None else None,
        "messages": [_visible_message(r, names) for r in rows],
    }


def _ticket_state(t: Any, names: dict[int, str]) -> dict[str, Any]:
    return {
        "id": t.id,
        "status": t.status,
        "queue_id": t.queue_id,
        "assignee_id": t.assignee_id,
        "offered_agent_id": t.offered_agent_id,
        "agent_name": names.get(t.assignee_id) if t.assignee_id else None,
        "rating": t.rating,
        "reply_to": t.reply_to if t.reply_channel == "email" else None,
    }


async def agent_name(rt: Runtime, *, agent_id: int) -> str | None:
    """The name customers see for an agent."""
    async with rt.read() as conn:
        return (await _names(conn, [agent_id])).get(agent_id)


async def _queue_row(conn: Any, queue: str | None) -> Any:
    rows = (await conn.execute(select(Q.c.id, Q.c.name, Q.c.channels, Q.c.hours).order_by(Q.c.id))).all()
    if queue:
        for r in rows:
            if r.name == queue:
                return r
    for r in rows:
        if WEBCHAT in (r.channels or []):
            return r
    return rows[0] if rows else None


async def availability(rt: Runtime, *, queue: str | None) -> dict[str, Any]:
    """Whether anyone could answer a chat in ``queue`` now: the queue is within its business hours and an
    active agent of it is available."""
    async with rt.read() as conn:
        q = await _queue_row(conn, queue)
        if q is None:
            return {"queue": None, "available": False, "open": False, "agents_available": 0}
        try:
            open_now = sla.is_open(sla.BusinessHours.parse(q.hours), utcnow())
        except ValueError:  # hours that do not validate: routing reports them; chat treats the queue as open
            open_now = True
        count = len(
            (
                await conn.execute(
                    select(A.c.id)
                    .join(AQ, AQ.c.agent_id == A.c.id)
                    .where(AQ.c.queue_id == q.id, A.c.status == AgentStatus.AVAILABLE.value, A.c.active.is_(True))
                )
            ).all()
        )
    return {"queue": q.name, "available": open_now and count > 0, "open": open_now, "agents_available": count}


async def rate(rt: Runtime, *, thread_key: str, ticket_id: int, rating: int, comment: str | None) -> None:
    """Store the visitor's satisfaction rating (1-5) and comment on a solved ticket of their conversation, once."""
    if not 1 <= rating <= 5:
        raise InvalidRating("a rating is from 1 to 5")
    comment = (comment or "").strip()[:2000] or None
    async with rt.write() as tx:
        # Locked (PostgreSQL): two ratings at once, or a reopen, must not both act on the row as it was.
        row = (
            await tx.conn.execute(
                select(T)
                .where(T.c.id == ticket_id, T.c.channel == WEBCHAT, T.c.thread_key == thread_key)
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
                update(T)
                .where(T.c.id == ticket_id)
                .values(rating=rating, rating_comment=comment, updated_at=utcnow())
                .returning(*T.c)
            )
        ).one()
        tx.emit(ticket_event(EventType.TICKET_UPDATED, updated, changes=["rating"], rating=rating, comment=comment))


async def answer_by_email(rt: Runtime, *, thread_key: str, email: str, verified: bool) -> dict[str, Any]:
    """Nobody can chat now: the conversation's open ticket stays in its queue and is answered by email.

    The address becomes one of the contact's identities only for a verified visitor, and only if no other
    contact has it: an unverified visitor could type anyone's address, so theirs is kept on the ticket
    (``reply_to``) and in the contact's attributes, never linked."""
    _, address = normalize(IdentityKind.EMAIL, email)
    now = utcnow()
    async with rt.write() as tx:
        row = (
            await tx.conn.execute(
                select(T)
                .where(T.c.channel == WEBCHAT, T.c.thread_key == thread_key, T.c.status.in_(_open()))
                .order_by(T.c.id.desc())
                .limit(1)
            )
        ).first()
        if row is None:
            raise TicketNotFound("write a message first: this conversation has no open ticket")
        updated = (
            await tx.conn.execute(
                update(T)
                .where(T.c.id == row.id)
                .values(reply_channel="email", reply_to=address, updated_at=now)
                .returning(*T.c)
            )
        ).one()
        contact = (await tx.conn.execute(select(C).where(C.c.id == row.contact_id))).one()
        owner = (
            await tx.conn.execute(
                select(I.c.contact_id).where(I.c.kind == IdentityKind.EMAIL.value, I.c.value == address)
            )
        ).first()
        linked = False
        if verified and owner is None:
            await tx.conn.execute(
                I.insert().values(
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
    return {"ticket_id": row.id, "reply_to": address, "linked": linked}


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
    await tx.conn.execute(update(C).where(C.c.id == contact_id).values(attributes=attributes, updated_at=now))
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


async def note_visitor_email(rt: Runtime, *, ticket_id: int, contact_id: int, email: str) -> None:
    """Keep the address an unverified visitor gave in the pre-chat form on their contact, where the agent sees
    it, marked as not verified (the attributes ``answer_by_email`` sets). Never an identity: an address
    nobody vouched for links the visitor to no one. A contact whose address is verified keeps it."""
    try:
        address = normalize(IdentityKind.EMAIL, email)[1]
    except SwitchboardError:
        return  # the widget checks the form; a bad address is not worth refusing the chat over
    async with rt.write() as tx:
        contact = (await tx.conn.execute(select(C.c.attributes).where(C.c.id == contact_id).with_for_update())).first()
        ticket = (await tx.conn.execute(select(T.c.queue_id, T.c.assignee_id).where(T.c.id == ticket_id))).first()
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


def _open() -> list[str]:
    return [TicketStatus.NEW.value, TicketStatus.OPEN.value, TicketStatus.PENDING.value]


_VISITOR_LOCK_SPACE = 0x715170  # names the locks (``hub.db.lock_keys``) on a verified visitor's identities


async def link_verified_visitor(rt: Runtime, *, identity: str, email: str | None, name: str | None) -> int:
    """Make sure a verified visitor's webchat identity belongs to their existing contact (found by the
    identity itself, else by the verified email address), creating the contact if there is none. Returns
    the contact id. Call only for visitors whose identity the site signed."""
    now = utcnow()
    address = normalize(IdentityKind.EMAIL, email)[1] if email else None
    async with rt.write() as tx:
        conn = tx.conn
        pairs = [(IdentityKind.WEBCHAT.value, identity)] + ([(IdentityKind.EMAIL.value, address)] if address else [])
        # Two first sessions of one visitor at once (two tabs) would each find no contact and create one; the
        # second's identities are then ignored as taken, leaving its contact empty.
        await lock_keys(conn, _VISITOR_LOCK_SPACE, [f"{kind}\x1f{value}" for kind, value in pairs])
        conds = [and_(I.c.kind == k, I.c.value == v) for k, v in pairs]
        found = {(r.kind, r.value): r.contact_id for r in await conn.execute(select(I).where(or_(*conds)))}
        contact_id = found.get((IdentityKind.WEBCHAT.value, identity)) or (
            found.get((IdentityKind.EMAIL.value, address)) if address else None
        )
        if contact_id is None:
            contact_id = (
                await conn.execute(
                    C.insert().values(name=name, attributes={}, created_at=now, updated_at=now).returning(C.c.id)
                )
            ).scalar_one()
        missing = [
            {"kind": k, "value": v, "contact_id": contact_id, "created_at": now}
            for k, v in pairs
            if (k, v) not in found
        ]
        if missing:
            await conn.execute(rt.db.insert_ignore(I), missing)
        if name:
            await conn.execute(
                update(C).where(C.c.id == contact_id, C.c.name.is_(None)).values(name=name, updated_at=now)
            )
    return int(contact_id)


async def mark_delivered(rt: Runtime, *, thread_key: str, message_ids: list[int]) -> None:
    """The visitor's widget showed these agent messages: their delivery status becomes ``delivered``. Returns
    once that is committed; receipts arriving together from many visitors commit in one transaction."""
    if not message_ids:
        return
    receipts = rt.caches.get("receipts")
    if receipts is None:
        # Every widget acknowledges every agent message it shows: one transaction each would hold the
        # database's writer about as long as a whole batch of them does.
        receipts = rt.caches["receipts"] = GroupCommit(
            lambda batch: _commit_receipts(rt, batch), max_batch=_RECEIPT_BATCH_MAX, name="chat-receipts"
        )
    await receipts.submit((thread_key, message_ids[:200]))


_RECEIPT_BATCH_MAX = 500


async def _commit_receipts(rt: Runtime, receipts: list[tuple[str, list[int]]]) -> list[None]:
    await _mark_delivered(rt, receipts)
    return [None] * len(receipts)


# The agent messages of webchat conversations among ``ids`` that "delivered" would move (see
# ticketing.outbox.moves), with their conversation; built once.
_RECEIPTS = {
    dialect: select(M.c.id, T.c.thread_key)
    .join(T, T.c.id == M.c.ticket_id)
    .where(
        one_of_param(dialect, M.c.id, "ids"),
        M.c.direction == Direction.OUTBOUND.value,
        T.c.channel == WEBCHAT,
        M.c.delivery_status.not_in(unmoved_by(DeliveryStatus.DELIVERED)),
    )
    for dialect in ("sqlite", "postgresql")
}


async def _mark_delivered(rt: Runtime, receipts: list[tuple[str, list[int]]]) -> None:
    wanted = {(key, i) for key, ids in receipts for i in ids}
    # Which messages are the visitors' to acknowledge does not change once they exist: read before taking the
    # writer's turn, and take it only when there is something to mark (a receipt repeated, or for a message
    # already read, changes nothing).
    async with rt.read() as conn:
        rows = await fetch_all(conn, _RECEIPTS[conn.dialect.name], {"ids": sorted({i for _, i in wanted})})
    # A visitor acknowledges only messages of their own conversation.
    ids = sorted(i for i, thread_key in rows if (thread_key, i) in wanted)
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

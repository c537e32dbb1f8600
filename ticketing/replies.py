"""Agents' messages on a ticket: replies (group-committed with their outbox rows) and internal notes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, case, func, select, update

from hub.config import MessageTemplate
from hub.db import UTCDateTime, fetch_all, insert_returning_ids, insert_returning_ids_by, one_of_param, utcnow
from hub.events import EventType
from hub.group_commit import GroupCommit
from hub.messages import Attachment, OutboundMessage
from hub.principals import Principal
from hub.runtime import Runtime
from hub.windows import PLACEHOLDER, WindowState, WindowStatus, rule_of, variables_of, window_state
from ticketing import message_files, search_index
from ticketing.exceptions import (
    ClientKeyReused,
    NoRecipient,
    NotYourTicket,
    OutsideWindow,
    TicketNotFound,
    TicketNotOpen,
    UnknownTemplate,
)
from ticketing.models import DeliveryStatus, Direction, MessageRead, TemplateChoice, TicketStatus
from ticketing.tables import OPEN_STATUS_VALUES, messages, outbox, tickets
from ticketing.templates import templates_of
from ticketing.tickets import check_visible, message_event, ticket_event, ticket_row


async def reply(
    rt: Runtime,
    *,
    ticket_id: int,
    principal: Principal,
    text: str,
    client_key: str | None = None,
    template: TemplateChoice | None = None,
    private: bool = False,
    metadata: dict[str, Any] | None = None,
    attachments: Sequence[Attachment] = (),
) -> MessageRead:
    """An agent's reply: the message and its outbox row commit together; the dispatcher delivers it. A reply
    sent again with the ``client_key`` of one already stored on the ticket stores nothing and answers that one.

    On a channel with a messaging window (``hub.windows``), free text after the window closed is refused
    (``OutsideWindow``, before anything is stored); a ``template`` goes through where the channel allows it, its
    text filled in from the configured template. A reply in a tagged window carries the tag to the sender.

    Replies arriving together from many agents commit in one transaction (``hub.group_commit``): one
    transaction each would hold the database's one writer about as long as a whole batch of them does."""
    group = rt.caches.get("replies")
    if group is None:
        group = rt.caches["replies"] = GroupCommit(
            lambda batch: _store_replies(rt, batch), max_batch=_REPLY_BATCH_MAX, name="reply-batches"
        )
    request = _ReplyRequest(ticket_id, principal, text, client_key, template, private, metadata, tuple(attachments))
    return await group.submit(request)


_REPLY_BATCH_MAX = 200


@dataclass(frozen=True, slots=True)
class _ReplyRequest:
    ticket_id: int
    principal: Principal
    text: str
    client_key: str | None = None
    template: TemplateChoice | None = None
    private: bool = False  # a channel with public and private answers (comments): the private one
    metadata: dict[str, Any] | None = None  # for the channel's sender (a WhatsApp template), kept on the message
    attachments: tuple[Attachment, ...] = ()  # stored files (``ticketing.reply_files``), checked for the ticket


def _sent_before(first: Any, principal: Principal, direction: Direction, text: str) -> MessageRead:
    """The answer to a send repeated with the client key of ``first``: ``first`` itself, when it is the same
    message from the same agent; a key used for another message is refused."""
    if first.author_agent_id != principal.agent_id or first.direction != direction.value or first.text != text:
        raise ClientKeyReused(f"client key {first.client_key!r} was sent with another message on this ticket")
    return MessageRead.model_validate(first._mapping)


async def _keyed_messages(conn: Any, keys: set[tuple[int, str]]) -> dict[tuple[int, str], Any]:
    """The messages stored with these (ticket id, client key) pairs."""
    if not keys:
        return {}
    ticket_ids = sorted({t for t, _ in keys})
    found = await conn.execute(
        select(messages).where(
            messages.c.ticket_id.in_(ticket_ids), messages.c.client_key.in_(sorted({k for _, k in keys}))
        )
    )
    return {(m.ticket_id, m.client_key): m for m in found if (m.ticket_id, m.client_key) in keys}


@dataclass(frozen=True, slots=True)
class _LastInbound:
    """What a reply takes from the message it answers: the newest inbound message of its ticket, when it has a
    sender to answer."""

    channel: str
    external_id: str | None
    sender: str
    recipient: str | None
    meta: dict[str, Any] | None
    at: datetime | None = None  # when the customer wrote it


# ``Runtime.caches`` key of the process's running outbox dispatcher (``ticketing.outbox``), which replies are
# handed to as they commit.
OUTBOX_HANDOFF = "outbox-handoff"


class OutboxHandoff(Protocol):
    lease: timedelta

    def hand(self, rows: list[tuple[int, OutboundMessage]]) -> None:
        """Take committed outbox rows (id, message), leased to this dispatcher, for sending."""


def _reply_statements(postgres: bool) -> tuple[Any, Any]:
    """``_store_replies``' statements, built once per dialect: the tickets with the newest inbound message of
    each (one statement; on PostgreSQL locking the tickets, in id order, so that two batches never wait on each
    other in a cycle), and the update that answers the tickets' new state."""
    dialect = "postgresql" if postgres else "sqlite"
    last_in_id = (
        select(messages.c.id)
        .where(messages.c.ticket_id == tickets.c.id, messages.c.direction == Direction.INBOUND.value)
        .order_by(messages.c.id.desc())
        .limit(1)
        .correlate(tickets)
        .scalar_subquery()
    )
    read_tickets = (
        select(
            tickets,
            messages.c.channel.label("in_channel"),
            messages.c.external_id.label("in_external_id"),
            messages.c.sender.label("in_sender"),
            messages.c.recipient.label("in_recipient"),
            messages.c.meta.label("in_meta"),
            func.coalesce(messages.c.received_at, messages.c.created_at).label("in_at"),
        )
        .select_from(tickets.outerjoin(messages, messages.c.id == last_in_id))
        .where(one_of_param(dialect, tickets.c.id, "ids"))
        .order_by(tickets.c.id)
    )
    if postgres:
        read_tickets = read_tickets.with_for_update(of=tickets)
    now = bindparam("now", type_=UTCDateTime())
    replied = (
        update(tickets)
        .where(one_of_param(dialect, tickets.c.id, "ids"))
        .values(
            updated_at=now,
            last_message_at=now,
            first_response_at=func.coalesce(tickets.c.first_response_at, now),
            status=case((tickets.c.status == TicketStatus.NEW.value, TicketStatus.OPEN.value), else_=tickets.c.status),
        )
        .returning(*tickets.c)
    )
    return read_tickets, replied


_REPLY_STATEMENTS = {postgres: _reply_statements(postgres) for postgres in (False, True)}


async def _store_replies(rt: Runtime, batch: Sequence[_ReplyRequest]) -> list[MessageRead | Exception]:
    """Store a batch of replies in one transaction with a fixed number of statements; one answer per reply, in
    order. A reply that is refused (no such ticket, not the agent's, nobody to answer) is answered with its
    error and the others still commit."""
    now = utcnow()
    out: list[MessageRead | Exception | None] = [None] * len(batch)
    async with rt.write() as tx:
        conn = tx.conn
        read_tickets, update_tickets = _REPLY_STATEMENTS[conn.dialect.name == "postgresql"]
        ticket_ids = sorted({r.ticket_id for r in batch})
        ticket_rows: dict[int, Any] = {}
        last_in: dict[int, _LastInbound] = {}
        for r in await fetch_all(conn, read_tickets, {"ids": ticket_ids}):
            ticket_rows[r.id] = r
            if r.in_sender:
                last_in[r.id] = _LastInbound(
                    r.in_channel, r.in_external_id, r.in_sender, r.in_recipient, r.in_meta, r.in_at
                )
        # Read after the tickets are locked (PostgreSQL; SQLite has one writer): a send repeated meanwhile
        # waits for this one, and then finds its message.
        earlier = await _keyed_messages(conn, {(r.ticket_id, r.client_key) for r in batch if r.client_key})
        # The templates in force (edited in the admin page), read only when a reply of the batch sends one.
        templates = await templates_of(conn) if any(r.template is not None for r in batch) else []
        first_with_key: dict[tuple[int, str], int] = {}  # a key sent twice in this batch: the first's index
        repeats: list[tuple[int, int]] = []
        rows: list[dict[str, Any]] = []
        outbound: list[OutboundMessage] = []
        accepted: list[int] = []  # indexes into batch
        for i, request in enumerate(batch):
            ticket_id = request.ticket_id
            row = ticket_rows.get(ticket_id)
            try:
                if row is None:
                    raise TicketNotFound(f"ticket {ticket_id} does not exist")
                check_visible(request.principal, row)
                if request.client_key:
                    key = (ticket_id, request.client_key)
                    if key in earlier:
                        out[i] = _sent_before(earlier[key], request.principal, Direction.OUTBOUND, request.text)
                        continue
                    if key in first_with_key:
                        repeats.append((i, first_with_key[key]))
                        continue
                if row.status not in OPEN_STATUS_VALUES:
                    # As the console: no reply on a solved or closed ticket (the customer's next message opens
                    # a new one). A repeated send of a reply stored before the ticket was solved got its answer
                    # above.
                    raise TicketNotOpen(
                        f"ticket {ticket_id} is {row.status}: reopen it first (PATCH /api/tickets/{ticket_id} "
                        '{"status": "open"}) to reply; internal notes still go on it'
                    )
                last = last_in.get(ticket_id)
                if last is None:
                    raise NoRecipient(f"ticket {ticket_id} has no inbound message to reply to")
                extra = _windowed(row.reply_channel or row.channel, last, request, now, templates)
            except (
                TicketNotFound,
                NotYourTicket,
                TicketNotOpen,
                NoRecipient,
                ClientKeyReused,
                OutsideWindow,
                UnknownTemplate,
            ) as exc:
                out[i] = exc
                continue
            if request.client_key:
                first_with_key[(ticket_id, request.client_key)] = i
            msg, message = _reply_message(rt, row, last, request, now, extra)
            rows.append(msg)
            outbound.append(message)
            accepted.append(i)
        if rows:
            ids = await insert_returning_ids(conn, messages, rows)
            for msg, message, mid in zip(rows, outbound, ids, strict=True):
                msg["id"] = message.message_id = mid
            await message_files.record(conn, rows)
            await search_index.index_new(conn, tickets=False)
            # With this process's dispatcher running, the rows are leased to it as they are written and handed
            # to it after the commit: no pass has to find and claim them. Should the process stop before
            # sending them, any dispatcher claims them once the lease ends.
            handoff: OutboxHandoff | None = rt.caches.get(OUTBOX_HANDOFF)
            leased_until = now + handoff.lease if handoff is not None else None
            # One outbox row per message (message_id is unique): on PostgreSQL one statement reads the keys back.
            outbox_ids = await insert_returning_ids_by(
                conn,
                outbox,
                [
                    {
                        "message_id": m.message_id,
                        "channel": m.channel,
                        "payload": m.model_dump(mode="json"),
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "locked_until": leased_until,
                        "created_at": now,
                    }
                    for m in outbound
                ],
                ("message_id",),
            )
            replied = sorted({batch[i].ticket_id for i in accepted})  # locked above, on PostgreSQL
            # The update answers the tickets' new state, for the events.
            updated = {r.id: r for r in await fetch_all(conn, update_tickets, {"ids": replied, "now": now})}
            # Each message's event, and after a ticket's last message in this batch, the ticket's new state.
            last_of = {batch[i].ticket_id: n for n, i in enumerate(accepted)}
            for n, (i, msg) in enumerate(zip(accepted, rows, strict=True)):
                ticket = updated[batch[i].ticket_id]
                tx.emit(message_event(msg, ticket))
                if last_of[batch[i].ticket_id] == n:
                    tx.emit(ticket_event(EventType.TICKET_UPDATED, ticket))
                out[i] = MessageRead.model_validate({**msg, "delivery_error": None})
            for i, first in repeats:
                same = batch[first].principal.agent_id == batch[i].principal.agent_id and (
                    batch[first].text == batch[i].text
                )
                out[i] = out[first] if same else ClientKeyReused(f"client key {batch[i].client_key!r} was sent twice")
            if handoff is not None:
                handed = list(zip(outbox_ids, outbound, strict=True))
                tx.after_commit.append(lambda: handoff.hand(handed))
            else:
                tx.after_commit.append(rt.outbox_wakeup.set)
    return [o if o is not None else RuntimeError("reply not answered") for o in out]


def _windowed(
    channel: str, last_in: _LastInbound, request: _ReplyRequest, now: datetime, templates: list[MessageTemplate]
) -> tuple[str, dict[str, Any]]:
    """What the channel's messaging window makes of a reply (``hub.windows``): its text (a template's, filled in)
    and what the sender must know (the template, the tag). Raises ``OutsideWindow`` for free text after the
    window closed, ``UnknownTemplate`` for a template that is not in force (``ticketing.templates``) or not
    filled in."""
    rule = rule_of(channel)
    if rule is None and request.template is None and not request.private:
        return request.text, {}  # most replies: a channel without a window, plain text
    state = window_state(channel, last_in.at, now)
    extra: dict[str, Any] = {}
    text = request.text
    if request.template is not None:
        if rule is None or not rule.templates:
            raise UnknownTemplate(f"{channel} has no message templates", loc=("body", "template"))
        chosen = request.template
        found = next((t for t in templates if t.name == chosen.name and channel in t.channels), None)
        if found is None:
            raise UnknownTemplate(
                f"no approved template {chosen.name!r} for {channel}", loc=("body", "template", "name")
            )
        wanted = variables_of(found.body)
        if len(chosen.variables) != wanted or any(not v.strip() for v in chosen.variables):
            raise UnknownTemplate(
                f"template {found.name!r} takes {wanted} variable(s), each filled in",
                loc=("body", "template", "variables"),
            )
        text = PLACEHOLDER.sub(lambda m: chosen.variables[int(m.group(1)) - 1], found.body)
        extra["template"] = {"name": found.name, "language": found.language, "variables": list(chosen.variables)}
        if found.content_sid:
            extra["template"]["content_sid"] = found.content_sid
    elif state.status == WindowStatus.CLOSED:
        raise OutsideWindow(state.reason or "the messaging window is closed", loc=("body", "text"))
    elif state.status == WindowStatus.TAGGED and state.tag:
        extra["tag"] = state.tag
    if request.private:
        extra["private"] = True
    return text, extra


def _reply_message(
    rt: Runtime,
    row: Any,
    last_in: _LastInbound,
    request: _ReplyRequest,
    now: datetime,
    windowed: tuple[str, dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], OutboundMessage]:
    """The message row of a reply and what its channel's sender will send (``message_id`` set once stored).
    The channel's reply hook, if it has one (``Runtime.reply_hooks``), first adds what only the channel knows:
    an email's Message-ID, subject and In-Reply-To."""
    ticket_id = row.id
    # A conversation moved to another channel (a chat left for email) is answered there.
    channel = row.reply_channel or row.channel
    recipient = row.reply_to or last_in.sender
    moved = channel != last_in.channel
    # What the reply answers: the answered message's own references, then its id (none once the conversation
    # moved to another channel, where those ids mean nothing).
    references = (
        [*(last_in.meta or {}).get("references", []), last_in.external_id] if last_in.external_id and not moved else []
    )
    text, extra = windowed or (request.text, {})
    outbound = OutboundMessage(
        message_id=0,
        ticket_id=ticket_id,
        channel=channel,
        recipient=recipient,
        text=text,
        references=references,
        sender_address=None if moved else last_in.recipient,
        agent_name=request.principal.display_name,
        attachments=list(request.attachments),
        metadata={**(request.metadata or {}), **({"thread_key": row.thread_key} if row.thread_key else {}), **extra},
    )
    hook = rt.reply_hooks.get(channel)
    if hook is not None:
        hook(outbound, ticket_subject=row.subject)
    msg = {
        "ticket_id": ticket_id,
        "direction": Direction.OUTBOUND.value,
        "channel": channel,
        "external_id": outbound.external_id,
        "author_agent_id": request.principal.agent_id,
        "sender": None,
        "recipient": recipient,
        "subject": outbound.subject,
        "text": text,
        "html": None,
        "attachments": [a.model_dump(mode="json") for a in request.attachments],
        "meta": {**(request.metadata or {}), **({"references": references} if references else {}), **extra},
        "delivery_status": DeliveryStatus.PENDING.value,
        "created_at": now,
        "contact_id": row.contact_id,
        "client_key": request.client_key,
    }
    return msg, outbound


class ReplyWindow(WindowState):
    """A ticket's messaging window now (``hub.windows``), with the templates an agent may send on its channel."""

    ticket_id: int
    templates: list[MessageTemplate] = []


async def reply_window(rt: Runtime, *, ticket_id: int, principal: Principal) -> ReplyWindow:
    """How long, and how, the agent may still answer the ticket's customer on its channel."""
    async with rt.read() as conn:
        row = await ticket_row(conn, ticket_id)
        check_visible(principal, row)
        at = (
            await conn.execute(
                select(func.coalesce(messages.c.received_at, messages.c.created_at))
                .where(messages.c.ticket_id == ticket_id, messages.c.direction == Direction.INBOUND.value)
                .order_by(messages.c.id.desc())
                .limit(1)
            )
        ).scalar()
        channel = row.reply_channel or row.channel
        rule = rule_of(channel)
        templates = await templates_of(conn, channel) if rule is not None and rule.templates else []
    state = window_state(channel, at, utcnow())
    return ReplyWindow(**state.model_dump(), ticket_id=ticket_id, templates=templates)


async def add_note(
    rt: Runtime, *, ticket_id: int, principal: Principal, text: str, client_key: str | None = None
) -> MessageRead:
    """An internal note: visible to agents only, never sent to the customer. A note sent again with the
    ``client_key`` of one already stored on the ticket stores nothing and answers that one."""
    now = utcnow()
    async with rt.write() as tx:
        # Locked when keyed (PostgreSQL): a repeated send waits for this one, then finds its note.
        row = await ticket_row(tx.conn, ticket_id, lock=client_key is not None)
        check_visible(principal, row)
        if client_key:
            earlier = await _keyed_messages(tx.conn, {(ticket_id, client_key)})
            if earlier:
                return _sent_before(earlier[(ticket_id, client_key)], principal, Direction.NOTE, text)
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
            "client_key": client_key,
        }
        msg_row = (await tx.conn.execute(messages.insert().values(**msg).returning(*messages.c))).one()
        await message_files.record(tx.conn, [dict(msg_row._mapping)])
        await search_index.index_new(tx.conn, tickets=False)
        updated = (
            await tx.conn.execute(
                update(tickets).where(tickets.c.id == ticket_id).values(updated_at=now).returning(*tickets.c)
            )
        ).one()
        tx.emit(message_event(dict(msg_row._mapping), updated))
    return MessageRead.model_validate(msg_row._mapping)

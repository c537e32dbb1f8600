"""The core's side of the ports (``hub.ports``): what channels and the knowledge base ask the ticketing core,
answered by the service functions. ``register_ports(rt)`` puts them on the runtime; ``hub/app.py`` calls it
at start (and a command that needs the ports calls it on its runtime).

A method that only hands over to a service function returns that function's coroutine rather than awaiting
it: the caller's ``await`` runs it, and the port costs no coroutine of its own (receipts and history are read
for every chat message shown)."""

from __future__ import annotations

from collections.abc import Collection, Coroutine, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from hub.config import MessageTemplate
from hub.messages import AlsoInTransaction, Identity
from hub.ports import (
    ContactSummary,
    ConversationState,
    DeliveryReceipt,
    EmailFallback,
    Ports,
    PrincipalRecord,
    QueueAvailability,
    StoredMessage,
    TicketBrief,
    TicketText,
    TimelineNote,
)
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing import agents, conversations, message_files, outbox, phone, tables, templates
from ticketing.exceptions import TicketNotFound
from ticketing.models import Direction, OutboxStatus
from ticketing.tickets import check_visible, ticket_row

# The columns ``message_by_external_id`` reads, and the statement, built once.
_BY_EXTERNAL_ID = select(
    tables.messages.c.id,
    tables.messages.c.ticket_id,
    tables.messages.c.channel,
    tables.messages.c.external_id,
    tables.messages.c.sender,
    tables.messages.c.text,
    tables.messages.c.created_at,
    tables.messages.c.meta,
)


class Agents:
    """``hub.ports.AgentPort``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def principal(self, agent_id: int) -> PrincipalRecord | None:
        loaded = await agents.load_principal(self.rt, agent_id=agent_id)
        if loaded is None:
            return None
        principal, password_hash = loaded
        return PrincipalRecord(principal=principal, password_hash=password_hash)

    def public_name(self, agent_id: int) -> Coroutine[Any, Any, str | None]:
        return conversations.agent_name(self.rt, agent_id=agent_id)


class Contacts:
    """``hub.ports.ContactPort``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def link_verified(self, *, identities: Sequence[Identity], name: str | None) -> Coroutine[Any, Any, int]:
        return conversations.link_verified(self.rt, identities=identities, name=name)

    def note_unverified_email(self, *, contact_id: int, ticket_id: int, email: str) -> Coroutine[Any, Any, None]:
        return conversations.note_unverified_email(self.rt, ticket_id=ticket_id, contact_id=contact_id, email=email)

    def summary(self, *, kind: str, value: str) -> Coroutine[Any, Any, ContactSummary]:
        return phone.contact_summary(self.rt, kind=kind, value=value)


class Conversations:
    """``hub.ports.ConversationPort``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def state(
        self, *, channel: str, thread_key: str, after_message_id: int = 0
    ) -> Coroutine[Any, Any, ConversationState]:
        return conversations.conversation(
            self.rt, channel=channel, thread_key=thread_key, after_message_id=after_message_id
        )

    def rate(
        self, *, channel: str, thread_key: str, ticket_id: int, rating: int, comment: str | None
    ) -> Coroutine[Any, Any, None]:
        return conversations.rate(
            self.rt, channel=channel, thread_key=thread_key, ticket_id=ticket_id, rating=rating, comment=comment
        )

    def reply_by_email(
        self, *, channel: str, thread_key: str, email: str, verified: bool
    ) -> Coroutine[Any, Any, EmailFallback]:
        return conversations.answer_by_email(
            self.rt, channel=channel, thread_key=thread_key, email=email, verified=verified
        )

    def mark_delivered(self, *, channel: str, thread_key: str, message_ids: Sequence[int]) -> Coroutine[Any, Any, None]:
        # Every widget acknowledges every agent message it shows: the port adds no await of its own.
        return conversations.mark_delivered(self.rt, channel=channel, thread_key=thread_key, message_ids=message_ids)

    def carries_file(self, *, channel: str, thread_key: str, sha256: str) -> Coroutine[Any, Any, bool]:
        return message_files.conversation_carries_file(self.rt, channel=channel, thread_key=thread_key, sha256=sha256)

    def record_upload(self, *, channel: str, thread_key: str, sha256: str) -> Coroutine[Any, Any, None]:
        return message_files.record_upload(self.rt, channel=channel, thread_key=thread_key, sha256=sha256)

    def attachable(self, *, channel: str, thread_key: str, sha256s: Collection[str]) -> Coroutine[Any, Any, set[str]]:
        return message_files.attachable(self.rt, channel=channel, thread_key=thread_key, sha256s=sha256s)

    def advance(self, *, channel: str, receipts: Sequence[DeliveryReceipt]) -> Coroutine[Any, Any, int]:
        return outbox.advance(self.rt, channel=channel, receipts=receipts)

    def close_deflected(
        self, *, channel: str, thread_key: str, article_id: int, article_title: str
    ) -> Coroutine[Any, Any, int | None]:
        return conversations.close_deflected(
            self.rt, channel=channel, thread_key=thread_key, article_id=article_id, article_title=article_title
        )


class Queues:
    """``hub.ports.QueuePort``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def availability(self, *, channel: str, queue: str | None) -> Coroutine[Any, Any, QueueAvailability]:
        return conversations.availability(self.rt, channel=channel, queue=queue)


class Tickets:
    """``hub.ports.TicketPort``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def may_see(self, *, principal: Principal, ticket_id: int) -> bool:
        async with self.rt.read() as conn:
            try:
                row = await ticket_row(conn, ticket_id)
            except TicketNotFound:
                return False
        return principal.can_see_ticket(
            queue_id=row.queue_id, assignee_id=row.assignee_id, offered_agent_id=row.offered_agent_id
        )

    async def customer_text(self, *, principal: Principal, ticket_id: int, messages: int = 5) -> TicketText:
        async with self.rt.read() as conn:
            row = await ticket_row(conn, ticket_id)
            check_visible(principal, row)
            texts = (
                await conn.execute(
                    select(tables.messages.c.text)
                    .where(
                        tables.messages.c.ticket_id == ticket_id, tables.messages.c.direction == Direction.INBOUND.value
                    )
                    .order_by(tables.messages.c.id.desc())
                    .limit(max(0, messages))
                )
            ).scalars()
            newest_first = [t or "" for t in texts]
        return TicketText(ticket_id=row.id, channel=row.channel, subject=row.subject or "", texts=newest_first[::-1])

    async def message_by_external_id(self, *, channel: str, external_id: str) -> StoredMessage | None:
        async with self.rt.read() as conn:
            row = (
                await conn.execute(
                    _BY_EXTERNAL_ID.where(
                        tables.messages.c.channel == channel, tables.messages.c.external_id == external_id
                    )
                )
            ).first()
        if row is None:
            return None
        return StoredMessage(
            id=row.id,
            ticket_id=row.ticket_id,
            channel=row.channel,
            external_id=row.external_id,
            sender=row.sender,
            text=row.text or "",
            created_at=row.created_at,
            metadata=row.meta or {},
        )

    def brief(self, *, ticket_id: int) -> Coroutine[Any, Any, TicketBrief | None]:
        return phone.ticket_brief(self.rt, ticket_id=ticket_id)

    def add_timeline(
        self, *, ticket_id: int, text: str, metadata: dict[str, Any], also: AlsoInTransaction | None = None
    ) -> Coroutine[Any, Any, int]:
        return phone.add_timeline(self.rt, ticket_id=ticket_id, text=text, metadata=metadata, also=also)

    def abandon(self, *, ticket_id: int, reason: str) -> Coroutine[Any, Any, bool]:
        return phone.abandon(self.rt, ticket_id=ticket_id, reason=reason)

    def call_answered(
        self,
        *,
        ticket_id: int,
        at: datetime,
        note: TimelineNote | None = None,
        also: AlsoInTransaction | None = None,
    ) -> Coroutine[Any, Any, bool]:
        return phone.call_answered(self.rt, ticket_id=ticket_id, at=at, note=note, also=also)

    def call_missed(self, *, ticket_id: int, agent_id: int, reason: str) -> Coroutine[Any, Any, bool]:
        return phone.call_missed(self.rt, ticket_id=ticket_id, agent_id=agent_id, reason=reason)

    def call_again(self, *, ticket_id: int, reason: str) -> Coroutine[Any, Any, int | None]:
        return phone.call_again(self.rt, ticket_id=ticket_id, reason=reason)

    def send_as(
        self, *, agent_id: int, ticket_id: int, text: str, client_key: str, metadata: dict[str, Any] | None = None
    ) -> Coroutine[Any, Any, int]:
        return phone.send_as(
            self.rt, agent_id=agent_id, ticket_id=ticket_id, text=text, client_key=client_key, metadata=metadata
        )

    def set_delivery_status(
        self, *, message_id: int, status: str, error: str | None = None
    ) -> Coroutine[Any, Any, bool]:
        return phone.move_delivery_status(self.rt, message_id=message_id, status=status, error=error)

    async def awaiting_delivery(self, *, message_ids: Collection[int]) -> set[int]:
        ids = list(message_ids)
        if not ids:
            return set()
        async with self.rt.read() as conn:
            found = await conn.execute(
                select(tables.outbox.c.message_id).where(
                    tables.outbox.c.message_id.in_(ids), tables.outbox.c.status == OutboxStatus.PENDING.value
                )
            )
            return {int(row.message_id) for row in found}

    def may_read_file(self, *, principal: Principal, sha256: str) -> Coroutine[Any, Any, bool]:
        return message_files.may_read_file(self.rt, principal=principal, sha256=sha256)

    async def message_templates(self, *, channel: str | None = None) -> list[MessageTemplate]:
        async with self.rt.read() as conn:
            return await templates.templates_of(conn, channel)


def core_ports(rt: Runtime) -> Ports:
    """The core's implementation of every port, for ``rt``."""
    return Ports(
        agents=Agents(rt),
        contacts=Contacts(rt),
        conversations=Conversations(rt),
        queues=Queues(rt),
        tickets=Tickets(rt),
    )


def register_ports(rt: Runtime) -> None:
    """Register the core's ports on ``rt`` (``rt.ports``)."""
    rt.ports = core_ports(rt)

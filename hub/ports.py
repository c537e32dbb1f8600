"""Typed ports: what the channels and the knowledge base need from the ticketing core.

A port is a Protocol defined here, in ``hub``, whose methods answer pydantic models (or plain values).
``ticketing/ports.py`` implements every port and ``hub/app.py`` registers the implementations on the
runtime when the application starts (``rt.ports``); a CLI command that needs them registers them the same way.
A package that needs the core asks ``rt.ports.<port>``: it never imports ``ticketing``, never reads its
tables by name, never receives a bag of functions. A method keeps its keyword-only arguments, and a failure
is one of the core's exceptions (``hub.errors`` subclasses with stable codes: ``ticket_not_found``,
``ticket_forbidden``, ...), so a view that lets it through answers what the core's own API answers.

    port              registered as            used by
    AgentPort         rt.ports.agents          hub.deps (authentication), webchat and twilio (the agent's name;
                                               twilio: whose phone to dial)
    ContactPort       rt.ports.contacts        webchat (verified visitors, the pre-chat email); twilio (the IVR's
                                               lookup: the caller's name and open requests)
    ConversationPort  rt.ports.conversations   webchat (history, rating, receipts, moving to email, closing a
                                               conversation a knowledge-base article answered); hub.file_access
                                               (a visitor's files: to read, to upload and
                                               attach); social (providers' delivery and read receipts)
    QueuePort         rt.ports.queues          webchat (is anybody available), twilio (is the queue open)
    TicketPort        rt.ports.tickets         email (the message a reply quotes); the knowledge base's
                                               suggestions (who may see a ticket, its text); twilio (a call's
                                               timeline, abandoned calls, the callback through the outbox,
                                               delivery receipts, WhatsApp's window); hub.file_access (who may
                                               read a stored file); social (which replies still wait in the
                                               outbox)

Adding a port, or a method to one (CONTRIBUTING.md): the Protocol and its models here; the implementation in
``ticketing/ports.py`` (calling the core's service functions); a field on ``Ports``; a test of it through
``rt.ports``. Add what a package uses, or is being written to use; a port nobody calls is dead code.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from hub.config import MessageTemplate
from hub.messages import AlsoInTransaction, Identity
from hub.principals import Principal


class PortModel(BaseModel):
    """What ports answer: typed, and immutable once answered."""

    model_config = ConfigDict(frozen=True)


# --- agents -------------------------------------------------------------------------------------------------------


class PrincipalRecord(PortModel):
    """An active agent as a session needs it: who they are, and the password hash their token must match."""

    principal: Principal
    password_hash: str


class AgentPort(Protocol):
    async def principal(self, agent_id: int) -> PrincipalRecord | None:
        """The active agent ``agent_id`` (None: no such agent, or deactivated)."""

    async def public_name(self, agent_id: int) -> str | None:
        """The name customers see for an agent."""


# --- contacts -----------------------------------------------------------------------------------------------------


class TicketBrief(PortModel):
    """A ticket as a channel needs it at a glance: who holds it, and when its customer last wrote."""

    id: int
    subject: str
    status: str
    channel: str
    contact_id: int
    queue_id: int | None
    assignee_id: int | None
    last_inbound_at: datetime | None  # the customer's newest message (WhatsApp's 24-hour window counts from it)


class ContactSummary(PortModel):
    """Who a phone number or address is: the contact (None: unknown), their name, their open tickets (newest
    first)."""

    contact_id: int | None
    name: str | None
    open_tickets: list[TicketBrief]


class ContactPort(Protocol):
    async def summary(self, *, kind: str, value: str) -> ContactSummary:
        """The contact reached as (kind, value), normalized as ingest does (a phone number in E.164, the same
        person under SMS, voice and WhatsApp), with their open tickets; an unknown or unparseable value
        answers ``contact_id=None``."""

    async def link_verified(self, *, identities: Sequence[Identity], name: str | None) -> int:
        """Identities a site vouched for belong to one contact: the contact of the first of them already
        known, else a new one; the others are added to it unless another contact has them. Answers the
        contact's id. Call only with identities someone verified."""

    async def note_unverified_email(self, *, contact_id: int, ticket_id: int, email: str) -> None:
        """An address the customer gave but nobody verified: kept in the contact's attributes (marked not
        verified) where agents see it, never as an identity. A contact with a verified address keeps it."""


# --- conversations ------------------------------------------------------------------------------------------------


class ConversationMessage(PortModel):
    """A message of a conversation as its customer may see it (never an internal note)."""

    id: int
    ticket_id: int
    direction: str  # inbound | outbound
    channel: str
    text: str
    attachments: list[dict[str, Any]]
    author_name: str | None  # the agent who wrote it, as customers see them
    delivery_status: str
    metadata: dict[str, Any]
    created_at: datetime


class ConversationTicket(PortModel):
    """One ticket of a conversation and who holds it."""

    id: int
    status: str
    queue_id: int | None
    assignee_id: int | None
    offered_agent_id: int | None
    assignee_name: str | None
    rating: int | None
    reply_channel: str | None  # replies go out on another channel (a chat answered by email)
    reply_to: str | None
    deflected: bool = False  # closed by its customer: a knowledge-base article answered them (nothing to rate)


class ConversationState(PortModel):
    """A conversation (every ticket of a channel with one thread key): its tickets, oldest first, the newest
    one, and its messages after a given id."""

    tickets: list[ConversationTicket]
    messages: list[ConversationMessage]

    @property
    def current(self) -> ConversationTicket | None:
        return self.tickets[-1] if self.tickets else None


class EmailFallback(PortModel):
    """A conversation now answered by email: its ticket, the address, and whether it became an identity."""

    ticket_id: int
    reply_to: str
    linked: bool


class DeliveryReceipt(PortModel):
    """A provider's receipt for one of our messages: by the message's id (the channel keeps which provider id
    is which message), or, for providers that acknowledge "everything up to a time" (Messenger's watermarks),
    by the recipient and that time (``before``): every message to them the provider took by then."""

    message_id: int | None = None
    status: str  # sent | delivered | read | failed
    error: str | None = None
    recipient: str | None = None
    before: datetime | None = None


class ConversationPort(Protocol):
    async def state(self, *, channel: str, thread_key: str, after_message_id: int = 0) -> ConversationState:
        """The conversation as its customer sees it: the messages after ``after_message_id``, no notes."""

    async def rate(self, *, channel: str, thread_key: str, ticket_id: int, rating: int, comment: str | None) -> None:
        """The customer's satisfaction (1-5) and comment on a solved ticket of their conversation, once."""

    async def reply_by_email(self, *, channel: str, thread_key: str, email: str, verified: bool) -> EmailFallback:
        """Nobody can answer here now: the conversation's open ticket stays in its queue and is answered by
        email. The address becomes an identity of the contact only when ``verified`` and nobody else has it."""

    async def mark_delivered(self, *, channel: str, thread_key: str, message_ids: Sequence[int]) -> None:
        """The customer's app showed these agent messages: their delivery status moves forward to delivered
        (never back), for the messages of this conversation only. Returns once committed."""

    async def carries_file(self, *, channel: str, thread_key: str, sha256: str) -> bool:
        """Whether a message of this conversation that its customer sees (never a note) carries the stored file
        ``sha256``. Ask through ``hub.file_access``, not directly."""

    async def record_upload(self, *, channel: str, thread_key: str, sha256: str) -> None:
        """The customer of this conversation uploaded the stored file ``sha256`` (to send it in a message).
        Returns once committed. Through ``hub.file_access``, not directly."""

    async def attachable(self, *, channel: str, thread_key: str, sha256s: Collection[str]) -> set[str]:
        """Those of ``sha256s`` a new message of this conversation may carry: uploaded in it, or already carried
        by a message of it its customer sees. Ask through ``hub.file_access``, not directly."""

    async def advance(self, *, channel: str, receipts: Sequence[DeliveryReceipt]) -> int:
        """Providers' receipts: each named message's delivery status moves forward (never back; failed is
        final, with the provider's reason). Answers how many messages moved. Returns once committed."""

    async def close_deflected(
        self, *, channel: str, thread_key: str, article_id: int, article_title: str
    ) -> int | None:
        """The customer says an article offered by self-service answered their question: the conversation's
        open ticket closes as deflected (status closed, the tag ``deflected``, an internal note naming the
        article, no rating asked; an agent it was offered or assigned to is freed). Answers the ticket's id;
        None when the conversation has no open ticket (nothing was asked yet: nothing to close)."""


# --- queues -------------------------------------------------------------------------------------------------------


class QueueAvailability(PortModel):
    """Whether anybody could answer now in a queue."""

    queue: str | None
    open: bool  # within its business hours
    agents_available: int
    available: bool  # open, and somebody available


class QueuePort(Protocol):
    async def availability(self, *, channel: str, queue: str | None) -> QueueAvailability:
        """``queue`` by name; without one (or an unknown one), the first queue listing ``channel``, else the
        first queue."""


# --- tickets and messages -----------------------------------------------------------------------------------------


class StoredMessage(PortModel):
    """A stored message, as another message may quote it."""

    id: int
    ticket_id: int
    channel: str
    external_id: str | None
    sender: str | None
    text: str
    created_at: datetime
    metadata: dict[str, Any] = {}  # what the channel kept with it (Twilio's media links)


class TicketText(PortModel):
    """What the customer wrote in a ticket, lately: its subject and its newest inbound messages' text, oldest
    first."""

    ticket_id: int
    channel: str
    subject: str
    texts: list[str]


@dataclass(frozen=True, slots=True)
class TimelineNote:
    """A line the system writes on a ticket's timeline (``TicketPort.add_timeline``'s text and metadata)."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


class TicketPort(Protocol):
    async def may_see(self, *, principal: Principal, ticket_id: int) -> bool:
        """Whether the ticket exists and ``principal`` may see it."""

    async def customer_text(self, *, principal: Principal, ticket_id: int, messages: int = 5) -> TicketText:
        """The ticket's subject and its last ``messages`` inbound texts; raises the core's ``ticket_not_found``
        (404) or ``ticket_forbidden`` (403) as the ticket API does."""

    async def message_by_external_id(self, *, channel: str, external_id: str) -> StoredMessage | None:
        """The message stored under the channel's own id (an email's Message-ID), if any."""

    async def brief(self, *, ticket_id: int) -> TicketBrief | None:
        """The ticket at a glance (None: no such ticket)."""

    async def add_timeline(
        self, *, ticket_id: int, text: str, metadata: dict[str, Any], also: AlsoInTransaction | None = None
    ) -> int:
        """A line of the ticket's timeline written by the system (a call answered, ended, a voicemail): an
        internal note with no author, ``metadata`` kept on it. Answers the note's id; raises the core's
        ``ticket_not_found``. ``also`` runs first in the note's transaction (the channel's own record of what
        the line says, committed with it, or neither: whatever it raises rolls both back and is raised)."""

    async def abandon(self, *, ticket_id: int, reason: str) -> bool:
        """The customer gave up waiting (a caller hung up in the queue): the ticket leaves its queue and any
        offer, is solved and tagged ``abandoned``, and a ``call.abandoned`` event is appended (supervisors
        count them). Only a ticket nobody has accepted; answers whether it was abandoned."""

    async def call_answered(
        self,
        *,
        ticket_id: int,
        at: datetime,
        note: TimelineNote | None = None,
        also: AlsoInTransaction | None = None,
    ) -> bool:
        """The agent who took a call's ticket picked up at ``at`` (their phone leg answered): the ticket's
        ``answered_at`` (service level, ASA and the wallboard count from it), with a ``ticket.updated`` event.
        Taking a call's ticket does not stamp it. Answers whether it was stamped now (not before). ``note``
        adds a line to the ticket's timeline, as ``add_timeline``, and ``also`` runs first, both in the same
        transaction (whatever ``also`` raises rolls all back and is raised)."""

    async def call_missed(self, *, ticket_id: int, agent_id: int, reason: str) -> bool:
        """The agent who took a call's ticket did not pick up (busy, no answer): the ticket goes back to its
        queue keeping its place in line and is offered to another agent. Only a ticket still held by
        ``agent_id`` (answered before, for a repeat call, or not); answers whether it went back."""

    async def call_again(self, *, ticket_id: int, reason: str) -> int | None:
        """The customer rang again and the new call joined their open ticket, which an agent holds: answers
        that agent when they are available (the new call is theirs); otherwise the ticket goes back to its
        queue, keeping its place, and routing offers it to another agent (None; None also when no one holds
        it)."""

    async def send_as(
        self, *, agent_id: int, ticket_id: int, text: str, client_key: str, metadata: dict[str, Any] | None = None
    ) -> int:
        """A message to the customer on the ticket's channel in the agent's name, through the outbox (delivered
        by the channel's sender, retried with backoff): what a channel does for an agent (the phone's callback
        call, a WhatsApp template). ``metadata`` reaches the sender (``OutboundMessage.metadata``) and stays on
        the message. Idempotent on ``client_key`` per ticket. Answers the message's id; raises the core's
        ``ticket_not_found`` or ``agent_not_found``."""

    async def set_delivery_status(self, *, message_id: int, status: str, error: str | None = None) -> bool:
        """A provider's receipt for an outbound message: its delivery status moves forward (never back; failed
        is final), with the core's ``message.status`` event. Answers whether it moved."""

    async def awaiting_delivery(self, *, message_ids: Collection[int]) -> set[int]:
        """Those of ``message_ids`` still waiting in the outbox to be sent (or sent again after a failure): not
        sent, not failed for good, not erased."""

    async def may_read_file(self, *, principal: Principal, sha256: str) -> bool:
        """Whether a message carrying the stored file ``sha256`` is in a ticket ``principal`` may see. Ask
        through ``hub.file_access``, not directly."""

    async def message_templates(self, *, channel: str | None = None) -> list[MessageTemplate]:
        """The approved message templates in force (for ``channel``, when given), as the admin page edits them
        and ``SWITCHBOARD_WHATSAPP_TEMPLATES`` seeds them."""


# --- the registry -------------------------------------------------------------------------------------------------


class PortNotRegistered(RuntimeError):
    """A port was used before the core registered it (``ticketing.ports.register_ports``)."""


class _Unregistered:
    """Stands for a port until the core registers it: any use says which port is missing."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        raise PortNotRegistered(
            f"rt.ports.{self._name} is not registered: hub/app.py registers the core's ports at start "
            "(ticketing.ports.register_ports)"
        )


def _unregistered(name: str) -> Any:
    return field(default_factory=lambda: _Unregistered(name))


@dataclass(slots=True)
class Ports:
    """The core's ports for one runtime (``Runtime.ports``)."""

    agents: AgentPort = _unregistered("agents")
    contacts: ContactPort = _unregistered("contacts")
    conversations: ConversationPort = _unregistered("conversations")
    queues: QueuePort = _unregistered("queues")
    tickets: TicketPort = _unregistered("tickets")

    @property
    def registered(self) -> bool:
        return not any(isinstance(getattr(self, f.name), _Unregistered) for f in fields(self))

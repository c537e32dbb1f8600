"""Tables and API schemas of the ticketing core (the multiple-models pattern: table + Create/Update/Read)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PField
from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.db import JSONType, UTCDateTime, utcnow


class IdentityKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    TELEGRAM = "telegram"
    WEBCHAT = "webchat"


class TicketStatus(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    SOLVED = "solved"
    CLOSED = "closed"


OPEN_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    NOTE = "note"


class DeliveryStatus(StrEnum):
    RECEIVED = "received"
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class Role(StrEnum):
    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


class AgentStatus(StrEnum):
    AVAILABLE = "available"
    AWAY = "away"
    WRAP_UP = "wrap_up"
    OFFLINE = "offline"


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


# --- tables -------------------------------------------------------------------------------------------


class Contact(SQLModel, table=True):
    __tablename__ = "contacts"

    id: int | None = Field(default=None, primary_key=True)
    name: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ContactIdentity(SQLModel, table=True):
    """One way to reach a contact; (kind, value) is unique, so an address always resolves to one contact."""

    __tablename__ = "contact_identities"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_identity_kind_value"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    kind: str = Field(max_length=20)
    value: str = Field(max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Queue(SQLModel, table=True):
    __tablename__ = "queues"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    description: str = ""
    channels: list[str] = Field(default_factory=list, sa_type=JSONType)
    required_skills: dict[str, int] = Field(default_factory=dict, sa_type=JSONType)
    priority: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AgentQueue(SQLModel, table=True):
    __tablename__ = "agent_queues"

    agent_id: int = Field(foreign_key="agents.id", primary_key=True)
    queue_id: int = Field(foreign_key="queues.id", primary_key=True, index=True)


class Agent(SQLModel, table=True):
    """A user of the console: agent, supervisor or admin."""

    __tablename__ = "agents"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=100, unique=True)
    display_name: str = Field(default="", max_length=200)
    password_hash: str
    role: str = Field(default=Role.AGENT, max_length=20)
    status: str = Field(default=AgentStatus.OFFLINE, max_length=20)
    status_changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    skills: dict[str, int] = Field(default_factory=dict, sa_type=JSONType)
    capacity: dict[str, int] = Field(default_factory=dict, sa_type=JSONType)
    last_assigned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Ticket(SQLModel, table=True):
    __tablename__ = "tickets"
    __table_args__ = (
        Index("ix_tickets_contact_channel_status", "contact_id", "channel", "status"),
        Index("ix_tickets_queue_status", "queue_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(default="", max_length=500)
    status: str = Field(default=TicketStatus.NEW, max_length=20)
    priority: str = Field(default=Priority.NORMAL, max_length=20)
    channel: str = Field(max_length=20)
    thread_key: str | None = Field(default=None, max_length=255, index=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    queue_id: int | None = Field(default=None, foreign_key="queues.id")
    assignee_id: int | None = Field(default=None, foreign_key="agents.id", index=True)
    offered_agent_id: int | None = Field(default=None, foreign_key="agents.id")
    offer_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tags: list[str] = Field(default_factory=list, sa_type=JSONType)
    linked_ticket_id: int | None = Field(default=None, foreign_key="tickets.id")
    # Satisfaction, as the customer gave it when the conversation was solved (1-5).
    rating: int | None = None
    rating_comment: str | None = Field(default=None, max_length=2000)
    # A conversation that cannot be answered where it started (a chat with nobody available) is answered on
    # another channel: replies go out on ``reply_channel`` to ``reply_to`` instead of the last sender.
    reply_channel: str | None = Field(default=None, max_length=20)
    reply_to: str | None = Field(default=None, max_length=320)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_message_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    first_response_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    first_response_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    solved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_message_channel_external_id"),
        Index("ix_messages_ticket_id_id", "ticket_id", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="tickets.id")
    direction: str = Field(max_length=20)
    channel: str = Field(max_length=20)
    external_id: str | None = Field(default=None, max_length=512)
    contact_id: int | None = Field(default=None, foreign_key="contacts.id")
    author_agent_id: int | None = Field(default=None, foreign_key="agents.id")
    sender: str | None = Field(default=None, max_length=320)
    recipient: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=500)
    text: str = ""
    html: str | None = None
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSONType)
    meta: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    delivery_status: str = Field(default=DeliveryStatus.RECEIVED, max_length=20)
    delivery_error: str | None = None
    received_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Outbox(SQLModel, table=True):
    """One outbound message waiting for, or done with, delivery through its channel adapter."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: int = Field(foreign_key="messages.id", unique=True)
    channel: str = Field(max_length=20)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    status: str = Field(default=OutboxStatus.PENDING, max_length=20)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CannedResponse(SQLModel, table=True):
    """A saved answer agents insert by typing ``/`` and its shortcut in the composer."""

    __tablename__ = "canned_responses"

    id: int | None = Field(default=None, primary_key=True)
    shortcut: str = Field(max_length=50, unique=True)
    title: str = Field(max_length=200)
    text: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- API schemas ----------------------------------------------------------------------------------------


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class IdentityRead(ReadModel):
    kind: str
    value: str


class ContactRead(ReadModel):
    id: int
    name: str | None
    attributes: dict[str, Any]
    identities: list[IdentityRead] = []
    created_at: datetime


class MessageRead(ReadModel):
    id: int
    ticket_id: int
    direction: str
    channel: str
    external_id: str | None
    author_agent_id: int | None
    sender: str | None
    recipient: str | None
    subject: str | None
    text: str
    html: str | None
    attachments: list[dict[str, Any]]
    delivery_status: str
    delivery_error: str | None
    created_at: datetime


class TicketRead(ReadModel):
    id: int
    number: str = ""
    subject: str
    status: str
    priority: str
    channel: str
    contact_id: int
    queue_id: int | None
    assignee_id: int | None
    offered_agent_id: int | None
    tags: list[str]
    linked_ticket_id: int | None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None
    first_response_at: datetime | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    rating: int | None = None
    rating_comment: str | None = None
    reply_channel: str | None = None
    reply_to: str | None = None

    def model_post_init(self, _context: Any) -> None:
        self.number = f"#{self.id}"


class TicketDetail(TicketRead):
    contact: ContactRead
    messages: list[MessageRead]


class TicketPage(BaseModel):
    items: list[TicketRead]
    total: int
    offset: int
    limit: int


class ContactHistory(ContactRead):
    tickets: list[TicketDetail]


class QueueCreate(BaseModel):
    name: str = PField(min_length=1, max_length=100)
    description: str = ""
    channels: list[str] = []
    required_skills: dict[str, int] = {}
    priority: int = 0


class QueueRead(ReadModel):
    id: int
    name: str
    description: str
    channels: list[str]
    required_skills: dict[str, int]
    priority: int


class AgentCreate(BaseModel):
    username: str = PField(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = PField(min_length=8, max_length=256)
    display_name: str = ""
    role: Role = Role.AGENT
    queues: list[str] = []
    skills: dict[str, int] = {}
    capacity: dict[str, int] = {}


class AgentUpdate(BaseModel):
    display_name: str | None = None
    role: Role | None = None
    queues: list[str] | None = None
    skills: dict[str, int] | None = None
    capacity: dict[str, int] | None = None
    active: bool | None = None
    password: str | None = PField(default=None, min_length=8, max_length=256)


class AgentRead(ReadModel):
    id: int
    username: str
    display_name: str
    role: str
    status: str
    skills: dict[str, int]
    capacity: dict[str, int]
    active: bool
    queue_ids: list[int] = []


class StatusChange(BaseModel):
    status: AgentStatus


class ReplyCreate(BaseModel):
    text: str = PField(min_length=1, max_length=100_000)


class NoteCreate(BaseModel):
    text: str = PField(min_length=1, max_length=100_000)


class TicketUpdate(BaseModel):
    status: TicketStatus | None = None
    priority: Priority | None = None
    tags: list[str] | None = None
    subject: str | None = PField(default=None, max_length=500)

    @field_validator("tags")
    @classmethod
    def _clean_tags(cls, tags: list[str] | None) -> list[str] | None:
        if tags is None:
            return None
        cleaned = sorted({t.strip().lower() for t in tags if t.strip()})
        if any(len(t) > 50 for t in cleaned):
            raise ValueError("a tag is at most 50 characters")
        return cleaned


class AssignRequest(BaseModel):
    agent_id: int | None


class TransferRequest(BaseModel):
    queue_id: int | None = None
    agent_id: int | None = None

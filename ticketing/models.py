"""Tables and API schemas of the ticketing core (the multiple-models pattern: table + Create/Update/Read)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator
from pydantic import Field as PField
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy import BigInteger, ForeignKey, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from hub.db import JSONType, UTCDateTime, utcnow
from hub.inputs import Count, DbInt, Id, Input
from hub.principals import Role
from ticketing.sla import HoursSpec


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
    """One customer. A contact merged into another (``merged_into_id``) or erased (``erased_at``) is kept as a
    row with ``deleted_at`` set: a merge can be undone, and an erased contact's tickets still count in reports.
    ``updated_at`` moves with every change to the contact or its identities (the search index reads what
    changed since it last looked, ``ticketing.contact_search``)."""

    __tablename__ = "contacts"
    __table_args__ = (Index("ix_contacts_updated_at", "updated_at"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str | None = Field(default=None, max_length=200)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    merged_into_id: int | None = Field(
        default=None, sa_column_args=[ForeignKey("contacts.id", name="fk_contacts_merged_into_id")]
    )
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ContactNote(SQLModel, table=True):
    """An agent's internal note on a contact (not on one ticket): never shown to the customer."""

    __tablename__ = "contact_notes"

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contacts.id", index=True)
    author_agent_id: int | None = Field(default=None, foreign_key="agents.id")
    text: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ContactMerge(SQLModel, table=True):
    """One merge of ``merged_id`` into ``survivor_id``, and exactly what moved (``moved``: identity, ticket,
    message and note ids, attribute keys added, whether the name was taken), so that it can be undone."""

    __tablename__ = "contact_merges"

    id: int | None = Field(default=None, primary_key=True)
    survivor_id: int = Field(foreign_key="contacts.id", index=True)
    merged_id: int = Field(foreign_key="contacts.id", index=True)
    moved: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    agent_id: int | None = Field(default=None, foreign_key="agents.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    undone_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    undone_by: int | None = Field(default=None, foreign_key="agents.id")


class ContactIdentity(SQLModel, table=True):
    """One way to reach a contact; (kind, value) is unique, so an address always resolves to one contact."""

    __tablename__ = "contact_identities"
    __table_args__ = (
        UniqueConstraint("kind", "value", name="uq_identity_kind_value"),
        Index("ix_contact_identities_created_at", "created_at"),
    )

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
    # Routing configuration (see ticketing.routing and ticketing.sla): business hours, SLA targets in
    # seconds of business time, overflow steps, and the maximum wait before work moves to ``overflow_queue``.
    hours: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    sla_first_response_seconds: int | None = None
    sla_resolution_seconds: int | None = None
    overflow: list[dict[str, Any]] | None = Field(default=None, sa_type=JSONType)
    max_wait_seconds: int | None = None
    overflow_queue: str | None = Field(default=None, max_length=100)
    # SLA targets per priority, overriding the two above: {"urgent": {"first_response_seconds": 900, ...}}.
    sla_policies: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    # The wallboard's service level: the share (percent, ``service_level_target``) of work answered within
    # ``service_level_seconds``; and how long the longest wait may get before the wallboard alerts.
    service_level_seconds: int = 60
    service_level_target: int = 80
    wait_alert_seconds: int = 300
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
    # Offers let expire in a row (reset by accepting or declining); at the limit the agent is set away.
    missed_offers: int = 0
    # While wrapping up after a call or chat: when the agent becomes available again.
    wrap_up_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


_WAITING = text("assignee_id IS NULL AND offered_agent_id IS NULL")
_WAITING_HIGH = text("assignee_id IS NULL AND offered_agent_id IS NULL AND priority IN ('high', 'urgent')")


def _when_set(column: str) -> dict[str, Any]:
    """A partial index's condition: rows where ``column`` is set. Most tickets have no assignee, offer or thread
    key when ingest inserts them; a full index would take an entry for every one of them. Every query on these
    columns compares them (``=``, ``IN``, ``<``), which implies the condition on both databases."""
    where = text(f"{column} IS NOT NULL")
    return {"sqlite_where": where, "postgresql_where": where}


class Ticket(SQLModel, table=True):
    __tablename__ = "tickets"
    __table_args__ = (
        # Also the index of the contact's tickets (and of the contact foreign key): a separate index on
        # contact_id alone would only cost every insert an entry more.
        Index("ix_tickets_contact_channel_status", "contact_id", "channel", "status"),
        Index("ix_tickets_queue_status", "queue_id", "status"),
        Index("ix_tickets_assignee_id", "assignee_id", **_when_set("assignee_id")),
        Index("ix_tickets_offered_agent_id", "offered_agent_id", **_when_set("offered_agent_id")),
        Index("ix_tickets_offer_expires_at", "offer_expires_at", **_when_set("offer_expires_at")),
        Index("ix_tickets_thread_key", "thread_key", **_when_set("thread_key")),
        Index("ix_tickets_queue_queued_at", "queue_id", "queued_at"),
        Index("ix_tickets_created_at", "created_at"),
        Index("ix_tickets_answered_at", "answered_at"),
        Index("ix_tickets_solved_at", "solved_at"),
        # Waiting work (held by nobody), in the orders routing reads it: see ticketing.routing_reads.waiting_rows.
        Index(
            "ix_tickets_waiting_queued",
            "queue_id",
            "channel",
            "queued_at",
            sqlite_where=_WAITING,
            postgresql_where=_WAITING,
        ),
        Index(
            "ix_tickets_waiting_due",
            "queue_id",
            "channel",
            "first_response_due_at",
            sqlite_where=_WAITING,
            postgresql_where=_WAITING,
        ),
        Index(
            "ix_tickets_waiting_high",
            "queue_id",
            "channel",
            "queued_at",
            sqlite_where=_WAITING_HIGH,
            postgresql_where=_WAITING_HIGH,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(default="", max_length=500)
    status: str = Field(default=TicketStatus.NEW, max_length=20)
    priority: str = Field(default=Priority.NORMAL, max_length=20)
    channel: str = Field(max_length=20)
    thread_key: str | None = Field(default=None, max_length=255)
    contact_id: int = Field(foreign_key="contacts.id")
    queue_id: int | None = Field(default=None, foreign_key="queues.id")
    assignee_id: int | None = Field(default=None, foreign_key="agents.id")
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
    # Routing state: when the ticket started waiting in its current queue (FIFO and overflow clocks), the
    # overflow steps applied, skills a queue-selection rule added, and the last routing decision with its
    # reason and the agents who recently passed on it (see ticketing.routing).
    queued_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    overflow_stage: int = 0
    skills: dict[str, int] | None = Field(default=None, sa_type=JSONType)
    routing: dict[str, Any] | None = Field(default=None, sa_type=JSONType)
    solved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Supervision (ticketing.wallboard, ticketing.reports, ticketing.sla): when an agent first took the ticket,
    # when it left its queue unanswered, since when its SLA clocks are paused (pending on the customer), and
    # when each SLA breach was announced.
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    abandoned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sla_paused_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    first_response_breached_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolution_breached_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Set when the ticket's messages were erased (GDPR, retention): it still counts in reports, anonymously.
    erased_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ReportHour(SQLModel, table=True):
    """The reports' rollup (ticketing.report_rollup): per UTC hour (hours since the epoch), queue (0: none) and
    channel, the sums and counts of ``ticketing.reports.FIELDS``, each counted in the hour it happened. Kept
    from the event log, so a report reads a few narrow rows per hour instead of every ticket of its range."""

    __tablename__ = "report_hours"
    # On SQLite the rows are stored in key order (a range of hours is read in one sweep, no lookup per row).
    __table_args__ = {"sqlite_with_rowid": False}

    hour: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    queue_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    channel: str = Field(primary_key=True, max_length=20)
    volume: int = 0
    first_responses: int = 0
    first_response_sum: float = 0.0
    rated: int = 0
    rating_sum: int = 0
    answered: int = 0
    answered_within: int = 0
    wait_sum: float = 0.0
    abandoned: int = 0
    abandoned_after: int = 0
    solved: int = 0
    handle_sum: float = 0.0
    handled: int = 0
    resolution_sum: float = 0.0
    abandon_wait_sum: float = 0.0  # seconds the abandoned waited (the forecast's patience)


class ReportTicket(SQLModel, table=True):
    """What each ticket last added to ``report_hours`` (its cells and their values), so a change to the ticket
    takes exactly that back before adding what it counts for now."""

    __tablename__ = "report_tickets"

    ticket_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    cells: list[Any] = Field(default_factory=list, sa_type=JSONType)


class ReportCursor(SQLModel, table=True):
    """The last event seq the rollup has taken in (one row, id 1); no row: the rollup was never built."""

    __tablename__ = "report_cursor"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    seq: int = Field(default=0, sa_type=BigInteger)


class ReportRecount(SQLModel, table=True):
    """A queue whose service-level threshold changed: its answered and abandoned tickets are counted again in
    the rollup, in ticket id order, after ``next_ticket_id`` (``ticketing.report_rollup.recount``)."""

    __tablename__ = "report_recounts"

    queue_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    next_ticket_id: int = 0
    done: int = 0
    total: int = 0


class RoutingRules(SQLModel, table=True):
    """The queue-selection rules in force (one row), shared by every process; see ticketing.queue_rules."""

    __tablename__ = "routing_rules"

    id: int | None = Field(default=None, primary_key=True)
    rules: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    source: str = Field(default="api", max_length=500)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_message_channel_external_id"),
        Index("ix_messages_ticket_id_id", "ticket_id", "id"),
        Index(
            "ix_messages_ticket_client_key",
            "ticket_id",
            "client_key",
            unique=True,
            sqlite_where=text("client_key IS NOT NULL"),
            postgresql_where=text("client_key IS NOT NULL"),
        ),
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
    # The key an agent's client sent the reply or note with: a send repeated with it answers this message.
    client_key: str | None = Field(default=None, max_length=64)


class MessageFile(SQLModel, table=True):
    """A stored file (``hub.files``) that a message carries: an attachment, an inline image, an email's raw bytes.
    Whoever may see one of a file's messages may read the file, and nobody else (``ticketing.message_files``).
    Written in the transaction that stores the message; keyed by the file first, the way it is looked up."""

    __tablename__ = "message_files"

    sha256: str = Field(primary_key=True, max_length=64)
    message_id: int = Field(primary_key=True, foreign_key="messages.id")


class FileUpload(SQLModel, table=True):
    """A stored file uploaded in a customer's conversation (a chat visitor's attachment, before it is sent).
    A message of that conversation may carry only files uploaded in it or already carried by one of its messages
    (``ticketing.message_files.attachable``): knowing a file's hash never lets anyone attach it, and so read it.
    Keyed by the conversation first, the way it is looked up as a message is sent."""

    __tablename__ = "file_uploads"

    channel: str = Field(primary_key=True, max_length=20)
    thread_key: str = Field(primary_key=True, max_length=255)
    sha256: str = Field(primary_key=True, max_length=64)
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


class MessageTemplateRow(SQLModel, table=True):
    """An approved message template (WhatsApp) agents may send outside a messaging window, edited in the admin
    page; ``SWITCHBOARD_WHATSAPP_TEMPLATES`` seeds it (``ticketing.templates``). A deleted template keeps its
    row (``deleted_at``), so the seed does not bring it back."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("name", "language", name="uq_message_templates_name_language"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=512)
    language: str = Field(max_length=15)
    body: str = Field(sa_type=Text)
    channels: list[str] = Field(default_factory=list, sa_type=JSONType)
    # The template's Twilio Content API SID: WhatsApp through Twilio sends a template by it.
    content_sid: str | None = Field(default=None, max_length=34)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# --- API schemas ----------------------------------------------------------------------------------------


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class IdentityRead(ReadModel):
    kind: str
    value: str
    # The channels this identity reaches the contact on, and whether someone vouched for it (a channel's
    # provider or a site's signed-in user; a website visitor's id is not verified).
    channels: list[str] = []
    verified: bool = True


class ContactRead(ReadModel):
    id: int
    name: str | None
    attributes: dict[str, Any]
    identities: list[IdentityRead] = []
    created_at: datetime
    updated_at: datetime | None = None
    deleted_at: datetime | None = None
    merged_into_id: int | None = None
    erased_at: datetime | None = None


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
    offer_expires_at: datetime | None = None
    tags: list[str]
    linked_ticket_id: int | None
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None
    queued_at: datetime | None = None  # since when it waits in its queue (None: held by an agent, or closed)
    first_response_at: datetime | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    answered_at: datetime | None = None
    sla_paused_at: datetime | None = None
    first_response_breached_at: datetime | None = None
    resolution_breached_at: datetime | None = None
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


class ContactNoteRead(ReadModel):
    id: int
    contact_id: int
    author_agent_id: int | None
    text: str
    created_at: datetime


class DuplicateRead(BaseModel):
    """A contact that may be the same person as another: a suggestion only, never joined automatically."""

    contact_id: int
    other_id: int
    other_name: str | None
    score: int  # 0-100: how sure
    reasons: list[str]


class MergeRead(ReadModel):
    id: int
    survivor_id: int
    merged_id: int
    moved: dict[str, Any]
    agent_id: int | None
    created_at: datetime
    undone_at: datetime | None = None


class ContactHistory(ContactRead):
    tickets: list[TicketDetail]
    notes: list[ContactNoteRead] = []
    duplicates: list[DuplicateRead] = []
    merges: list[MergeRead] = []


class ContactHit(BaseModel):
    """One search result: the contact, how well it matched (0-100) and on what."""

    id: int
    name: str | None
    identities: list[IdentityRead]
    score: float
    matched: str


class ContactIndexState(BaseModel):
    """Whether contact search uses its index yet: ``building`` while it is first built (``indexed`` of ``total``
    contacts so far; searches meanwhile find exact addresses, numbers, handles and whole name words only)."""

    state: str
    indexed: int
    total: int


AttributeValue = Annotated[str, PField(max_length=2000)] | bool | DbInt | None


class ContactUpdate(Input):
    """Fields to change. ``attributes`` replaces them all (give the whole set)."""

    name: str | None = PField(default=None, max_length=200)
    attributes: dict[Annotated[str, PField(min_length=1, max_length=100)], AttributeValue] | None = PField(
        default=None, max_length=100
    )


class ContactNoteCreate(Input):
    text: str = PField(min_length=1, max_length=20_000)


class MergeRequest(Input):
    """Merge contact ``contact_id`` into the contact of the URL, which survives."""

    contact_id: Id


class OverflowStepSpec(Input):
    """After ``after_seconds`` of waiting: also offer to the agents of ``widen_to``, and stop asking
    ``drop_skills``. Steps add up: step 2 keeps what step 1 did."""

    model_config = ConfigDict(extra="forbid")

    after_seconds: Count
    widen_to: list[str] = []
    drop_skills: list[str] = []


class SlaTargets(Input):
    """First-response and resolution targets, in seconds of the queue's business time."""

    model_config = ConfigDict(extra="forbid")

    first_response_seconds: Annotated[DbInt, PField(gt=0)] | None = None
    resolution_seconds: Annotated[DbInt, PField(gt=0)] | None = None


class QueueRouting(Input):
    """A queue's routing configuration, as the API and the admin give it."""

    hours: HoursSpec | None = None
    sla_first_response_seconds: Annotated[DbInt, PField(gt=0)] | None = None
    sla_resolution_seconds: Annotated[DbInt, PField(gt=0)] | None = None
    sla_policies: dict[Priority, SlaTargets] | None = PField(
        default=None, description="Targets per priority (low, normal, high, urgent), overriding the queue's own"
    )
    service_level_seconds: Annotated[int, PField(gt=0, le=86_400)] | None = None
    service_level_target: Annotated[int, PField(ge=1, le=100)] | None = None
    wait_alert_seconds: Annotated[int, PField(gt=0, le=30 * 86_400)] | None = None
    overflow: list[OverflowStepSpec] = []
    max_wait_seconds: Annotated[DbInt, PField(gt=0)] | None = None
    overflow_queue: str | None = PField(default=None, max_length=100)

    @field_validator("overflow")
    @classmethod
    def _ordered(cls, steps: list[OverflowStepSpec] | None) -> list[OverflowStepSpec] | None:
        return None if steps is None else sorted(steps, key=lambda s: s.after_seconds)


class QueueCreate(QueueRouting):
    name: str = PField(min_length=1, max_length=100)
    description: str = ""
    channels: list[str] = []
    required_skills: dict[str, DbInt] = {}
    priority: DbInt = 0


class QueueUpdate(QueueRouting):
    """Fields to change; routing fields given replace the old ones (``null`` clears: ``overflow: null`` is no
    overflow steps, as ``[]``)."""

    description: str | None = None
    channels: list[str] | None = None
    required_skills: dict[str, DbInt] | None = None
    priority: DbInt | None = None
    overflow: list[OverflowStepSpec] | None = None  # type: ignore[assignment]

    @field_validator("overflow", mode="before")
    @classmethod
    def _null_clears(cls, steps: Any) -> Any:
        return [] if steps is None else steps


class QueueRead(ReadModel):
    id: int
    name: str
    description: str
    channels: list[str]
    required_skills: dict[str, int]
    priority: int
    hours: dict[str, Any] | None = None
    sla_first_response_seconds: int | None = None
    sla_resolution_seconds: int | None = None
    overflow: list[dict[str, Any]] | None = None
    max_wait_seconds: int | None = None
    overflow_queue: str | None = None
    sla_policies: dict[str, Any] | None = None
    service_level_seconds: int = 60
    service_level_target: int = 80
    wait_alert_seconds: int = 300


class RoutingExplanation(BaseModel):
    """Why a ticket is where it is: the last routing decision, and for waiting work why it waits now."""

    ticket_id: int
    state: str  # waiting, offered, assigned, closed
    queue_id: int | None
    agent_id: int | None
    effective_priority: int | None
    overflow_stage: int
    last_decision: dict[str, Any] | None
    now: str


class AgentCreate(Input):
    username: str = PField(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = PField(min_length=8, max_length=256)
    display_name: str = PField(default="", max_length=200)
    role: Role = Role.AGENT
    queues: list[str] = []
    skills: dict[str, DbInt] = {}
    capacity: dict[str, Count] = {}


class AgentUpdate(Input):
    """Fields to change; a field left out stays as it is. ``queues`` and ``password`` may be ``null`` (no
    change); the others have no empty value, and ``null`` for them is refused, naming the field."""

    display_name: str | SkipJsonSchema[None] = PField(default=None, max_length=200)
    role: Role | SkipJsonSchema[None] = None
    queues: list[str] | None = None
    skills: dict[str, DbInt] | SkipJsonSchema[None] = None
    capacity: dict[str, Count] | SkipJsonSchema[None] = None
    active: bool | SkipJsonSchema[None] = None
    password: str | None = PField(default=None, min_length=8, max_length=256)

    @field_validator("display_name", "role", "skills", "capacity", "active", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for fields given (defaults are not validated): an explicit null.
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


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
    wrap_up_until: datetime | None = None


class StatusChange(Input):
    status: AgentStatus


CLIENT_KEY = PField(
    default=None,
    min_length=1,
    max_length=64,
    description="Any string unique to this message, chosen by the client: sending again with the same key "
    "(after a network error) stores nothing new and answers the message the first send stored",
)


class TemplateChoice(Input):
    """An approved template (``SWITCHBOARD_WHATSAPP_TEMPLATES``) and the values of its ``{{1}}``, ``{{2}}``..."""

    name: str = PField(min_length=1, max_length=512)
    variables: list[Annotated[str, PField(max_length=1024)]] = PField(default_factory=list, max_length=20)


MAX_REPLY_FILES = 5


class ReplyAttachment(Input):
    """A file uploaded for the ticket (``POST /api/reply-attachments``), named in a reply."""

    id: str = PField(min_length=66, max_length=200, description="the upload's id")
    filename: str | None = PField(default=None, max_length=200, description='its name ("attachment" when left out)')


class ReplyCreate(Input):
    """A reply: free ``text``, or a ``template`` (the only thing a closed WhatsApp window lets through), whose
    text is then the template's with its variables filled in."""

    text: str = PField(default="", max_length=100_000)
    client_key: str | None = CLIENT_KEY
    template: TemplateChoice | None = None
    private: bool = PField(
        default=False,
        description="On a public comment (channel comments): answer its author privately, once per comment and "
        "within 7 days of it, instead of with a public comment",
    )
    attachments: list[ReplyAttachment] = PField(
        default_factory=list,
        max_length=MAX_REPLY_FILES,
        description="files uploaded for this ticket (POST /api/reply-attachments), by their ids; email and chat",
    )

    @model_validator(mode="after")
    def _text_or_template(self) -> ReplyCreate:
        if not self.text and self.template is None and not self.attachments:
            raise ValueError("a reply needs text, a template or an attachment")
        return self


class NoteCreate(Input):
    text: str = PField(min_length=1, max_length=100_000)
    client_key: str | None = CLIENT_KEY


class TicketUpdate(Input):
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


class AcceptOffersRequest(Input):
    """Offers to take at once (a burst's "accept all")."""

    ticket_ids: list[Id] = PField(min_length=1, max_length=100)


class OfferAnswer(BaseModel):
    """What became of one offer of an ``accept all``: taken (``ticket``), or refused with the reason."""

    ticket_id: int
    accepted: bool
    ticket: TicketRead | None = None
    code: str | None = None
    detail: str | None = None


class AssignRequest(Input):
    agent_id: Id | None


class TransferRequest(Input):
    queue_id: Id | None = None
    agent_id: Id | None = None

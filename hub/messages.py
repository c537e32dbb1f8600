"""The normalized message types every channel adapter speaks.

An inbound adapter verifies and parses what arrives and produces one ``InboundMessage``; the ticketing core
ingests it. Replies leave the core as one ``OutboundMessage`` per outbox row; the adapter registered for its
channel delivers it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import utcnow
from hub.inputs import DbInt, Id, clean, clean_text


class Attachment(BaseModel):
    """Metadata of a stored attachment; the bytes live in content-addressed storage under ``sha256``."""

    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int = Field(ge=0)
    sha256: str | None = None
    url: str | None = None
    inline: bool = False


class Identity(BaseModel):
    """How the sender is reached: a kind (``hub.channels.IdentityKind``: email, phone, whatsapp, messenger,
    instagram, telegram, webchat) and the raw value; the core normalizes it (``hub.channels.NORMALIZATION``)."""

    kind: str
    value: str = Field(min_length=1, max_length=320)
    name: str | None = Field(default=None, max_length=200)


class InboundMessage(BaseModel):
    """One message received on any channel. Its text (its sender's and attachments' too) is cleaned as it is
    built (``hub.inputs.clean_text``), so every channel's messages can be stored on either database."""

    channel: str
    external_id: str = Field(min_length=1, max_length=512)
    sender: Identity
    recipient: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=500)
    text: str = Field(default="", max_length=1_000_000)
    html: str | None = Field(default=None, description="already sanitized by the adapter")
    attachments: list[Attachment] = Field(default_factory=list)
    # External ids of earlier messages this one answers (email In-Reply-To/References).
    references: list[str] = Field(default_factory=list)
    # A channel's own conversation id (a webchat conversation, a Telegram chat): messages with the same
    # thread key go to the same open ticket.
    thread_key: str | None = Field(default=None, max_length=255)
    # A ticket number the sender named (email subject tag); honoured only if the sender takes part in it.
    ticket_hint: Id | None = None
    queue: str | None = Field(default=None, description="queue name chosen by the adapter (mailbox, IVR)")
    # What the adapter asks of routing for this work (an IVR's ``set`` nodes): a priority, and skills added to the
    # queue's (``{"spanish": 1}``). A queue-selection rule's own priority wins; its skills are added to these.
    priority: Literal["low", "normal", "high", "urgent"] | None = None
    skills: dict[Annotated[str, Field(min_length=1, max_length=100)], DbInt] = Field(
        default_factory=dict, max_length=20
    )
    received_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _clean_text(self) -> InboundMessage:
        # Every message of every channel comes through here: the fields are looked at one by one, after they
        # are validated, instead of walking the input (``hub.inputs.Input``), which cost twice as much. A string
        # that needs nothing costs two checks (see ``hub.inputs``).
        fields = self.__dict__
        for name in _TEXT_FIELDS:
            value = fields[name]
            if value is not None and ("\x00" in value or not value.isascii()):
                fields[name] = clean_text(value)
        _clean_fields(self.sender.__dict__, ("value", "name"))
        for attachment in self.attachments:
            _clean_fields(attachment.__dict__, ("filename", "content_type", "sha256", "url"))
        if self.references:
            fields["references"] = clean(self.references)
        if self.metadata:
            fields["metadata"] = clean(self.metadata)
        if not fields["external_id"] or not self.sender.value:
            raise ValueError("external_id and sender.value must hold more than NUL characters")
        return self


_TEXT_FIELDS = ("channel", "external_id", "recipient", "subject", "text", "html", "thread_key", "queue")


def _clean_fields(fields: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = fields[name]
        if value is not None and ("\x00" in value or not value.isascii()):
            fields[name] = clean_text(value)


class OutboundMessage(BaseModel):
    """One reply to deliver; stored as the outbox row's payload."""

    message_id: int
    ticket_id: int
    channel: str
    recipient: str
    text: str
    html: str | None = None
    subject: str | None = None
    external_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    sender_address: str | None = None
    agent_name: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingest answers for one inbound message, once it is committed."""

    message_id: int
    ticket_id: int
    contact_id: int
    created: bool  # False: already stored (a retry); nothing new was written
    ticket_created: bool = False


# Extra work a channel commits in the same transaction as its message (an IMAP mailbox's last UID).
AlsoInTransaction = Callable[[AsyncConnection], Awaitable[None]]


class Ingest(Protocol):
    """How a channel hands a message to the core: returns once it is durably committed, and its ticket has
    been offered or queued; with ``routed=False`` once it is committed, while its ticket's routing goes on (a
    caller on the phone waits for no agent's offer)."""

    async def __call__(
        self, message: InboundMessage, *, also: AlsoInTransaction | None = None, routed: bool = True
    ) -> IngestResult: ...


class IngestAll(Protocol):
    """How a channel hands the core a batch that arrived together (a webhook's): committed together, never cut
    between two commits unless it alone is bigger than one (``hub.group_commit``), so its answer waits for one
    commit. Returns each message's outcome, in order (an error a message alone raised, its neighbours stored),
    once all are committed."""

    async def __call__(self, messages: Sequence[InboundMessage]) -> list[IngestResult | Exception]: ...


class DeliveryResult(BaseModel):
    """What an adapter reports after sending: the provider's id for later status callbacks."""

    provider_id: str | None = None


class DeliveryError(Exception):
    """An adapter could not deliver. ``permanent`` failures (a 5xx SMTP answer, an unknown recipient) are not
    retried; others are, with backoff."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Sender(Protocol):
    """What a channel adapter implements to deliver replies."""

    async def send(self, message: OutboundMessage) -> DeliveryResult: ...


class ReplyHook(Protocol):
    """A channel's part in a reply the core is storing for it: what only the channel knows, set on the outbound
    message before the message and its outbox row are written from it (email: our Message-ID as
    ``external_id``, the ``subject`` with the ticket's tag, ``in_reply_to``). The core has filled in the rest,
    ``references`` included (the answered message's own references, then its id). Called inside the reply's
    transaction, once per reply: pure and quick, no I/O."""

    def __call__(self, reply: OutboundMessage, *, ticket_subject: str) -> None: ...

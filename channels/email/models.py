"""Tables of the email channel: per-mailbox IMAP position, quarantine, mailboxes set through the API, and the
log of automatic replies that rate-limits them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.config import MailboxSettings, Port
from hub.db import JSONType, UTCDateTime, utcnow
from hub.inputs import Input


class MailboxState(SQLModel, table=True):
    """Where a mailbox's worker stands. Invariant: every message with ``uid <= last_uid`` under this
    ``uidvalidity`` is committed (as a message, or in quarantine); it is written in the same transaction
    as the messages it covers."""

    __tablename__ = "email_mailbox_state"

    mailbox: str = Field(primary_key=True, max_length=100)
    uidvalidity: int = Field(default=0, sa_type=BigInteger)
    last_uid: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class QuarantinedMail(SQLModel, table=True):
    """A message that could not be turned into a ticket; the raw bytes are in storage under ``raw_sha256``."""

    __tablename__ = "email_quarantine"
    __table_args__ = (UniqueConstraint("mailbox", "raw_sha256", name="uq_email_quarantine_mailbox_raw"),)

    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(max_length=100)
    uid: int | None = Field(default=None, sa_type=BigInteger)
    raw_sha256: str = Field(max_length=64)
    size: int = 0
    error: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    reprocessed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    message_id: int | None = None  # the message it became once reprocessed


class EmailMailbox(SQLModel, table=True):
    """A mailbox configured through the admin API (``SWITCHBOARD_MAILBOXES`` ones are not stored)."""

    __tablename__ = "email_mailboxes"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AutoReply(SQLModel, table=True):
    """One automatic reply sent; the per-recipient rate limit counts these."""

    __tablename__ = "email_auto_replies"
    __table_args__ = (Index("ix_email_auto_replies_recipient_sent", "recipient", "sent_at"),)

    id: int | None = Field(default=None, primary_key=True)
    recipient: str = Field(max_length=320)
    ticket_id: int | None = None
    sent_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


S = MailboxState.__table__  # type: ignore[attr-defined]
QT = QuarantinedMail.__table__  # type: ignore[attr-defined]
MB = EmailMailbox.__table__  # type: ignore[attr-defined]
AR = AutoReply.__table__  # type: ignore[attr-defined]


# --- API schemas ----------------------------------------------------------------------------------------


class QuarantineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    mailbox: str
    uid: int | None
    raw_sha256: str
    size: int
    error: str
    created_at: datetime
    reprocessed_at: datetime | None
    message_id: int | None


class ReprocessResult(BaseModel):
    quarantine_id: int
    ok: bool
    message_id: int | None = None
    ticket_id: int | None = None
    error: str | None = None


class MailboxRead(BaseModel):
    """A mailbox without its passwords; ``source`` says whether it comes from settings or the API."""

    name: str
    address: str
    queue: str
    imap_host: str
    imap_port: int
    imap_tls: bool
    username: str
    folder: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    smtp_username: str | None
    source: str
    uidvalidity: int | None = None
    last_uid: int | None = None
    running: bool = False
    error: str | None = None

    @classmethod
    def of(cls, box: MailboxSettings, *, source: str, **extra: Any) -> MailboxRead:
        data = box.model_dump(exclude={"password", "smtp_password"})
        return cls(**data, source=source, **extra)


class MailboxUpdate(Input):
    """Fields to change on an API mailbox; unset ones stay."""

    address: str | None = None
    queue: str | None = None
    imap_host: str | None = None
    imap_port: Port | None = None
    imap_tls: bool | None = None
    username: str | None = None
    password: SecretStr | None = None
    folder: str | None = None
    smtp_host: str | None = None
    smtp_port: Port | None = None
    smtp_security: str | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None

"""Tables of the social channels: which of our messages each provider id is (for receipts), what the provider
already took of a reply still being sent in several calls, the private replies sent to public comments (Meta
allows one per comment), access tokens replaced in the admin page, the messages of a batch ingest refused, and
the webhook batches taken but not yet processed (``social_inbox``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import LargeBinary, Text
from sqlmodel import Field, SQLModel

from hub.db import JSONType, UTCDateTime, utcnow


class SocialDelivery(SQLModel, table=True):
    """One provider message of a reply we sent and the id the provider gave it (a wamid, a Messenger mid):
    receipts name the provider's id, the core knows the message's. A reply the provider takes in several calls
    (its files, then its text) has a row per call, each with the status its own receipts gave it; the reply's
    status is judged from all of them (``service.reply_status``) once ``whole`` (every part was sent)."""

    __tablename__ = "social_deliveries"

    channel: str = Field(primary_key=True, max_length=20)
    provider_id: str = Field(primary_key=True, max_length=255)
    message_id: int = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status: str = Field(default="sent", max_length=20)  # this part's: sent | delivered | read | failed
    error: str | None = Field(default=None, sa_type=Text)  # the provider's reason, for a failed part
    whole: bool = True  # False while the reply's later parts are still being sent


class SocialReplyPart(SQLModel, table=True):
    """A part of a reply sent in several calls that the provider already took, while the reply is not yet sent
    whole: a file's message (``file:0``, with the provider's message id) or WhatsApp's upload of it (``upload:0``,
    with the media id). Written as each part is taken, so that the outbox's retry, in this process or any other,
    after a restart too, skips it (the customer never gets a file twice); removed once the reply is sent whole,
    and, by the service's sweep, once the reply no longer waits in the outbox (failed for good, erased)."""

    __tablename__ = "social_reply_parts"

    channel: str = Field(primary_key=True, max_length=20)
    message_id: int = Field(primary_key=True)
    part: str = Field(primary_key=True, max_length=20)
    # None: the provider took it without naming it. Unbounded: a retry sends the media id back as it was given.
    provider_id: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PrivateReply(SQLModel, table=True):
    """A private reply to a public comment: at most one per comment (the primary key holds it so)."""

    __tablename__ = "social_private_replies"

    comment_id: str = Field(primary_key=True, max_length=255)
    page_id: str = Field(max_length=64)
    ticket_id: int
    agent_id: int | None = None
    provider_id: str | None = Field(default=None, max_length=255)
    text: str = Field(default="", sa_type=Text)
    sent_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AccountToken(SQLModel, table=True):
    """An access token an admin gave for an account after its configured one expired (the page reconnected):
    it overrides the setting's, sealed at rest (``hub.sealing``)."""

    __tablename__ = "social_tokens"

    channel: str = Field(primary_key=True, max_length=20)
    account: str = Field(primary_key=True, max_length=64)
    sealed_token: str = Field(sa_type=Text)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SocialQuarantine(SQLModel, table=True):
    """A message of a webhook batch that ingest refused (an identity it cannot read, say): kept with the reason
    instead of failing the batch, which the provider would send again forever. Once per provider id."""

    __tablename__ = "social_quarantine"

    channel: str = Field(primary_key=True, max_length=20)
    external_id: str = Field(primary_key=True, max_length=255)
    account: str = Field(default="", max_length=64)
    reason: str = Field(sa_type=Text)
    message: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)  # the normalized message, as parsed
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AccountHealthRow(SQLModel, table=True):
    """An account's problem as the process that met it said (a token the provider refused, a provider that keeps
    failing): kept so that every process, and a restarted one, shows the alert until the account is ok again."""

    __tablename__ = "social_account_health"

    channel: str = Field(primary_key=True, max_length=20)
    account: str = Field(primary_key=True, max_length=64)
    status: str = Field(max_length=20)
    detail: str | None = Field(default=None, sa_type=Text)
    since: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class AccountHeardRow(SQLModel, table=True):
    """When any process last heard a webhook for an account, and since when the account is configured (silence
    is counted from there while none came): the webhooks of an account reach one process behind a load
    balancer, so each process judges silence from this, not from what it heard itself."""

    __tablename__ = "social_account_heard"

    channel: str = Field(primary_key=True, max_length=20)
    account: str = Field(primary_key=True, max_length=64)
    configured_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_webhook_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SocialInboxRow(SQLModel, table=True):
    """A webhook batch as it arrived, verified and parsed once, kept until it is processed (``inbox``): committed
    before the webhook is answered, deleted once its messages are stored, so a batch the provider was told we
    have outlives a crash. ``claimed_until``: the process working on it has it until then (None: free to take);
    after that any process takes it again (processing it twice stores nothing twice: ingest knows the provider's
    message ids). ``attempts`` and ``error``: the failures so far, the last one's reason."""

    __tablename__ = "social_inbox"

    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=20)  # meta | telegram
    account: str = Field(default="", max_length=64)  # the bot (Telegram); "" for Meta, whose batch names its own
    body: bytes = Field(sa_type=LargeBinary)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
    error: str | None = Field(default=None, sa_type=Text)

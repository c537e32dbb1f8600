"""Tables of the Twilio channel: each call's state (by CallSid), the phone numbers and the flow answering each,
and the SMS/WhatsApp messages sent (Twilio's MessageSid → the core's message, for status callbacks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text
from sqlmodel import Field, SQLModel

from hub.db import JSONType, UTCDateTime, utcnow


class TwilioCall(SQLModel, table=True):
    """One call, by Twilio's CallSid. ``state`` is the IVR engine's ``CallState`` as JSON between webhooks.

    Invariants: ``last_request`` and ``last_twiml`` are the fingerprint of the last webhook that stepped the
    call and the TwiML answered to it, written in the same transaction as ``state`` (a retried webhook gets
    that TwiML again and steps nothing); ``waiting_since`` is set while the caller waits for an agent and
    cleared when an agent is connected (``answered_at``) or the call ends (``ended_at``)."""

    __tablename__ = "twilio_calls"
    __table_args__ = (Index("ix_twilio_calls_queue_waiting", "queue", "waiting_since"),)

    call_sid: str = Field(primary_key=True, max_length=64)
    direction: str = Field(default="inbound", max_length=20)  # inbound | callback (an outbound call we placed)
    caller: str = Field(default="", max_length=64)  # E.164 when it parses, else as Twilio sent it
    called: str = Field(default="", max_length=64)
    flow: str = Field(default="", max_length=100)
    state: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    ticket_id: int | None = Field(default=None, index=True)
    queue: str | None = Field(default=None, max_length=100)
    outcome: str | None = Field(default=None, max_length=30)
    status: str = Field(default="ringing", max_length=20)  # Twilio's CallStatus, as last heard
    waiting_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answered_by: int | None = None  # the agent connected
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    duration_seconds: int | None = None
    recording_sid: str | None = Field(default=None, max_length=64)
    recording_url: str | None = Field(default=None, max_length=2000)
    last_request: str | None = Field(default=None, max_length=64)
    last_twiml: str | None = Field(default=None, sa_type=Text)
    statuses_seen: list[str] = Field(default_factory=list, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TwilioNumber(SQLModel, table=True):
    """A phone number of the hub's and the flow that answers it, by the flow's name (a file in the flows
    folder): symbolic, so one configuration serves staging and production."""

    __tablename__ = "twilio_numbers"

    number: str = Field(primary_key=True, max_length=32)  # E.164
    flow: str = Field(max_length=100)
    label: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TwilioMessage(SQLModel, table=True):
    """An SMS or WhatsApp message we sent: Twilio's MessageSid, the core's message, and the statuses heard
    (a retried status callback moves nothing twice)."""

    __tablename__ = "twilio_messages"

    message_sid: str = Field(primary_key=True, max_length=64)
    message_id: int = Field(index=True)
    statuses_seen: list[str] = Field(default_factory=list, sa_type=JSONType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TwilioAgentPhone(SQLModel, table=True):
    """Where an agent answers the calls they accept: ``browser`` (the console, Twilio's Voice JavaScript SDK) or
    ``phone`` (their own number, ``SWITCHBOARD_TWILIO_AGENT_NUMBERS``). No row: their number when they have one,
    else the browser when the hub has an API key for it."""

    __tablename__ = "twilio_agent_phones"

    agent_id: int = Field(primary_key=True)
    answer_on: str = Field(max_length=10)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

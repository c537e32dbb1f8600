"""SMS and WhatsApp through Twilio's messaging webhook: inbound messages become ``InboundMessage``s (media kept
as links the hub serves to agents only), replies leave through the outbox with ``messages.create`` and a status
callback, and receipts move a message's delivery status forward only (out of order is fine).

WhatsApp only takes free text within 24 hours of the customer's last message (``window``): outside it the
reply is refused with the reason (a permanent delivery failure the console shows), and
``GET /api/twilio/whatsapp/window/{ticket_id}`` tells the composer how long is left. (This window is the
channel's own: no shared mechanism for it exists on main yet.)"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from twilio.twiml.messaging_response import MessagingResponse

from channels.twilio.models import TwilioMessage
from channels.twilio.rest import Rest
from hub.config import Settings
from hub.db import utcnow
from hub.messages import Attachment, DeliveryError, DeliveryResult, Identity, InboundMessage, Ingest, OutboundMessage
from hub.runtime import Runtime

log = logging.getLogger(__name__)

SENT = TwilioMessage.__table__  # type: ignore[attr-defined]
WHATSAPP = "whatsapp:"
MAX_MEDIA = 10
# Twilio's MessageStatus → the core's delivery status (None: not a step the core records).
STATUS = {
    "accepted": None,
    "scheduled": None,
    "queued": None,
    "sending": None,
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}


def channel_of(address: str) -> str:
    return "whatsapp" if address.lower().startswith(WHATSAPP) else "sms"


def window_left(last_inbound: datetime | None, now: datetime, hours: int) -> timedelta:
    """How long the customer's 24-hour window stays open (zero or less: closed)."""
    if last_inbound is None:
        return timedelta(0)
    return last_inbound + timedelta(hours=hours) - now


class Messaging:
    """The messaging side of the channel (see the module docstring)."""

    def __init__(self, rt: Runtime, ingest: Ingest, settings: Settings, rest: Rest) -> None:
        self.rt = rt
        self.ingest = ingest
        self.settings = settings
        self.rest = rest

    @staticmethod
    def empty_reply() -> str:
        return str(MessagingResponse())

    async def inbound(self, params: dict[str, str]) -> None:
        """One inbound SMS or WhatsApp message (stored once per MessageSid: a retried webhook stores nothing)."""
        sid = params["MessageSid"]
        sender = params.get("From", "")
        channel = channel_of(sender)
        try:
            media_count = min(MAX_MEDIA, max(0, int(params.get("NumMedia", "0") or 0)))
        except ValueError:
            media_count = 0
        attachments = [
            Attachment(
                filename=f"media-{n}",
                content_type=(params.get(f"MediaContentType{n}") or "application/octet-stream")[:255],
                size=0,
                url=f"/api/twilio/media/{sid}/{n}",
            )
            for n in range(media_count)
            if params.get(f"MediaUrl{n}")
        ]
        message = InboundMessage(
            channel=channel,
            external_id=sid,
            sender=Identity(
                kind="whatsapp" if channel == "whatsapp" else "phone",
                value=sender or "unknown",
                name=(params.get("ProfileName") or None) and params["ProfileName"][:200],
            ),
            recipient=params.get("To", "")[:320] or None,
            text=params.get("Body", ""),
            attachments=attachments,
            metadata={
                "twilio_media": {str(n): params.get(f"MediaUrl{n}", "")[:2000] for n in range(media_count)},
                "wa_id": params.get("WaId"),
            },
        )
        await self.ingest(message)

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        """Deliver a reply (the outbox's ``Sender``); WhatsApp's free text only inside the 24-hour window."""
        whatsapp = message.channel == "whatsapp"
        if whatsapp:
            brief = await self.rt.ports.tickets.brief(ticket_id=message.ticket_id)
            left = window_left(
                brief.last_inbound_at if brief else None, utcnow(), self.settings.twilio_whatsapp_window_hours
            )
            if left.total_seconds() <= 0:
                raise DeliveryError(
                    "outside WhatsApp's 24-hour window: the customer has not written for 24 hours, so only an approved "
                    "template may be sent",
                    permanent=True,
                )
        to, from_ = message.recipient, message.sender_address or self._default_from()
        if not from_:
            raise DeliveryError("no number to send from: set SWITCHBOARD_TWILIO_NUMBERS", permanent=True)
        if whatsapp:
            to, from_ = _wa(to), _wa(from_)
        sid = await self.rest.message(
            to=to,
            from_=from_,
            body=message.text,
            status_callback=f"{self.settings.public_url}/webhooks/twilio/messaging/status",
        )
        try:
            async with self.rt.write() as tx:
                await tx.conn.execute(
                    insert(SENT).values(
                        message_sid=sid, message_id=message.message_id, statuses_seen=[], created_at=utcnow()
                    )
                )
        except IntegrityError:
            pass  # sent before and recorded (a retried delivery Twilio answered with the same id)
        return DeliveryResult(provider_id=sid)

    def _default_from(self) -> str | None:
        return self.settings.twilio_numbers[0].number if self.settings.twilio_numbers else None

    async def status(self, params: dict[str, str]) -> None:
        """A status callback: the message's delivery status moves forward only, each (sid, status) once."""
        sid = params["MessageSid"]
        status = params.get("MessageStatus", "")[:20]
        async with self.rt.read() as conn:
            row = (await conn.execute(select(SENT).where(SENT.c.message_sid == sid))).first()
        if row is None:
            log.info("twilio status %s for unknown message %s ignored", status, sid)
            return
        if status in (row.statuses_seen or []):
            return
        async with self.rt.write() as tx:
            await tx.conn.execute(
                update(SENT).where(SENT.c.message_sid == sid).values(statuses_seen=[*(row.statuses_seen or []), status])
            )
        core = STATUS.get(status)
        if core is None:
            return
        error = None
        if core == "failed":
            error = f"Twilio: {status}" + (f" (error {params['ErrorCode'][:20]})" if params.get("ErrorCode") else "")
        await self.rt.ports.tickets.set_delivery_status(message_id=row.message_id, status=core, error=error)

    async def whatsapp_window(self, ticket_id: int) -> dict[str, object]:
        brief = await self.rt.ports.tickets.brief(ticket_id=ticket_id)
        if brief is None:
            return {}
        now = utcnow()
        left = window_left(brief.last_inbound_at, now, self.settings.twilio_whatsapp_window_hours)
        return {
            "ticket_id": ticket_id,
            "channel": brief.channel,
            "open": brief.channel != "whatsapp" or left.total_seconds() > 0,
            "seconds_left": max(0, int(left.total_seconds())) if brief.channel == "whatsapp" else None,
            "last_inbound_at": brief.last_inbound_at.isoformat() if brief.last_inbound_at else None,
        }


class MessagingSender:
    """The outbox's deliverer for ``sms`` and ``whatsapp``."""

    def __init__(self, messaging: Messaging) -> None:
        self.messaging = messaging

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        return await self.messaging.send(message)


def _wa(address: str) -> str:
    return address if address.lower().startswith(WHATSAPP) else WHATSAPP + address

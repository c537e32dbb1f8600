"""SMS and WhatsApp through Twilio's messaging webhook: inbound messages become ``InboundMessage``s (media kept
as links the hub serves to agents only), replies leave through the outbox with ``messages.create`` and a status
callback, and receipts move a message's delivery status forward only (out of order is fine).

WhatsApp only takes free text within 24 hours of the customer's last message: the core's messaging windows
(``hub.windows``) refuse it before anything is stored, show the composer the time left, and let the agent pick an
approved template (``SWITCHBOARD_WHATSAPP_TEMPLATES``); a template reaches Twilio's Content API by its
``content_sid``. A free-text reply whose window closed while it waited in the outbox fails here, permanently,
with the reason."""

from __future__ import annotations

import json
import logging

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from twilio.twiml.messaging_response import MessagingResponse

from channels.twilio.models import TwilioMessage
from channels.twilio.rest import Rest
from hub.config import Settings
from hub.db import utcnow
from hub.messages import Attachment, DeliveryError, DeliveryResult, Identity, InboundMessage, Ingest, OutboundMessage
from hub.runtime import Runtime
from hub.windows import WindowStatus, window_state

log = logging.getLogger(__name__)
TEMPLATE = "template"  # a reply's metadata key: the approved template it is sent as (``ticketing.replies``)
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
        if message.attachments:
            # Twilio takes files only as public URLs it fetches, and ours are private: refused, never dropped.
            raise DeliveryError(
                f"{'WhatsApp through Twilio' if whatsapp else 'SMS'} cannot carry this reply's files: "
                "send it without them",
                permanent=True,
            )
        template = message.metadata.get(TEMPLATE) if whatsapp else None
        if template is not None and not (isinstance(template, dict) and template.get("content_sid")):
            name = template.get("name") if isinstance(template, dict) else None
            raise DeliveryError(
                f"template {name!r} has no content_sid: Twilio sends WhatsApp templates by their Content API SID "
                "(SWITCHBOARD_WHATSAPP_TEMPLATES)",
                permanent=True,
            )
        if whatsapp and template is None:
            brief = await self.rt.ports.tickets.brief(ticket_id=message.ticket_id)
            window = window_state("whatsapp", brief.last_inbound_at if brief else None, utcnow())
            if window.status == WindowStatus.CLOSED:
                raise DeliveryError(window.reason or "outside WhatsApp's 24-hour window", permanent=True)
        to, from_ = message.recipient, message.sender_address or self._default_from()
        if not from_:
            raise DeliveryError("no number to send from: set SWITCHBOARD_TWILIO_NUMBERS", permanent=True)
        if whatsapp:
            to, from_ = _wa(to), _wa(from_)
        callback = f"{self.settings.public_url}/webhooks/twilio/messaging/status"
        if template:  # an approved template goes out at any time (Twilio's Content API)
            sid = await self.rest.message(
                to=to,
                from_=from_,
                body=None,
                status_callback=callback,
                content_sid=template["content_sid"],
                content_variables=json.dumps(
                    {str(n): str(v) for n, v in enumerate(template.get("variables") or [], start=1)}
                ),
            )
        else:
            sid = await self.rest.message(to=to, from_=from_, body=message.text, status_callback=callback)
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


class MessagingSender:
    """The outbox's deliverer for ``sms`` and ``whatsapp``."""

    def __init__(self, messaging: Messaging) -> None:
        self.messaging = messaging

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        return await self.messaging.send(message)


def _wa(address: str) -> str:
    return address if address.lower().startswith(WHATSAPP) else WHATSAPP + address

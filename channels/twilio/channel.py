"""The Twilio channel as the hub runs it (``channels.base.Channel``): the phone (``voice``) and messaging
(``sms``, ``whatsapp``), their signed webhooks, and the ``TwilioService`` that serves them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import APIRouter
from sqlalchemy import insert, select
from starlette.middleware import Middleware

from channels.base import ChannelContext
from channels.twilio.flows import DEMO_FLOW
from channels.twilio.models import TwilioNumber
from channels.twilio.service import TwilioService
from channels.twilio.views import build_router
from hub.channels import SPECS, ChannelSpec
from hub.config import Settings
from hub.db import utcnow
from hub.messages import ReplyHook, Sender
from hub.runtime import Runtime

DEMO_NUMBER = "+14155550199"  # the number /demo/phone calls


class TwilioChannel:
    """Brings ``voice``, ``sms`` and ``whatsapp``; its settings are ``SWITCHBOARD_TWILIO_*``.

    ``whatsapp`` is left to Meta's Cloud API (``channels/social``) when ``SWITCHBOARD_WHATSAPP_NUMBERS`` names a
    number: one registered channel brings a name, and a hub carries its WhatsApp through one provider."""

    settings_section = "twilio"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.specs: Sequence[ChannelSpec] = (
            (SPECS["voice"], SPECS["sms"])
            if settings.whatsapp_numbers
            else (SPECS["voice"], SPECS["sms"], SPECS["whatsapp"])
        )
        self._service: TwilioService | None = None

    @property
    def service(self) -> TwilioService:
        if self._service is None:
            raise RuntimeError("the Twilio channel has not started")
        return self._service

    def routers(self) -> Sequence[APIRouter]:
        return [build_router(lambda: self.service)]

    def middleware(self) -> Sequence[Middleware]:
        return []

    def body_limits(self) -> Mapping[str, int]:
        return {}

    @property
    def senders(self) -> Mapping[str, Sender]:
        # Without a Twilio account nothing can be delivered: the outbox then says no adapter is configured.
        if not self.service.rest.configured:
            return {}
        senders: dict[str, Sender] = {"sms": self.service.sender, "voice": self.service.voice}
        if SPECS["whatsapp"] in self.specs:
            senders["whatsapp"] = self.service.sender
        return senders

    @property
    def reply_hooks(self) -> Mapping[str, ReplyHook]:
        return {}

    async def start(self, ctx: ChannelContext) -> None:
        self._service = TwilioService(ctx.rt, ctx.ingest, self.settings)
        await self._service.start()

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()

    async def seed_demo(self, rt: Runtime) -> None:
        """The demo's phone number, answered by the demo flow (in the demo any number is), shown on
        /admin/phone; seeded once."""
        numbers = TwilioNumber.__table__  # type: ignore[attr-defined]
        async with rt.write() as tx:
            if (await tx.conn.execute(select(numbers.c.number).where(numbers.c.number == DEMO_NUMBER))).first():
                return
            await tx.conn.execute(
                insert(numbers).values(
                    number=DEMO_NUMBER, flow=DEMO_FLOW, label="Demo line (call it on /demo/phone)", created_at=utcnow()
                )
            )

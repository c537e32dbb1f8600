"""The Twilio channel as the hub runs it (``channels.base.Channel``): the phone (``voice``) and messaging
(``sms``, ``whatsapp``), their signed webhooks, and the ``TwilioService`` that serves them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import APIRouter
from starlette.middleware import Middleware

from channels.base import ChannelContext
from channels.twilio.service import TwilioService
from channels.twilio.views import build_router
from hub.channels import SPECS, ChannelSpec
from hub.config import Settings
from hub.messages import ReplyHook, Sender
from hub.runtime import Runtime


class TwilioChannel:
    """Brings ``voice``, ``sms`` and ``whatsapp``; its settings are ``SWITCHBOARD_TWILIO_*``.

    ``whatsapp`` only while no WhatsApp Cloud API number is configured (``SWITCHBOARD_WHATSAPP_NUMBERS``): one
    registered channel brings a name, and then the social channel brings it."""

    settings_section = "twilio"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.specs: Sequence[ChannelSpec] = tuple(
            SPECS[name] for name in ("voice", "sms", "whatsapp") if name != "whatsapp" or not settings.whatsapp_numbers
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
        senders: dict[str, Sender] = {
            "sms": self.service.sender,
            "whatsapp": self.service.sender,
            "voice": self.service.voice,
        }
        brought = {spec.name for spec in self.specs}
        return {name: sender for name, sender in senders.items() if name in brought}

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
        return None

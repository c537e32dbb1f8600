"""The social channels as the hub runs them (``channels.base.Channel``): the webhooks and admin API, and the
``SocialService`` that stores what arrives and sends replies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import APIRouter
from starlette.middleware import Middleware

from channels.base import ChannelContext
from channels.social.service import SocialService
from channels.social.views import build_router
from hub.channels import SPECS, ChannelSpec
from hub.config import Settings
from hub.messages import ReplyHook, Sender
from hub.runtime import Runtime

NAMES = ("whatsapp", "messenger", "instagram", "telegram", "comments")


class SocialChannel:
    """Brings ``whatsapp`` (Cloud API), ``messenger``, ``instagram``, ``telegram`` and ``comments``; its settings
    are ``SWITCHBOARD_META_*``, ``SWITCHBOARD_WHATSAPP_*``, ``SWITCHBOARD_TELEGRAM_*`` and
    ``SWITCHBOARD_SOCIAL_*``.

    ``whatsapp`` is brought only when ``SWITCHBOARD_WHATSAPP_NUMBERS`` names a number: one registered channel
    brings a name, and a hub whose WhatsApp goes through Twilio leaves it to the Twilio channel."""

    settings_section = "social"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.specs: Sequence[ChannelSpec] = tuple(
            SPECS[name] for name in NAMES if name != "whatsapp" or settings.whatsapp_numbers
        )
        self._service: SocialService | None = None

    @property
    def service(self) -> SocialService:
        if self._service is None:
            raise RuntimeError("the social channel has not started")
        return self._service

    def routers(self) -> Sequence[APIRouter]:
        return build_router(lambda: self.service)

    def middleware(self) -> Sequence[Middleware]:
        return ()

    def body_limits(self) -> Mapping[str, int]:
        return {"/webhooks/meta": self.settings.social_max_webhook_bytes}

    @property
    def senders(self) -> Mapping[str, Sender]:
        brought = {spec.name for spec in self.specs}
        return {name: sender for name, sender in self.service.senders.items() if name in brought}

    @property
    def reply_hooks(self) -> Mapping[str, ReplyHook]:
        return {}

    async def start(self, ctx: ChannelContext) -> None:
        self._service = SocialService(ctx.rt, ctx.ingest, self.settings, ingest_all=ctx.ingest_all)
        await self._service.start()

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()

    async def seed_demo(self, rt: Runtime) -> None:
        return None

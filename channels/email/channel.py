"""The email channel as the hub runs it (``channels.base.Channel``): the admin API, and the ``EmailService``
that runs the mailboxes and sends replies by SMTP."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import APIRouter
from starlette.middleware import Middleware

from channels.base import ChannelContext
from channels.email.service import EmailService
from channels.email.views import build_router
from hub.channels import SPECS, ChannelSpec
from hub.config import Settings
from hub.messages import ReplyHook, Sender
from hub.runtime import Runtime


class EmailChannel:
    """Brings ``email``; its settings are ``SWITCHBOARD_EMAIL_*``, with ``SWITCHBOARD_MAILBOXES`` and
    ``SWITCHBOARD_MAIL_DOMAIN``."""

    specs: Sequence[ChannelSpec] = (SPECS["email"],)
    settings_section = "email"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: EmailService | None = None

    @property
    def service(self) -> EmailService:
        if self._service is None:
            raise RuntimeError("the email channel has not started")
        return self._service

    def routers(self) -> Sequence[APIRouter]:
        return [build_router(lambda: self.service)]

    def middleware(self) -> Sequence[Middleware]:
        return ()

    def body_limits(self) -> Mapping[str, int]:
        return {}

    @property
    def senders(self) -> Mapping[str, Sender]:
        return self.service.senders

    @property
    def reply_hooks(self) -> Mapping[str, ReplyHook]:
        return self.service.reply_hooks

    async def start(self, ctx: ChannelContext) -> None:
        self._service = EmailService(ctx.rt, ctx.ingest)
        await self._service.start()

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()

    async def seed_demo(self, rt: Runtime) -> None:
        return None

"""The chat channel as the hub runs it (``channels.base.Channel``): the widget's endpoints and CORS, and the
``WebchatService`` that serves the visitors' sockets and delivers agents' replies to them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastapi import APIRouter
from starlette.middleware import Middleware

from channels.base import ChannelContext
from channels.webchat.service import CHANNEL, WebchatService
from channels.webchat.views import ChatCORS, build_router
from hub.channels import SPECS, ChannelSpec
from hub.config import Settings
from hub.messages import ReplyHook, Sender
from hub.runtime import Runtime

# Multipart framing on top of the file itself.
UPLOAD_OVERHEAD = 64 * 1024


class WebchatChannel:
    """Brings ``webchat``; its settings are ``SWITCHBOARD_CHAT_*``."""

    specs: Sequence[ChannelSpec] = (SPECS[CHANNEL],)
    settings_section = "chat"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._service: WebchatService | None = None

    @property
    def service(self) -> WebchatService:
        if self._service is None:
            raise RuntimeError("the chat channel has not started")
        return self._service

    def routers(self) -> Sequence[APIRouter]:
        return [build_router(lambda: self.service)]

    def middleware(self) -> Sequence[Middleware]:
        return [Middleware(ChatCORS, origins=self.settings.chat_allowed_origins)]

    def body_limits(self) -> Mapping[str, int]:
        return {"/api/chat/attachments": self.settings.chat_attachment_max_bytes + UPLOAD_OVERHEAD}

    @property
    def senders(self) -> Mapping[str, Sender]:
        return {CHANNEL: self.service.sender}

    @property
    def reply_hooks(self) -> Mapping[str, ReplyHook]:
        return {}

    async def start(self, ctx: ChannelContext) -> None:
        self._service = WebchatService(ctx.rt, ctx.ingest, self.settings)
        await self._service.start()

    async def stop(self) -> None:
        if self._service is not None:
            await self._service.stop()

    async def seed_demo(self, rt: Runtime) -> None:
        return None

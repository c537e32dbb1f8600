"""HTTP endpoints of the social channels: Meta's webhook (GET handshake, POST events), Telegram's per bot, and
the admin API. Thin: read the raw body, then call the channel's running ``SocialService``.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations."""

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from channels.social.service import SocialService, accounts_view
from hub.deps import CurrentAdmin, CurrentAgent
from hub.inputs import Input


class WebhookAccepted(BaseModel):
    """What a webhook stored: the messages it carried, how many were new (a retried batch stores none), the
    receipts that moved a message's status, the events skipped (echoes, edits)."""

    messages: int
    stored: int
    receipts: int
    skipped: int


class AccountRead(BaseModel):
    channel: str
    account: str
    queue: str
    status: str
    detail: str | None
    since: str | None
    last_webhook_at: str | None
    last_sent_at: str | None


class TokenReplace(Input):
    """A new access token for a page, Instagram account or WhatsApp number (from Meta's Business settings)."""

    access_token: str = Field(min_length=10, max_length=2000, pattern=r"^[A-Za-z0-9_.|:-]+$")


class TelegramHook(BaseModel):
    bot: str
    url: str


class SocialSetup(BaseModel):
    """What to enter at Meta and Telegram: the webhook URLs, and whether the secrets are set here."""

    meta_webhook_url: str
    meta_app_secret_set: bool
    meta_verify_token_set: bool
    telegram_webhooks: list[TelegramHook]
    graph_url: str
    telegram_api_url: str


class TemplateRead(BaseModel):
    name: str
    language: str
    body: str
    channels: list[str]
    variables: int


def build_router(service: Callable[[], SocialService]) -> list[APIRouter]:
    def _service() -> SocialService:
        return service()

    Service = Annotated[SocialService, Depends(_service)]
    hooks = APIRouter(prefix="/webhooks", tags=["webhooks"])
    api = APIRouter(prefix="/api/social", tags=["social"])

    @hooks.get(
        "/meta",
        responses={
            200: {
                "description": "The challenge, as plain text",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def meta_handshake(
        svc: Service,
        mode: Annotated[str | None, Query(alias="hub.mode", max_length=40)] = None,
        token: Annotated[str | None, Query(alias="hub.verify_token", max_length=1000)] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge", max_length=1000)] = None,
    ) -> PlainTextResponse:
        """Meta's subscription handshake: the challenge back when the verify token matches, else 403."""
        return PlainTextResponse(svc.verify_challenge(mode, token, challenge))

    @hooks.post("/meta", response_model=WebhookAccepted)
    async def meta_events(
        request: Request,
        svc: Service,
        signature: Annotated[str | None, Header(alias="X-Hub-Signature-256", max_length=200)] = None,
    ) -> dict[str, int]:
        """Messenger, Instagram, WhatsApp and page-comment events, signed with the app secret
        (``X-Hub-Signature-256`` over the raw body); answers once every message of the batch is stored."""
        return await svc.meta_webhook(await request.body(), signature)

    @hooks.post("/telegram/{bot}", response_model=WebhookAccepted)
    async def telegram_update(
        request: Request,
        svc: Service,
        bot: Annotated[str, Path(max_length=64)],
        secret: Annotated[str | None, Header(alias="X-Telegram-Bot-Api-Secret-Token", max_length=256)] = None,
    ) -> dict[str, int]:
        """One bot's update, with the secret token given to ``setWebhook``."""
        return await svc.telegram_webhook(bot, await request.body(), secret)

    @api.get("/accounts", response_model=list[AccountRead])
    async def accounts(svc: Service, admin: CurrentAdmin) -> list[dict[str, object]]:
        """Every configured page, Instagram account, WhatsApp number and bot with its health (no secrets)."""
        return accounts_view(svc)

    @api.put("/accounts/{channel}/{account}/token", response_model=AccountRead)
    async def replace_token(
        svc: Service,
        admin: CurrentAdmin,
        channel: Annotated[Literal["messenger", "instagram", "whatsapp"], Path()],
        account: Annotated[str, Path(max_length=64)],
        body: TokenReplace,
    ) -> dict[str, object]:
        """Reconnect a page or number: its new access token (kept sealed) is used from now on; the token alert
        clears. Telegram bots' tokens are set in SWITCHBOARD_TELEGRAM_BOTS."""
        health = await svc.replace_token(channel=channel, account=account, token=body.access_token)
        return health.as_dict()

    @api.get("/setup", response_model=SocialSetup)
    async def setup(svc: Service, admin: CurrentAdmin) -> SocialSetup:
        """The webhook URLs to give Meta and Telegram (from SWITCHBOARD_PUBLIC_URL)."""
        base = svc.settings.public_url
        return SocialSetup(
            meta_webhook_url=f"{base}/webhooks/meta",
            meta_app_secret_set=svc.settings.meta_app_secret is not None,
            meta_verify_token_set=svc.settings.meta_verify_token is not None,
            telegram_webhooks=[TelegramHook(bot=b, url=f"{base}/webhooks/telegram/{b}") for b in svc.bots],
            graph_url=svc.settings.meta_graph_url,
            telegram_api_url=svc.settings.telegram_api_url,
        )

    @api.get("/health", response_model=list[AccountRead])
    async def health(svc: Service, agent: CurrentAgent) -> list[dict[str, object]]:
        """The accounts that have a problem now (what the console's alert shows)."""
        return [a for a in accounts_view(svc) if a["status"] != "ok"]

    @api.get("/templates", response_model=list[TemplateRead])
    async def templates(svc: Service, agent: CurrentAgent) -> list[dict[str, Any]]:
        """The approved templates agents may send outside a messaging window."""
        return [{**t.model_dump(), "variables": t.body.count("{{")} for t in svc.settings.whatsapp_templates]

    return [hooks, api]

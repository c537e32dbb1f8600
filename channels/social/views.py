"""HTTP endpoints of the social channels: Meta's webhook (GET handshake, POST events), Telegram's per bot, and
the admin API. Thin: read the raw body, then call the channel's running ``SocialService``.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations."""

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from channels.social import demo, quarantine
from channels.social.inbox import InboxState
from channels.social.quarantine import QuarantineChannel, QuarantinedDetail, QuarantinePage, ReprocessAnswer
from channels.social.service import SocialService, accounts_view
from hub.api_catcher import read_calls
from hub.config import DEMO_SOCIAL
from hub.deps import CurrentAdmin, CurrentAgent
from hub.errors import PermissionDenied
from hub.inputs import DB_INT_MAX, Input
from hub.windows import variables_of


class WebhookAccepted(BaseModel):
    """What a webhook stored: the messages it carried, how many were new (a retried batch stores none), the
    receipts that moved a message's status, the events skipped (echoes, edits), and the messages ingest refused,
    kept in quarantine with the reason. ``queued``: the batch is kept (committed) but was not processed within
    SWITCHBOARD_SOCIAL_WEBHOOK_ANSWER_SECONDS; it is processed all the same, and ``stored``, ``receipts`` and
    ``quarantined`` are 0, not known yet."""

    messages: int
    stored: int
    receipts: int
    skipped: int
    quarantined: int = 0
    queued: bool = False


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


class QuarantineKey(Input):
    """A message in quarantine: its channel and the provider's id of it."""

    channel: QuarantineChannel
    external_id: str = Field(min_length=1, max_length=255)


class DemoSignRequest(Input):
    """A webhook the pretend social app (/demo/social) is about to post: to Meta's webhook, or to a bot's."""

    to: Literal["meta", "telegram"]
    bot: str | None = Field(default=None, max_length=64)
    body: str = Field(min_length=2, max_length=65_536)


class DemoSignature(BaseModel):
    header: str
    value: str


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
        (``X-Hub-Signature-256`` over the raw body); answers once the batch is kept (committed) and, if done within
        SWITCHBOARD_SOCIAL_WEBHOOK_ANSWER_SECONDS, processed, else with ``queued`` true."""
        return await svc.meta_webhook(await request.body(), signature)

    @hooks.post("/telegram/{bot}", response_model=WebhookAccepted)
    async def telegram_update(
        request: Request,
        svc: Service,
        bot: Annotated[str, Path(max_length=64)],
        secret: Annotated[str | None, Header(alias="X-Telegram-Bot-Api-Secret-Token", max_length=256)] = None,
    ) -> dict[str, int]:
        """One bot's update, with the secret token given to ``setWebhook``; answered as Meta's webhook is."""
        return await svc.telegram_webhook(bot, await request.body(), secret)

    @api.get("/accounts", response_model=list[AccountRead])
    async def accounts(svc: Service, admin: CurrentAdmin) -> list[dict[str, object]]:
        """Every configured page, Instagram account, WhatsApp number and bot with its health (no secrets)."""
        return await accounts_view(svc)

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
        health = await svc.replace_token(channel=channel, account=account, token=body.access_token, actor=admin)
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
        return [a for a in await accounts_view(svc) if a["status"] != "ok"]

    @api.get("/templates", response_model=list[TemplateRead])
    async def templates(svc: Service, agent: CurrentAgent) -> list[dict[str, Any]]:
        """The approved templates agents may send outside a messaging window (edited at /admin/templates)."""
        found = await svc.rt.ports.tickets.message_templates()
        return [{**t.model_dump(), "variables": variables_of(t.body)} for t in found]

    # --- messages ingest refused (channels.social.quarantine) ------------------------------------------------------

    @api.get("/quarantine", response_model=QuarantinePage)
    async def list_quarantine(
        svc: Service,
        admin: CurrentAdmin,
        channel: QuarantineChannel | None = None,
        account: Annotated[str | None, Query(max_length=64)] = None,
        offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> QuarantinePage:
        """Messages of webhooks that ingest refused, newest first, with the reason; filter by channel and
        account (page id, number id, bot name)."""
        return await quarantine.list_quarantined(svc.rt, channel=channel, account=account, offset=offset, limit=limit)

    @api.get("/quarantine/message", response_model=QuarantinedDetail)
    async def show_quarantined(
        svc: Service,
        admin: CurrentAdmin,
        channel: QuarantineChannel,
        external_id: Annotated[str, Query(min_length=1, max_length=255)],
    ) -> QuarantinedDetail:
        """One refused message, with what was kept of it as text (``raw``: the message as parsed, JSON)."""
        return await quarantine.get_quarantined(svc.rt, channel=channel, external_id=external_id)

    @api.post("/quarantine/reprocess", response_model=ReprocessAnswer)
    async def reprocess_quarantined(svc: Service, admin: CurrentAdmin, body: QuarantineKey) -> ReprocessAnswer:
        """Run a refused message through ingest again (audited): it becomes a message of a ticket and leaves
        quarantine (once, however often this is asked), or stays with the new reason (``ok`` false)."""
        return await quarantine.reprocess(
            svc.rt, svc.ingest, channel=body.channel, external_id=body.external_id, actor=admin, fetch=svc.fetch_media
        )

    @api.post("/quarantine/discard", status_code=204)
    async def discard_quarantined(svc: Service, admin: CurrentAdmin, body: QuarantineKey) -> Response:
        """Throw a refused message away (audited)."""
        await quarantine.discard(svc.rt, channel=body.channel, external_id=body.external_id, actor=admin)
        return Response(status_code=204)

    # --- webhook batches waiting in the inbox (channels.social.inbox) ---------------------------------------------

    @api.get("/inbox", response_model=InboxState)
    async def inbox_state(svc: Service, admin: CurrentAdmin) -> InboxState:
        """How many webhook batches wait to be processed, and those whose processing failed (oldest first, with
        the reason and the next try)."""
        return await svc.inbox.state()

    @api.post("/inbox/{batch_id}/retry", status_code=204)
    async def retry_inbox_batch(
        svc: Service, admin: CurrentAdmin, batch_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)]
    ) -> Response:
        """Try a failing batch again now rather than after its backoff (audited)."""
        await svc.inbox.retry_now(batch_id, admin)
        return Response(status_code=204)

    @api.post("/inbox/{batch_id}/discard", status_code=204)
    async def discard_inbox_batch(
        svc: Service, admin: CurrentAdmin, batch_id: Annotated[int, Path(ge=1, le=DB_INT_MAX)]
    ) -> Response:
        """Throw a failing batch away: its messages are never stored (audited)."""
        await svc.inbox.discard(batch_id, admin)
        return Response(status_code=204)

    # --- the pretend social app of switchboard demo ---------------------------------------------------------------

    def _demo_only(svc: SocialService) -> None:
        if not svc.settings.demo_mode or svc.settings.demo_social_dir is None:
            raise PermissionDenied("the pretend social app works only in switchboard demo", code="demo_only")

    @api.post("/demo/sign", response_model=DemoSignature)
    async def demo_sign(body: DemoSignRequest, svc: Service) -> DemoSignature:
        """Only in ``switchboard demo``, with the demo's own accounts: the header that makes a pretend webhook
        genuine (Meta's ``X-Hub-Signature-256`` over the body, or the bot's secret token). A configured secret
        is never lent: the demo signs with its own only."""
        _demo_only(svc)
        if body.to == "meta":
            secret = svc.settings.meta_app_secret
            if secret is None or secret.get_secret_value() != DEMO_SOCIAL.meta_app_secret:
                raise PermissionDenied("Meta's app secret is not the demo's own", code="demo_only")
            return DemoSignature(
                header="X-Hub-Signature-256", value=demo.meta_signature(DEMO_SOCIAL.meta_app_secret, body.body.encode())
            )
        bot = svc.bots.get(body.bot or "")
        if bot is None or bot.secret_token.get_secret_value() != DEMO_SOCIAL.telegram_secret:
            raise PermissionDenied("that bot is not the demo's own", code="demo_only")
        return DemoSignature(header="X-Telegram-Bot-Api-Secret-Token", value=DEMO_SOCIAL.telegram_secret)

    @api.get("/demo/replies", response_model=list[demo.DemoReply])
    async def demo_replies(
        svc: Service,
        channel: Annotated[Literal["messenger", "instagram", "whatsapp", "telegram"], Query()],
        customer: Annotated[str, Query(min_length=1, max_length=64)],
    ) -> list[demo.DemoReply]:
        """Only in ``switchboard demo``: what the agents sent the pretend app's customer, as the demo's stand-in
        for the providers' send APIs caught it (``hub.api_catcher``), oldest first."""
        _demo_only(svc)
        calls = await asyncio.to_thread(read_calls, svc.settings.demo_social_dir)
        return demo.replies_to(calls, channel=channel, customer=customer, pages=svc.pages)

    return [hooks, api]

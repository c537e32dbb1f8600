"""The running social channel: Meta's and Telegram's webhooks in, replies out through each provider's API.

Inbound (``meta_webhook``, ``telegram_webhook``): the signature or secret is checked on the raw bytes before
anything is parsed; the whole body is parsed before anything is stored (a bad entry refuses the batch, so
nothing is half-stored); then the batch, as it arrived, is committed to the inbox (``inbox``: a crash loses
nothing acknowledged) and processed in a task: every message of the batch is handed to ingest at once, where the
group commit stores them in one transaction or a few (``ticketing.ingest``). The answer waits for that at most
``SWITCHBOARD_SOCIAL_WEBHOOK_ANSWER_SECONDS``, then says the batch is queued (``"queued": true``) and the task
goes on. A message ingest refuses is quarantined with its reason (``social_quarantine``) and the batch still
processed. A batch that fails otherwise (the database away) stays in the inbox and is tried again. A retried
batch is stored once: each message's external id is the provider's (``mid``, ``wamid``,
``<bot>:<update_id>``, the comment id). Receipts move our messages' delivery status forward only
(``rt.ports.conversations.advance``); a reply sent as several provider messages (its files, then its text) is
named by each (``social_deliveries``, a row per part with the part's own status) and shows what its parts show
together (``reply_status``).

Outbound (``senders``): one ``hub.messages.Sender`` per channel name, POSTing with httpx to
``SWITCHBOARD_META_GRAPH_URL`` / ``SWITCHBOARD_TELEGRAM_API_URL``. A reply's files are uploaded as multipart,
never handed over as URLs of ours (WhatsApp: to ``{number}/media``, then a message naming the media id;
Messenger: with the message; Telegram: ``sendPhoto``/``sendDocument``); WhatsApp and Messenger check every
file against what they take (``media``) before the first call. A reply of several calls retried after a 5xx
or 429 skips the parts the provider already took, in whichever process the retry runs (``social_reply_parts``,
written as each part is taken). What the provider answers decides the outbox's next step (``classify``): 5xx,
429, Meta's throttling codes and network errors are retried with backoff; a refused token (Meta error 190 and
kin, Telegram 401) fails the message with "token expired — reconnect the page in Admin" and raises the
account's health alert; any other 4xx fails it with the provider's own reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
from sqlalchemy import delete, select, update

from channels.social import media, meta, telegram
from channels.social.health import TOKEN_EXPIRED_TEXT, AccountHealth, Health, HealthStatus
from channels.social.inbox import Inbox, InboxRow
from channels.social.models import AccountToken, PrivateReply, SocialDelivery, SocialQuarantine, SocialReplyPart
from hub import audit
from hub.config import Settings
from hub.db import insert_rows, utcnow
from hub.errors import Conflict, InvalidInput, NotFound, PermissionDenied, SwitchboardError
from hub.files import FileStore, StoredFileMissing
from hub.messages import (
    Attachment,
    DeliveryError,
    DeliveryResult,
    InboundMessage,
    Ingest,
    IngestAll,
    OutboundMessage,
    Sender,
)
from hub.ports import DeliveryReceipt
from hub.principals import Principal
from hub.runtime import Runtime
from hub.sealing import SealedUnreadable, Sealer

log = logging.getLogger(__name__)

D = SocialDelivery.__table__  # type: ignore[attr-defined]
P = PrivateReply.__table__  # type: ignore[attr-defined]
K = AccountToken.__table__  # type: ignore[attr-defined]
Q = SocialQuarantine.__table__  # type: ignore[attr-defined]
R = SocialReplyPart.__table__  # type: ignore[attr-defined]
# How often a process reads the tokens admins replaced (another process may have taken the new one).
TOKEN_REFRESH_SECONDS = 30.0
NAME_CACHE_MAX = 50_000
PRIVATE_REPLY_WINDOW = timedelta(days=7)
T = TypeVar("T")  # how a provider carries one file (``media``)
SETTLED_BATCH = 500  # replies whose kept parts one sweep looks at


class UnknownAccount(NotFound):
    code = "unknown_account"


class BadWebhook(InvalidInput):
    code = "bad_webhook"


class BadSignature(PermissionDenied):
    code = "bad_signature"


class NotConfigured(NotFound):
    code = "not_configured"


# Meta's error codes for a token that expired, was revoked, or lost a permission: the page must be reconnected.
TOKEN_CODES = frozenset({190, 102, 463, 467, 10, 200, 230})
# Meta's throttling codes (answered with 400 or 403, not 429): retried.
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80001, 80002, 80004, 80006, 130429, 131048, 131056})
# The problems a message the provider took clears (not silence: that is about webhooks coming in).
SENDING_CLEARS = frozenset({HealthStatus.TOKEN_EXPIRED, HealthStatus.FAILING})
WINDOW_CODES = frozenset({131047, 10_000_551})  # WhatsApp re-engagement; outside the allowed window


class SocialService:
    def __init__(
        self,
        rt: Runtime,
        ingest: Ingest,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        *,
        ingest_all: IngestAll | None = None,
    ) -> None:
        self.rt = rt
        self.ingest = ingest
        self.ingest_all = ingest_all
        self.settings = settings
        self.pages = {p.page_id: meta.Account(p.page_id, p.queue, p.kind) for p in settings.meta_pages}
        self.page_tokens = {p.page_id: p.access_token.get_secret_value() for p in settings.meta_pages}
        self.numbers = {
            n.phone_number_id: meta.Account(n.phone_number_id, n.queue, "whatsapp") for n in settings.whatsapp_numbers
        }
        self.number_tokens = {n.phone_number_id: n.access_token.get_secret_value() for n in settings.whatsapp_numbers}
        self.bots = {b.name: b for b in settings.telegram_bots}
        self.health = Health(
            rt,
            [AccountHealth(p.kind, p.page_id, p.queue) for p in settings.meta_pages]
            + [AccountHealth("whatsapp", n.phone_number_id, n.queue) for n in settings.whatsapp_numbers]
            + [AccountHealth("telegram", b.name, b.queue) for b in settings.telegram_bots],
            silence_seconds=settings.social_silence_seconds,
        )
        self.client = client or httpx.AsyncClient(timeout=settings.social_send_timeout_seconds)
        self.files = FileStore(settings.attachment_dir)
        self.senders: dict[str, Sender] = {
            "whatsapp": _Send(self, self.send_whatsapp),
            "messenger": _Send(self, self.send_page),
            "instagram": _Send(self, self.send_page),
            "comments": _Send(self, self.send_comment),
            "telegram": _Send(self, self.send_telegram),
        }
        self.sealer = Sealer(settings.secret_key.get_secret_value())
        self._sweeper: asyncio.Task[None] | None = None
        self._names: dict[str, str] = {}  # profile names looked up, by sender id ("" when Meta gave none)
        self.inbox = Inbox(rt, self._replay, in_flight=settings.social_inbox_workers)

    async def start(self) -> None:
        await self.load_tokens()
        await self.health.start()
        self._sweeper = asyncio.create_task(self._sweep(), name="social-sweep")
        self.inbox.start()  # batches left in the inbox by a process that stopped are processed now

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.inbox.stop()
        await self.client.aclose()

    async def _sweep(self) -> None:
        silence = self.settings.social_silence_seconds
        every = max(1.0, min(TOKEN_REFRESH_SECONDS, silence / 4)) if silence > 0 else TOKEN_REFRESH_SECONDS
        while True:
            await asyncio.sleep(every)
            try:
                await self.load_tokens()
                await self.health.refresh()
                await self.health.sweep_silence()
                await self.forget_settled_parts()
            except Exception:
                log.exception("social sweep failed")

    def _tokens_of(self, channel: str) -> dict[str, str] | None:
        if channel in ("messenger", "instagram"):
            return self.page_tokens
        if channel == "whatsapp":
            return self.number_tokens
        return None

    async def load_tokens(self) -> None:
        """The tokens admins replaced (``social_tokens``) override the configured ones."""
        async with self.rt.read() as conn:
            rows = list(await conn.execute(select(K.c.channel, K.c.account, K.c.sealed_token)))
        for row in rows:
            tokens = self._tokens_of(row.channel)
            if tokens is not None and row.account in tokens:
                try:
                    tokens[row.account] = self.sealer.open(row.sealed_token)
                except SealedUnreadable:
                    log.error("the token saved for %s %s cannot be opened: set it again", row.channel, row.account)
            elif row.channel == "telegram" and row.account in self.bots:
                log.warning("Telegram bot tokens are replaced in SWITCHBOARD_TELEGRAM_BOTS, not here")

    async def replace_token(
        self, *, channel: str, account: str, token: str, actor: Principal | None = None
    ) -> AccountHealth:
        """An admin reconnected a page or number: its new token is kept (sealed) and used from now on, by every
        process (each reads the table every ``TOKEN_REFRESH_SECONDS``); the account's token alert clears."""
        tokens = self._tokens_of(channel)
        health = self.health.get(channel, account)
        if tokens is None or account not in tokens or health is None:
            raise UnknownAccount(f"no {channel} account {account!r} is configured")
        row = {"channel": channel, "account": account, "sealed_token": self.sealer.seal(token), "updated_at": utcnow()}
        async with self.rt.db.begin() as conn:
            await conn.execute(delete(K).where(K.c.channel == channel, K.c.account == account))
            await insert_rows(conn, K, [row])
            if actor is not None:  # the token itself never goes into the log
                await audit.record(conn, actor=actor, action="social.token_replace", target=f"{channel}:{account}")
        tokens[account] = token
        if health.status == HealthStatus.TOKEN_EXPIRED:
            await self.health.set(health, HealthStatus.OK, None, only_from={HealthStatus.TOKEN_EXPIRED})
        return health

    # --- inbound ----------------------------------------------------------------------------------------------

    def verify_challenge(self, mode: str | None, token: str | None, challenge: str | None) -> str:
        expected = self.settings.meta_verify_token
        if expected is None:
            raise NotConfigured("SWITCHBOARD_META_VERIFY_TOKEN is not set: Meta's webhook is not configured here")
        if mode != "subscribe" or token is None or challenge is None:
            raise BadSignature("hub.mode=subscribe, hub.verify_token and hub.challenge are expected")
        if not meta.hmac.compare_digest(expected.get_secret_value().encode(), token.encode()):
            raise BadSignature("wrong verify token")
        return challenge

    async def meta_webhook(self, body: bytes, signature: str | None) -> dict[str, int]:
        secret = self.settings.meta_app_secret
        if secret is None:
            raise NotConfigured("SWITCHBOARD_META_APP_SECRET is not set: Meta's webhook is not configured here")
        if not meta.signature_ok(secret.get_secret_value().encode(), body, signature):
            log.warning("Meta webhook refused: %s X-Hub-Signature-256", "wrong" if signature else "no")
            raise BadSignature("X-Hub-Signature-256 is missing or does not match the body")
        try:
            parsed = meta.parse(meta.load(body), self.pages, self.numbers)
        except meta.BadPayload as exc:
            log.warning("Meta webhook refused: %s", exc)
            raise BadWebhook(str(exc)) from None
        except meta.UnknownAccount as exc:
            log.warning("Meta webhook refused: %s", exc)
            raise UnknownAccount(str(exc)) from None
        counts = await self.inbox.take(
            "meta", "", body, lambda: self._meta_batch(parsed), wait=self.settings.social_webhook_answer_seconds
        )
        return counts or _queued(len(parsed.messages), parsed.skipped)

    async def _meta_batch(self, parsed: meta.Parsed) -> dict[str, int]:
        """Process a batch of Meta's webhook (``inbox``): what it stored."""
        for channel, account in parsed.accounts:
            await self.heard(channel, account)
        await asyncio.gather(self.fetch_media(parsed.messages), self.fetch_names(parsed.messages))
        stored, quarantined = await self._store(parsed.messages)
        advanced = await self._receipts(parsed.receipts)
        return {
            "messages": len(parsed.messages),
            "stored": stored,
            "receipts": advanced,
            "skipped": parsed.skipped,
            "quarantined": quarantined,
            "queued": False,
        }

    async def telegram_webhook(self, bot_name: str, body: bytes, secret: str | None) -> dict[str, int]:
        bot = self.bots.get(bot_name)
        if bot is None:
            log.warning("Telegram webhook for unknown bot %r refused", bot_name[:64])
            raise UnknownAccount(f"no Telegram bot {bot_name[:64]!r} is configured (SWITCHBOARD_TELEGRAM_BOTS)")
        if not telegram.secret_ok(bot.secret_token.get_secret_value(), secret):
            log.warning("Telegram webhook for %s refused: %s secret token", bot_name, "wrong" if secret else "no")
            raise BadSignature("X-Telegram-Bot-Api-Secret-Token is missing or wrong")
        try:
            message = telegram.parse(telegram.load(body), bot=bot.name, queue=bot.queue)
        except meta.BadPayload as exc:
            raise BadWebhook(str(exc)) from None
        counts = await self.inbox.take(
            "telegram",
            bot.name,
            body,
            lambda: self._telegram_update(bot.name, message),
            wait=self.settings.social_webhook_answer_seconds,
        )
        return counts or _queued(1 if message else 0, 0 if message else 1)

    async def _telegram_update(self, bot: str, message: InboundMessage | None) -> dict[str, int]:
        """Process a bot's update (``inbox``): what it stored."""
        await self.heard("telegram", bot)
        await self.fetch_media([message] if message else [])
        stored, quarantined = await self._store([message] if message else [])
        return {
            "messages": 1 if message else 0,
            "stored": stored,
            "receipts": 0,
            "skipped": 0 if message else 1,
            "quarantined": quarantined,
            "queued": False,
        }

    async def _replay(self, row: InboxRow) -> dict[str, int]:
        """Process a batch taken from the inbox (left by a process that stopped, or waiting its turn): its body
        parsed again, with the accounts configured now. One that no longer parses raises (``Inbox`` keeps it,
        logs it and tries it again)."""
        if row.provider == "meta":
            return await self._meta_batch(meta.parse(meta.load(row.body), self.pages, self.numbers))
        bot = self.bots.get(row.account)
        if row.provider != "telegram" or bot is None:
            raise UnknownAccount(f"no {row.provider} account {row.account!r} is configured for this batch")
        return await self._telegram_update(
            bot.name, telegram.parse(telegram.load(row.body), bot=bot.name, queue=bot.queue)
        )

    async def heard(self, channel: str, account: str) -> None:
        """A webhook for the account arrived: noted for every process (``Health.heard``); a silent account is ok
        again."""
        cleared = await self.health.heard(channel, account)
        if cleared is not None:
            await self.health.set(cleared, HealthStatus.OK, None, only_from={HealthStatus.SILENT})

    async def fetch_media(self, messages: list[InboundMessage]) -> None:
        """The files of a batch's messages, fetched with the account's credentials (WhatsApp: the media id
        through Graph, with the number's token; Telegram: getFile, with the bot's token; Messenger and
        Instagram: the attachment's URL) and stored by content hash like email attachments, all at once and
        within ``SWITCHBOARD_SOCIAL_MEDIA_TIMEOUT_SECONDS``. A file that cannot be fetched leaves the message
        as it is (it still says what was sent), logged; a message already stored is not fetched again."""
        jobs = [
            (message, attachment)
            for message in messages
            for attachment in message.attachments
            if attachment.sha256 is None
        ]
        if not jobs:
            return
        ids = [(m.channel, m.external_id) for m, _ in jobs]
        known = await self._already_stored(ids)
        jobs = [(m, a) for m, a in jobs if (m.channel, m.external_id) not in known]
        try:
            async with asyncio.timeout(self.settings.social_media_timeout_seconds):
                results = await asyncio.gather(*(self._fetch(m, a) for m, a in jobs), return_exceptions=True)
        except TimeoutError:
            log.warning("fetching %d files of a webhook took too long; the rest are left as they are", len(jobs))
            return
        for (message, attachment), result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "file %r of %s %s not fetched: %s",
                    attachment.filename,
                    message.channel,
                    message.external_id,
                    result,
                )

    async def fetch_names(self, messages: list[InboundMessage]) -> None:
        """Messenger and Instagram webhooks carry no name: the sender's profile name is asked of Graph with the
        page's token (``GET /{psid}?fields=name``; Instagram: ``name,username``), once per sender and process,
        and set on the message's identity, whence the contact gets it. A lookup Meta refuses (the permission
        is optional) leaves the sender unnamed."""
        wanted = {
            (m.sender.value, m.recipient or "", m.channel)
            for m in messages
            if m.channel in ("messenger", "instagram") and not m.sender.name and m.sender.value not in self._names
        }
        if wanted:
            try:
                async with asyncio.timeout(self.settings.social_media_timeout_seconds):
                    await asyncio.gather(*(self._lookup_name(*w) for w in wanted), return_exceptions=True)
            except TimeoutError:
                log.warning("looking up %d profile names took too long", len(wanted))
        for m in messages:
            if m.channel in ("messenger", "instagram") and not m.sender.name:
                name = self._names.get(m.sender.value)
                if name:
                    m.sender.name = name[:200]

    async def _lookup_name(self, user: str, page: str, channel: str) -> None:
        token = self.page_tokens.get(page)
        if token is None:
            return
        fields = "name,username" if channel == "instagram" else "name"
        response = await self.client.get(
            f"{self.settings.meta_graph_url}/{user}",
            params={"fields": fields},
            headers={"Authorization": f"Bearer {token}"},
        )
        if response.status_code != 200:
            log.debug("no profile name for %s %s: %s", channel, user, response.status_code)
            return
        answer = response.json()
        name = answer.get("name") or answer.get("username") if isinstance(answer, dict) else None
        if len(self._names) > NAME_CACHE_MAX:
            self._names.clear()
        self._names[user] = str(name) if name else ""

    async def _already_stored(self, ids: list[tuple[str, str]]) -> set[tuple[str, str]]:
        found = set()
        for channel, external_id in set(ids):
            if await self.rt.ports.tickets.message_by_external_id(channel=channel, external_id=external_id):
                found.add((channel, external_id))
        return found

    async def _fetch(self, message: InboundMessage, attachment: Attachment) -> None:
        headers: dict[str, str] = {}
        if message.channel == "whatsapp":
            token = self.number_tokens.get(message.recipient or "")
            media_id = message.metadata.get("media_id")
            if token is None or not media_id:
                return
            headers = {"Authorization": f"Bearer {token}"}
            info = await self.client.get(f"{self.settings.meta_graph_url}/{media_id}", headers=headers)
            info.raise_for_status()
            url = info.json().get("url")
        elif message.channel == "telegram":
            bot = self.bots.get(message.recipient or "")
            file_id = message.metadata.get("file_id")
            if bot is None or not file_id:
                return
            base = self.settings.telegram_api_url
            token = bot.token.get_secret_value()
            info = await self.client.get(f"{base}/bot{token}/getFile", params={"file_id": file_id})
            info.raise_for_status()
            path = (info.json().get("result") or {}).get("file_path")
            url = f"{base}/file/bot{token}/{path}" if path else None
        else:
            url = attachment.url
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return
        limit = self.settings.attachment_max_bytes
        data = bytearray()
        async with self.client.stream("GET", url, headers=headers) as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > limit:
                    raise ValueError(f"over SWITCHBOARD_ATTACHMENT_MAX_BYTES ({limit})")
            content_type = response.headers.get("content-type", "").split(";")[0].strip()
        attachment.sha256 = await asyncio.to_thread(self.files.put, bytes(data))
        attachment.size = len(data)
        if content_type and attachment.content_type in ("application/octet-stream", "image/*", "video/*", "audio/*"):
            attachment.content_type = content_type[:255]

    async def _store(self, messages: list[InboundMessage]) -> tuple[int, int]:
        """Hand the batch to ingest at once (one group commit, or a few); answers how many were new and how many
        were quarantined. A message ingest refuses (a ``SwitchboardError``: an identity it cannot read, say) is
        kept in ``social_quarantine`` with the reason and logged, and the rest of the batch is answered as stored:
        a refused batch would be sent again forever. Any other failure (the database away, a conflict to try
        again) raises, so the provider sends the batch again (what was stored is found, not stored twice)."""
        if not messages:
            return 0, 0
        results: list[Any]
        if self.ingest_all is not None:  # the batch in one commit: its answer waits for one, not two
            results = await self.ingest_all(messages)
        else:
            results = await asyncio.gather(*(self.ingest(m) for m in messages), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException) and not _refusal(r)]
        if failed:
            for exc in failed[:3]:
                log.error("social message not stored: %r", exc)
            first = failed[0]
            if isinstance(first, SwitchboardError):
                raise first
            raise RuntimeError(f"{len(failed)} of {len(messages)} messages were not stored") from first
        refused = [(m, r) for m, r in zip(messages, results, strict=True) if isinstance(r, SwitchboardError)]
        if refused:
            await self._quarantine(refused)
        return sum(1 for r in results if not isinstance(r, BaseException) and r.created), len(refused)

    async def _quarantine(self, refused: list[tuple[InboundMessage, SwitchboardError]]) -> None:
        rows = []
        for message, exc in refused:
            log.warning(
                "%s message %s quarantined: ingest refused it (%s: %s)",
                message.channel,
                message.external_id,
                exc.code,
                exc.message,
            )
            rows.append(
                {
                    "channel": message.channel[:20],
                    "external_id": message.external_id[:255],
                    "account": str(message.metadata.get("account") or message.recipient or "")[:64],
                    "reason": f"{exc.code}: {exc.message}"[:2000],
                    "message": message.model_dump(mode="json"),
                    "created_at": utcnow(),
                }
            )
        async with self.rt.db.begin() as conn:
            await insert_rows(conn, Q, rows, ignore_conflicts=True)  # a replayed batch: kept once

    async def _receipts(self, receipts: list[meta.Receipt]) -> int:
        """Receipts naming a provider id move that part of one of our replies (``social_deliveries``), and the
        reply moves as ``reply_status`` judges all its parts; a receipt for "everything up to a time" (Messenger's
        watermarks) moves the recipient's replies themselves. Answers how many of our messages moved."""
        if not receipts:
            return 0
        by_channel: dict[str, list[DeliveryReceipt]] = {}
        for channel, judged in (await self._part_receipts(receipts)).items():
            by_channel.setdefault(channel, []).extend(judged)
        for r in receipts:
            status = _RECEIPT_STATUSES.get(r.status)
            if status is None or r.provider_id or not (r.recipient and r.watermark):
                continue
            by_channel.setdefault(r.channel, []).append(
                DeliveryReceipt(status=status, error=r.error, recipient=r.recipient, before=r.watermark)
            )
        moved = 0
        for channel, changes in by_channel.items():
            moved += await self.rt.ports.conversations.advance(channel=channel, receipts=changes)
        return moved

    async def _part_receipts(self, receipts: list[meta.Receipt]) -> dict[str, list[DeliveryReceipt]]:
        """Each named part's status moved forward, and what each reply sent whole should now show, by channel.
        The parts of a reply are read and written under their row locks, in one order for every writer
        (``_locked_parts``): two receipts for two parts of one reply, in two transactions, could otherwise each
        see the other part as it was, and neither would move the reply."""
        named: dict[tuple[str, str], meta.Receipt] = {}
        for r in receipts:
            if r.provider_id and r.status in _RECEIPT_STATUSES:
                kept = named.get((r.channel, r.provider_id))  # a batch may name a part twice, in any order
                if kept is None or _part_moves(_RECEIPT_STATUSES[r.status], _RECEIPT_STATUSES[kept.status]):
                    named[(r.channel, r.provider_id)] = r
        if not named:
            return {}
        judged: dict[str, list[DeliveryReceipt]] = {}
        async with self.rt.db.begin() as conn:
            for channel in sorted({c for c, _ in named}):
                ids = sorted(p for c, p in named if c == channel)
                found = await conn.execute(
                    select(D.c.message_id).where(D.c.channel == channel, D.c.provider_id.in_(ids)).distinct()
                )
                message_ids = sorted(row.message_id for row in found)
                if not message_ids:
                    continue  # not ours (sent from another tool on the same number), or not recorded yet
                parts = await _locked_parts(conn, channel, message_ids)
                before = {message_id: reply_status(part.values()) for message_id, part in parts.items()}
                moved: dict[tuple[str, str | None], list[str]] = {}
                for part in parts.values():
                    for key, row in part.items():
                        receipt = named.get((channel, key))
                        if receipt is None:
                            continue
                        status = _RECEIPT_STATUSES[receipt.status]
                        if not _part_moves(status, row[0]):
                            continue
                        error = (receipt.error or "failed")[:2000] if status == "failed" else None
                        part[key] = (status, error, row[2])
                        moved.setdefault((status, error), []).append(key)
                for (status, error), keys in moved.items():
                    await conn.execute(
                        update(D)
                        .where(D.c.channel == channel, D.c.provider_id.in_(keys))
                        .values(status=status, error=error)
                    )
                for message_id, part in parts.items():
                    judged_status = reply_status(part.values())
                    # Only what these receipts changed: a failed reply is not failed again by its other parts.
                    if judged_status not in (None, before[message_id]) and judged_status[0] != "sent":
                        judged.setdefault(channel, []).append(
                            DeliveryReceipt(message_id=message_id, status=judged_status[0], error=judged_status[1])
                        )
        return judged

    async def _taken(self, channel: str, message_id: int) -> dict[str, str | None]:
        """What the provider already took of a reply (``social_reply_parts``), by part (``file:0``, WhatsApp's
        ``upload:0``), with what it answered (a message id, a media id): kept by whichever process sent it, so
        that a retry here, or after a restart, skips it. A message not yet stored (id 0) is never retried."""
        if not message_id:
            return {}
        async with self.rt.read() as conn:
            rows = await conn.execute(
                select(R.c.part, R.c.provider_id).where(R.c.channel == channel, R.c.message_id == message_id)
            )
        return {row.part: row.provider_id for row in rows}

    async def _part_taken(
        self,
        taken: dict[str, str | None],
        channel: str,
        message_id: int,
        part: str,
        answer: str | None,
        *,
        receipted_as: str | None = None,
    ) -> None:
        """The provider took ``part`` of a reply whose rest is still to be sent, answering ``answer``: noted in
        ``taken`` and kept at once (``social_reply_parts``), before the next call, so that a retry in any process
        skips it. A part that is a message of its own (a file's; ``receipted_as``: the provider id its receipts
        name) gets its ``social_deliveries`` row in the same transaction, so that the receipts the provider sends
        for it meanwhile find it; it counts for the reply once the reply is sent whole (``sent_whole``)."""
        taken[part] = answer
        if not message_id:
            return  # a message never stored (id 0) is never retried, and gets no receipts we could show
        kept = {
            "channel": channel,
            "message_id": message_id,
            "part": part,
            "provider_id": answer,
            "created_at": utcnow(),
        }
        async with self.rt.db.begin() as conn:
            await insert_rows(conn, R, [kept], ignore_conflicts=True)
            if receipted_as:
                row = _part_row(channel, receipted_as, message_id, whole=False)
                await insert_rows(conn, D, [row], ignore_conflicts=True)

    async def forget_settled_parts(self) -> int:
        """The parts kept of replies that no longer wait in the outbox (failed for good, erased with their
        contact or by retention) are removed: nothing will retry them. (A reply sent whole removes its own,
        ``sent_whole``.) Answers how many replies' parts went; the service's sweep runs it."""
        async with self.rt.read() as conn:
            found = await conn.execute(select(R.c.message_id).distinct().order_by(R.c.message_id).limit(SETTLED_BATCH))
            kept = [row.message_id for row in found]
        if not kept:
            return 0
        waiting = await self.rt.ports.tickets.awaiting_delivery(message_ids=kept)
        settled = [message_id for message_id in kept if message_id not in waiting]
        if settled:
            async with self.rt.db.begin() as conn:
                await conn.execute(delete(R).where(R.c.message_id.in_(settled)))
        return len(settled)

    async def sent_whole(
        self, channel: str, message_id: int, provider_id: str | None, *, with_files: bool = True
    ) -> None:
        """The reply is sent whole: its last part (``provider_id``) is kept, its parts now count for it, the
        receipts its earlier parts got meanwhile move it (``reply_status``), and what was kept for a retry of its
        files goes (``with_files``: it had some; a reply of text alone is sent in one call)."""
        if not message_id:
            return
        async with self.rt.db.begin() as conn:
            if with_files:
                await conn.execute(delete(R).where(R.c.channel == channel, R.c.message_id == message_id))
            parts = (await _locked_parts(conn, channel, [message_id])).get(message_id, {})
            if provider_id and provider_id[:255] not in parts:
                row = _part_row(channel, provider_id, message_id, whole=True)
                await insert_rows(conn, D, [row], ignore_conflicts=True)
                parts[provider_id[:255]] = ("sent", None, True)
            if not any(not whole for _, _, whole in parts.values()):
                return  # one part, or none: nothing was receipted before now
            await conn.execute(update(D).where(D.c.channel == channel, D.c.message_id == message_id).values(whole=True))
        judged = reply_status([(status, error, True) for status, error, _ in parts.values()])
        if judged is not None and judged[0] != "sent":
            receipt = DeliveryReceipt(message_id=message_id, status=judged[0], error=judged[1])
            await self.rt.ports.conversations.advance(channel=channel, receipts=[receipt])

    # --- outbound ---------------------------------------------------------------------------------------------

    async def send_whatsapp(self, message: OutboundMessage) -> tuple[str, str, DeliveryResult]:
        """Free text, an approved template, or files: each file uploaded to Graph (``{number}/media``, multipart)
        and sent as a message naming the media id, the text as the first file's caption where its type takes
        one, else as its own message after the files."""
        number = message.sender_address or ""
        token = self.number_tokens.get(number)
        if token is None:
            raise DeliveryError(f"WhatsApp number {number!r} is not configured any more", permanent=True)
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.recipient.lstrip("+"),
        }
        template = message.metadata.get("template")
        if isinstance(template, dict):
            if message.attachments:
                raise DeliveryError(
                    "a WhatsApp template carries no files: send them once the customer answers", permanent=True
                )
            body["type"] = "template"
            body["template"] = {
                "name": template.get("name"),
                "language": {"code": template.get("language") or "en_US"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [{"type": "text", "text": str(v)} for v in template.get("variables") or []],
                    }
                ],
            }
            answer = await self._post_graph("whatsapp", number, f"{number}/messages", token, json_body=body)
            return "whatsapp", number, DeliveryResult(provider_id=_wamid(answer))
        files = self._checked(message, media.whatsapp_media)  # all of them, before the first call
        text = message.text
        caption = bool(files) and files[0][1].captioned and bool(text.strip()) and len(text) <= media.CAPTION_MAX
        taken = await self._taken("whatsapp", message.message_id) if files else {}
        provider_id: str | None = None
        for part, (attachment, how) in enumerate(files):
            upload, sent = f"upload:{part}", f"file:{part}"
            if upload not in taken:  # a media id lasts 30 days: a retry sends the one Graph gave
                content_type = media.bare_type(attachment.content_type)
                answer = await self._post_graph(
                    "whatsapp",
                    number,
                    f"{number}/media",
                    token,
                    data={"messaging_product": "whatsapp", "type": content_type},
                    files={"file": (attachment.filename, self._bytes_of(attachment), content_type)},
                )
                if not _str(answer.get("id")):
                    raise DeliveryError(f"Meta kept no media id for {attachment.filename!r}; retrying")
                await self._part_taken(taken, "whatsapp", message.message_id, upload, _str(answer.get("id")))
            if sent not in taken:
                ref: dict[str, Any] = {"id": taken[upload]}
                if how.kind == "document":
                    ref["filename"] = attachment.filename
                if part == 0 and caption:
                    ref["caption"] = text
                answer = await self._post_graph(
                    "whatsapp", number, f"{number}/messages", token, json_body={**body, "type": how.kind, how.kind: ref}
                )
                wamid = _wamid(answer)
                await self._part_taken(taken, "whatsapp", message.message_id, sent, wamid, receipted_as=wamid)
            provider_id = taken[sent] or provider_id
        if not files or (text.strip() and not caption):
            body["type"] = "text"
            body["text"] = {"body": text, "preview_url": False}
            answer = await self._post_graph("whatsapp", number, f"{number}/messages", token, json_body=body)
            provider_id = _wamid(answer)
        return "whatsapp", number, DeliveryResult(provider_id=provider_id)

    async def send_page(self, message: OutboundMessage) -> tuple[str, str, DeliveryResult]:
        """A Messenger or Instagram message: each file (Messenger only) uploaded with a message of its own
        (multipart ``filedata``), then the text; tagged ``HUMAN_AGENT`` when the window says so."""
        page = message.sender_address or ""
        token = self.page_tokens.get(page)
        channel = message.channel
        if token is None:
            raise DeliveryError(f"{channel} page {page!r} is not configured any more", permanent=True)
        if message.attachments and channel == "instagram":
            raise DeliveryError(media.INSTAGRAM_NO_FILES, permanent=True)
        files = self._checked(message, media.messenger_type)
        tag = message.metadata.get("tag")
        kind: dict[str, Any] = {"messaging_type": "MESSAGE_TAG", "tag": tag} if tag else {"messaging_type": "RESPONSE"}
        taken = await self._taken(channel, message.message_id) if files else {}
        provider_id: str | None = None
        for part, (attachment, attachment_type) in enumerate(files):
            sent = f"file:{part}"
            if sent not in taken:
                attached = {"attachment": {"type": attachment_type, "payload": {"is_reusable": False}}}
                answer = await self._post_graph(
                    channel,
                    page,
                    f"{page}/messages",
                    token,
                    data={"recipient": json.dumps({"id": message.recipient}), "message": json.dumps(attached), **kind},
                    files={"filedata": (attachment.filename, self._bytes_of(attachment), attachment.content_type)},
                )
                mid = _str(answer.get("message_id"))
                await self._part_taken(taken, channel, message.message_id, sent, mid, receipted_as=mid)
            provider_id = taken[sent] or provider_id
        if not files or message.text.strip():
            body: dict[str, Any] = {"recipient": {"id": message.recipient}, "message": {"text": message.text}, **kind}
            answer = await self._post_graph(channel, page, f"{page}/messages", token, json_body=body)
            provider_id = _str(answer.get("message_id"))
        return channel, page, DeliveryResult(provider_id=provider_id)

    async def send_comment(self, message: OutboundMessage) -> tuple[str, str, DeliveryResult]:
        """A reply to a public comment: a comment under it (Facebook: ``/{comment}/comments``, Instagram:
        ``/{comment}/replies``), or, asked ``private``, a private message to its author (``private_reply``)."""
        page = message.sender_address or ""
        token = self.page_tokens.get(page)
        if token is None:
            raise DeliveryError(f"page {page!r} is not configured any more", permanent=True)
        if message.attachments:
            raise DeliveryError(media.COMMENTS_NO_FILES, permanent=True)
        comment_id = message.references[-1] if message.references else None
        if not comment_id:
            raise DeliveryError("no comment to answer", permanent=True)
        kind = self.pages[page].kind
        if message.metadata.get("private"):
            return await self.private_reply(message, page=page, comment_id=comment_id, token=token)
        path = f"{comment_id}/replies" if kind == "instagram" else f"{comment_id}/comments"
        answer = await self._post_graph(kind, page, path, token, json_body={"message": message.text})
        return kind, page, DeliveryResult(provider_id=_str(answer.get("id")))

    async def private_reply(
        self, message: OutboundMessage, *, page: str, comment_id: str, token: str
    ) -> tuple[str, str, DeliveryResult]:
        """A private message answering a public comment: Meta allows one per comment, within 7 days of it. The
        comment is claimed (``social_private_replies``) before the call and released if the call fails."""
        kind = self.pages[page].kind
        comment = await self.rt.ports.tickets.message_by_external_id(channel="comments", external_id=comment_id)
        commented = _commented_at(comment.metadata, comment.created_at) if comment is not None else None
        if commented is not None and utcnow() - commented > PRIVATE_REPLY_WINDOW:
            days = (utcnow() - commented).days
            raise DeliveryError(
                f"a private reply is possible within 7 days of the comment; this one is {days} days old", permanent=True
            )
        claim = {
            "comment_id": comment_id,
            "page_id": page,
            "ticket_id": message.ticket_id,
            "agent_id": None,
            "provider_id": None,
            "text": message.text,
            "sent_at": utcnow(),
        }
        async with self.rt.db.begin() as conn:
            taken = await conn.execute(select(P.c.comment_id).where(P.c.comment_id == comment_id))
            if taken.first() is not None:
                raise DeliveryError("this comment was already answered privately (Meta allows one)", permanent=True)
            await insert_rows(conn, P, [claim], ignore_conflicts=True)
        try:
            answer = await self._post_graph(
                kind,
                page,
                f"{page}/messages",
                token,
                json_body={"recipient": {"comment_id": comment_id}, "message": {"text": message.text}},
            )
        except DeliveryError:
            async with self.rt.db.begin() as conn:
                await conn.execute(delete(P).where(P.c.comment_id == comment_id))
            raise
        provider_id = _str(answer.get("message_id"))
        async with self.rt.db.begin() as conn:
            await conn.execute(update(P).where(P.c.comment_id == comment_id).values(provider_id=provider_id))
        return kind, page, DeliveryResult(provider_id=provider_id)

    async def send_telegram(self, message: OutboundMessage) -> tuple[str, str, DeliveryResult]:
        bot = self.bots.get(message.sender_address or "")
        if bot is None:
            raise DeliveryError(f"Telegram bot {message.sender_address!r} is not configured any more", permanent=True)
        base = f"{self.settings.telegram_api_url}/bot{bot.token.get_secret_value()}"
        chat_id = message.recipient
        provider_id: str | None = None
        taken = await self._taken("telegram", message.message_id) if message.attachments else {}
        # Files are uploaded (multipart), never sent as URLs Telegram would have to fetch from us.
        for part, attachment in enumerate(message.attachments):
            sent = f"file:{part}"
            if not attachment.sha256:
                continue
            if sent not in taken:
                method, field_name = (
                    ("sendPhoto", "photo")
                    if attachment.content_type.startswith("image/")
                    else ("sendDocument", "document")
                )
                answer = await self._post_telegram(
                    bot.name,
                    f"{base}/{method}",
                    data={"chat_id": chat_id},
                    files={field_name: (attachment.filename, self._bytes_of(attachment), attachment.content_type)},
                )
                sent_id = _telegram_id(answer)
                ref = _telegram_ref(bot.name, chat_id, sent_id)
                await self._part_taken(taken, "telegram", message.message_id, sent, sent_id, receipted_as=ref)
            provider_id = taken[sent] or provider_id
        if message.text.strip():
            answer = await self._post_telegram(
                bot.name, f"{base}/sendMessage", json_body={"chat_id": chat_id, "text": message.text}
            )
            provider_id = _telegram_id(answer)
        return (
            "telegram",
            bot.name,
            DeliveryResult(provider_id=_telegram_ref(bot.name, chat_id, provider_id)),
        )

    def _checked(self, message: OutboundMessage, how: Callable[[str, str, int], T]) -> list[tuple[Attachment, T]]:
        """A reply's files, each with how the provider carries it (``how``: one of ``media``'s checks), all
        checked before the first call: one the provider cannot take, or one missing from storage, refuses the
        whole reply with the reason."""
        checked = []
        for attachment in message.attachments:
            if not attachment.sha256:
                continue  # nothing stored to send (no reply file is without one)
            try:
                size = self.files.size(attachment.sha256)
            except (StoredFileMissing, OSError):
                raise DeliveryError(
                    f"attachment {attachment.filename!r} is missing from storage", permanent=True
                ) from None
            try:
                checked.append((attachment, how(attachment.filename, attachment.content_type, size)))
            except media.Unsendable as exc:
                raise DeliveryError(str(exc), permanent=True) from None
        return checked

    def _bytes_of(self, attachment: Attachment) -> bytes:
        try:
            return self.files.get(attachment.sha256 or "")
        except (StoredFileMissing, OSError):
            raise DeliveryError(f"attachment {attachment.filename!r} is missing from storage", permanent=True) from None

    async def _post_graph(
        self,
        channel: str,
        account: str,
        path: str,
        token: str,
        *,
        json_body: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One Graph call, JSON or multipart (``data`` and ``files``), judged as the outbox's next step."""
        url = f"{self.settings.meta_graph_url}/{path}"
        try:
            response = await self.client.post(
                url, json=json_body, data=data, files=files, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Meta did not answer: {type(exc).__name__}") from None
        return await self._judge(channel, account, response, _meta_error(response))

    async def _post_telegram(
        self,
        bot: str,
        url: str,
        *,
        json_body: dict[str, Any] | None = None,
        data: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        try:
            response = await self.client.post(url, json=json_body, data=data, files=files)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"Telegram did not answer: {type(exc).__name__}") from None
        return await self._judge("telegram", bot, response, _telegram_error(response))

    async def _judge(
        self, channel: str, account: str, response: httpx.Response, error: tuple[int | None, str] | None
    ) -> dict[str, Any]:
        """The provider's answer as the outbox's next step (see the module docstring)."""
        status = response.status_code
        health = self.health.get(channel, account)
        code, reason = error or (None, response.reason_phrase or "")
        provider = "Telegram" if channel == "telegram" else "Meta"
        if 200 <= status < 300 and error is None:
            if health is not None:
                health.last_sent_at = utcnow()
                if health.status in SENDING_CLEARS:
                    await self.health.set(health, HealthStatus.OK, None, only_from=SENDING_CLEARS)
            try:
                answer = response.json()
            except ValueError:
                return {}
            return answer if isinstance(answer, dict) else {}
        said = f"{provider} error {code}: {reason}" if code is not None else f"{provider} answered {status}: {reason}"
        token_refused = (code in TOKEN_CODES and channel != "telegram") or (channel == "telegram" and status == 401)
        if token_refused:
            text = TOKEN_EXPIRED_TEXT.get(channel, "token expired — reconnect the account in Admin")
            if health is not None:
                await self.health.set(health, HealthStatus.TOKEN_EXPIRED, f"{text} ({said})")
            raise DeliveryError(f"{text} ({said})", permanent=True)
        if status == 429 or status >= 500 or (code in THROTTLE_CODES and channel != "telegram"):
            raise DeliveryError(f"{said}; retrying", permanent=False)
        if code in WINDOW_CODES:
            raise DeliveryError(
                f"outside the customer's messaging window: send an approved template ({said})", permanent=True
            )
        raise DeliveryError(said, permanent=True)


def _queued(messages: int, skipped: int) -> dict[str, int]:
    """The answer for a batch kept in the inbox and not processed yet: what it carries; what it stored is not
    known yet (0)."""
    return {"messages": messages, "stored": 0, "receipts": 0, "skipped": skipped, "quarantined": 0, "queued": True}


def _str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


_RECEIPT_STATUSES = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}
_PART_ORDER = {"sent": 0, "delivered": 1, "read": 2}
Part = tuple[str, str | None, bool]  # a reply's part: its status, the provider's reason if failed, whether whole


def _part_moves(status: str, current: str) -> bool:
    """Whether a receipt saying ``status`` moves a part that is ``current``: forward only; failed is final, and
    anything can fail (as a message's own status, ``ticketing.outbox.moves``)."""
    if current == "failed":
        return False
    return status == "failed" or _PART_ORDER.get(status, -1) > _PART_ORDER.get(current, -1)


def reply_status(parts: Iterable[Part]) -> tuple[str, str | None] | None:
    """The status a reply sent as several provider messages (its files, then its text) shows, from its parts'
    own: delivered once every part is delivered (read once every part is read), failed as soon as any part
    failed, with that part's reason; None while the reply is not yet sent whole (its later parts may not exist).

    Not "forward from any part": the agent wrote one reply, and a reply whose text arrived while its invoice is
    still on its way, or never came, was not delivered; saying so would be the very "shown as delivered, never
    arrived" issue 23 is about. The cost: a reply waits for its slowest part, and if the provider never sends a
    part's receipt (or sent it before the part was recorded, a few milliseconds after the provider's answer),
    the reply stays at what its parts show together. Statuses only move forward (``advance``), and each part's
    too, so what the parts show together only moves forward."""
    parts = list(parts)
    if not parts or not all(whole for _, _, whole in parts):
        return None
    for status, error, _ in parts:
        if status == "failed":
            return "failed", error
    return min((status for status, _, _ in parts), key=lambda s: _PART_ORDER.get(s, 0)), None


def _part_row(channel: str, provider_id: str, message_id: int, *, whole: bool) -> dict[str, Any]:
    """A ``social_deliveries`` row for one provider message of a reply, as sent (``whole``: the reply's last)."""
    return {
        "channel": channel,
        "provider_id": provider_id[:255],
        "message_id": message_id,
        "created_at": utcnow(),
        "status": "sent",
        "error": None,
        "whole": whole,
    }


async def _locked_parts(conn: Any, channel: str, message_ids: list[int]) -> dict[int, dict[str, Part]]:
    """The parts of these messages (``social_deliveries``), locked until the transaction ends (on PostgreSQL;
    SQLite's writer holds its lock from BEGIN IMMEDIATE), in (message, provider id) order for every writer."""
    found = await conn.execute(
        select(D.c.message_id, D.c.provider_id, D.c.status, D.c.error, D.c.whole)
        .where(D.c.channel == channel, D.c.message_id.in_(message_ids))
        .order_by(D.c.message_id, D.c.provider_id)
        .with_for_update()
    )
    parts: dict[int, dict[str, Part]] = {}
    for row in found:
        parts.setdefault(row.message_id, {})[row.provider_id] = (row.status, row.error, bool(row.whole))
    return parts


def _commented_at(metadata: dict[str, Any], stored_at: datetime) -> datetime:
    """When a stored comment was written: what Facebook said (``commented_at``), else when it was stored."""
    given = metadata.get("commented_at")
    if isinstance(given, str):
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(given)
            if parsed.tzinfo is not None:
                return parsed
    return stored_at


def _refusal(exc: BaseException) -> bool:
    """Whether ingest refused the message itself (it would refuse it again): quarantined, not retried. A
    ``Conflict`` says "send it again"."""
    return isinstance(exc, SwitchboardError) and not isinstance(exc, Conflict)


def _wamid(answer: dict[str, Any]) -> str | None:
    """The id WhatsApp gave the message it took (its receipts name it)."""
    ids = [m.get("id") for m in answer.get("messages") or [] if isinstance(m, dict)]
    return _str(ids[0]) if ids else None


def _telegram_ref(bot: str, chat_id: str, message_id: str | None) -> str | None:
    """How a Telegram message we sent is named (a message id is only unique within its chat)."""
    return f"{bot}:{chat_id}:{message_id}" if message_id else None


def _telegram_id(answer: dict[str, Any]) -> str | None:
    result = answer.get("result")
    return _str(result.get("message_id")) if isinstance(result, dict) else None


def _meta_error(response: httpx.Response) -> tuple[int | None, str] | None:
    if 200 <= response.status_code < 300:
        return None
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict):
        return None
    code = error.get("code") if isinstance(error.get("code"), int) else None
    message = str(error.get("error_user_msg") or error.get("message") or response.reason_phrase)[:500]
    return code, message


def _telegram_error(response: httpx.Response) -> tuple[int | None, str] | None:
    try:
        answer = response.json()
    except ValueError:
        return None if 200 <= response.status_code < 300 else (None, response.reason_phrase or "")
    if isinstance(answer, dict) and answer.get("ok") is False:
        code = answer.get("error_code") if isinstance(answer.get("error_code"), int) else None
        return code, str(answer.get("description") or "")[:500]
    return None


class _Send:
    """A channel name's ``Sender``: one of the service's send functions; what the provider called the message
    (each part of it) is kept (``social_deliveries``) so that its receipts find it (``SocialService.sent_whole``)."""

    def __init__(self, service: SocialService, send: Any) -> None:
        self.service = service
        self._send = send

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        channel, _account, result = await self._send(message)
        await self.service.sent_whole(
            channel, message.message_id, result.provider_id, with_files=bool(message.attachments)
        )
        return result  # type: ignore[no-any-return]


async def accounts_view(service: SocialService) -> list[dict[str, object]]:
    """Every configured account and its health as the processes share it (the tables), without its secrets."""
    await service.health.refresh()
    return [h.as_dict() for h in service.health.accounts.values()]

"""Channel health: each configured page, Instagram account, WhatsApp number and Telegram bot is ``ok``, or has a
problem an admin must fix (a token the provider says expired or was revoked) or watch (no webhook for longer
than ``SWITCHBOARD_SOCIAL_SILENCE_SECONDS``).

A change of an account's state appends a ``channel.health`` event (``hub.events``) that every console and the
supervisor's page receive: seen by all (no queue, no agent), and in the log, so a console that connects later
still reads the current state from ``GET /api/social/accounts``. Only changes are appended, never one per
message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from channels.social import events as _events  # noqa: F401 - registers the channel.health payload model
from hub.db import utcnow
from hub.events import EventType, NewEvent
from hub.runtime import Runtime

log = logging.getLogger(__name__)


class HealthStatus(StrEnum):
    OK = "ok"
    TOKEN_EXPIRED = "token_expired"  # the provider refused the token (Meta 190 and kin, Telegram 401)
    SILENT = "silent"  # no webhook for longer than configured
    FAILING = "failing"  # the provider keeps failing (5xx): retried, but worth a look


# What the agent reads on a message that failed because of it, and on the alert.
TOKEN_EXPIRED_TEXT = {
    "messenger": "token expired — reconnect the page in Admin",
    "instagram": "token expired — reconnect the page in Admin",
    "comments": "token expired — reconnect the page in Admin",
    "whatsapp": "token expired — reconnect the WhatsApp number in Admin",
    "telegram": "token rejected — check the bot's token in Admin",
}


@dataclass(slots=True)
class AccountHealth:
    channel: str  # messenger | instagram | whatsapp | telegram
    account: str  # page id, Instagram account id, phone number id, bot name
    queue: str
    status: HealthStatus = HealthStatus.OK
    detail: str | None = None
    since: datetime | None = None
    last_webhook_at: datetime | None = None
    last_sent_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "channel": self.channel,
            "account": self.account,
            "queue": self.queue,
            "status": self.status.value,
            "detail": self.detail,
            "since": self.since.isoformat() if self.since else None,
            "last_webhook_at": self.last_webhook_at.isoformat() if self.last_webhook_at else None,
            "last_sent_at": self.last_sent_at.isoformat() if self.last_sent_at else None,
        }


class Health:
    """Every account's health in this process, and the events its changes append."""

    def __init__(self, rt: Runtime, accounts: list[AccountHealth]) -> None:
        self.rt = rt
        self.accounts = {(a.channel, a.account): a for a in accounts}
        self.started_at = utcnow()

    def get(self, channel: str, account: str) -> AccountHealth | None:
        return self.accounts.get((channel, account))

    def heard(self, channel: str, account: str) -> AccountHealth | None:
        """A webhook for the account arrived: clears a silence (the caller reports the change)."""
        health = self.accounts.get((channel, account))
        if health is None:
            return None
        health.last_webhook_at = utcnow()
        return health if health.status == HealthStatus.SILENT else None

    async def set(self, health: AccountHealth, status: HealthStatus, detail: str | None) -> None:
        """Move the account to ``status``; a change appends the ``channel.health`` event."""
        if health.status == status and health.detail == detail:
            return
        health.status, health.detail, health.since = status, detail, utcnow()
        log.warning("%s account %s is %s: %s", health.channel, health.account, status.value, detail or "")
        async with self.rt.write() as tx:
            tx.emit(NewEvent(type=EventType.CHANNEL_HEALTH, payload=health.as_dict()))

    async def sweep_silence(self, silence_seconds: float) -> None:
        """Accounts that heard nothing for ``silence_seconds`` (counted from the start when never) go silent."""
        if silence_seconds <= 0:
            return
        now = utcnow()
        for health in self.accounts.values():
            last = health.last_webhook_at or self.started_at
            quiet = (now - last).total_seconds()
            if quiet >= silence_seconds and health.status == HealthStatus.OK:
                await self.set(
                    health, HealthStatus.SILENT, f"no webhook for {int(quiet // 60)} min: check the webhook set-up"
                )

"""Channel health: each configured page, Instagram account, WhatsApp number and Telegram bot is ``ok``, or has a
problem an admin must fix (a token the provider says expired or was revoked) or watch (no webhook for longer
than ``SWITCHBOARD_SOCIAL_SILENCE_SECONDS``).

A change of an account's state appends a ``channel.health`` event (``hub.events``) that every console and the
supervisor's page receive: seen by all (no queue, no agent), and in the log, so a console that connects later
still reads the current state from ``GET /api/social/accounts``. Only changes are appended, never one per
message.

A token refused or a failing provider is kept in ``social_account_health`` with the event, and cleared with the
event that says ok: every process adopts what the table says when it starts and at each sweep (``refresh``), so
a restarted process, or another one behind the same load balancer, shows the alert as well. Silence is each
process's own judgement (the webhooks it heard) and is not kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import delete, select

from channels.social import events as _events  # noqa: F401 - registers the channel.health payload model
from channels.social.models import AccountHealthRow
from hub.db import insert_rows, utcnow
from hub.events import EventType, NewEvent
from hub.runtime import Runtime

log = logging.getLogger(__name__)


class HealthStatus(StrEnum):
    OK = "ok"
    TOKEN_EXPIRED = "token_expired"  # the provider refused the token (Meta 190 and kin, Telegram 401)
    SILENT = "silent"  # no webhook for longer than configured
    FAILING = "failing"  # the provider keeps failing (5xx): retried, but worth a look


H = AccountHealthRow.__table__  # type: ignore[attr-defined]
# The states every process shares (the table); silence is judged by each process from what it heard.
KEPT = frozenset({HealthStatus.TOKEN_EXPIRED, HealthStatus.FAILING})
KEPT_VALUES = frozenset(s.value for s in KEPT)


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
        was = health.status
        health.status, health.detail, health.since = status, detail, utcnow()
        log.warning("%s account %s is %s: %s", health.channel, health.account, status.value, detail or "")
        async with self.rt.write() as tx:
            if status in KEPT or was in KEPT:
                key = (H.c.channel == health.channel, H.c.account == health.account)
                await tx.conn.execute(delete(H).where(*key))
            if status in KEPT:
                row = {
                    "channel": health.channel,
                    "account": health.account,
                    "status": status.value,
                    "detail": detail,
                    "since": health.since,
                }
                await insert_rows(tx.conn, H, [row])
            tx.emit(NewEvent(type=EventType.CHANNEL_HEALTH, payload=health.as_dict()))

    async def refresh(self) -> None:
        """Adopt what the table says (see the module docstring): a problem another process (or this one before a
        restart) met, or its clearing. Nothing is appended: the process that changed it did."""
        async with self.rt.read() as conn:
            rows = {(r.channel, r.account): r for r in await conn.execute(select(H))}
        for key, health in self.accounts.items():
            row = rows.get(key)
            if row is not None:
                kept = HealthStatus(row.status) if row.status in KEPT_VALUES else HealthStatus.FAILING
                if (health.status, health.detail) != (kept, row.detail):
                    health.status, health.detail, health.since = kept, row.detail, row.since
            elif health.status in KEPT:
                health.status, health.detail, health.since = HealthStatus.OK, None, utcnow()

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

"""Channel health: each configured page, Instagram account, WhatsApp number and Telegram bot is ``ok``, or has a
problem an admin must fix (a token the provider says expired or was revoked) or watch (no webhook for longer
than ``SWITCHBOARD_SOCIAL_SILENCE_SECONDS``).

A change of an account's state appends a ``channel.health`` event (``hub.events``) that every console and the
supervisor's page receive: seen by all (no queue, no agent), and in the log, so a console that connects later
still reads the current state from ``GET /api/social/accounts``. Only changes are appended, never one per
message.

Every state but ok (a token refused, a failing provider, silence) is kept in ``social_account_health`` with its
event, and cleared with the event that says ok: every process adopts what the table says when it starts and at
each sweep (``refresh``), so a restarted process, or another one behind the same load balancer, shows the alert
as well. A change is made against the table, not against what this process last read (``Health.set``): under
a lock on the account, it takes effect only if the table still holds a state the caller moves from
(``only_from``), so processes that judge the same change at once append its event once, and the others adopt it.

Silence is judged alike by every process, from ``social_account_heard``: when any process last heard a webhook
for the account, or, while none came, since when the account is configured (the first process that had it in
its settings wrote that). An account's webhooks land on whichever process the load balancer picks: judged from
what each heard itself, every other process would call it silent. The time is written without a write per
webhook: a process writes it only when the stored one is a step old (``record_step``: a tenth of the silence
setting, between 1 s and 60 s), at most once per step per account. The stored time can therefore lag the last
webhook by up to a step, and an account goes silent once it is older than the setting plus a step: never
early, at most a step late.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, or_, select, update

from channels.social import events as _events  # noqa: F401 - registers the channel.health payload model
from channels.social.models import AccountHealthRow, AccountHeardRow
from hub.db import insert_rows, lock_keys, utcnow
from hub.events import EventType, NewEvent
from hub.runtime import Runtime

log = logging.getLogger(__name__)


class HealthStatus(StrEnum):
    OK = "ok"
    TOKEN_EXPIRED = "token_expired"  # the provider refused the token (Meta 190 and kin, Telegram 401)
    SILENT = "silent"  # no webhook for longer than configured
    FAILING = "failing"  # the provider keeps failing (5xx): retried, but worth a look


H = AccountHealthRow.__table__  # type: ignore[attr-defined]
W = AccountHeardRow.__table__  # type: ignore[attr-defined]
# The states every process shares (the table): all but ok, which is the table holding no row for the account.
KEPT = frozenset({HealthStatus.TOKEN_EXPIRED, HealthStatus.FAILING, HealthStatus.SILENT})
KEPT_VALUES = frozenset(s.value for s in KEPT)
HEALTH_LOCK_SPACE = 0x50C1A1  # names the locks (``hub.db.lock_keys``) on an account's health while it changes
RECORD_STEP_MIN, RECORD_STEP_MAX = 1.0, 60.0


def record_step(silence_seconds: float) -> float:
    """How old the stored time of an account's last webhook may get before a process that hears one writes it
    again (see the module docstring): a tenth of the silence setting, bounded; the upper bound when silence is
    not watched (the time is still shown in ``GET /api/social/accounts``)."""
    if silence_seconds <= 0:
        return RECORD_STEP_MAX
    return min(RECORD_STEP_MAX, max(RECORD_STEP_MIN, silence_seconds / 10))


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


Key = tuple[str, str]  # (channel, account)


def _kept(row: Any) -> tuple[HealthStatus, str | None]:
    """The state the table holds for an account (its row, or none: ok). A status this version does not know
    (written by a newer one) shows as failing: worth a look."""
    if row is None:
        return HealthStatus.OK, None
    return (HealthStatus(row.status) if row.status in KEPT_VALUES else HealthStatus.FAILING), row.detail


class Health:
    """Every account's health in this process, and the events its changes append."""

    def __init__(self, rt: Runtime, accounts: list[AccountHealth], *, silence_seconds: float = 0.0) -> None:
        self.rt = rt
        self.accounts = {(a.channel, a.account): a for a in accounts}
        self.silence_seconds = silence_seconds
        self.started_at = utcnow()
        # Since when each account is configured, as the table says (this process's start until it is read).
        self.configured_at: dict[Key, datetime] = {}
        # The newest time of each account's last webhook known to be stored (written here, or read).
        self.recorded: dict[Key, datetime] = {}

    @property
    def step(self) -> float:
        return record_step(self.silence_seconds)

    def get(self, channel: str, account: str) -> AccountHealth | None:
        return self.accounts.get((channel, account))

    async def start(self) -> None:
        """The accounts are configured from now, unless a process said so before; then adopt the tables."""
        rows = [
            {"channel": c, "account": a, "configured_at": self.started_at, "last_webhook_at": None}
            for c, a in self.accounts
        ]
        if rows:
            async with self.rt.db.begin() as conn:
                await insert_rows(conn, W, rows, ignore_conflicts=True)
        await self.refresh()

    async def heard(self, channel: str, account: str) -> AccountHealth | None:
        """A webhook for the account arrived: its time is stored for every process when the stored one is a step
        old (the module docstring); returns the account when it is silent (the caller clears it)."""
        key = (channel, account)
        health = self.accounts.get(key)
        if health is None:
            return None
        now = utcnow()
        health.last_webhook_at = now
        stored = self.recorded.get(key)
        if stored is None or (now - stored).total_seconds() >= self.step:
            self.recorded[key] = now  # before the write: the webhooks arriving while it runs do not write too
            try:
                await self._record(channel, account, now)
            except BaseException:
                self.recorded.pop(key, None)  # the next webhook tries again
                raise
        return health if health.status == HealthStatus.SILENT else None

    async def _record(self, channel: str, account: str, at: datetime) -> None:
        """Store ``at`` as the account's last webhook, unless a newer time is stored (another process's)."""
        key = (W.c.channel == channel, W.c.account == account)
        newer = or_(W.c.last_webhook_at.is_(None), W.c.last_webhook_at < at)
        async with self.rt.db.begin() as conn:
            done = await conn.execute(update(W).where(*key, newer).values(last_webhook_at=at))
            if not done.rowcount:  # no row yet (a process that was not started), or a newer time is there
                row = {"channel": channel, "account": account, "configured_at": self.started_at, "last_webhook_at": at}
                await insert_rows(conn, W, [row], ignore_conflicts=True)

    async def set(
        self,
        health: AccountHealth,
        status: HealthStatus,
        detail: str | None,
        *,
        only_from: Collection[HealthStatus] | None = None,
    ) -> None:
        """Move the account to ``status`` if the table holds one of ``only_from`` for it (any state when not given):
        the change is kept and appends the ``channel.health`` event, once however many processes make it at
        once. Otherwise this process adopts what the table holds, and nothing is appended."""
        if health.status == status and health.detail == detail:
            return
        async with self.rt.write() as tx:
            await lock_keys(tx.conn, HEALTH_LOCK_SPACE, [f"{health.channel}\x1f{health.account}"])
            key = (H.c.channel == health.channel, H.c.account == health.account)
            row = (await tx.conn.execute(select(H).where(*key))).first()
            was, was_detail = _kept(row)
            if (was, was_detail) == (status, detail) or (only_from is not None and was not in only_from):
                self._adopt(health, row)
                return
            if row is not None:
                await tx.conn.execute(delete(H).where(*key))
            health.status, health.detail, health.since = status, detail, utcnow()
            if status in KEPT:
                kept = {
                    "channel": health.channel,
                    "account": health.account,
                    "status": status.value,
                    "detail": detail,
                    "since": health.since,
                }
                await insert_rows(tx.conn, H, [kept])
            tx.emit(NewEvent(type=EventType.CHANNEL_HEALTH, payload=health.as_dict()))
        log.warning("%s account %s is %s: %s", health.channel, health.account, status.value, detail or "")

    @staticmethod
    def _adopt(health: AccountHealth, row: Any) -> None:
        status, detail = _kept(row)
        if (health.status, health.detail) != (status, detail):
            health.status, health.detail = status, detail
            health.since = row.since if row is not None else utcnow()

    async def refresh(self) -> None:
        """Adopt what the tables say (see the module docstring): a problem another process (or this one before a
        restart) met, or its clearing, and the last webhook any process heard. Nothing is appended: the process
        that changed it did."""
        async with self.rt.read() as conn:
            rows = {(r.channel, r.account): r for r in await conn.execute(select(H))}
            heard = list(await conn.execute(select(W)))
        for key, health in self.accounts.items():
            self._adopt(health, rows.get(key))
        for r in heard:
            key = (r.channel, r.account)
            found = self.accounts.get(key)
            if found is None:
                continue
            self.configured_at[key] = r.configured_at
            last = r.last_webhook_at
            if last is not None:
                if found.last_webhook_at is None or last > found.last_webhook_at:
                    found.last_webhook_at = last
                if key not in self.recorded or last > self.recorded[key]:
                    self.recorded[key] = last

    async def sweep_silence(self) -> None:
        """Accounts no process heard from for longer than the setting (counted from their configuration when never)
        go silent; silent ones some process heard from since are ok again. Judged from what ``refresh`` read; each
        change is made once, whichever processes sweep (``set``)."""
        if self.silence_seconds <= 0:
            return
        now = utcnow()
        for key, health in self.accounts.items():
            last = health.last_webhook_at or self.configured_at.get(key, self.started_at)
            quiet = (now - last).total_seconds()
            silent = quiet >= self.silence_seconds + self.step  # the stored time lags by up to a step
            if silent and health.status == HealthStatus.OK:
                detail = f"no webhook for {int(quiet // 60)} min: check the webhook set-up"
                await self.set(health, HealthStatus.SILENT, detail, only_from={HealthStatus.OK})
            elif not silent and health.status == HealthStatus.SILENT:
                await self.set(health, HealthStatus.OK, None, only_from={HealthStatus.SILENT})

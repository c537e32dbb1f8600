"""Delivering outbox rows through the channel adapters, with retries and backoff.

Invariants:
- a reply and its outbox row commit together (``service.reply``), so nothing accepted is lost;
- a row is claimed with a lease (``locked_until``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL) before it is
  sent, so two dispatchers, in one process or several, never send it at the same time;
- a temporary failure is retried after ``backoff_base * 2**attempts`` seconds (capped at an hour); a
  permanent one, or running out of attempts, marks the message failed with the reason, for the agent to see;
- delivery status only moves forward (a late "sent" never overwrites "delivered").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update

from hub.db import utcnow
from hub.events import EventType, NewEvent
from hub.messages import DeliveryError, OutboundMessage, Sender
from hub.runtime import Runtime
from ticketing.models import DeliveryStatus, OutboxStatus
from ticketing.service import M, O, T

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)
MAX_BACKOFF = 3600.0
STATUS_ORDER = {
    s: i
    for i, s in enumerate([DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ])
}


def backoff_seconds(attempts: int, base: float) -> float:
    """Delay before the next try after ``attempts`` failures."""
    return float(min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1)))


class OutboxDispatcher:
    def __init__(self, rt: Runtime, senders: Mapping[str, Sender]) -> None:
        self.rt = rt
        self.senders = senders
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        wake = self.rt.outbox_wakeup
        while True:
            try:
                while await self.dispatch_due() > 0:
                    pass
            except Exception:
                log.exception("outbox dispatch failed")
            wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.rt.settings.outbox_poll_seconds):
                    await wake.wait()

    async def _claim(self, limit: int) -> list[Any]:
        now = utcnow()
        async with self.rt.db.begin() as conn:
            stmt = (
                select(O)
                .where(
                    O.c.status == OutboxStatus.PENDING,
                    O.c.next_attempt_at <= now,
                    or_(O.c.locked_until.is_(None), O.c.locked_until < now),
                )
                .order_by(O.c.id)
                .limit(limit)
            )
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            rows = (await conn.execute(stmt)).all()
            if rows:
                await conn.execute(update(O).where(O.c.id.in_([r.id for r in rows])).values(locked_until=now + LEASE))
        return rows

    async def dispatch_due(self, limit: int = 50) -> int:
        """Send every due row once; the number attempted."""
        rows = await self._claim(limit)
        if rows:
            await asyncio.gather(*(self._deliver(r) for r in rows))
        return len(rows)

    async def _deliver(self, row: Any) -> None:
        outbound = OutboundMessage.model_validate(row.payload)
        sender = self.senders.get(row.channel)
        attempts = row.attempts + 1
        try:
            if sender is None:
                raise DeliveryError(f"no adapter is configured for channel {row.channel!r}", permanent=True)
            result = await sender.send(outbound)
        except DeliveryError as exc:
            permanent = exc.permanent or attempts >= self.rt.settings.outbox_max_attempts
            await self._record_failure(row, attempts, str(exc), permanent)
            return
        except Exception as exc:  # an adapter bug is a temporary failure, not a crash of the dispatcher
            log.exception("adapter for %s raised", row.channel)
            await self._record_failure(
                row, attempts, f"{type(exc).__name__}: {exc}", attempts >= self.rt.settings.outbox_max_attempts
            )
            return
        now = utcnow()
        async with self.rt.write() as tx:
            await tx.conn.execute(
                update(O)
                .where(O.c.id == row.id)
                .values(status=OutboxStatus.SENT, attempts=attempts, sent_at=now, locked_until=None, last_error=None)
            )
            meta_update: dict[str, Any] = {}
            if result.provider_id:
                meta_update["provider_id"] = result.provider_id
            await set_delivery_status(tx, row.message_id, DeliveryStatus.SENT, meta_update=meta_update)
        self.rt.metrics.outbox_deliveries.labels(row.channel, "sent").inc()

    async def _record_failure(self, row: Any, attempts: int, error: str, permanent: bool) -> None:
        now = utcnow()
        async with self.rt.write() as tx:
            if permanent:
                await tx.conn.execute(
                    update(O)
                    .where(O.c.id == row.id)
                    .values(status=OutboxStatus.FAILED, attempts=attempts, last_error=error, locked_until=None)
                )
                await set_delivery_status(tx, row.message_id, DeliveryStatus.FAILED, error=error)
            else:
                delay = backoff_seconds(attempts, self.rt.settings.outbox_backoff_base_seconds)
                await tx.conn.execute(
                    update(O)
                    .where(O.c.id == row.id)
                    .values(
                        attempts=attempts,
                        last_error=error,
                        locked_until=None,
                        next_attempt_at=now + timedelta(seconds=delay),
                    )
                )
        outcome = "failed" if permanent else "retry"
        self.rt.metrics.outbox_deliveries.labels(row.channel, outcome).inc()
        log.warning("delivery of message %s over %s %s: %s", row.message_id, row.channel, outcome, error)


async def set_delivery_status(
    tx: Any,
    message_id: int,
    status: DeliveryStatus,
    *,
    error: str | None = None,
    meta_update: dict[str, Any] | None = None,
) -> bool:
    """Move a message's delivery status forward (never back; failed is final) and emit the change."""
    row = (
        await tx.conn.execute(select(M.c.id, M.c.ticket_id, M.c.delivery_status, M.c.meta).where(M.c.id == message_id))
    ).first()
    if row is None:
        return False
    current = row.delivery_status
    if status != DeliveryStatus.FAILED:
        if current == DeliveryStatus.FAILED or STATUS_ORDER.get(status, 0) <= STATUS_ORDER.get(current, -1):
            return False
    values: dict[str, Any] = {"delivery_status": status.value, "delivery_error": error}
    if meta_update:
        values["meta"] = {**(row.meta or {}), **meta_update}
    await tx.conn.execute(update(M).where(M.c.id == message_id).values(**values))
    ticket = (await tx.conn.execute(select(T.c.id, T.c.queue_id, T.c.assignee_id).where(T.c.id == row.ticket_id))).one()
    tx.emit(
        NewEvent(
            type=EventType.MESSAGE_STATUS,
            payload={"message_id": message_id, "ticket_id": row.ticket_id, "status": status.value, "error": error},
            ticket_id=row.ticket_id,
            queue_id=ticket.queue_id,
            agent_id=ticket.assignee_id,
        )
    )
    return True

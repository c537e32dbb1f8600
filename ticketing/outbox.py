"""Delivering outbox rows through the channel adapters, with retries and backoff.

Invariants:
- a reply and its outbox row commit together (``replies.reply``), so nothing accepted is lost;
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Integer, bindparam, or_, select, update

from hub.db import UTCDateTime, fetch_all, one_of_param, update_rows, utcnow
from hub.events import EventType, NewEvent
from hub.messages import DeliveryError, DeliveryResult, OutboundMessage, Sender
from hub.ports import DeliveryReceipt
from hub.runtime import Runtime
from ticketing.models import DeliveryStatus, Direction, OutboxStatus
from ticketing.replies import OUTBOX_HANDOFF
from ticketing.tables import messages as M
from ticketing.tables import outbox as O
from ticketing.tables import tickets as T

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)
MAX_BACKOFF = 3600.0
STATUS_ORDER = {
    s: i
    for i, s in enumerate([DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ])
}


def _due(now: Any) -> tuple[Any, ...]:
    return (
        O.c.status == OutboxStatus.PENDING.value,
        O.c.next_attempt_at <= now,
        or_(O.c.locked_until.is_(None), O.c.locked_until < now),
    )


def _claim_statement(postgres: bool) -> Any:
    """The due rows, up to ``limit``, oldest first, leased until ``until``: picked and leased in one
    statement, which answers the leased rows. On PostgreSQL rows another dispatcher is claiming are skipped."""
    picked = select(O.c.id).where(*_due(_NOW)).order_by(O.c.id).limit(bindparam("limit", type_=Integer()))
    if postgres:
        picked = picked.with_for_update(skip_locked=True)
    until = bindparam("until", type_=UTCDateTime())
    return update(O).where(O.c.id.in_(picked)).values(locked_until=until).returning(*O.c)


# The dispatcher's statements, built once (see ``hub.db.fetch_all``); ``now`` is the pass's time.
_NOW = bindparam("now", type_=UTCDateTime())
_ANY_DUE = select(O.c.id).where(*_due(_NOW)).limit(1)
_CLAIM = {postgres: _claim_statement(postgres) for postgres in (False, True)}
# A message's delivery status with what its event names (the ticket's queue and assignee), locked until the
# transaction ends, in id order (one order for every writer): on PostgreSQL, two transactions (the outbox
# recording "sent", a widget's receipt "delivered") could otherwise both read the old status, and the later
# commit would move the message back. SQLite runs one writer at a time and renders no lock.
_STATUSES = {
    dialect: select(M.c.id, M.c.ticket_id, M.c.delivery_status, M.c.meta, T.c.queue_id, T.c.assignee_id)
    .join(T, T.c.id == M.c.ticket_id)
    .where(one_of_param(dialect, M.c.id, "ids"))
    .order_by(M.c.id)
    .with_for_update(of=M)
    for dialect in ("sqlite", "postgresql")
}


def moves(status: DeliveryStatus, current: str) -> bool:
    """Whether setting ``status`` changes a message whose delivery status is ``current``: a status only moves
    forward, and failed is final (while anything can fail)."""
    if status == DeliveryStatus.FAILED:
        return True
    return current != DeliveryStatus.FAILED and STATUS_ORDER.get(status, 0) > STATUS_ORDER.get(current, -1)  # type: ignore[call-overload]


def unmoved_by(status: DeliveryStatus) -> list[str]:
    """The delivery statuses that setting ``status`` leaves as they are (``moves``)."""
    return [s.value for s in DeliveryStatus if not moves(status, s)]


def backoff_seconds(attempts: int, base: float) -> float:
    """Delay before the next try after ``attempts`` failures."""
    return float(min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1)))


@dataclass(slots=True)
class _Handed:
    """A row leased to this process's dispatcher as its reply committed (``replies.OutboxHandoff``): what a
    claimed row gives ``_deliver`` and the recording, with its message already parsed."""

    id: int
    message_id: int
    channel: str
    message: OutboundMessage
    attempts: int = 0


class OutboxDispatcher:
    batch = 50  # rows claimed per pass
    lease = LEASE  # how long a claimed or handed row is this dispatcher's

    def __init__(self, rt: Runtime, senders: Mapping[str, Sender]) -> None:
        self.rt = rt
        self.senders = senders
        self._task: asyncio.Task[None] | None = None
        self._handed: list[_Handed] = []

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-dispatcher")
        self.rt.caches[OUTBOX_HANDOFF] = self

    async def stop(self) -> None:
        if self.rt.caches.get(OUTBOX_HANDOFF) is self:
            del self.rt.caches[OUTBOX_HANDOFF]
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._handed:
            # Handed and never sent: free for the next dispatcher now rather than when the lease ends.
            ids = [h.id for h in self._handed]
            self._handed = []
            try:
                async with self.rt.db.begin() as conn:
                    await conn.execute(update(O).where(O.c.id.in_(ids)).values(locked_until=None))
            except Exception:
                log.exception("releasing %d unsent outbox rows failed; they are sent when their lease ends", len(ids))

    def hand(self, rows: list[tuple[int, OutboundMessage]]) -> None:
        """Rows that committed leased to this dispatcher (``replies.OutboxHandoff``): sent in its next pass."""
        self._handed.extend(
            _Handed(outbox_id, message.message_id or 0, message.channel, message) for outbox_id, message in rows
        )
        self.rt.outbox_wakeup.set()

    async def _run(self) -> None:
        wake = self.rt.outbox_wakeup
        clock = asyncio.get_running_loop().time
        poll = self.rt.settings.outbox_poll_seconds
        next_poll = 0.0
        while True:
            # Cleared before the pass reads, not after it: a reply committed while the pass runs sets it again
            # and is sent at once. (Cleared after, such a reply waited for the next poll.)
            wake.clear()
            handed, self._handed = self._handed, []
            more = False
            try:
                if handed:
                    await self._send(handed)
                # The table is read when nothing was handed (a wake from elsewhere, the poll) and at least once a
                # poll interval: rows due for a retry, and rows of a dispatcher that stopped.
                if not handed or clock() >= next_poll:
                    next_poll = clock() + poll
                    more = await self.dispatch_due(self.batch) >= self.batch  # more may be due
            except Exception:
                log.exception("outbox dispatch failed")
            if more or self._handed:
                continue
            # Nothing left to do before a wake or the poll.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_poll - clock())):
                    await wake.wait()

    async def _claim(self, limit: int) -> Sequence[Any]:
        now = utcnow()
        params = {"now": now, "until": now + self.lease, "limit": limit}
        # Most passes find nothing (every poll, and the pass after each batch): a plain read says so without
        # taking the writer's turn, which on SQLite every ingest batch and reply waits for.
        async with self.rt.read() as conn:
            if not await fetch_all(conn, _ANY_DUE, params):
                return []
        async with self.rt.db.begin() as conn:
            # Picked and leased in one statement.
            rows = await fetch_all(conn, _CLAIM[conn.dialect.name == "postgresql"], params)
        return sorted(rows, key=lambda r: r.id)

    async def dispatch_due(self, limit: int = 50) -> int:
        """Send every due row once; the number attempted. The rows sent are recorded together, in one
        transaction (a busy chat sends hundreds of replies a second: one commit each would hold the writer)."""
        rows = await self._claim(limit)
        if rows:
            await self._send(
                [
                    _Handed(r.id, r.message_id, r.channel, OutboundMessage.model_validate(r.payload), r.attempts)
                    for r in rows
                ]
            )
        return len(rows)

    async def _send(self, rows: Sequence[_Handed]) -> None:
        sent = [s for s in await asyncio.gather(*(self._deliver(r) for r in rows)) if s is not None]
        if sent:
            await self._record_sent(sent)

    async def _deliver(self, row: _Handed) -> tuple[Any, int, DeliveryResult] | None:
        """Hand one row to its adapter: (row, attempts, result) when it was sent; a failure is recorded here."""
        sender = self.senders.get(row.channel)
        attempts = row.attempts + 1
        try:
            if sender is None:
                raise DeliveryError(f"no adapter is configured for channel {row.channel!r}", permanent=True)
            result = await sender.send(row.message)
        except DeliveryError as exc:
            permanent = exc.permanent or attempts >= self.rt.settings.outbox_max_attempts
            await self._record_failure(row, attempts, str(exc), permanent)
            return None
        except Exception as exc:  # an adapter bug is a temporary failure, not a crash of the dispatcher
            log.exception("adapter for %s raised", row.channel)
            await self._record_failure(
                row, attempts, f"{type(exc).__name__}: {exc}", attempts >= self.rt.settings.outbox_max_attempts
            )
            return None
        return row, attempts, result

    async def _record_sent(self, sent: list[tuple[Any, int, DeliveryResult]]) -> None:
        # If this transaction fails the rows stay leased and are sent again when the lease ends: at least once,
        # as before (the chat widget drops a message id it already shows).
        now = utcnow()
        async with self.rt.write() as tx:
            await update_rows(
                tx.conn,
                O,
                [
                    {
                        "id": row.id,
                        "status": OutboxStatus.SENT.value,
                        "attempts": attempts,
                        "sent_at": now,
                        "locked_until": None,
                        "last_error": None,
                    }
                    for row, attempts, _ in sent
                ],
            )
            await set_delivery_statuses(
                tx,
                [
                    StatusChange(
                        row.message_id,
                        DeliveryStatus.SENT,
                        meta_update={"provider_id": result.provider_id} if result.provider_id else None,
                    )
                    for row, _, result in sent
                ],
            )
        for row, _, _ in sent:
            self.rt.metrics.outbox_deliveries.labels(row.channel, "sent").inc()

    async def _record_failure(self, row: Any, attempts: int, error: str, permanent: bool) -> None:
        now = utcnow()
        # Only a row still pending: an attempt that outlasted its lease may fail after another dispatcher took
        # the row over and sent it, and that row stays sent.
        pending = (O.c.id == row.id, O.c.status == OutboxStatus.PENDING.value)
        async with self.rt.write() as tx:
            if permanent:
                recorded = await tx.conn.execute(
                    update(O)
                    .where(*pending)
                    .values(status=OutboxStatus.FAILED, attempts=attempts, last_error=error, locked_until=None)
                )
                if recorded.rowcount:
                    await set_delivery_status(tx, row.message_id, DeliveryStatus.FAILED, error=error)
            else:
                delay = backoff_seconds(attempts, self.rt.settings.outbox_backoff_base_seconds)
                recorded = await tx.conn.execute(
                    update(O)
                    .where(*pending)
                    .values(
                        attempts=attempts,
                        last_error=error,
                        locked_until=None,
                        next_attempt_at=now + timedelta(seconds=delay),
                    )
                )
                if recorded.rowcount:
                    await note_retry(tx, row.message_id, error)
        if not recorded.rowcount:
            log.warning(
                "delivery of message %s over %s failed after its lease ended, and the row was settled meanwhile "
                "(sent or failed by another attempt); it stays so: %s",
                row.message_id,
                row.channel,
                error,
            )
            return
        outcome = "failed" if permanent else "retry"
        self.rt.metrics.outbox_deliveries.labels(row.channel, outcome).inc()
        log.warning("delivery of message %s over %s %s: %s", row.message_id, row.channel, outcome, error)


async def note_retry(tx: Any, message_id: int, error: str) -> None:
    """A pending message's last failed attempt, on the message (``delivery_error``) and in a ``message.status``
    event, so the API and the console say why it waits; the next status it moves to replaces the error."""
    found = (
        await tx.conn.execute(
            update(M)
            .where(M.c.id == message_id, M.c.delivery_status == DeliveryStatus.PENDING.value)
            .values(delivery_error=error)
            .returning(M.c.ticket_id)
        )
    ).first()
    if found is None:
        return
    ticket = (await tx.conn.execute(select(T.c.queue_id, T.c.assignee_id).where(T.c.id == found.ticket_id))).one()
    tx.emit(
        NewEvent(
            type=EventType.MESSAGE_STATUS,
            payload={
                "message_id": message_id,
                "ticket_id": found.ticket_id,
                "status": DeliveryStatus.PENDING.value,
                "error": error,
            },
            ticket_id=found.ticket_id,
            queue_id=ticket.queue_id,
            agent_id=ticket.assignee_id,
        )
    )


# How many messages one watermark receipt ("read up to") may move at most.
_WATERMARK_LIMIT = 200


async def advance(rt: Runtime, *, channel: str, receipts: Sequence[DeliveryReceipt]) -> int:
    """``hub.ports.ConversationPort.advance``: providers' receipts move our messages' delivery status forward.
    A receipt names a message of ``channel`` by its id, or by its recipient and a time: every message to them
    sent until then — by when the provider took it (the outbox's ``sent_at``), not when it was written: a reply
    still waiting in the outbox, or taken after that time, was not what the customer read."""
    if not receipts:
        return 0
    async with rt.write() as tx:
        conn = tx.conn
        changes: list[StatusChange] = []
        ids = sorted({r.message_id for r in receipts if r.message_id})
        ours: set[int] = set()
        if ids:
            found = await conn.execute(
                select(M.c.id).where(M.c.id.in_(ids), M.c.channel == channel, M.c.direction == Direction.OUTBOUND.value)
            )
            ours = {r.id for r in found}
        for r in receipts:
            status = DeliveryStatus(r.status)
            error = r.error if status == DeliveryStatus.FAILED else None
            if r.message_id:
                if r.message_id in ours:
                    changes.append(StatusChange(r.message_id, status, error))
                continue
            if r.recipient and r.before is not None:
                found = await conn.execute(
                    select(M.c.id)
                    .join(O, O.c.message_id == M.c.id)
                    .where(
                        M.c.channel == channel,
                        M.c.recipient == r.recipient,
                        M.c.direction == Direction.OUTBOUND.value,
                        O.c.sent_at <= r.before,
                        M.c.delivery_status.not_in(unmoved_by(status)),
                    )
                    .order_by(M.c.id.desc())
                    .limit(_WATERMARK_LIMIT)
                )
                changes.extend(StatusChange(row.id, status) for row in found)
        changes.sort(key=lambda c: c.message_id)
        return len(await set_delivery_statuses(tx, changes))


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A delivery status a message should move to."""

    message_id: int
    status: DeliveryStatus
    error: str | None = None
    meta_update: dict[str, Any] | None = None


async def set_delivery_status(
    tx: Any,
    message_id: int,
    status: DeliveryStatus,
    *,
    error: str | None = None,
    meta_update: dict[str, Any] | None = None,
) -> bool:
    """Move a message's delivery status forward (never back; failed is final) and emit the change."""
    return bool(await set_delivery_statuses(tx, [StatusChange(message_id, status, error, meta_update)]))


async def set_delivery_statuses(tx: Any, changes: Sequence[StatusChange]) -> list[int]:
    """``set_delivery_status`` for many messages with a fixed number of statements: one read, one batched
    update, one event per message that moved. Answers the ids of the messages that moved, in order."""
    ids = list(dict.fromkeys(c.message_id for c in changes))
    if not ids:
        return []
    rows = {r.id: r for r in await fetch_all(tx.conn, _STATUSES[tx.conn.dialect.name], {"ids": ids})}
    current = {i: r.delivery_status for i, r in rows.items()}
    meta = {i: r.meta for i, r in rows.items()}
    moved: list[tuple[StatusChange, Any]] = []
    for c in changes:
        row = rows.get(c.message_id)
        if row is None:
            continue
        if not moves(c.status, current[c.message_id]):
            continue
        current[c.message_id] = c.status.value
        if c.meta_update:
            meta[c.message_id] = {**(meta[c.message_id] or {}), **c.meta_update}
        moved.append((c, row))
    if not moved:
        return []
    # The last change of each message wins (changes of one message move forward in the order given).
    final = {c.message_id: c for c, _ in moved}
    with_meta = [c for c in final.values() if meta[c.message_id] is not rows[c.message_id].meta]
    plain = [c for c in final.values() if meta[c.message_id] is rows[c.message_id].meta]
    if plain:
        await update_rows(
            tx.conn,
            M,
            [{"id": c.message_id, "delivery_status": current[c.message_id], "delivery_error": c.error} for c in plain],
        )
    if with_meta:
        await update_rows(
            tx.conn,
            M,
            [
                {
                    "id": c.message_id,
                    "delivery_status": current[c.message_id],
                    "delivery_error": c.error,
                    "meta": meta[c.message_id],
                }
                for c in with_meta
            ],
        )
    for c, row in moved:
        tx.emit(
            NewEvent(
                type=EventType.MESSAGE_STATUS,
                payload={
                    "message_id": c.message_id,
                    "ticket_id": row.ticket_id,
                    "status": c.status.value,
                    "error": c.error,
                },
                ticket_id=row.ticket_id,
                queue_id=row.queue_id,
                agent_id=row.assignee_id,
            )
        )
    return [c.message_id for c, _ in moved]

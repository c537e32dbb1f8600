"""The social webhooks' inbox: a verified batch is committed to ``social_inbox`` before the webhook is answered,
and processed (``SocialService``: heard, files fetched, names looked up, stored through ingest, receipts applied)
in a task beside the answer, which waits for it at most ``SWITCHBOARD_SOCIAL_WEBHOOK_ANSWER_SECONDS``: done in
time, the answer has the batch's counts; not, it says the batch is queued, and the task goes on.

Why: Meta and Telegram want a quick answer (Meta retries slow webhooks and in the end disables them), and
processing is slow under load: a batch of 100 new customers costs ~80 ms of CPU, and with 4 posters at a time an
answer that waited for its own batch also waited behind the others' (p99 450-550 ms on the 2-core machine).

Invariants:

- a batch is committed here before any 2xx says we have it, and its row is deleted only once the batch is
  processed (its messages stored or quarantined, its receipts applied): a crash loses nothing acknowledged;
- a row is processed by one process at a time: whoever works on it holds a lease (``claimed_until``); a row
  taken from the table is picked and leased in one statement (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and a
  row a process leased as it wrote it is no other's until the lease ends. A lease that ended (its process died)
  makes the row free for every process's drainer, which looks at start, when woken and every ``POLL_SECONDS``;
- processing a batch again (a crash between storing it and deleting its row; a lease that ended under a slow
  batch) stores nothing twice: ingest knows the provider's message ids (``created=False``), receipts move
  statuses forward only, quarantine keeps a message once, files of stored messages are not fetched again;
- at most ``in_flight`` batches (``SWITCHBOARD_SOCIAL_INBOX_WORKERS``) are processed at once per process; the
  others wait in the table and are taken oldest first as tasks end (a new batch is processed at once only while
  none waits). Few, because processing shares the event loop and, on SQLite, the one writer with the answers:
  bench/social.py on the 2-core machine under a neighbour's load, 4 posters of 100 messages, answer budget
  0.05 s: 1 at once answered p99 97-203 ms storing 1,200-1,900 messages/s, 2 at once p99 117-153 ms storing
  1,600-2,500/s, 4 at once p99 149-277 ms storing 1,800-2,300/s;
- a failure other than a crash (the database away, a batch that no longer parses because its account was removed
  from the settings) is logged and kept in the row (``attempts``, ``error``), which is tried again after a
  backoff (``BACKOFF_BASE_SECONDS`` doubling, at most an hour): never dropped. A message ingest refuses is
  quarantined as before (``SocialService._store``): that is a processed batch.

Erasure (``ticketing.gdpr``) does not look in here, on purpose: a row lives until its batch is processed,
normally well under a second (a request in flight held the same data as long before the inbox), and its messages
are then a contact's messages, which an erasure covers. A batch that arrived before an erasure and is processed
after it is stored as any later message of that customer would be. A row that keeps failing keeps its body; the
log names it every time it fails, and the admin sees it (``state``, on /admin/quarantine) to try it again at once
once the cause is fixed, or throw it away (both audited).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Integer, bindparam, delete, func, insert, or_, select, update

from channels.social.models import SocialInboxRow
from hub import audit
from hub.db import UTCDateTime, utcnow
from hub.errors import NotFound
from hub.principals import Principal
from hub.runtime import Runtime
from hub.workers import cancel_and_wait

log = logging.getLogger(__name__)

N = SocialInboxRow.__table__  # type: ignore[attr-defined]
LEASE = timedelta(seconds=120)  # a batch's files are fetched within 10 s by default; its store takes far less
POLL_SECONDS = 5.0  # how often a drainer looks for rows whose lease ended (another process died)
BACKOFF_BASE_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 3600.0
PREPARED_MAX = 256  # parsed batches kept for rows waiting in the table (beyond: parsed again when taken)
STOP_GRACE_SECONDS = 5.0  # how long a stop lets the batches being processed finish

Counts = dict[str, int]
Work = Callable[[], Awaitable[Counts]]


FAILING_SHOWN = 200  # failing batches an admin sees at once (oldest first)


class InboxBatchNotFound(NotFound):
    code = "inbox_batch_not_found"


class FailingBatch(BaseModel):
    """A batch whose processing failed, kept in the inbox and tried again (``next_try_at``)."""

    id: int
    provider: str  # meta or telegram
    account: str  # the bot's name (Meta: empty, the batch names its pages and numbers)
    received_at: datetime
    attempts: int
    error: str | None
    next_try_at: datetime | None


class InboxState(BaseModel):
    """What waits in the inbox: how many batches, and those that failed (at most ``FAILING_SHOWN``)."""

    waiting: int
    failing: list[FailingBatch]


@dataclass(frozen=True, slots=True)
class InboxRow:
    id: int
    provider: str
    account: str
    body: bytes
    attempts: int


def backoff_seconds(attempts: int) -> float:
    """Delay before a batch that failed ``attempts`` times is tried again."""
    return float(min(MAX_BACKOFF_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def _due(now: Any) -> Any:
    return or_(N.c.claimed_until.is_(None), N.c.claimed_until < now)


_NOW = bindparam("now", type_=UTCDateTime())
_ANY_DUE = select(N.c.id).where(_due(_NOW)).limit(1)


def _claim_statement(postgres: bool) -> Any:
    """The due rows, up to ``limit``, oldest first, leased until ``until``: picked and leased in one statement,
    which answers them. On PostgreSQL rows another process is claiming are skipped."""
    picked = select(N.c.id).where(_due(_NOW)).order_by(N.c.id).limit(bindparam("limit", type_=Integer()))
    if postgres:
        picked = picked.with_for_update(skip_locked=True)
    until = bindparam("until", type_=UTCDateTime())
    return (
        update(N)
        .where(N.c.id.in_(picked))
        .values(claimed_until=until)
        .returning(N.c.id, N.c.provider, N.c.account, N.c.body, N.c.attempts)
    )


_CLAIM = {postgres: _claim_statement(postgres) for postgres in (False, True)}


class Inbox:
    """One process's side of ``social_inbox``: ``take`` commits a batch and processes it (or leaves it waiting);
    a drainer task takes the rows waiting, and those left by others, as room frees up. ``replay`` processes a row
    taken from the table (parsing its body again)."""

    def __init__(
        self,
        rt: Runtime,
        replay: Callable[[InboxRow], Awaitable[Counts]],
        *,
        in_flight: int = 2,
        lease: timedelta = LEASE,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        self.rt = rt
        self.replay = replay
        self.in_flight = in_flight
        self.lease = lease
        self.poll_seconds = poll_seconds
        # The batches being processed, by row id: held here so that no task is collected or cancelled when the
        # request that started it ends.
        self.running: dict[int, asyncio.Task[Counts | None]] = {}
        self._reserved = 0  # room taken by a ``take`` whose row is being written
        self._prepared: dict[int, tuple[float, Work]] = {}  # rows left waiting: their parsed batch, and since when
        self._answers: dict[int, asyncio.Future[Counts | None]] = {}  # rows left waiting whose webhook waits
        self._backlog = True  # rows may wait in the table (at start: left by a process that stopped)
        self._left_waiting = 0  # rows ``take`` left waiting, ever: a claim that found none clears the backlog
        # only if none was left meanwhile (it may have looked before that row was committed)
        self._processed: list[int] = []  # rows whose batch is processed, deleted by the drainer (off the answer)
        self._wake: asyncio.Event | None = None
        self._drainer: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._drainer is None:
            self._wake = asyncio.Event()
            self._drainer = asyncio.create_task(self._drain(), name="social-inbox")

    async def stop(self) -> None:
        """The drainer stopped; the batches being processed get ``STOP_GRACE_SECONDS`` to finish, then are
        cancelled and their rows released, for the next process to take at once."""
        if self._drainer is not None:
            await cancel_and_wait(self._drainer)
            self._drainer = None
        tasks = list(self.running.values())
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
        left = [row_id for row_id, task in self.running.items() if not task.done()]
        for task in list(self.running.values()):
            await cancel_and_wait(task)
        await self._delete_processed()
        if left:
            try:
                async with self.rt.db.begin() as conn:
                    await conn.execute(update(N).where(N.c.id.in_(left)).values(claimed_until=None))
            except Exception:
                log.exception("releasing %d unfinished webhook batches failed; taken again when leases end", len(left))

    async def take(self, provider: str, account: str, body: bytes, work: Work, *, wait: float) -> Counts | None:
        """Commit the batch (``body`` as it arrived, verified and parsed: ``work`` processes it), then process it,
        or leave it waiting when ``in_flight`` batches are being processed or others wait. Answers its counts if
        it was processed within ``wait`` seconds, else None: queued (it is processed all the same)."""
        self.start()
        now = utcnow()
        direct = not self._backlog and len(self.running) + self._reserved < self.in_flight
        if direct:
            self._reserved += 1
        try:
            async with self.rt.db.begin() as conn:
                row_id = (
                    await conn.execute(
                        insert(N)
                        .values(
                            provider=provider,
                            account=account,
                            body=body,
                            received_at=now,
                            claimed_until=now + self.lease if direct else None,
                            attempts=0,
                        )
                        .returning(N.c.id)
                    )
                ).scalar_one()
        finally:
            if direct:
                self._reserved -= 1
        answer: asyncio.Future[Counts | None]
        if direct:
            answer = self._spawn(InboxRow(row_id, provider, account, body, 0), work)
        else:
            answer = asyncio.get_running_loop().create_future()
            self._answers[row_id] = answer
            if len(self._prepared) < PREPARED_MAX:
                self._prepared[row_id] = (time.monotonic(), work)
            self._left_waiting += 1
            self._backlog = True
            self._woken()
        try:
            if wait > 0 and not answer.done():
                await asyncio.wait([answer], timeout=wait)  # on a timeout the work goes on (nothing is cancelled)
            return answer.result() if answer.done() and not answer.cancelled() else None
        finally:
            self._answers.pop(row_id, None)

    async def state(self) -> InboxState:
        """For the admin (``/admin/quarantine``): the batches waiting, and the failing ones with their reason."""
        async with self.rt.read() as conn:
            waiting = int((await conn.execute(select(func.count()).select_from(N))).scalar_one())
            rows = await conn.execute(
                select(
                    N.c.id,
                    N.c.provider,
                    N.c.account,
                    N.c.received_at,
                    N.c.attempts,
                    N.c.error,
                    N.c.claimed_until.label("next_try_at"),
                )
                .where(N.c.attempts > 0)
                .order_by(N.c.id)
                .limit(FAILING_SHOWN)
            )
            failing = [FailingBatch.model_validate(r._mapping) for r in rows]
        return InboxState(waiting=waiting, failing=failing)

    async def retry_now(self, row_id: int, actor: Principal) -> None:
        """A failing batch is tried again now, not after its backoff (the admin fixed the cause); audited."""
        async with self.rt.db.begin() as conn:
            done = await conn.execute(
                update(N).where(N.c.id == row_id, N.c.attempts > 0).values(claimed_until=None).returning(N.c.id)
            )
            if done.first() is None:
                raise InboxBatchNotFound(f"no failing webhook batch {row_id} is in the inbox")
            await audit.record(conn, actor=actor, action="social_inbox.retry", target=f"social_inbox:{row_id}")
        self._backlog = True
        self._woken()

    async def discard(self, row_id: int, actor: Principal) -> None:
        """Throw a failing batch away (its messages are then never stored); audited, with what it failed on."""
        async with self.rt.db.begin() as conn:
            gone = await conn.execute(
                delete(N).where(N.c.id == row_id, N.c.attempts > 0).returning(N.c.provider, N.c.account, N.c.error)
            )
            row = gone.first()
            if row is None:
                raise InboxBatchNotFound(f"no failing webhook batch {row_id} is in the inbox")
            await audit.record(
                conn,
                actor=actor,
                action="social_inbox.discard",
                target=f"social_inbox:{row_id}",
                detail={"provider": row.provider, "account": row.account, "error": (row.error or "")[:500]},
            )
        self._prepared.pop(row_id, None)

    def _woken(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _spawn(self, row: InboxRow, work: Work | None) -> asyncio.Task[Counts | None]:
        task = asyncio.create_task(self._run(row, work), name=f"social-inbox-{row.id}")
        self.running[row.id] = task
        task.add_done_callback(lambda done: self._ended(row.id, done))
        return task

    def _ended(self, row_id: int, task: asyncio.Task[Counts | None]) -> None:
        self.running.pop(row_id, None)
        answer = self._answers.pop(row_id, None)
        if answer is not None and not answer.done():
            answer.set_result(None if task.cancelled() or task.exception() is not None else task.result())
        self._woken()

    async def _run(self, row: InboxRow, work: Work | None) -> Counts | None:
        try:
            counts = await (work() if work is not None else self.replay(row))
        except Exception as exc:
            await self._failed(row, exc)
            return None
        self._processed.append(row.id)  # the answer need not wait for the delete (``_delete_processed``)
        return counts

    async def _delete_processed(self) -> None:
        """Delete the rows whose batch is processed, together. A crash before (or a failed delete) leaves them
        leased: processed again once the lease ends, storing nothing twice."""
        done, self._processed = self._processed, []
        if not done:
            return
        try:
            async with self.rt.db.begin() as conn:
                await conn.execute(delete(N).where(N.c.id.in_(done)))
        except Exception:
            log.exception("%d processed social webhook batches not removed from the inbox", len(done))

    async def _failed(self, row: InboxRow, exc: Exception) -> None:
        attempts = row.attempts + 1
        delay = backoff_seconds(attempts)
        log.error(
            "social webhook batch %d (%s %s, received before attempt %d) not processed: %r; kept in the inbox, "
            "tried again in %g s",
            row.id,
            row.provider,
            row.account or "-",
            attempts,
            exc,
            delay,
            exc_info=exc,
        )
        try:
            async with self.rt.db.begin() as conn:
                await conn.execute(
                    update(N)
                    .where(N.c.id == row.id)
                    .values(
                        claimed_until=utcnow() + timedelta(seconds=delay),
                        attempts=attempts,
                        error=_reason(exc)[:2000],
                    )
                )
        except Exception:
            log.exception(
                "recording the failure of social webhook batch %d failed; tried again when its lease ends", row.id
            )

    async def _drain(self) -> None:
        assert self._wake is not None
        next_poll = 0.0
        while True:
            self._wake.clear()
            polling = time.monotonic() >= next_poll
            if polling:
                next_poll = time.monotonic() + self.poll_seconds
            await self._delete_processed()
            if self._backlog or polling:
                try:
                    await self._take_waiting()
                except Exception:
                    log.exception("taking the social webhook batches waiting in the inbox failed")
                self._forget_prepared()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_poll - time.monotonic())):
                    await self._wake.wait()

    async def _take_waiting(self) -> None:
        """Process the rows that wait (oldest first), as many as there is room for."""
        while (room := self.in_flight - len(self.running) - self._reserved) > 0:
            left_before = self._left_waiting
            rows = await self._claim(room)
            for row in rows:
                _, work = self._prepared.pop(row.id, (0.0, None))
                self._spawn(row, work)
            if len(rows) < room:
                if self._left_waiting == left_before:
                    self._backlog = False
                return

    async def _claim(self, limit: int) -> Sequence[InboxRow]:
        now = utcnow()
        params = {"now": now, "until": now + self.lease, "limit": limit}
        # Mostly nothing waits: a plain read says so without taking SQLite's writer turn.
        async with self.rt.read() as conn:
            if (await conn.execute(_ANY_DUE, params)).first() is None:
                return []
        async with self.rt.db.begin() as conn:
            rows = list(await conn.execute(_CLAIM[conn.dialect.name == "postgresql"], params))
        return sorted((InboxRow(r.id, r.provider, r.account, bytes(r.body), r.attempts) for r in rows), key=_by_id)

    def _forget_prepared(self) -> None:
        """Parsed batches of rows another process took meanwhile (their lease would have ended by now)."""
        stale = time.monotonic() - self.lease.total_seconds()
        for row_id in [r for r, (since, _) in self._prepared.items() if since < stale]:
            del self._prepared[row_id]


def _reason(exc: BaseException) -> str:
    """What failed, with its cause (``SocialService._store`` says how many messages failed, its cause why)."""
    said = f"{type(exc).__name__}: {exc}"
    cause = exc.__cause__
    return f"{said} ({type(cause).__name__}: {cause})" if cause is not None else said


def _by_id(row: InboxRow) -> int:
    return row.id

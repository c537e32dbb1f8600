"""Group commit for concurrent callers of one write: many callers, one transaction.

A caller submits its item and waits for its own answer. A drain task, started by the first item that finds
none running and ending when nothing waits (so it needs no wiring at start and stop), hands everything queued
meanwhile, up to ``max_batch`` items, to ``commit`` at once.

A caller with several items (a webhook's batch) hands them over together (``submit_all``) and waits for the
last: they stay in one commit, cut between callers, never inside one, unless one caller alone brings more than
``max_batch``. (Cut at an item count, a webhook's batch now and then straddled two commits and waited for both:
in bench.social, 4 posters of 100 messages and commits of up to 256, one webhook in ten.)

``commit(items)`` runs one transaction and answers one outcome per item, in order: a result, or the exception
that item alone raises (a refused item does not roll its neighbours back). If ``commit`` itself raises, the
transaction is gone for all of them: each item of a batch of several is then committed again on its own, so
one bad item never fails its neighbours, and each caller gets its own answer (an item alone gets the error).

``then``, if given, is a second stage run after the commit and pipelined with it: while ``then`` works on
what committed, the next batch commits. It takes the results of every batch committed since it last ran (not
the errors), and their callers are answered once it returns; an error it raises is logged, and the callers
still get their outcomes (what they submitted is committed). Ingest stores messages in the commit and routes
their tickets in ``then``. A caller that needs only the commit submits with ``early=True``: it is answered as
soon as its batch commits, and ``then`` still takes its result (a phone call's webhook answers the caller
with the ticket stored, while its routing runs; ``channels.twilio.voice``).

A caller that stops waiting (its request was cancelled) does not take its item out: it may still commit.

On SQLite every one of these transactions is in turn one writer of ``hub.db.sqlite_writer.SharedWriter``,
which lets transactions queued behind one another (of this group or of other writes) share a commit.

Keep one ``GroupCommit`` per runtime and write (in ``Runtime.caches``, or in the object that owns the write):
it belongs to that runtime's loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger(__name__)


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        commit: Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]],
        *,
        max_batch: int,
        name: str,
        then: Callable[[list[Result]], Awaitable[None]] | None = None,
    ) -> None:
        self._commit = commit
        self._then = then
        self.max_batch = max_batch
        self.name = name
        # Each submission's items with their futures, in order of arrival.
        self._pending: deque[list[tuple[Item, asyncio.Future[Result]]]] = deque()
        self._task: asyncio.Task[None] | None = None
        # Batches committed and waiting for ``then``, with their outcomes.
        self._committed: list[tuple[list[tuple[Item, asyncio.Future[Result]]], list[Result | Exception]]] = []
        self._then_task: asyncio.Task[None] | None = None
        self._early: set[asyncio.Future[Result]] = set()  # answered at their commit, before ``then``

    async def submit(self, item: Item, *, early: bool = False) -> Result:
        """Commit ``item`` (with others submitted meanwhile); its outcome once ``then`` has taken it, or with
        ``early`` once it is committed."""
        future = self._queue([item])[0]
        if early:
            self._early.add(future)
        return await future

    async def submit_all(self, items: Sequence[Item]) -> list[Result | Exception]:
        """Submit ``items`` together, committed in one batch (see the module docstring); each one's outcome, in
        order, once all are answered."""
        futures = self._queue(items)
        if futures:
            await asyncio.wait(futures)
        outcomes: list[Result | Exception] = []
        for future in futures:
            error = future.exception()
            outcomes.append(error if isinstance(error, Exception) else future.result())
        return outcomes

    def _queue(self, items: Sequence[Item]) -> list[asyncio.Future[Result]]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result]] = [loop.create_future() for _ in items]
        if futures:
            self._pending.append(list(zip(items, futures, strict=True)))
            if self._task is None:
                self._task = asyncio.create_task(self._drain(), name=self.name)
        return futures

    async def join(self) -> None:
        """Wait until every item submitted so far is answered (both stages are idle)."""
        while True:
            running = [t for t in (self._task, self._then_task) if t is not None]
            if not running:
                return
            await asyncio.wait(running)

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        """The next batch: as many whole submissions as fit in ``max_batch`` (the first one's first ``max_batch``
        items when it alone does not fit; its rest goes on at the head of the queue)."""
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        while self._pending and len(batch) + len(self._pending[0]) <= self.max_batch:
            batch.extend(self._pending.popleft())
        if not batch:
            first = self._pending[0]
            batch, self._pending[0] = first[: self.max_batch], first[self.max_batch :]
        return batch

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._take()
                items = [item for item, _ in batch]
                try:
                    outcomes = list(await self._commit(items))
                except Exception as exc:
                    outcomes = [exc] if len(items) == 1 else [await self._alone(item) for item in items]
                if self._then is None:
                    _answer(batch, outcomes)
                    self._early.difference_update(future for _, future in batch)
                    continue
                if self._early:
                    early = [i for i, (_, future) in enumerate(batch) if future in self._early]
                    _answer([batch[i] for i in early], [outcomes[i] for i in early])
                    self._early.difference_update(batch[i][1] for i in early)
                self._committed.append((batch, outcomes))
                if self._then_task is None:
                    self._then_task = asyncio.create_task(self._follow(self._then), name=f"{self.name}-then")
        finally:
            self._task = None

    async def _follow(self, then: Callable[[list[Result]], Awaitable[None]]) -> None:
        try:
            while self._committed:
                done, self._committed = self._committed, []
                try:
                    await then([o for _, outcomes in done for o in outcomes if not isinstance(o, Exception)])
                except Exception:
                    log.exception("%s: the stage after the commit failed", self.name)
                for batch, outcomes in done:
                    _answer(batch, outcomes)
        finally:
            self._then_task = None

    async def _alone(self, item: Item) -> Result | Exception:
        try:
            return (await self._commit([item]))[0]
        except Exception as exc:
            return exc


def _answer(batch: list[tuple[Item, asyncio.Future[Result]]], outcomes: Sequence[Result | Exception]) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():  # its caller went away
            continue
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

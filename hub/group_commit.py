"""Group commit for concurrent callers of one write: many callers, one transaction.

A caller submits its item and waits for its own answer. A drain task, started by the first item that finds
none running and ending when nothing waits (so it needs no wiring at start and stop), hands everything queued
meanwhile, up to ``max_batch`` items, to ``commit`` at once.

``commit(items)`` runs one transaction and answers one outcome per item, in order: a result, or the exception
that item alone raises (a refused item does not roll its neighbours back). If ``commit`` itself raises, the
transaction is gone for all of them: each item of a batch of several is then committed again on its own, so
one bad item never fails its neighbours, and each caller gets its own answer (an item alone gets the error).

``then``, if given, is a second stage run after the commit and pipelined with it: while ``then`` works on
what committed, the next batch commits. It takes the results of every batch committed since it last ran (not
the errors), and their callers are answered once it returns; an error it raises is logged, and the callers
still get their outcomes (what they submitted is committed). Ingest stores messages in the commit and routes
their tickets in ``then``.

A caller that stops waiting (its request was cancelled) does not take its item out: it may still commit.

On SQLite every one of these transactions is in turn one writer of ``hub.db.sqlite_writer.SharedWriter``,
which lets transactions queued behind one another (of this group or of other writes) share a commit.

Keep one ``GroupCommit`` per runtime and write (in ``Runtime.caches``, or in the object that owns the write):
it belongs to that runtime's loop.
"""

from __future__ import annotations

import asyncio
import logging
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
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task[None] | None = None
        # Batches committed and waiting for ``then``, with their outcomes.
        self._committed: list[tuple[list[tuple[Item, asyncio.Future[Result]]], list[Result | Exception]]] = []
        self._then_task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=self.name)
        return await future

    async def join(self) -> None:
        """Wait until every item submitted so far is answered (both stages are idle)."""
        while True:
            running = [t for t in (self._task, self._then_task) if t is not None]
            if not running:
                return
            await asyncio.wait(running)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                items = [item for item, _ in batch]
                try:
                    outcomes = list(await self._commit(items))
                except Exception as exc:
                    outcomes = [exc] if len(items) == 1 else [await self._alone(item) for item in items]
                if self._then is None:
                    _answer(batch, outcomes)
                    continue
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

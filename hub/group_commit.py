"""Group commit for concurrent callers of one write: many callers, one transaction.

A caller submits its item and waits for its own answer. A drain task, started by the first item that finds
none running and ending when nothing waits (so it needs no wiring at start and stop), hands everything queued
meanwhile, up to ``max_batch`` items, to ``commit`` at once.

``commit(items)`` runs one transaction and answers one outcome per item, in order: a result, or the exception
that item alone raises (a refused item does not roll its neighbours back). If ``commit`` itself raises, the
transaction is gone for all of them: each item is then committed again on its own, so one bad item never
fails its neighbours, and each caller gets its own answer.

A caller that stops waiting (its request was cancelled) does not take its item out: it may still commit.

Keep one ``GroupCommit`` per runtime and write (in ``Runtime.caches``): it belongs to that runtime's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        commit: Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]],
        *,
        max_batch: int,
        name: str,
    ) -> None:
        self._commit = commit
        self.max_batch = max_batch
        self.name = name
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=self.name)
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                items = [item for item, _ in batch]
                try:
                    outcomes = list(await self._commit(items))
                except Exception:
                    outcomes = [await self._alone(item) for item in items]
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller went away
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._task = None

    async def _alone(self, item: Item) -> Result | Exception:
        try:
            return (await self._commit([item]))[0]
        except Exception as exc:
            return exc

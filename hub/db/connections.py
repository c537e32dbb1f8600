"""Closing a connection in the caller's task when closing does not wait (``connected``), and otherwise to its
end even if the caller is cancelled meanwhile."""

from __future__ import annotations

import asyncio
import types
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@asynccontextmanager
async def connected(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """``async with engine.connect()``, but closing in the caller's task when closing does not wait.

    SQLAlchemy closes a connection that leaves ``async with`` in a task of its own, which it waits for, so that
    a cancelled caller cannot abandon the close halfway. That costs the caller three turns of the event loop,
    and on SQLite every write transaction held the process's one writer through them. A connection whose
    transaction ended (every write, after its commit) has nothing to wait for when it closes: the pool takes
    it back. So the close starts here, and only one that does wait (a rollback: after a read on SQLite, in
    aiosqlite's thread; on PostgreSQL a round trip, for a transaction begun and not committed, though reads
    through ``Database.connect`` begin none) is finished in a task of its own, as SQLAlchemy does."""
    conn = await engine.connect()
    try:
        yield conn
    finally:
        await close(conn)


async def close(conn: AsyncConnection) -> None:
    """Close ``conn``: in the caller's task if that does not wait, else in a task of its own, to its end."""
    closing = conn.close()
    try:
        awaited = closing.send(None)
    except StopIteration:
        return
    await _run_to_completion(_resumed(closing, awaited))


@types.coroutine
def _resumed(coroutine: Any, awaited: Any) -> Generator[Any, Any, None]:
    """The rest of ``coroutine``, which has already run up to awaiting ``awaited`` (a future), as an awaitable:
    what ``await`` would do had the coroutine been awaited from its start."""
    while True:
        try:
            value = yield awaited
        except BaseException as exc:  # delivered into the coroutine, as ``await`` would
            try:
                awaited = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                awaited = coroutine.send(value)
            except StopIteration:
                return


async def _run_to_completion(awaitable: Any) -> None:
    """Await ``awaitable`` in a task of its own, to its end even if the caller is cancelled meanwhile (the
    cancellation is raised once it has ended)."""

    async def run() -> None:
        await awaitable

    task = asyncio.ensure_future(run())
    cancelled: BaseException | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            if task.done():
                raise
            cancelled = exc
        else:
            break
    if cancelled is not None:
        raise cancelled

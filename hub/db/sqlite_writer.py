"""SQLite's one writer per process: the layer under every write on SQLite.

Each process writes through one connection (SQLite has one writer anyway), and ``SharedWriter`` lets writers
take turns on it: the turns taken one after another while others wait share one transaction and one commit,
each turn in a savepoint of its own. ``hub.group_commit`` sits above this, on both databases: it gathers the
concurrent requests of one kind of write (inbound messages, replies, receipts) into one transaction; on SQLite
those transactions, and every other writer's, then share commits here.

With the driver fast paths on (``SWITCHBOARD_FAST_PATHS``, see ``hub.db.fast``), the writer's connection is a
``LoopThreadConnection``: its statements run on the event loop's thread instead of in aiosqlite's (and so do
the readers' connections, ``hub.db.engine.create_engine``). That class
uses aiosqlite's internals (its ``_execute``, ``_conn``, ``_running``, ``_connection``, and the worker thread
function ``aiosqlite.core._connection_worker_thread``); with the fast paths off the writer is aiosqlite's own
connection and everything here uses aiosqlite's public API only.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from queue import SimpleQueue
from threading import Thread
from typing import Any

import aiosqlite
import aiosqlite.core
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hub.db.connections import close

# The execution option of a writing transaction: on SQLite it begins with BEGIN IMMEDIATE (see
# ``hub.db.engine``).
WRITE_OPTION = "switchboard_write"


class LoopThreadConnection(aiosqlite.Connection):
    """The connection of a process's SQLite writer (``Database.begin``): its statements run on the calling
    thread, the event loop's, instead of in aiosqlite's thread; only the commit, which waits for the disk,
    goes to that thread.

    Under load every trip to aiosqlite's thread waited a turn of the busy event loop to come back, about a
    dozen trips per write transaction, all while the transaction held the process's one writer: chat replies,
    receipts and the outbox held it ~10 ms each and customer messages queued behind them. Here a transaction
    holds the writer for its own work and one trip, the commit's: its fsync (and now and then a checkpoint)
    waits in aiosqlite's thread while the loop runs on. The statements themselves are CPU work, short next to
    the Python around them; pages they read come from SQLite's and the system's caches.

    The one wait that may be long, for another process that holds SQLite's write lock (the CLI, a second
    server), must not stop the loop either: this connection never waits in SQLite on the loop's thread (busy
    timeout 0); a statement refused with SQLITE_BUSY, which did nothing, runs again in aiosqlite's thread with
    a busy timeout. Opening and closing go through that thread, as aiosqlite does them.

    A/B (bench.ingest --shape chat --batch 20 on SQLite, the other fast paths on; CPU per message in the
    ingesting process, on a shared 2-core machine under load 10-16): 117-144 µs with this connection, 133-142
    without; with saturated batches of ~250 (generic shape) no difference (221-249 against 228-248). Wall-clock
    rates there favoured the thread (on an oversubscribed machine a second runnable thread gets a larger share
    of the CPU), so the figure that counts is a quiet machine's.
    """

    _tx: _ThreadCalls

    def __init__(self, connector: Callable[[], sqlite3.Connection]) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _ThreadCalls()  # the thread serves this queue (a daemon, as SQLAlchemy makes aiosqlite's)
        self._thread = Thread(target=aiosqlite.core._connection_worker_thread, args=(self._tx,), daemon=True)

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call = partial(fn, *args, **kwargs)
        if not self._running or self._connection is None:
            return await super()._execute(call)  # raises aiosqlite's "Connection closed"
        # Never beside a call still running in the thread (its caller may have been cancelled, and SQLAlchemy
        # then closes the connection): queued behind it instead.
        if self._tx.idle:
            try:
                return call()
            except sqlite3.OperationalError as error:
                if error.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:  # or one of its extended codes
                    raise
        return await self._in_thread(call)

    async def commit(self) -> None:
        await self._in_thread(self._conn.commit)

    async def _in_thread(self, call: Callable[[], Any]) -> Any:
        return await super()._execute(_waiting_for_lock, self._conn, call)


class _ThreadCalls(SimpleQueue[tuple[asyncio.Future[Any] | None, Callable[[], Any]]]):
    """aiosqlite's queue of calls for its connection's thread, counting the calls handed over (by the loop's
    thread) and those finished (by the connection's thread): each count has one writer."""

    def __init__(self) -> None:
        self.handed = 0
        self.finished = 0

    @property
    def idle(self) -> bool:
        return self.finished == self.handed

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item

        def counted() -> Any:
            try:
                return function()
            finally:
                self.finished += 1

        self.handed += 1
        super().put_nowait((future, counted))


def _waiting_for_lock(connection: sqlite3.Connection, call: Callable[[], Any]) -> Any:
    connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    try:
        return call()
    finally:
        with contextlib.suppress(sqlite3.ProgrammingError):  # the call closed the connection
            connection.execute("PRAGMA busy_timeout=0")


SQLITE_BUSY_TIMEOUT_MS = 30_000


def connect_on_loop_thread(database: str, **kwargs: Any) -> LoopThreadConnection:
    """SQLite's connection factory (SQLAlchemy's ``async_creator_fn``) with the fast paths on: the writer's and
    the readers'."""
    # Made in aiosqlite's thread and used from the loop's: not bound to one thread.
    return LoopThreadConnection(partial(sqlite3.connect, database, **{**kwargs, "check_same_thread": False}))


def never_busy_wait(dbapi_connection: Any, _record: Any) -> None:
    """The loop-thread connections' connect hook: SQLite never waits for a lock on the loop's thread (see
    ``LoopThreadConnection``)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


class SharedWriter:
    """SQLite's one writer per process, shared: writers take turns on one connection, and the turns taken one
    after another while others wait share one transaction and one commit.

    Each turn is a savepoint: a writer whose block raises rolls back its own work alone, and the others keep
    theirs. A turn ends by handing the connection to the next writer waiting, with the transaction still
    open; the last of them (none waiting, or ``max_turns`` in the transaction) hands it to a commit task,
    which commits and answers every writer of the transaction together (a writer alone in its transaction,
    with none waiting, commits it itself). Each writer returns from its block
    once the transaction holding its work has committed, as with a transaction of its own; if the commit
    fails, or the database rolled the transaction back (SQLite does on some errors, such as a full disk),
    every writer in it gets the error.

    Why: a commit waits for the disk in aiosqlite's thread and then for the event loop to come back to the
    writer, a few turns of the loop that under load last milliseconds each, all while the writer is held.
    With replies, receipts, delivery records and routing each committing on their own, customer messages
    waited behind those turns. Writers take turns in arrival order (a writer cancelled while waiting gives up
    its place, or the turn it was just handed)."""

    max_turns = 64

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._busy = False
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._open: _SharedTransaction | None = None
        self.committing: asyncio.Task[None] | None = None  # the latest commit's task

    async def _acquire(self) -> None:
        if not self._busy and not self._waiting:
            self._busy = True
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._pass_on()  # handed the turn, then cancelled: the next one takes it
            else:
                self._waiting.remove(turn)
            raise

    def _pass_on(self) -> asyncio.Task[None] | None:
        """The connection goes to the next writer waiting; with none, an open transaction is committed (the
        commit's task, which holds the turn until it is done)."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return None
        if self._open is not None:
            return self._committing(self._open)
        self._busy = False
        return None

    def _committing(self, shared: _SharedTransaction) -> asyncio.Task[None]:
        self._open = None
        self.committing = asyncio.ensure_future(self._commit(shared))
        return self.committing

    async def _commit(self, shared: _SharedTransaction) -> None:
        """Commit ``shared`` (this task holds the turn), answer its writers, and pass the turn on."""
        try:
            if not shared.alive():
                raise _rolled_back(shared.error)
            await shared.trans.commit()
        except BaseException as exc:
            shared.answer(exc)
            with contextlib.suppress(Exception):
                await shared.conn.invalidate()  # closing it rolls back whatever is left
            if not isinstance(exc, Exception):
                raise
        else:
            shared.answer(None)
        finally:
            try:
                await close(shared.conn)
            finally:
                self._pass_on()

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[AsyncConnection]:
        await self._acquire()
        try:
            shared = self._open
            if shared is None:
                conn = await self.engine.connect()
                try:
                    await conn.execution_options(**{WRITE_OPTION: True})
                    trans = await conn.begin()
                    driver: Any = (await conn.get_raw_connection()).driver_connection  # an aiosqlite.Connection
                except BaseException:
                    await close(conn)
                    raise
                shared = self._open = _SharedTransaction(conn, trans, driver)
            await shared.sql("SAVEPOINT switchboard_turn")
        except BaseException:
            await settled(self._pass_on())
            raise
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            yield shared.conn
            await shared.sql("RELEASE switchboard_turn")
        except BaseException as exc:
            try:
                if not shared.in_transaction():
                    shared.fail(exc)  # the database rolled the whole transaction back
                elif not shared.broken:
                    await shared.sql("ROLLBACK TO switchboard_turn")
                    await shared.sql("RELEASE switchboard_turn")
            except BaseException as undo_error:
                shared.fail(undo_error)  # this writer's work could not be undone: nobody's may commit
            finally:
                settling = self._end_turn(shared)
            await settled(settling)
            raise
        shared.answers.append(answered)
        if len(shared.answers) == 1 and not self._waiting:
            # Alone in its transaction, with nobody waiting: this writer commits it itself, as a transaction of
            # its own did (a commit task would cost a turn of the event loop more).
            shared.turns += 1
            self._open = None
            try:
                await self._commit(shared)
            except BaseException:
                if answered.done() and not answered.cancelled():
                    answered.exception()  # retrieved: the caller sees what interrupted the commit instead
                raise
        else:
            self._end_turn(shared)
        await answered

    def _end_turn(self, shared: _SharedTransaction) -> asyncio.Task[None] | None:
        shared.turns += 1
        if shared.turns >= self.max_turns or not shared.alive():
            return self._committing(shared)
        return self._pass_on()


async def settled(task: asyncio.Task[None] | None) -> None:
    """Wait for ``task`` (a shared commit that this writer's failed turn started) to end, whatever its outcome
    (its writers have it): the caller goes on with the writer settled, as after a transaction of its own."""
    if task is not None:
        await asyncio.wait([task])


def _rolled_back(error: BaseException | None) -> Exception:
    return RuntimeError(f"the database rolled back the shared write transaction: {error!r}")


def _interrupted(error: BaseException) -> Exception:
    return RuntimeError(
        f"the commit of the shared write transaction was interrupted ({error!r}): its outcome is unknown"
    )


@dataclass(slots=True, eq=False)
class _SharedTransaction:
    conn: AsyncConnection
    trans: Any
    driver: aiosqlite.Connection  # the connection under conn (a LoopThreadConnection with the fast paths on)
    turns: int = 0
    answers: list[asyncio.Future[None]] = field(default_factory=list)
    error: BaseException | None = None  # why it must not commit
    broken: bool = False

    def fail(self, error: BaseException) -> None:
        if not self.broken:
            self.broken, self.error = True, error

    async def sql(self, statement: str) -> None:
        """Run ``statement`` (a savepoint's) on the SQLite connection under ``conn``: one call of the driver (on
        the loop's thread with the fast paths on), where SQLAlchemy's cursor would take four."""
        await self.driver.execute_fetchall(statement)

    def in_transaction(self) -> bool:
        """Whether SQLite still has the transaction open (it rolls it back itself on some errors)."""
        try:
            return self.driver.in_transaction
        except (ValueError, sqlite3.ProgrammingError):  # the connection was closed
            return False

    def alive(self) -> bool:
        return not self.broken and self.in_transaction()

    def answer(self, error: BaseException | None) -> None:
        for answered in self.answers:
            if answered.done():
                continue
            if error is None:
                answered.set_result(None)
            else:
                answered.set_exception(error if isinstance(error, Exception) else _interrupted(error))

"""The database: one async SQLAlchemy engine per process, SQLite (WAL) by default, PostgreSQL in production.

``Database`` owns the engine. Everything reads and writes with Core statements on connections: readers
through ``Database.connect``, writers through ``Database.begin`` (``Runtime.read`` and ``Runtime.write``). On
SQLite the writer has an engine of its own (see ``_LoopThreadConnection``), and writers queued behind one
another share its transactions (see ``_SharedWriter``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
import types
from collections import deque, namedtuple
from collections.abc import AsyncIterator, Callable, Generator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from queue import SimpleQueue
from threading import Thread
from typing import Any

import aiosqlite
import aiosqlite.core
import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    Text,
    and_,
    any_,
    bindparam,
    event,
    func,
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import IteratorResult, make_url
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores it naive; we put the zone back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Switchboard stores timezone-aware UTC datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # On SQLite, one step instead of this class's conversion followed by the SQLite dialect's own
        # %-formatting: ingest binds several datetimes per row and this was a tenth of its CPU time.
        # The text is exactly the dialect's storage format ("YYYY-MM-DD HH:MM:SS.ffffff").
        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is not UTC:
                value = self.process_bind_param(value, dialect)
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")  # type: ignore[union-attr]

        return process

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        if dialect.name == "postgresql" and dialect.driver == "asyncpg":
            # asyncpg reads a timestamptz as an aware datetime in UTC already (its tzinfo is datetime.UTC):
            # nothing to convert. A routing claim reads eight of them per row.
            return None
        return super().result_processor(dialect, coltype)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL, JSON text on SQLite.
JSONType = JSON().with_variant(postgresql.JSONB(), "postgresql")
# A 64-bit key that is still SQLite's rowid (only INTEGER PRIMARY KEY is).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; synchronous=FULL keeps every commit durable
    # (each acknowledged message survives a power cut), busy_timeout waits for the writer lock
    # instead of failing when the CLI and a server write at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_connect(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    # Let SQLAlchemy, not the driver, begin transactions (see _sqlite_begin).
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    # A writing transaction takes SQLite's write lock up front (BEGIN IMMEDIATE): two deferred
    # transactions that both upgrade from reading to writing would otherwise fail with SQLITE_BUSY
    # instead of waiting, and holding the lock makes the next keys ours (see insert_returning_ids).
    immediate = conn.get_execution_options().get(WRITE_OPTION)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


WRITE_OPTION = "switchboard_write"


# aiosqlite runs each connection's statements in a thread of its own, which needs the GIL to start a statement
# and again to hand its result back. While the event loop's thread is busy, a thread that wants the GIL waits
# for the interpreter's switch interval (5 ms by default) before it gets it, up to twice per statement, while
# the transaction holds SQLite's one writer.
GIL_SWITCH_INTERVAL = 0.0002


def _shorten_gil_switch_interval() -> None:
    if sys.getswitchinterval() > GIL_SWITCH_INTERVAL:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)


class _LoopThreadConnection(aiosqlite.Connection):
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


def _connect_writer(database: str, **kwargs: Any) -> _LoopThreadConnection:
    # Made in aiosqlite's thread and used from the loop's: not bound to one thread.
    return _LoopThreadConnection(partial(sqlite3.connect, database, **{**kwargs, "check_same_thread": False}))


def _sqlite_writer_connect(dbapi_connection: Any, record: Any) -> None:
    _sqlite_connect(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")  # see _LoopThreadConnection
    cursor.close()


def create_engine(url: str, *, writer: bool = False) -> AsyncEngine:
    """An async engine for ``url``, with SQLite tuned for one writer and durable commits. On SQLite, ``writer``
    makes the engine of ``Database.begin``: one connection, whose statements run on the event loop's thread
    (``_LoopThreadConnection``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _shorten_gil_switch_interval()
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"timeout": 30}
        pool: dict[str, Any] = {}
        if writer:
            connect_args = {"timeout": 0, "async_creator_fn": _connect_writer}
            pool = {"pool_size": 1, "max_overflow": 0}
        engine = create_async_engine(
            url, connect_args=connect_args, json_serializer=json_dumps, json_deserializer=orjson.loads, **pool
        )
        event.listen(engine.sync_engine, "connect", _sqlite_writer_connect if writer else _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        # Statements are prepared once per connection (see insert_rows and one_of) but planned for each
        # execution's values: a generic plan cannot know how many values an ANY(array) holds, and PostgreSQL
        # picked sequential scans of the contacts for ingest's identity lookup once it switched to one.
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
        pool_size=10,
        max_overflow=20,
        json_serializer=json_dumps,
        json_deserializer=orjson.loads,
    )
    event.listen(engine.sync_engine.pool, "connect", _note_use)
    event.listen(engine.sync_engine.pool, "checkin", _note_use)
    event.listen(engine.sync_engine.pool, "checkout", _ping_if_idle)
    return engine


# A pooled PostgreSQL connection idle longer than this is tested before use (see _ping_if_idle).
PING_AFTER_IDLE_SECONDS = 1.0


def _note_use(_dbapi_connection: Any, record: Any) -> None:
    record.info["used_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """pool_pre_ping for connections that sat idle: a dead one (the server restarted, a firewall dropped it) is
    replaced before the caller sees it. SQLAlchemy's pre-ping tests every checkout, and on asyncpg its test is
    three round trips (BEGIN, an empty query, ROLLBACK): with two transactions per ingest batch that was more
    round trips than the batch's own statements. A connection used within the last second is taken as is; if
    the server went away in that second, its next statement fails once and SQLAlchemy, seeing a disconnect,
    invalidates the pool's connections."""
    used_at = record.info.get("used_at")
    if used_at is not None and time.monotonic() - used_at < PING_AFTER_IDLE_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception as exc:
        raise DisconnectionError("connection failed its test after idling") from exc


def json_dumps(value: Any) -> str:
    """JSON for stored columns and event frames: orjson, several times faster than the standard library on
    the event payloads every change writes. Keys that are not strings (an int id) become strings, as with
    the standard library."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


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
        await _close(conn)


async def _close(conn: AsyncConnection) -> None:
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


class _SharedWriter:
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
                await _close(shared.conn)
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
                    driver = (await conn.get_raw_connection()).driver_connection
                except BaseException:
                    await _close(conn)
                    raise
                shared = self._open = _SharedTransaction(conn, trans, driver)
            raw = shared.driver._conn
            await shared.sql("SAVEPOINT switchboard_turn")
        except BaseException:
            await _settled(self._pass_on())
            raise
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            yield shared.conn
            await shared.sql("RELEASE switchboard_turn")
        except BaseException as exc:
            try:
                if not raw.in_transaction:
                    shared.fail(exc)  # the database rolled the whole transaction back
                elif not shared.broken:
                    await shared.sql("ROLLBACK TO switchboard_turn")
                    await shared.sql("RELEASE switchboard_turn")
            except BaseException as undo_error:
                shared.fail(undo_error)  # this writer's work could not be undone: nobody's may commit
            finally:
                settling = self._end_turn(shared)
            await _settled(settling)
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


async def _settled(task: asyncio.Task[None] | None) -> None:
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
    driver: Any  # the _LoopThreadConnection under conn
    turns: int = 0
    answers: list[asyncio.Future[None]] = field(default_factory=list)
    error: BaseException | None = None  # why it must not commit
    broken: bool = False

    def fail(self, error: BaseException) -> None:
        if not self.broken:
            self.broken, self.error = True, error

    async def sql(self, statement: str) -> None:
        """Run ``statement`` (a savepoint's) on the SQLite connection under ``conn``, on the loop's thread."""
        await self.driver._execute(self.driver._conn.execute, statement)

    def alive(self) -> bool:
        raw = self.driver._conn
        return bool(not self.broken and raw is not None and raw.in_transaction)

    def answer(self, error: BaseException | None) -> None:
        for answered in self.answers:
            if answered.done():
                continue
            if error is None:
                answered.set_result(None)
            else:
                answered.set_exception(error if isinstance(error, Exception) else _interrupted(error))


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite's writer has an engine of its own (see _LoopThreadConnection); readers use ``engine``.
        self._writer = create_engine(url, writer=True) if self.is_sqlite else self.engine
        self._shared = _SharedWriter(self._writer) if self.is_sqlite else None
        # PostgreSQL's readers run each statement on its own (autocommit): see ``connect``.
        self._reader = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def engines(self) -> tuple[AsyncEngine, ...]:
        """Every engine of this database (the readers' and, on SQLite, the writer's): for statement events."""
        return (self.engine,) if self._writer is self.engine else (self.engine, self._writer)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for reading: ``engine.connect()``, closed as ``connected`` closes.

        On PostgreSQL it reads in autocommit: no BEGIN before its first statement and no ROLLBACK when it is
        closed, one round trip per statement instead of two more per read. Under READ COMMITTED every statement
        of a transaction takes a snapshot of its own anyway, so a read of several statements sees what it saw
        inside a transaction. It must not write: a write here commits at once."""
        async with connected(self._reader) as conn:
            yield conn

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside a writing transaction that commits when the block ends (on SQLite, see
        ``_SharedWriter``: the block is a savepoint of a transaction it may share with the writers queued
        behind it, and it ends once that transaction has committed)."""
        if self._shared is not None:
            async with self._shared.turn() as conn:
                yield conn
            return
        async with connected(self._writer) as conn:
            await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                yield conn

    def insert_ignore(self, table: Any) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` in this database's dialect."""
        if self.is_sqlite:
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    def upsert(self, table: Any, values: Mapping[str, Any], key: Sequence[str]) -> Insert:
        """``INSERT ... ON CONFLICT (key) DO UPDATE`` the other columns, in this database's dialect: one atomic
        statement where an UPDATE followed, if it changed nothing, by an INSERT races on PostgreSQL (two
        writers both find no row, and the second INSERT fails on the key)."""
        insert = (sqlite if self.is_sqlite else postgresql).insert(table).values(**values)
        return insert.on_conflict_do_update(
            index_elements=list(key), set_={c: insert.excluded[c] for c in values if c not in key}
        )

    async def dispose(self) -> None:
        if self._shared is not None and self._shared.committing is not None:
            await _settled(self._shared.committing)
        await self.engine.dispose()
        if self._writer is not self.engine:
            await self._writer.dispose()


_KEY_LOCKS = text(
    "SELECT pg_advisory_xact_lock(:space, h) FROM "
    "(SELECT DISTINCT hashtext(k) AS h FROM unnest(CAST(:keys AS text[])) AS k ORDER BY h) AS ordered"
)


async def lock_keys(conn: AsyncConnection, space: int, keys: Sequence[str]) -> None:
    """PostgreSQL: hold a lock on each of ``keys`` until the transaction ends, waiting for those another
    transaction holds (``pg_advisory_xact_lock(space, hashtext(key))``, taken in one order, so two callers
    never deadlock on these locks alone). ``space`` names what the keys are (a constant per use). For a check-then-write
    on something no row stands for yet (a conversation without a ticket, a recipient's count). SQLite runs
    one writing transaction at a time: nothing to do."""
    if keys and conn.dialect.name == "postgresql":
        await conn.execute(_KEY_LOCKS, {"space": space, "keys": list(keys)})


@contextlib.contextmanager
def taken_as(error: Exception) -> Generator[None, None, None]:
    """Raise ``error`` (a ``Conflict`` naming what is taken) for a unique constraint's violation inside.

    A create that first looks for the name, then inserts, is not enough on PostgreSQL: two requests at once
    both find no row, and the second insert fails on the unique index, which would be a 500. Wrap the insert
    in this; the transaction rolls back as for any error. Other integrity errors pass through."""
    try:
        yield
    except IntegrityError as exc:
        if not _unique_violation(exc.orig):
            raise
        raise error from None


_PG_UNIQUE_VIOLATION = "23505"


def _unique_violation(orig: BaseException | None) -> bool:
    if isinstance(orig, sqlite3.IntegrityError):
        return orig.sqlite_errorcode == sqlite3.SQLITE_CONSTRAINT_UNIQUE
    return getattr(orig, "sqlstate", None) == _PG_UNIQUE_VIOLATION


async def insert_returning_ids(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], pk: str = "id"
) -> list[int]:
    """Insert ``rows`` in one batch and return their generated keys, in the order given.

    PostgreSQL: the keys are taken from the key's sequence first, so they are known in order whatever order
    the database inserts in, then one ``insert_rows``. SQLite cannot order a batched RETURNING either
    (SQLAlchemy falls back to one statement per row): one single-row ``INSERT`` run for every row
    (``executemany``), whose rows SQLite numbers one after the other in the order of the list (each gets the
    largest key so far plus one; the caller's transaction holds SQLite's write lock, ``Database.begin``, so
    nobody else inserts in between), and the last row id gives them all, in the same trip to the driver.
    One multi-row ``INSERT ... VALUES`` instead took 0.58-0.72 ms for 40 rows of a messages table of 40,000,
    against 0.24-0.27 ms (a micro-benchmark of both, through the driver).
    """
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        return await _sqlite_insert_returning_ids(conn, table, rows)
    result = await conn.execute(_NEXT_KEYS, {"table": table.name, "column": pk, "n": len(rows)})
    ids = sorted(int(r[0]) for r in result)  # nextval is increasing; the row order of the result is not
    await insert_rows(conn, table, [{**row, pk: key} for row, key in zip(rows, ids, strict=True)])
    return ids


# (table, columns, ignoring conflicts) -> the single-row INSERT's text
_SQLITE_INSERTS: dict[tuple[str, tuple[str, ...], bool], str] = {}
_MAX_SQLITE_INSERTS = 1024


def _sqlite_insert(dialect: Any, table: Any, columns: tuple[str, ...], ignore: bool = False) -> str:
    """SQLite: ``INSERT INTO table (columns) VALUES (?, ...)``, kept."""
    key = (table.name, columns, ignore)
    sql = _SQLITE_INSERTS.get(key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' * len(columns))})" + (" ON CONFLICT DO NOTHING" if ignore else "")
        )
        if len(_SQLITE_INSERTS) >= _MAX_SQLITE_INSERTS:
            _SQLITE_INSERTS.clear()
        _SQLITE_INSERTS[key] = sql
    return sql


async def _sqlite_insert_returning_ids(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    columns = tuple(rows[0])
    sql = _sqlite_insert(conn.dialect, table, columns)
    last = await _sqlite_run(conn, sql, _driver_rows(conn.dialect, table, columns, rows), each=True)
    if last is None:
        raise RuntimeError(f"SQLite gave no row id for an insert into {table.name}")
    return list(range(last - len(rows) + 1, last + 1))


def _insert_each(connection: sqlite3.Connection, sql: str, values: list[tuple[Any, ...]]) -> int | None:
    """In the driver's thread (or the writer's loop thread, see ``_LoopThreadConnection``): ``sql`` for every
    row of ``values``, then the last row id. Unlike one statement, this is not all or nothing: rows before one
    that fails stay in the transaction, and the caller's transaction (or shared-writer turn) rolls back. Nor is
    it run twice: ``_LoopThreadConnection`` runs a call again only when SQLite refused it as busy, and a
    writer's transaction holds the write lock from its BEGIN IMMEDIATE (``Database.begin``), so no row of it
    is refused so."""
    connection.executemany(sql, values).close()
    row = connection.execute("SELECT last_insert_rowid()").fetchone()
    return int(row[0]) if row and row[0] else None


_NEXT_KEYS = text("SELECT nextval(pg_get_serial_sequence(:table, :column)) FROM generate_series(1, :n)")


async def insert_rows(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], *, ignore_conflicts: bool = False
) -> None:
    """Insert ``rows`` (all with the same keys) in one statement; ``ignore_conflicts`` skips rows that would
    break a unique constraint (``ON CONFLICT DO NOTHING``).

    On PostgreSQL the rows travel as one array per column, ``INSERT ... SELECT FROM unnest(...)``: the SQL text
    depends only on the table and the columns, so each connection prepares it once. A multi-row VALUES list is
    new text for every batch size, parsed and planned again each time: a third of ingest's time went there.
    """
    if not rows:
        return
    if conn.dialect.name == "sqlite":
        columns = tuple(rows[0])
        sql = _sqlite_insert(conn.dialect, table, columns, ignore=ignore_conflicts)
        await conn.exec_driver_sql(sql, _driver_rows(conn.dialect, table, columns, rows))
        return
    columns = tuple(rows[0])
    statement = _unnest_insert(table, columns, ignore_conflicts)
    await conn.execute(statement, {f"c{i}": values for i, values in enumerate(column_arrays(table, columns, rows))})


def _convert_each(values: list[Any], process: Callable[[Any], Any]) -> list[Any]:
    """``process`` applied to each value, once per distinct datetime object: a batch's rows share their
    timestamps (one ``now``)."""
    seen: dict[int, Any] = {}
    out = []
    for v in values:
        if isinstance(v, datetime):
            key = id(v)
            if key not in seen:
                seen[key] = process(v)
            out.append(seen[key])
        else:
            out.append(process(v))
    return out


def _driver_rows(dialect: Any, table: Any, columns: Sequence[str], rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """SQLite: ``rows`` as the driver's parameter tuples, each value converted by its column type's own bind
    processor (the conversion SQLAlchemy would apply), one column at a time. SQLAlchemy's executemany
    builds and processes a parameter dictionary per row: that was a sixth of ingest's CPU time on SQLite.
    A batch's rows share their timestamps (one ``now``): each distinct datetime object is converted once."""
    converted = []
    for name in columns:
        values = [row[name] for row in rows]
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            values = _convert_each(values, process)
        converted.append(values)
    return list(zip(*converted, strict=True))


def column_arrays(table: Any, columns: Sequence[str], rows: list[dict[str, Any]]) -> list[list[Any]]:
    """PostgreSQL: one array per column of ``rows``, to bind for ``unnest``. JSON travels as text, cast in
    SQL: SQLAlchemy would read a JSON list as a further array dimension. None is stored as JSON null, as
    SQLAlchemy's JSON type does."""
    arrays = []
    for name in columns:
        values = [row[name] for row in rows]
        col_type = table.c[name].type
        if isinstance(col_type, JSON):
            values = [json_dumps(v) for v in values]
        elif isinstance(col_type, UTCDateTime):
            # Checked and converted here, once per distinct datetime (a batch shares its timestamps), and bound
            # as a plain timestamptz array (see array_type): SQLAlchemy would call the decorator per element.
            values = _convert_each(values, partial(col_type.process_bind_param, dialect=_PG_DIALECT))
        arrays.append(values)
    return arrays


_PG_DIALECT = postgresql.dialect()


def array_type(col_type: Any) -> ARRAY[Any]:
    """The array type to bind a column's values as (already converted by ``column_arrays``)."""
    if isinstance(col_type, JSON):
        return ARRAY(Text())
    if isinstance(col_type, UTCDateTime):
        return ARRAY(DateTime(timezone=True))
    return ARRAY(col_type)


async def insert_returning_ids_by(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], unique: tuple[str, ...], pk: str = "id"
) -> list[int]:
    """``insert_returning_ids`` for rows told apart by a unique key of their own (``unique``, distinct among
    ``rows``): on PostgreSQL one statement, which reads each generated key back with that unique key, instead
    of drawing the keys first."""
    if not rows or conn.dialect.name != "postgresql":
        return await insert_returning_ids(conn, table, rows, pk)
    columns = tuple(rows[0])
    statement = _unnest_insert(table, columns, False, returning=(pk, *unique))
    arrays = column_arrays(table, columns, rows)
    result = await conn.execute(statement, {f"c{i}": values for i, values in enumerate(arrays)})
    keys = {tuple(r[1:]): int(r[0]) for r in result}
    return [keys[tuple(row[c] for c in unique)] for row in rows]


_UNNEST_INSERTS: dict[tuple[str, tuple[str, ...], bool, tuple[str, ...]], Any] = {}


def _unnest_insert(
    table: Any, columns: tuple[str, ...], ignore_conflicts: bool, returning: tuple[str, ...] = ()
) -> Any:
    key = (table.name, columns, ignore_conflicts, returning)
    cached = _UNNEST_INSERTS.get(key)
    if cached is not None:
        return cached
    quote = postgresql.dialect().identifier_preparer.quote
    json_columns = frozenset(c for c in columns if isinstance(table.c[c].type, JSON))
    names = [f"c{i}" for i in range(len(columns))]
    picked = [f"u.{n}::jsonb" if c in json_columns else f"u.{n}" for n, c in zip(names, columns, strict=True)]
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT {', '.join(picked)} FROM unnest({', '.join(':' + n for n in names)}) AS u({', '.join(names)})"
        + (" ON CONFLICT DO NOTHING" if ignore_conflicts else "")
        + (f" RETURNING {', '.join(quote(c) for c in returning)}" if returning else "")
    )
    binds = [bindparam(n, type_=array_type(table.c[c].type)) for n, c in zip(names, columns, strict=True)]
    cached = _UNNEST_INSERTS[key] = text(sql).bindparams(*binds)
    return cached


# --- Statements sent to the driver directly ---------------------------------------------------------------
#
# SQLite: aiosqlite runs each call on the SQLite connection in its own thread; SQLAlchemy's adapter makes four
# such calls per statement (open a cursor, execute, fetch, close). Each is a hand-off from the event loop to
# that thread and back: ~50 µs of CPU, and on a busy machine a wait until each side is scheduled again. A
# routing pass ran three statements, twelve hand-offs for well under a millisecond of SQLite work, and the
# waits were what made its slow passes slow. ``fetch_all`` and ``update_rows`` make one hand-off per statement.
#
# PostgreSQL: SQLAlchemy's execution of a statement (its cache key, an execution context, the adapter's cursor,
# the result's rows) is client CPU on every statement: routing's lock statement took 0.22 ms of it through
# SQLAlchemy and 0.10-0.15 ms sent directly, and a deciding routing pass runs four statements. Once the
# transaction has begun (SQLAlchemy's adapter sends BEGIN just before its first statement, so that one still
# goes through it), ``fetch_all``, ``fetch_records`` and ``execute`` send the statement, compiled once, to the
# asyncpg connection underneath, which prepares it once per connection. Errors are translated as SQLAlchemy's
# adapter translates them.


class _DriverQuery:
    """A query compiled once for a dialect (SQLite, or PostgreSQL through asyncpg), with the type processors
    SQLAlchemy would apply to its parameters and its results."""

    __slots__ = ("compiled", "dialect", "expanding", "keys", "metadata", "processors", "record", "shapes", "statement")

    def __init__(self, statement: Any, dialect: Any) -> None:
        # Both kept so that the cache key (their ids) stays theirs; the processors depend on the engine's
        # dialect (its JSON deserializer).
        self.statement = statement
        self.dialect = dialect
        self.compiled = statement.compile(dialect=dialect)
        # A select's columns, or what an INSERT/UPDATE ... RETURNING returns (none for a ``text()``).
        exported = getattr(statement, "exported_columns", None)
        columns = list(exported) if exported is not None else []
        self.keys = list(exported.keys()) if exported is not None else []
        self.metadata = SimpleResultMetaData(self.keys)  # the rows' keys, shared by every result of the query
        self.record: Any = None  # the named tuple type of fetch_records, made on its first use (~0.15 ms)
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
        self.processors: list[tuple[int, Callable[[Any], Any]]] = [
            (i, p) for i, p in enumerate(processors) if p is not None
        ]
        # SQLAlchemy renders an ``expanding`` parameter (``IN``) for each number of values, by regular expression,
        # on every execution: here once per number of values of each, then kept (see ``sql_and_values``).
        self.expanding = sorted(b.key for b in self.compiled.binds.values() if b.expanding)
        self.shapes: dict[tuple[int, ...], tuple[str, list[_Position]]] = {}

    def sql_and_values(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL text and the driver's positional values for these parameters."""
        shape = tuple(len(params[n]) if n in params else -1 for n in self.expanding)
        known = self.shapes.get(shape)
        if known is None:
            state = self.compiled.construct_expanded_state(dict(params))
            positions = _positions(state, params)
            values = [_bound(state, name) for name in state.positiontup or ()]
            if positions is not None and len(self.shapes) < _MAX_SHAPES:
                self.shapes[shape] = (state.statement, positions)
            return state.statement, values
        sql, positions = known
        out = []
        for name, index, constant, process in positions:
            if name is None:
                out.append(constant)
                continue
            value = params[name] if index is None else params[name][index]
            out.append(process(value) if process is not None else value)
        return sql, out


# One positional value of a query: (parameter, index in its list of values or None, the value when it is a
# constant of the statement (parameter None), the bind processor to apply).
_Position = tuple[str | None, int | None, Any, Callable[[Any], Any] | None]
_MAX_SHAPES = 64


def _bound(state: Any, name: str) -> Any:
    """A positional value of an expanded state, through its bind processor."""
    value = state.parameters[name]
    process = state.processors.get(name)
    return process(value) if process is not None else value


def _positions(state: Any, params: Mapping[str, Any]) -> list[_Position] | None:
    """Where each positional value of ``state`` comes from, or None when that cannot be said plainly (then the
    query is expanded by SQLAlchemy on every execution)."""
    origin: dict[str, tuple[str, int]] = {}
    for name, expanded in state.parameter_expansion.items():
        value = params.get(name)
        if name in params and (not isinstance(value, (list, tuple)) or len(expanded) != len(value)):
            return None  # e.g. tuples expanded into several values each
        for i, e in enumerate(expanded):
            origin[e] = (name, i)
    positions: list[_Position] = []
    for name in state.positiontup or ():
        source, index = origin.get(name, (name, None))
        if source in params:
            positions.append((source, index, None, state.processors.get(name)))
        else:
            positions.append((None, None, _bound(state, name), None))
    return positions


_DRIVER_QUERIES: dict[tuple[int, int], _DriverQuery] = {}
_MAX_DRIVER_QUERIES = 256


def _driver_query(statement: Any, dialect: Any) -> _DriverQuery:
    key = (id(statement), id(dialect))
    query = _DRIVER_QUERIES.get(key)
    if query is None or query.statement is not statement or query.dialect is not dialect:
        if len(_DRIVER_QUERIES) >= _MAX_DRIVER_QUERIES:  # statements built per call, engines: do not keep all
            _DRIVER_QUERIES.clear()
        query = _DRIVER_QUERIES[key] = _DriverQuery(statement, dialect)
    return query


async def _sqlite_run(conn: AsyncConnection, sql: str, values: Sequence[Any], *, each: bool = False) -> Any:
    """Run ``sql`` on the aiosqlite connection under ``conn`` (same connection, same transaction) in one trip
    to its thread: its rows, or with ``each`` (an INSERT, ``values`` a list of rows) run for every row and the
    last row id (see ``_insert_each``). Errors are raised as SQLAlchemy raises them from ``conn.execute``
    (``IntegrityError``, ``OperationalError``...), and SQLAlchemy's statement events do not see these
    statements."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    try:
        if each:
            return await driver._execute(_insert_each, driver._conn, sql, values)
        return await driver.execute_fetchall(sql, values)
    except sqlite3.Error as error:
        raise DBAPIError.instance(sql, list(values), error, sqlite3.Error, dialect=conn.dialect) from error


async def _postgres_driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, or None while its transaction has not begun: SQLAlchemy's adapter
    sends BEGIN just before its first statement, so that statement goes through SQLAlchemy. A connection in
    autocommit (``Database.connect``) begins none."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:
        return None
    if driver.is_in_transaction() or getattr(raw.dbapi_connection, "isolation_level", None) == "autocommit":
        return driver
    return None


async def _postgres_run(conn: AsyncConnection, driver: Any, sql: str, values: Sequence[Any]) -> Any:
    """Run ``sql`` on ``driver`` (``conn``'s asyncpg connection, in its transaction): its rows. asyncpg
    prepares it once per connection (its statement cache). Errors are raised as SQLAlchemy raises them from
    ``conn.execute`` (``IntegrityError``, ``OperationalError``...); a lost connection is invalidated, as
    SQLAlchemy does. SQLAlchemy's statement events do not see these statements."""
    try:
        return await driver.fetch(sql, *values)
    except Exception as error:
        adapter: Any = (await conn.get_raw_connection()).dbapi_connection
        dbapi: Any = conn.dialect.loaded_dbapi
        try:
            # Always raises: the adapter's DB-API exception for a database error, any other error as it was.
            adapter._handle_exception(error)
        except dbapi.Error as translated:
            lost = conn.dialect.is_disconnect(translated, adapter, None)
            wrapped = DBAPIError.instance(
                sql, list(values), translated, dbapi.Error, dialect=conn.dialect, connection_invalidated=lost
            )
            if lost:
                await conn.invalidate(translated)
            raise wrapped from error
        raise


async def _fetch(
    conn: AsyncConnection, statement: Any, params: Mapping[str, Any] | None, *, want_rows: bool = True
) -> tuple[_DriverQuery | None, Sequence[Any]]:
    """A kept statement's rows, typed as SQLAlchemy types them, sent to the driver directly (see above), with the
    compiled query; or, when SQLAlchemy had to run it (PostgreSQL before its transaction began), its rows and
    None (with ``want_rows=False``, no rows: the statement may return none)."""
    dialect = conn.dialect
    driver = await _postgres_driver(conn) if dialect.name == "postgresql" else None
    if driver is None and dialect.name != "sqlite":
        result = await conn.execute(statement, dict(params or {}))
        return None, result.all() if want_rows else ()
    query = _driver_query(statement, dialect)
    sql, values = query.sql_and_values(params or {})
    if driver is None:
        raw = await _sqlite_run(conn, sql, values)
    else:
        raw = await _postgres_run(conn, driver, sql, values)
    if not want_rows or not query.processors:
        return query, raw
    typed = []
    for r in raw:
        r = list(r)
        for i, process in query.processors:
            r[i] = process(r[i])
        typed.append(r)
    return query, typed


async def fetch_all(conn: AsyncConnection, statement: Any, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
    """The rows of a query (a ``select``, a union, or a statement with ``RETURNING``; built once and kept) as
    ``conn.execute().all()`` returns them: the same values, typed by the same processors, sent to the driver
    directly (see above); ``expanding`` parameters are expanded as SQLAlchemy does."""
    query, rows = await _fetch(conn, statement, params)
    if query is None:
        return rows
    return IteratorResult(query.metadata, iter(rows)).all()


async def fetch_records(conn: AsyncConnection, statement: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
    """``fetch_all``'s rows as named tuples (``row.id``, ``row[0]``, ``row._asdict()``; no ``_mapping``): for
    hot loops that read many columns of many rows. Reading a column by name from SQLAlchemy's ``Row`` costs
    ~0.5 µs, ten times a named tuple's; a routing pass reads ~20 columns of up to ~45 claimed rows."""
    query, rows = await _fetch(conn, statement, params)
    query = query or _driver_query(statement, conn.dialect)
    if query.record is None:
        query.record = namedtuple("Record", query.keys, rename=True)  # type: ignore[misc]
    make = query.record._make
    return [make(r) for r in rows]


async def execute(conn: AsyncConnection, statement: Any, params: Mapping[str, Any] | None = None) -> None:
    """Run a statement built once and kept, for its effect (rows it returns are dropped), sent to the driver
    directly as ``fetch_all`` sends queries."""
    await _fetch(conn, statement, params, want_rows=False)


async def update_rows(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], *, key: str = "id", where: Any = None
) -> None:
    """Update several rows, each with its own values: ``rows`` hold ``key`` and the same columns to set.
    ``where`` adds a condition every updated row must also meet. Its values are written into the SQL text, so
    they must be plain values such as numbers and strings; pass a condition built once (a module constant):
    the statement is built once per table, columns and condition.

    On PostgreSQL one ``UPDATE ... FROM unnest(...)``, one SQL text for any number of rows; on SQLite one
    ``UPDATE ... FROM (VALUES ...)`` of driver tuples (see ``_driver_rows``), sent in one trip to the driver's
    thread (see ``fetch_all``). Routing writes its decisions this way: one statement
    per row was a fifth of PostgreSQL's time during ingest, and building the statement on every pass a fifth
    of a routing sweep's CPU.
    """
    if not rows:
        return
    columns = tuple(c for c in rows[0] if c != key)
    statement = _update_statement(conn.dialect, table, key, columns, where)
    if conn.dialect.name == "sqlite":
        values = _driver_rows(conn.dialect, table, (key, *columns), rows)
        per_statement = _SQLITE_MAX_VARIABLES // (len(columns) + 1)
        for start in range(0, len(values), per_statement):
            chunk = values[start : start + per_statement]
            sql = statement.replace("{values}", ", ".join([statement.row] * len(chunk)))
            await _sqlite_run(conn, sql, [v for row in chunk for v in row])
        return
    names = (key, *columns)
    await execute(conn, statement, {f"u{i}": values for i, values in enumerate(column_arrays(table, names, rows))})


class _SQLiteUpdate(str):
    """``update_rows``' SQL for SQLite, with ``{values}`` where the VALUES rows go, and one row's placeholders."""

    row: str


# SQLite's limit on the parameters of one statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32).
_SQLITE_MAX_VARIABLES = 32766
# (dialect, table, key, columns, id of the condition) -> (the condition, kept so its id stays its own; statement)
_UPDATES: dict[tuple[str, str, str, tuple[str, ...], int], tuple[Any, Any]] = {}
_MAX_UPDATES = 256


def _update_statement(dialect: Any, table: Any, key: str, columns: tuple[str, ...], where: Any) -> Any:
    """``update_rows``' statement: SQL text for SQLite's driver, a ``text()`` with typed array parameters for
    PostgreSQL."""
    cache_key = (dialect.name, table.name, key, columns, id(where))
    cached = _UPDATES.get(cache_key)
    if cached is not None and cached[0] is where:
        return cached[1]
    quote = dialect.identifier_preparer.quote
    condition = ""
    if where is not None:
        condition = f" AND ({where.compile(dialect=dialect, compile_kwargs={'literal_binds': True})})"
    name = quote(table.name)
    statement: Any
    if dialect.name == "sqlite":
        # UPDATE ... FROM a VALUES list (key first): one statement, one trip to the driver's thread, for any
        # number of rows (see fetch_all). VALUES columns are named column1, column2, ...
        sets = ", ".join(f"{quote(c)} = u.column{i}" for i, c in enumerate(columns, start=2))
        statement = _SQLiteUpdate(
            f"UPDATE {name} SET {sets} FROM (VALUES {{values}}) AS u WHERE {name}.{quote(key)} = u.column1{condition}"
        )
        statement.row = "(" + ", ".join("?" * (len(columns) + 1)) + ")"
    else:
        names = (key, *columns)
        # JSON travels as text (see column_arrays), cast back in SQL.
        sets = ", ".join(
            f"{quote(c)} = u.{quote(c)}" + ("::jsonb" if isinstance(table.c[c].type, JSON) else "") for c in columns
        )
        sql = (
            f"UPDATE {name} SET {sets} FROM unnest({', '.join(f':u{i}' for i in range(len(names)))}) "
            f"AS u({', '.join(quote(n) for n in names)}) WHERE {name}.{quote(key)} = u.{quote(key)}{condition}"
        )
        binds = [bindparam(f"u{i}", type_=array_type(table.c[n].type)) for i, n in enumerate(names)]
        statement = text(sql).bindparams(*binds)
    if len(_UPDATES) >= _MAX_UPDATES:  # conditions built per call: do not keep them all
        _UPDATES.clear()
    _UPDATES[cache_key] = (where, statement)
    return statement


def one_of(conn: AsyncConnection, column: Any, values: Any) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:array)``, one SQL text whatever the number of
    values, so the statement is prepared once per connection instead of for every new list length."""
    values = list(values)
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=ARRAY(column.type)))
    return column.in_(values)


def one_of_param(dialect: str, column: Any, name: str) -> ColumnElement[bool]:
    """``one_of`` with a named parameter instead of values, for a statement built once and kept: bind any list
    as ``name``. A kept statement saves building it and computing its cache key on every execution."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def one_of_pairs(dialect: str, first: Any, second: Any, names: tuple[str, str]) -> tuple[Any, ColumnElement[bool]]:
    """The rows whose (``first``, ``second``) is one of the pairs bound as two parallel lists named ``names``,
    for a statement built once and kept: ``select(...).select_from(source).where(condition)`` with
    ``source, condition = one_of_pairs(...)``. Both columns must belong to one table, with a unique index on
    (first, second).

    PostgreSQL: the table joined with the pairs (``unnest``), one index lookup per pair. Asked as ``first =
    ANY(...) AND second = ANY(...)``, its planner, when its statistics do not yet say that a value of ``first``
    (one channel, one identity kind) covers most rows, as in a table that grew since its last ANALYZE, scanned
    every row of that value through a bitmap and filtered them: 8 ms at 40,000 rows, against 0.6. SQLite: both
    lists (a superset: any first value with any second), which it answers from the unique index; callers look
    the rows up by their exact pair."""
    table = first.table
    if dialect == "postgresql":
        wanted = (
            func.unnest(bindparam(names[0], type_=ARRAY(first.type)), bindparam(names[1], type_=ARRAY(second.type)))
            .table_valued("first", "second")
            .render_derived(name="wanted")
        )
        joined = table.join(wanted, and_(first == wanted.c.first, second == wanted.c.second))
        return joined, true()
    return table, and_(one_of_param(dialect, first, names[0]), one_of_param(dialect, second, names[1]))

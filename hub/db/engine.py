"""The engines of one process and its ``Database``: SQLite (WAL, durable commits, one shared writer) by default,
PostgreSQL (asyncpg, readers in autocommit, idle connections tested before use) in production; and what a
write transaction uses beside its statements: key locks, unique violations as errors."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.dml import Insert

from hub.config import Settings, get_settings
from hub.db.connections import connected
from hub.db.fast import FAST_PATHS_OPTION
from hub.db.sqlite_writer import WRITE_OPTION, SharedWriter, connect_on_loop_thread, never_busy_wait, settled
from hub.db.types import json_dumps
from hub.folding import register_sqlite


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
    register_sqlite(dbapi_connection)  # ``switchboard_fold``, as PostgreSQL has it from a migration


class RollbackOnClose(sqlite3.Connection):
    """SQLite connections that end their transaction before they close (``sqlite3.connect``'s ``factory``).

    Closing a connection in the middle of a transaction while one of its statements is still unfinished (a
    cursor that something still refers to: a query's result not read to the end, a traceback's frame) does
    not close it: SQLite keeps it as a "zombie" until the last statement is finalized, with its transaction
    and so with the database's write lock. The statement goes when the garbage collector reaches what holds
    it, which may be minutes later: CI's suite once found the lock held past 40 s by a connection aiosqlite had
    closed long before, with every writer of the process (and the CLI, and other processes) waiting. A
    ROLLBACK first ends the transaction whatever statements are left (SQLite aborts them)."""

    def close(self) -> None:
        if self.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # closing anyway: SQLite rolls back when it can
                self.execute("ROLLBACK")
        super().close()


def _sqlite_begin(conn: Any) -> None:
    # A writing transaction takes SQLite's write lock up front (BEGIN IMMEDIATE): two deferred
    # transactions that both upgrade from reading to writing would otherwise fail with SQLITE_BUSY
    # instead of waiting, and holding the lock makes the next keys ours (see insert_returning_ids).
    immediate = conn.get_execution_options().get(WRITE_OPTION)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """PostgreSQL's connections per process (``SWITCHBOARD_DATABASE_POOL_*``): ``size`` kept open, ``overflow``
    more in a burst, and how long a checkout waits for one before SQLAlchemy's ``TimeoutError`` (a 503)."""

    size: int = 10
    overflow: int = 20
    timeout: float = 30.0


def create_engine(
    url: str, *, writer: bool = False, fast_paths: bool = True, pool: PoolLimits = PoolLimits()
) -> AsyncEngine:
    """An async engine for ``url``, with SQLite tuned for one writer and durable commits. On SQLite, ``writer``
    makes the engine of ``Database.begin``: one connection. With ``fast_paths`` the statements of the writer
    and of the readers run on the event loop's thread (``hub.db.sqlite_writer.LoopThreadConnection``): a
    read in WAL mode waits for no lock, and each trip to aiosqlite's thread (its BEGIN, each statement, the
    ROLLBACK as it closes) waited a turn of the busy loop to come back. ``fast_paths`` also lets
    ``hub.db.fast`` send kept statements to the driver directly. ``pool`` bounds PostgreSQL's connections."""
    parsed = make_url(url)
    options = {FAST_PATHS_OPTION: fast_paths}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args: dict[str, Any] = {"timeout": 30, "factory": RollbackOnClose}
        if fast_paths:  # the writer's and the readers' statements run on the loop's thread (see below)
            connect_args = {"timeout": 0, "factory": RollbackOnClose, "async_creator_fn": connect_on_loop_thread}
        sqlite_pool: dict[str, Any] = {"pool_size": 1, "max_overflow": 0} if writer else {}
        engine = create_async_engine(
            url,
            connect_args=connect_args,
            json_serializer=json_dumps,
            json_deserializer=orjson.loads,
            execution_options=options,
            **sqlite_pool,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        if fast_paths:
            event.listen(engine.sync_engine, "connect", never_busy_wait)  # after _sqlite_connect's busy timeout
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        # Statements are prepared once per connection (see insert_rows and one_of) but planned for each
        # execution's values: a generic plan cannot know how many values an ANY(array) holds, and PostgreSQL
        # picked sequential scans of the contacts for ingest's identity lookup once it switched to one.
        connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}},
        pool_size=pool.size,
        max_overflow=pool.overflow,
        pool_timeout=pool.timeout,
        json_serializer=json_dumps,
        json_deserializer=orjson.loads,
        execution_options=options,
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


class Database:
    """The engines of one process: the readers' (``connect``) and the writer's (``begin``), which on SQLite is
    an engine of its own, its one connection shared by the writers (``hub.db.sqlite_writer.SharedWriter``).
    Statements are SQLAlchemy Core on these connections; the hot ones go through ``hub.db.fast`` and the
    set-based helpers of ``hub.db.bulk``.

    ``fast_paths`` turns the driver fast paths on or off (``SWITCHBOARD_FAST_PATHS``, see ``hub.db.fast``);
    by default the process's setting."""

    def __init__(self, url: str, *, fast_paths: bool | None = None, pool: PoolLimits | None = None) -> None:
        self.url = url
        self.fast_paths = get_settings().fast_paths if fast_paths is None else fast_paths
        self.engine = create_engine(url, fast_paths=self.fast_paths, pool=pool or PoolLimits())
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # SQLite's writer has an engine of its own (see hub.db.sqlite_writer); readers use ``engine``.
        self._writer = self.engine
        if self.is_sqlite:
            self._writer = create_engine(url, writer=True, fast_paths=self.fast_paths)
        self._shared = SharedWriter(self._writer) if self.is_sqlite else None
        # PostgreSQL's readers run each statement on its own (autocommit): see ``connect``.
        self._reader = self.engine if self.is_sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    def of(cls, settings: Settings) -> Database:
        """The database ``settings`` name, with their fast paths and connection pool."""
        pool = PoolLimits(
            settings.database_pool_size, settings.database_pool_overflow, settings.database_pool_timeout_seconds
        )
        return cls(settings.database_url, fast_paths=settings.fast_paths, pool=pool)

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
        ``SharedWriter``: the block is a savepoint of a transaction it may share with the writers queued behind
        it, and it ends once that transaction has committed)."""
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
            await settled(self._shared.committing)
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

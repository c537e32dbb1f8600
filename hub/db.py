"""The database: one async SQLAlchemy engine per process, SQLite (WAL) by default, PostgreSQL in production.

``Database`` owns the engine and the session factory. Hot paths (ingest, the event log) use Core statements
on ``Database.engine``; everything else uses ``AsyncSession`` through ``Database.session()``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, DateTime, Integer, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
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


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``, with SQLite tuned for one writer and durable commits."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, json_serializer=json_dumps, json_deserializer=orjson.loads
        )
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        json_serializer=json_dumps,
        json_deserializer=orjson.loads,
    )


def json_dumps(value: Any) -> str:
    """JSON for stored columns and event frames: orjson, several times faster than the standard library on
    the event payloads every change writes. Keys that are not strings (an int id) become strings, as with
    the standard library."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite else None
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits."""
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside a writing transaction that commits when the block ends."""
        # SQLite has one writer: writers of this process take turns on an asyncio lock rather than in SQLite's
        # busy handler, which sleeps in steps of up to 100 ms while the lock is held.
        turn = self._write_lock if self._write_lock is not None else contextlib.nullcontext()
        async with turn, self.engine.connect() as conn:
            await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                yield conn

    def insert_ignore(self, table: Any) -> Insert:
        """``INSERT ... ON CONFLICT DO NOTHING`` in this database's dialect."""
        if self.is_sqlite:
            return sqlite.insert(table).on_conflict_do_nothing()
        return postgresql.insert(table).on_conflict_do_nothing()

    async def dispose(self) -> None:
        await self.engine.dispose()


async def insert_returning_ids(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], pk: str = "id"
) -> list[int]:
    """Insert ``rows`` in one batch and return their generated keys, in the order given.

    PostgreSQL does this with an ordered, batched ``INSERT ... RETURNING``. SQLite cannot order a batched
    RETURNING (SQLAlchemy falls back to one statement per row), so there the keys are assigned here:
    the caller's transaction holds SQLite's write lock (``Database.begin``), so the next keys are ours.
    """
    if not rows:
        return []
    if conn.dialect.name != "sqlite":
        result = await conn.execute(table.insert().returning(table.c[pk], sort_by_parameter_order=True), rows)
        return [int(r[0]) for r in result]
    col = table.c[pk]
    start = (
        await conn.execute(
            select(
                func.max(
                    func.coalesce(select(func.max(col)).scalar_subquery(), 0),
                    func.coalesce(
                        select(text("seq"))
                        .select_from(text("sqlite_sequence"))
                        .where(text("name = :t"))
                        .scalar_subquery(),
                        0,
                    ),
                )
            ),
            {"t": table.name},
        )
    ).scalar_one()
    ids = list(range(int(start) + 1, int(start) + 1 + len(rows)))
    await conn.execute(table.insert(), [{**row, pk: key} for row, key in zip(rows, ids, strict=True)])
    return ids

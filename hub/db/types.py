"""Column types every table uses (timezone-aware UTC datetimes, JSON, 64-bit keys), the clock, and the JSON
encoder of stored columns and event frames."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects import postgresql
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


def json_dumps(value: Any) -> str:
    """JSON for stored columns and event frames: orjson, several times faster than the standard library on
    the event payloads every change writes. Keys that are not strings (an int id) become strings, as with
    the standard library."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()

"""The database: one async SQLAlchemy engine per process, SQLite (WAL) by default, PostgreSQL in production.

Statements are SQLAlchemy Core, on connections from ``Database.connect`` (reads) and ``Database.begin`` (a
write transaction). The modules, each one concern:

- ``types``: the column types (``UTCDateTime``, ``JSONType``, ``BigId``), ``utcnow`` and ``json_dumps``;
- ``engine``: ``create_engine`` and ``Database``, with the transaction helpers ``lock_keys`` and ``taken_as``;
- ``connections``: ``connected``, closing a connection in the caller's task when that does not wait;
- ``sqlite_writer``: SQLite's one writer per process, shared by the writers queued behind one another (the
  layer under ``hub.group_commit`` on SQLite);
- ``bulk``: set-based statements (many rows in one statement, ``one_of`` with one SQL text for any number of
  values);
- ``fast``: the driver fast paths (kept statements sent to the driver directly, ``KeptStatements`` to build
  a module's once per dialect), behind ``SWITCHBOARD_FAST_PATHS``.

Import from ``hub.db``: the names below are its public API.
"""

from hub.db.bulk import (
    array_type,
    column_arrays,
    insert_returning_ids,
    insert_returning_ids_by,
    insert_rows,
    one_of,
    one_of_pairs,
    one_of_param,
    update_rows,
)
from hub.db.connections import connected
from hub.db.engine import PING_AFTER_IDLE_SECONDS, Database, PoolLimits, create_engine, lock_keys, taken_as
from hub.db.fast import KeptStatements, execute, fetch_all, fetch_records
from hub.db.types import BigId, JSONType, UTCDateTime, json_dumps, utcnow

__all__ = [
    "PING_AFTER_IDLE_SECONDS",
    "BigId",
    "Database",
    "JSONType",
    "KeptStatements",
    "PoolLimits",
    "UTCDateTime",
    "array_type",
    "column_arrays",
    "connected",
    "create_engine",
    "execute",
    "fetch_all",
    "fetch_records",
    "insert_returning_ids",
    "insert_returning_ids_by",
    "insert_rows",
    "json_dumps",
    "lock_keys",
    "one_of",
    "one_of_pairs",
    "one_of_param",
    "taken_as",
    "update_rows",
    "utcnow",
]

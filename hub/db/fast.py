"""The driver fast paths: hot statements, compiled once, sent to the database driver directly instead of
through SQLAlchemy's execution. Behind one setting, ``SWITCHBOARD_FAST_PATHS`` (default on), because they rest
on what SQLAlchemy does not promise:

- ``DriverQuery`` keeps a statement's compiled SQL and its type processors, and expands its ``IN`` parameters
  itself: a re-implementation, for the driver, of what SQLAlchemy's compiled-statement cache does for
  ``conn.execute``;
- on PostgreSQL, an error from asyncpg is translated into SQLAlchemy's exceptions by the private
  ``_handle_exception`` of SQLAlchemy's asyncpg adapter, and ``DBAPIError.instance`` wraps it as
  ``conn.execute`` would.

With the fast paths off, ``fetch_all``, ``fetch_records``, ``execute``, ``run_sqlite`` and
``sqlite_insert_each`` run their statement through SQLAlchemy's public API (``conn.execute``,
``conn.exec_driver_sql``): the same rows and the same exceptions, slower. (The other fast path, SQLite's
writer connection on the event loop's thread, is in ``hub.db.sqlite_writer``; the websocket protocol's in
``hub.websocket``.)

A/B (bench.ingest on a shared 2-core machine under load 10-16; CPU per message in the ingesting process):
on SQLite, in rounds of 20 chat messages (``--shape chat --batch 20``), 117-144 µs with these statements sent
to the driver, 178-183 µs without (SQLite's writer fast path on in both), 199-211 µs with every fast path off;
with saturated batches of ~250 (generic shape) no difference (221-249 against 214-233). On PostgreSQL ingest
showed no difference beyond that machine's noise (175-248 µs against 164-213 with every fast path off); the
gain there is routing's: bench.routing's routing decision took p50 1.7-2.3 ms with every fast path on, 2.5-4.5
ms with them off (SQLite: 0.61-0.62 against 1.24-1.55 ms).
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import IteratorResult
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

# The execution option, set on every engine of a ``Database``, that turns the fast paths on.
FAST_PATHS_OPTION = "switchboard_fast_paths"


def fast_paths(conn: AsyncConnection) -> bool:
    """Whether ``conn``'s engine sends kept statements to the driver directly."""
    sync = conn.sync_connection
    return sync is not None and bool(sync.get_execution_options().get(FAST_PATHS_OPTION))


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

    __slots__ = (
        "binds",
        "compiled",
        "dialect",
        "expanding",
        "keys",
        "metadata",
        "processors",
        "record",
        "shapes",
        "statement",
    )

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
        # Every parameter's bind processor (a datetime's text on SQLite, JSON's serializer), as SQLAlchemy applies
        # them: an expanded state's own processors cover only the values of its expanded parameters. (A tuple's
        # processors, per element, are an expanded state's: such a parameter is expanded, never bound as is.)
        self.binds: dict[str, Callable[[Any], Any]] = {
            name: p for name, p in self.compiled._bind_processors.items() if callable(p)
        }
        self.shapes: dict[tuple[int, ...], tuple[str, list[_Position]]] = {}

    def sql_and_values(self, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """The SQL text and the driver's positional values for these parameters."""
        shape = tuple(len(params[n]) if n in params else -1 for n in self.expanding)
        known = self.shapes.get(shape)
        if known is None:
            state = self.compiled.construct_expanded_state(dict(params))
            processors = {**self.binds, **state.processors} if state.processors else self.binds
            positions = _positions(state, params, processors)
            values = [_bound(state, processors, name) for name in state.positiontup or ()]
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


def _bound(state: Any, processors: Mapping[str, Callable[[Any], Any]], name: str) -> Any:
    """A positional value of an expanded state, through its bind processor (of ``processors``: the statement's,
    with the expanded state's for the values of its expanded parameters)."""
    value = state.parameters[name]
    process = processors.get(name)
    return process(value) if process is not None else value


def _positions(
    state: Any, params: Mapping[str, Any], processors: Mapping[str, Callable[[Any], Any]]
) -> list[_Position] | None:
    """Where each positional value of ``state`` comes from, with its bind processor (of ``processors``, as
    ``_bound``), or None when that cannot be said plainly (then the query is expanded by SQLAlchemy on every
    execution)."""
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
            positions.append((source, index, None, processors.get(name)))
        else:
            positions.append((None, None, _bound(state, processors, name), None))
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


async def _sqlite_fetch(conn: AsyncConnection, sql: str, values: Sequence[Any]) -> Any:
    """Run ``sql`` on the aiosqlite connection under ``conn`` (same connection, same transaction) in one call
    of the driver (one trip to its thread): its rows. Errors are raised as SQLAlchemy raises them from
    ``conn.execute`` (``IntegrityError``, ``OperationalError``...), and SQLAlchemy's statement events do not see
    these statements."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    try:
        return await driver.execute_fetchall(sql, values)
    except sqlite3.Error as error:
        raise DBAPIError.instance(sql, list(values), error, sqlite3.Error, dialect=conn.dialect) from error


async def run_sqlite(conn: AsyncConnection, sql: str, values: Sequence[Any]) -> None:
    """SQLite: run ``sql`` (positional ``?`` parameters) for its effect; with the fast paths on, in one call of
    the driver (SQLAlchemy's cursor makes four, each a trip to aiosqlite's thread)."""
    if fast_paths(conn):
        await _sqlite_fetch(conn, sql, values)
    else:
        await conn.exec_driver_sql(sql, tuple(values))


async def sqlite_insert_each(conn: AsyncConnection, sql: str, rows: list[tuple[Any, ...]]) -> int | None:
    """SQLite: the single-row INSERT ``sql`` run for every row of ``rows`` (``executemany``), then the last row
    id. Unlike one statement, this is not all or nothing: rows before one that fails stay in the transaction,
    and the caller's transaction (or shared-writer turn) rolls back. Nor is any row run twice:
    ``LoopThreadConnection`` runs a call again only when SQLite refused it as busy, and a writer's transaction
    holds the write lock from its BEGIN IMMEDIATE (``Database.begin``), so no row of it is refused so."""
    if fast_paths(conn):
        driver: Any = (await conn.get_raw_connection()).driver_connection
        try:
            await driver.executemany(sql, rows)
            last = await driver.execute_fetchall("SELECT last_insert_rowid()")
        except sqlite3.Error as error:
            raise DBAPIError.instance(sql, rows, error, sqlite3.Error, dialect=conn.dialect) from error
    else:
        await conn.exec_driver_sql(sql, rows)
        last = (await conn.exec_driver_sql("SELECT last_insert_rowid()")).all()
    return int(last[0][0]) if last and last[0][0] else None


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
    fast = fast_paths(conn)
    driver = await _postgres_driver(conn) if fast and dialect.name == "postgresql" else None
    if not fast or (driver is None and dialect.name != "sqlite"):
        result = await conn.execute(statement, dict(params or {}))
        return None, result.all() if want_rows else ()
    query = _driver_query(statement, dialect)
    sql, values = query.sql_and_values(params or {})
    if driver is None:
        raw = await _sqlite_fetch(conn, sql, values)
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
    hot loops that read many columns of many rows (with the fast paths off, SQLAlchemy's rows). Reading a
    column by name from SQLAlchemy's ``Row`` costs ~0.5 µs, ten times a named tuple's; a routing pass reads ~20
    columns of up to ~45 claimed rows."""
    query, rows = await _fetch(conn, statement, params)
    if query is None:
        if not fast_paths(conn):
            return list(rows)  # SQLAlchemy's rows: the same attributes, items and ``_asdict()``
        query = _driver_query(statement, conn.dialect)
    if query.record is None:
        query.record = namedtuple("Record", query.keys, rename=True)  # type: ignore[misc]
    make = query.record._make
    return [make(r) for r in rows]


async def execute(conn: AsyncConnection, statement: Any, params: Mapping[str, Any] | None = None) -> None:
    """Run a statement built once and kept, for its effect (rows it returns are dropped), sent to the driver
    directly as ``fetch_all`` sends queries."""
    await _fetch(conn, statement, params, want_rows=False)


class KeptStatements:
    """A module's hot statements by name, each built once per dialect (``build(dialect name, statement name)``)
    and kept, run with ``fetch_all`` or ``execute``: neither SQLAlchemy's construction of a statement nor its
    compiled cache's lookup (its cache key, a millisecond or more for an UPDATE ... RETURNING of a wide table) is
    paid per call. The values a call differs in are bound parameters."""

    __slots__ = ("_build", "_kept")

    def __init__(self, build: Callable[[str, str], Any]) -> None:
        self._build = build
        self._kept: dict[tuple[str, str], Any] = {}

    def get(self, conn: AsyncConnection, name: str) -> Any:
        """The statement ``name`` for ``conn``'s dialect, built on its first use."""
        key = (conn.dialect.name, name)
        statement = self._kept.get(key)
        if statement is None:
            statement = self._kept[key] = self._build(conn.dialect.name, name)
        return statement

    async def fetch_all(self, conn: AsyncConnection, name: str, params: Mapping[str, Any]) -> Sequence[Any]:
        """The rows of the statement ``name`` for these parameters (``fetch_all``)."""
        return await fetch_all(conn, self.get(conn, name), params)

    async def execute(self, conn: AsyncConnection, name: str, params: Mapping[str, Any]) -> None:
        """Run the statement ``name`` for these parameters, for its effect (``execute``)."""
        await execute(conn, self.get(conn, name), params)

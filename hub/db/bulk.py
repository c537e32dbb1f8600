"""Set-based statements: many rows in one statement (insert, insert returning their keys, update each with
its own values) and membership tests (``one_of``) with one SQL text whatever the number of values, so
PostgreSQL prepares each statement once per connection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import JSON, ColumnElement, DateTime, Text, and_, any_, bindparam, func, text, true
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db.fast import execute, run_sqlite, sqlite_insert_each
from hub.db.types import UTCDateTime, json_dumps


async def insert_returning_ids(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], pk: str = "id"
) -> list[int]:
    """Insert ``rows`` in one batch and return their generated keys, in the order given.

    PostgreSQL: the keys are taken from the key's sequence first, so they are known in order whatever order
    the database inserts in, then one ``insert_rows``. SQLite cannot order a batched RETURNING either
    (SQLAlchemy falls back to one statement per row): one single-row ``INSERT`` run for every row
    (``executemany``), whose rows SQLite numbers one after the other in the order of the list (each gets the
    largest key so far plus one; the caller's transaction holds SQLite's write lock, ``Database.begin``, so
    nobody else inserts in between), and the last row id gives them all (``hub.db.fast.sqlite_insert_each``).
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
    last = await sqlite_insert_each(conn, sql, _driver_rows(conn.dialect, table, columns, rows))
    if last is None:
        raise RuntimeError(f"SQLite gave no row id for an insert into {table.name}")
    return list(range(last - len(rows) + 1, last + 1))


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
    """PostgreSQL: one array per column of ``rows``, to bind for ``unnest`` (as ``array_type`` of the column).
    JSON travels as text, cast in SQL: SQLAlchemy would read a JSON list as a further array dimension. None is
    stored as JSON null, as SQLAlchemy's JSON type does."""
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
    params = {f"c{i}": values for i, values in enumerate(column_arrays(table, columns, rows))}
    result = await conn.execute(statement, params)
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


async def update_rows(
    conn: AsyncConnection, table: Any, rows: list[dict[str, Any]], *, key: str = "id", where: Any = None
) -> None:
    """Update several rows, each with its own values: ``rows`` hold ``key`` and the same columns to set.
    ``where`` adds a condition every updated row must also meet. Its values are written into the SQL text, so
    they must be plain values such as numbers and strings; pass a condition built once (a module constant):
    the statement is built once per table, columns and condition.

    On PostgreSQL one ``UPDATE ... FROM unnest(...)``, one SQL text for any number of rows; on SQLite one
    ``UPDATE ... FROM (VALUES ...)`` of driver tuples (see ``_driver_rows``), with the fast paths on sent in one
    trip to the driver's thread (``hub.db.fast.run_sqlite``). Routing writes its decisions this way: one statement
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
            await run_sqlite(conn, sql, [v for row in chunk for v in row])
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
        # number of rows (see run_sqlite). VALUES columns are named column1, column2, ...
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

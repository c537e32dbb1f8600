"""SQLite's ticket-search indexes (FTS5) brought up to date in batches: the rows stored since the last time, in one
INSERT ... SELECT each (see migration ``search_index_batched``); PostgreSQL's stored tsvector columns need
nothing. Every transaction that stores messages or opens tickets calls ``index_new``, which indexes once
``INDEX_BATCH`` rows wait; a search first indexes whatever waits (``catch_up``), so it sees every committed
message however it was stored (the core's paths, a tool, a hand-written statement).

Why batches: each FTS5 insert writes a new index segment and FTS5 merges segments as they pile up. Indexed per
transaction, a live chat's (about 9 messages each) made those merges stall ingest: bench.ingest --shape chat
on SQLite, p99 44-47 ms against 10 ms without the index. Per row by trigger, FTS5 also costs about five times
the CPU of one INSERT ... SELECT per batch (15 against 3 µs a row, standalone)."""

from __future__ import annotations

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import execute
from hub.runtime import Runtime

# table -> the columns its FTS5 index holds
_INDEXED = {"messages": ("subject", "text"), "tickets": ("subject",)}


# Rows that wait before a write transaction indexes them (a search indexes any number).
INDEX_BATCH = 256


def _statements(table: str, cols: tuple[str, ...], at_least: int) -> tuple[str, str]:
    names = ", ".join(cols)
    mark = f"(SELECT upto FROM search_index_progress WHERE name = '{table}')"
    highest = f"(SELECT coalesce(max(id), 0) FROM {table})"
    enough = f"{highest} - {mark} >= {at_least}"
    return (
        f"INSERT INTO {table}_fts(rowid, {names}) SELECT id, {names} FROM {table} WHERE id > {mark} AND {enough} "
        "ORDER BY id",
        f"UPDATE search_index_progress SET upto = {highest} WHERE name = '{table}' AND {enough}",
    )


def _compiled(at_least: int) -> dict[str, list[TextClause]]:
    return {table: [text(s) for s in _statements(table, cols, at_least)] for table, cols in _INDEXED.items()}


_INDEX_BATCH, _INDEX_ALL = _compiled(INDEX_BATCH), _compiled(1)
_PENDING = text(
    " OR ".join(
        f"(SELECT coalesce(max(id), 0) FROM {table}) > (SELECT upto FROM search_index_progress WHERE name = '{table}')"
        for table in _INDEXED
    ).join(("SELECT ", ""))
)


async def index_new(conn: AsyncConnection, *, tickets: bool = True, every: bool = False) -> None:
    """In a write transaction that stored messages: index the rows not yet indexed once ``INDEX_BATCH`` of a
    table wait (``every``: however few); ``tickets=False`` when it opened no ticket (two cheap statements
    instead of four)."""
    if conn.dialect.name == "sqlite":
        compiled = _INDEX_ALL if every else _INDEX_BATCH
        for table in ("messages", "tickets") if tickets else ("messages",):
            for statement in compiled[table]:
                await execute(conn, statement)


async def pending(conn: AsyncConnection) -> bool:
    """Whether rows were stored that the index does not hold yet (always False on PostgreSQL)."""
    return conn.dialect.name == "sqlite" and bool((await conn.execute(_PENDING)).scalar())


async def catch_up(rt: Runtime) -> None:
    """Before a search: index what waits (fewer than ``INDEX_BATCH`` rows since the last batch, or rows stored
    around the core's paths); one small read when nothing does."""
    if rt.db.engine.dialect.name != "sqlite":
        return
    async with rt.read() as conn:
        waiting = await pending(conn)
    if waiting:
        async with rt.write() as tx:
            await index_new(tx.conn, every=True)

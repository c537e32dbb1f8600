"""The batch helpers of hub.db: the same results on SQLite and PostgreSQL, where they take another route
(arrays and unnest, one SQL text whatever the number of rows)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import String, bindparam, func, insert, literal, literal_column, null, select, text, union_all, update
from sqlalchemy.exc import DBAPIError, IntegrityError

import hub.db
import hub.db.bulk
from hub.db import (
    PING_AFTER_IDLE_SECONDS,
    execute,
    fetch_all,
    fetch_records,
    insert_returning_ids,
    insert_returning_ids_by,
    insert_rows,
    one_of,
    taken_as,
    update_rows,
)
from hub.migrate import upgrade
from hub.runtime import Runtime
from tests.conftest import sqlite_write_lock_free
from ticketing.tables import contact_identities as I
from ticketing.tables import contacts as C
from ticketing.tables import tickets as T


async def _contacts(rt: Runtime, n: int) -> list[int]:
    now = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    async with rt.db.begin() as conn:
        return await insert_returning_ids(
            conn,
            C,
            [
                {
                    "name": f"c{i}",
                    "attributes": {"vip": i % 2 == 0, "tags": ["a", "b"]},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n)
            ],
        )


async def test_insert_returning_ids_gives_each_row_its_key_in_order(rt: Runtime) -> None:
    """Keys come back in the order of the rows, and each row is stored with its values (JSON and datetimes too)."""
    first = await _contacts(rt, 3)
    second = await _contacts(rt, 5)  # another batch size: another SQL text before, the same one now
    assert first == sorted(first) and second == sorted(second) and second[0] > first[-1]
    async with rt.db.begin() as conn:
        rows = {r.id: r for r in await conn.execute(select(C).where(one_of(conn, C.c.id, first + second)))}
    assert [rows[k].name for k in second] == ["c0", "c1", "c2", "c3", "c4"]
    assert rows[second[1]].attributes == {"vip": False, "tags": ["a", "b"]}
    assert rows[second[1]].created_at == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


async def test_insert_rows_can_skip_rows_that_already_exist(rt: Runtime) -> None:
    """ignore_conflicts keeps the stored row and inserts the rest; without it a duplicate is an error."""
    [cid, other] = await _contacts(rt, 2)
    now = datetime.now(UTC)
    async with rt.db.begin() as conn:
        await insert_rows(conn, I, [{"kind": "email", "value": "a@example.com", "contact_id": cid, "created_at": now}])
    async with rt.db.begin() as conn:
        await insert_rows(
            conn,
            I,
            [
                {"kind": "email", "value": "a@example.com", "contact_id": other, "created_at": now},
                {"kind": "email", "value": "b@example.com", "contact_id": other, "created_at": now},
            ],
            ignore_conflicts=True,
        )
        stored = dict((await conn.execute(select(I.c.value, I.c.contact_id))).all())
    assert stored == {"a@example.com": cid, "b@example.com": other}


async def test_update_rows_sets_each_row_its_own_values_where_the_condition_holds(rt: Runtime) -> None:
    """Each row gets its own values, JSON included; a row failing ``where`` is left as it was."""
    [cid] = await _contacts(rt, 1)
    now = datetime.now(UTC)
    base = {
        "status": "new",
        "priority": "normal",
        "channel": "sms",
        "contact_id": cid,
        "tags": [],
        "created_at": now,
        "updated_at": now,
    }
    async with rt.db.begin() as conn:
        ids = await insert_returning_ids(conn, T, [{**base, "subject": f"t{i}"} for i in range(3)])
        await update_rows(
            conn,
            T,
            [
                {"id": ids[0], "subject": "first", "tags": ["x"], "rating": 5},
                {"id": ids[1], "subject": "second", "tags": [], "rating": None},
                {"id": ids[2], "subject": "third", "tags": ["y", "z"], "rating": 1},
            ],
            where=T.c.subject != "t2",
        )
        rows = {r.id: r for r in await conn.execute(select(T.c.id, T.c.subject, T.c.tags, T.c.rating))}
        assert (await conn.execute(select(func.count()).select_from(T).where(one_of(conn, T.c.id, [])))).scalar() == 0
    assert (rows[ids[0]].subject, rows[ids[0]].tags, rows[ids[0]].rating) == ("first", ["x"], 5)
    assert (rows[ids[1]].subject, rows[ids[1]].tags, rows[ids[1]].rating) == ("second", [], None)
    assert (rows[ids[2]].subject, rows[ids[2]].tags) == ("t2", [])


# A query of the kinds routing runs through fetch_all: an expanding IN, datetimes, JSON, a labelled
# expression, and a union whose parts type their columns differently.
_BY_IDS = select(T.c.id, T.c.subject, T.c.tags, T.c.created_at, (T.c.id + 1).label("next_id")).where(
    T.c.id.in_(bindparam("ids", expanding=True))
)
_UNION = union_all(
    select(literal_column("0").label("kind"), T.c.id, T.c.created_at, null().label("name")).where(
        T.c.id.in_(bindparam("ids", expanding=True))
    ),
    select(literal_column("1"), C.c.id, C.c.created_at, C.c.name).where(C.c.id.in_(bindparam("cids", expanding=True))),
)


async def test_fetch_all_gives_the_rows_conn_execute_gives(rt: Runtime) -> None:
    """Same keys, same values and the same Python types (aware datetimes, parsed JSON) as
    ``conn.execute(...).all()``, for any number of values in an expanding parameter."""
    cids = await _contacts(rt, 2)
    now = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    base = {"status": "new", "priority": "normal", "channel": "sms", "contact_id": cids[0], "updated_at": now}
    async with rt.db.begin() as conn:
        ids = await insert_returning_ids(
            conn, T, [{**base, "subject": f"t{i}", "tags": ["a", str(i)], "created_at": now} for i in range(3)]
        )
        # Each number of values twice, with other values: the second time the SQL text is the one kept.
        for wanted in (ids, ids[:1], [], ids[::-1], ids[2:], [ids[1], ids[1]], [-1]):
            fast = await fetch_all(conn, _BY_IDS, {"ids": wanted})
            slow = (await conn.execute(_BY_IDS, {"ids": wanted})).all()
            assert [r._mapping for r in fast] == [r._mapping for r in slow]
            assert [type(v) for r in fast for v in r] == [type(v) for r in slow for v in r]
        for some, contacts in ((ids[1:], cids), (ids[:2], cids[::-1]), (ids[:1], cids)):
            fast = await fetch_all(conn, _UNION, {"ids": some, "cids": contacts})
            slow = (await conn.execute(_UNION, {"ids": some, "cids": contacts})).all()
            assert [tuple(r) for r in fast] == [tuple(r) for r in slow]
        fast = await fetch_all(conn, _UNION, {"ids": ids[1:], "cids": cids})
    assert len(fast) == 4
    assert fast[0].created_at == now and fast[0].kind == 0
    assert all(r.created_at.utcoffset() == timedelta(0) for r in fast)


async def test_fetch_records_gives_fetch_alls_rows_as_named_tuples(rt: Runtime) -> None:
    """The same values in the same order, read by name or position, and as a dict."""
    cids = await _contacts(rt, 2)
    now = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    base = {"status": "new", "priority": "normal", "channel": "sms", "contact_id": cids[0], "updated_at": now}
    async with rt.db.begin() as conn:
        ids = await insert_returning_ids(
            conn, T, [{**base, "subject": f"t{i}", "tags": [str(i)], "created_at": now} for i in range(3)]
        )
        rows = await fetch_all(conn, _BY_IDS, {"ids": ids})
        records = await fetch_records(conn, _BY_IDS, {"ids": ids})
    assert [tuple(r) for r in records] == [tuple(r) for r in rows]
    assert [r._asdict() for r in records] == [dict(r._mapping) for r in rows]
    assert [(r.id, r.next_id, r.tags) for r in records] == [(k, k + 1, [str(i)]) for i, k in enumerate(ids)]


# Parameters with bind processors, bound with and without an expanding IN: JSON (serialized for the driver) and
# datetimes (on SQLite, text without a zone: ``UTCDateTime``).
_STAMP = (
    update(T)
    .where(T.c.id == bindparam("tid"))
    .values(
        tags=bindparam("tags"), routing=bindparam("routing"), answered_at=bindparam("at"), updated_at=bindparam("at")
    )
    .returning(T.c.id, T.c.tags, T.c.routing, T.c.answered_at)
)
_ANSWERED_AT = select(T.c.id).where(T.c.id.in_(bindparam("ids", expanding=True)), T.c.answered_at == bindparam("at"))


async def test_fast_path_binds_json_and_datetimes_as_conn_execute_does(rt: Runtime) -> None:
    """A statement sent to the driver directly applies every parameter's bind processor, not only an expanded
    ``IN``'s: the JSON and the datetimes it writes are stored as ``conn.execute`` stores them (on SQLite the same
    text), read back the same, and a datetime it compares matches the rows either wrote."""
    fast_id, slow_id = await _new_ticket(rt, "fast"), await _new_ticket(rt, "slow")
    at = datetime(2026, 3, 4, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))  # 05:08:09 UTC
    values = {"tags": ["vip", "callback"], "routing": {"decision": "offered", "agent_id": 7, "at": at.isoformat()}}
    raw_answered_at = select(T.c.answered_at.cast(String)).where(T.c.id == bindparam("tid"))
    async with rt.db.begin() as conn:
        await conn.execute(select(T.c.id))  # on PostgreSQL the transaction's first statement goes through SQLAlchemy
        for attempt in range(2):  # the second time, the kept positions of the statement's parameters
            fast = await fetch_all(conn, _STAMP, {**values, "tid": fast_id, "at": at})
            slow = (await conn.execute(_STAMP, {**values, "tid": slow_id, "at": at})).all()
            assert [tuple(r)[1:] for r in fast] == [tuple(r)[1:] for r in slow]
            assert fast[0].answered_at == at and fast[0].tags == values["tags"]
            stored = {
                tid: (await conn.execute(select(T.c.tags, T.c.routing, T.c.answered_at).where(T.c.id == tid))).one()
                for tid in (fast_id, slow_id)
            }
            assert tuple(stored[fast_id]) == tuple(stored[slow_id]) == (values["tags"], values["routing"], at)
            # As stored, not only as read back through the column's type.
            raw = [(await conn.execute(raw_answered_at, {"tid": tid})).scalar_one() for tid in (fast_id, slow_id)]
            assert raw[0] == raw[1], f"attempt {attempt}"
            both = {"ids": [fast_id, slow_id], "at": at}
            assert {r.id for r in await conn.execute(_ANSWERED_AT, both)} == {fast_id, slow_id}
            assert {r.id for r in await fetch_all(conn, _ANSWERED_AT, both)} == {fast_id, slow_id}
            assert await fetch_all(conn, _ANSWERED_AT, {**both, "at": at + timedelta(microseconds=1)}) == []


async def _new_ticket(rt: Runtime, subject: str) -> int:
    [cid] = await _contacts(rt, 1)
    now = datetime.now(UTC)
    row = {"status": "new", "priority": "normal", "channel": "sms", "contact_id": cid, "tags": [], "subject": subject}
    async with rt.db.begin() as conn:
        [tid] = await insert_returning_ids(conn, T, [{**row, "created_at": now, "updated_at": now}])
    return tid


async def _subject(rt: Runtime, tid: int) -> str:
    async with rt.read() as conn:
        return str((await conn.execute(select(T.c.subject).where(T.c.id == tid))).scalar_one())


_RENAME = update(T).where(T.c.id == bindparam("tid")).values(subject=bindparam("subject")).returning(T.c.subject)


@pytest.mark.parametrize("first", [True, False], ids=["first-statement", "after-another"])
async def test_fetch_all_and_execute_run_inside_the_transaction(rt: Runtime, first: bool) -> None:
    """Whether or not a statement of the transaction went before (on PostgreSQL the first goes through
    SQLAlchemy, which begins the transaction; later ones go to the driver), what fetch_all and execute write
    is undone with the rest when the transaction fails, and kept when it commits."""
    tid = await _new_ticket(rt, "before")

    class Failed(Exception):
        pass

    with pytest.raises(Failed):
        async with rt.db.begin() as conn:
            if not first:
                await conn.execute(select(T.c.id).where(T.c.id == tid))
            assert [tuple(r) for r in await fetch_all(conn, _RENAME, {"tid": tid, "subject": "fetched"})] == [
                ("fetched",)
            ]
            await execute(conn, _RENAME, {"tid": tid, "subject": "executed"})
            raise Failed
    assert await _subject(rt, tid) == "before"
    async with rt.db.begin() as conn:
        if not first:
            await conn.execute(select(T.c.id).where(T.c.id == tid))
        await execute(conn, _RENAME, {"tid": tid, "subject": "kept"})
    assert await _subject(rt, tid) == "kept"


async def test_a_refused_statement_in_a_begun_transaction_raises_sqlalchemys_error_and_rolls_back(rt: Runtime) -> None:
    """A broken constraint sent to the driver directly (the transaction has begun) is SQLAlchemy's
    IntegrityError, as from conn.execute; the transaction is rolled back with what it wrote before."""
    tid = await _new_ticket(rt, "before")
    orphan = (
        insert(I)
        .values(kind="email", value="x@example.com", contact_id=bindparam("cid"), created_at=bindparam("at"))
        .returning(I.c.id)
    )
    with pytest.raises(IntegrityError):
        async with rt.db.begin() as conn:
            await fetch_all(conn, _RENAME, {"tid": tid, "subject": "changed"})
            await fetch_all(conn, orphan, {"cid": 999_999, "at": datetime.now(UTC)})
    assert await _subject(rt, tid) == "before"
    with pytest.raises(DBAPIError):
        async with rt.db.begin() as conn:
            await conn.execute(select(T.c.id))
            await execute(conn, select(T.c.id).where(T.c.id == func.no_such_function()))


async def test_a_connection_lost_mid_transaction_is_invalidated_and_not_pooled_again(
    rt: Runtime, is_postgres: bool
) -> None:
    """PostgreSQL: the server process of a transaction dies before a statement sent to the driver directly.
    The error says the connection was invalidated, and the next transaction gets a live connection."""
    if not is_postgres:
        pytest.skip("SQLite has no server connection to lose")
    with pytest.raises(DBAPIError) as caught:
        async with rt.db.begin() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            killer = await asyncpg.connect(rt.settings.database_url.replace("postgresql+asyncpg", "postgresql"))
            try:
                await killer.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await killer.close()
            await fetch_all(conn, select(T.c.id))
    assert caught.value.connection_invalidated
    async with rt.db.begin() as conn:
        await conn.execute(select(T.c.id))
        assert (await fetch_all(conn, text("SELECT pg_backend_pid()").columns(pid=T.c.id.type)))[0][0] != pid


async def test_update_rows_splits_what_exceeds_one_statements_parameters(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite the rows travel in one statement up to its limit on parameters, then in several: every row
    gets its values either way."""
    monkeypatch.setattr(hub.db.bulk, "_SQLITE_MAX_VARIABLES", 7)  # two rows of (id, subject, rating) a statement
    [cid] = await _contacts(rt, 1)
    now = datetime.now(UTC)
    base = {"status": "new", "priority": "normal", "channel": "sms", "contact_id": cid, "tags": []}
    async with rt.db.begin() as conn:
        ids = await insert_returning_ids(
            conn, T, [{**base, "subject": f"t{i}", "created_at": now, "updated_at": now} for i in range(5)]
        )
        await update_rows(conn, T, [{"id": k, "subject": f"new{k}", "rating": k % 5} for k in ids])
        rows = {r.id: r for r in await conn.execute(select(T.c.id, T.c.subject, T.c.rating))}
    assert {k: (rows[k].subject, rows[k].rating) for k in ids} == {k: (f"new{k}", k % 5) for k in ids}


async def test_fetch_all_raises_database_errors_as_conn_execute_does(rt: Runtime) -> None:
    """A statement the database rejects raises SQLAlchemy's error for it, whichever way it went."""
    with pytest.raises(DBAPIError):
        async with rt.db.begin() as conn:
            await fetch_all(conn, select(T.c.id).where(T.c.id == func.no_such_function()))


async def test_insert_returning_ids_raises_a_broken_constraint_as_conn_execute_does(rt: Runtime) -> None:
    """A row the database refuses (an identity of a contact that does not exist) raises SQLAlchemy's
    IntegrityError on both databases, though SQLite's insert goes straight to the driver."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(IntegrityError):
        async with rt.db.begin() as conn:
            await insert_returning_ids(
                conn, I, [{"kind": "email", "value": "x@example.com", "contact_id": 999_999, "created_at": now}]
            )


async def test_taken_as_turns_a_unique_violation_into_its_error_and_lets_others_through(rt: Runtime) -> None:
    """On either database: a second identity with the same kind and value raises the error given; an identity
    of a contact that does not exist (a foreign key) is not a name taken, and stays an IntegrityError."""
    [contact] = await _contacts(rt, 1)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    identity = {"kind": "email", "value": "x@example.com", "contact_id": contact, "created_at": now}
    async with rt.db.begin() as conn:
        await conn.execute(I.insert().values(**identity))
    with pytest.raises(LookupError, match="taken"):
        async with rt.db.begin() as conn:
            with taken_as(LookupError("taken")):
                await conn.execute(I.insert().values(**identity))
    with pytest.raises(IntegrityError):
        async with rt.db.begin() as conn:
            with taken_as(LookupError("taken")):
                await conn.execute(I.insert().values(**{**identity, "value": "y@example.com", "contact_id": 999_999}))


async def test_insert_returning_ids_of_more_rows_than_one_statement_takes(rt: Runtime) -> None:
    """A batch larger than one statement's parameter limit (SQLite: split in several inserts) still gives
    every row its key, in order."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows = [{"name": f"c{i}", "attributes": {}, "created_at": now, "updated_at": now} for i in range(9_000)]
    async with rt.db.begin() as conn:
        ids = await insert_returning_ids(conn, C, rows)
        names = dict((await conn.execute(select(C.c.id, C.c.name))).all())
    assert ids == list(range(ids[0], ids[0] + len(rows)))
    assert [names[k] for k in ids] == [r["name"] for r in rows]


async def test_insert_returning_ids_by_a_unique_key_gives_each_row_its_own_key(rt: Runtime) -> None:
    """Rows told apart by a unique key of their own get their generated keys back in the order given, each the
    key of the row stored with that unique key (PostgreSQL reads them back in the insert; the order of those
    rows is not the order given)."""
    [cid] = await _contacts(rt, 1)
    now = datetime.now(UTC)
    rows = [{"kind": "email", "value": f"{i}@example.com", "contact_id": cid, "created_at": now} for i in (5, 1, 9, 3)]
    async with rt.db.begin() as conn:
        ids = await insert_returning_ids_by(conn, I, rows, ("kind", "value"))
        stored = {r.id: r.value for r in await conn.execute(select(I.c.id, I.c.value))}
    assert [stored[k] for k in ids] == [r["value"] for r in rows]


async def test_pooled_connection_that_died_while_idle_is_replaced_unseen(rt: Runtime, is_postgres: bool) -> None:
    """PostgreSQL: a pooled connection whose server process went away while it sat idle is tested at checkout
    and replaced; the caller never sees the dead one."""
    if not is_postgres:
        pytest.skip("SQLite has no server connection to lose")
    async with rt.read() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    async with rt.read() as conn:
        assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() == pid  # the pool reuses it
    killer = await asyncpg.connect(rt.settings.database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    await asyncio.sleep(PING_AFTER_IDLE_SECONDS + 0.1)
    async with rt.read() as conn:
        assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid


@contextlib.asynccontextmanager
async def _lock_held_elsewhere(tmp_path: Path) -> AsyncIterator[tuple[hub.db.Database, sqlite3.Connection]]:
    """A database with a table ``t``, and another connection (as the CLI or a second server) that holds
    SQLite's write lock until the test commits it."""
    path = tmp_path / "x.db"
    db = hub.db.Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield db, other
        finally:
            other.close()
    finally:
        await db.dispose()


async def _insert(db: hub.db.Database, v: int) -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": v})


async def _values(db: hub.db.Database) -> list[int]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(text("SELECT v FROM t ORDER BY v"))).scalars())


async def test_sqlite_writer_waits_for_another_process_without_stopping_the_event_loop(tmp_path: Path) -> None:
    """The writer's statements run on the event loop's thread, which must never wait in SQLite: while another
    connection (the CLI, a second server) holds the write lock, the loop keeps running, and the transaction
    goes ahead once the lock is free, with its rows committed."""
    async with _lock_held_elsewhere(tmp_path) as (db, other):
        other.execute("INSERT INTO t VALUES (1)")
        writing = asyncio.create_task(_insert(db, 2))
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(20):
            await asyncio.sleep(0.01)
        assert not writing.done()  # waiting for the other connection's lock...
        assert loop.time() - started < 2  # ...while the loop ran on
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 10)
        assert await _values(db) == [1, 2]


async def test_sqlite_writer_cancelled_while_waiting_in_its_thread_is_closed_behind_that_wait(tmp_path: Path) -> None:
    """A write cancelled while its statement waits in the connection's thread (here for another connection's
    lock) leaves that statement running there; closing the connection then must wait behind it, not run on
    the loop's thread beside it (that crashed the interpreter). The next write works."""
    async with _lock_held_elsewhere(tmp_path) as (db, other):
        waiting = asyncio.create_task(_insert(db, 1))
        await asyncio.sleep(0.2)  # BEGIN IMMEDIATE waits in the thread
        waiting.cancel()
        await asyncio.sleep(0.2)  # SQLAlchemy closes the connection meanwhile
        other.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, 10)
        await asyncio.wait_for(_insert(db, 2), 10)
        assert await _values(db) == [2]


@contextlib.contextmanager
def _turns_of_the_loop() -> Iterator[Callable[[], int]]:
    """A counter of the event loop's turns while the block runs (a callback that schedules itself again each
    turn)."""
    loop = asyncio.get_running_loop()
    turns = 0

    def tick() -> None:
        nonlocal turns
        turns += 1
        handle[0] = loop.call_soon(tick)

    handle = [loop.call_soon(tick)]
    try:
        yield lambda: turns
    finally:
        handle[0].cancel()


async def test_a_connection_with_nothing_to_roll_back_closes_without_giving_up_the_loop(rt: Runtime) -> None:
    """Closing a connection whose transaction has ended waits for nothing, so it happens in the caller's task:
    SQLAlchemy's own ``async with`` closes in a task of its own, three turns of the loop, during which
    SQLite's one writer stayed held."""
    if rt.db.is_sqlite and not rt.db.fast_paths:
        pytest.skip("the pool's reset of aiosqlite's own connection is a trip to its thread: a fast path's claim")
    writer = rt.db.engines[-1]  # SQLite's writer, or PostgreSQL's one engine
    with _turns_of_the_loop() as turns:
        async with hub.db.connected(writer) as conn:
            await conn.execute(text("SELECT 1"))
            await conn.commit()
            before = turns()
        assert turns() == before
    assert writer.sync_engine.pool.checkedout() == 0


async def test_a_read_on_sqlite_never_gives_up_the_loop(rt: Runtime) -> None:
    """With the fast paths on, SQLite's readers run on the loop's thread as its writer does: a read (its
    connection, BEGIN, statements through SQLAlchemy and the driver directly, the ROLLBACK as it closes) takes
    no turn of the loop. Each trip to aiosqlite's thread waited a turn of the busy loop to come back: under
    bench.voice's load a one-statement read (a caller's place in the queue) took up to 55 ms so."""
    if not (rt.db.is_sqlite and rt.db.fast_paths):
        pytest.skip("SQLite with the fast paths on")
    async with rt.db.connect() as conn:  # the pool's first connection is opened in aiosqlite's thread
        await conn.execute(text("SELECT 1"))
    with _turns_of_the_loop() as turns:
        async with rt.db.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
            assert (await hub.db.fetch_all(conn, select(literal(2)))) == [(2,)]
        assert turns() == 0
    assert rt.db.engine.sync_engine.pool.checkedout() == 0


async def test_a_close_that_must_wait_finishes_even_if_its_caller_is_cancelled(rt: Runtime) -> None:
    """After a read on the engine's own connections (transactional, unlike ``Database.connect``'s on
    PostgreSQL) the connection still has a transaction to roll back, which waits (a round trip, or aiosqlite's
    thread): that close runs in a task of its own, and a cancellation that arrives meanwhile is raised only
    once the connection is back in the pool."""
    if rt.db.is_sqlite and rt.db.fast_paths:
        pytest.skip("SQLite's readers roll back on the loop's thread: no close waits (the test below)")
    pool = rt.db.engine.sync_engine.pool
    body_done = asyncio.Event()

    async def read() -> None:
        async with hub.db.connected(rt.db.engine) as conn:
            await conn.execute(text("SELECT 1"))
            body_done.set()

    reading = asyncio.create_task(read())
    await body_done.wait()
    assert not reading.done()  # closing
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert pool.checkedout() == 0
    async with rt.db.connect() as conn:  # the pool still works
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1


async def test_a_postgresql_read_keeps_no_transaction_open_and_writes_still_do(rt: Runtime, is_postgres: bool) -> None:
    """PostgreSQL: ``Database.connect`` reads in autocommit, so between its statements its connection is idle,
    not idle in a transaction (no BEGIN before, no ROLLBACK after: two round trips less per read), by both
    routes a statement takes (``fetch_all`` to the driver, and SQLAlchemy's). A write transaction on the same
    pool's connections afterwards is still one transaction, which rolls back whole."""
    if not is_postgres:
        pytest.skip("SQLite reads need no round trips")
    [cid] = await _contacts(rt, 1)
    observer = await asyncpg.connect(rt.settings.database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for _ in range(3):  # every connection of the pool that a read gets
            async with rt.db.connect() as conn:
                assert [tuple(r) for r in await fetch_all(conn, select(C.c.id))] == [(cid,)]
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                state = await observer.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
                assert state == "idle"
        with pytest.raises(RuntimeError, match="undone"):
            async with rt.db.begin() as conn:
                await conn.execute(update(C).where(C.c.id == cid).values(name="changed"))
                await fetch_all(conn, select(C.c.id))
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                state = await observer.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
                assert state == "idle in transaction"
                raise RuntimeError("undone")
    finally:
        await observer.close()
    async with rt.db.connect() as conn:
        assert (await conn.execute(select(C.c.name).where(C.c.id == cid))).scalar_one() == "c0"


@pytest.mark.parametrize(("writer", "fast_paths"), [(False, True), (True, True), (True, False)])
async def test_a_sqlite_connection_closed_inside_a_transaction_lets_go_of_the_write_lock(
    tmp_path: Path, writer: bool, fast_paths: bool
) -> None:
    """A connection closed in the middle of a writing transaction while a statement of it is unfinished (a
    cursor something still refers to) gives the write lock up at once: SQLite alone would keep the transaction
    until that statement is finalized, whenever the garbage collector gets to it."""
    path = tmp_path / "z.db"
    engine = hub.db.create_engine(f"sqlite+aiosqlite:///{path}", writer=writer, fast_paths=fast_paths)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1), (2), (3)"))
        conn = await engine.connect()
        driver = (await conn.get_raw_connection()).driver_connection  # the aiosqlite connection
        await driver.execute("BEGIN IMMEDIATE")
        await driver.execute("INSERT INTO t VALUES (4)")
        unfinished = await driver.execute("SELECT v FROM t")
        assert await unfinished.fetchone() == (1,)
        assert not sqlite_write_lock_free(path)
        await driver.close()
        assert sqlite_write_lock_free(path)  # while ``unfinished`` is still here
        del unfinished
        with contextlib.suppress(Exception):  # SQLAlchemy finds its connection closed under it
            await conn.invalidate()
    finally:
        await engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (3,)  # the insert was rolled back


def test_the_migration_rewrites_sqlite_datetimes_stored_with_a_utc_suffix(fresh_database_url: str) -> None:
    """A datetime an earlier fast path stored as ``...+00:00`` text (SQLite) is rewritten as SQLAlchemy writes
    it, so that an equality comparison finds the row; one stored right, and one with another offset, are kept."""
    if not fresh_database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL stores timestamps, not text")
    upgrade(fresh_database_url, "social_reply_parts_id_text")
    right = "2026-12-01 09:00:00.000001"
    stored = ["2026-12-07 10:00:00.123456+00:00", right, "2026-12-07 10:00:00.123456+02:00"]

    async def seed() -> None:
        db = hub.db.Database(fresh_database_url)
        try:
            async with db.begin() as conn:
                for n, at in enumerate(stored):
                    await conn.execute(
                        text(
                            "INSERT INTO contacts (name, attributes, created_at, updated_at) "
                            "VALUES (:name, '{}', :at, :at)"
                        ),
                        {"name": f"c{n}", "at": at},
                    )
        finally:
            await db.dispose()

    async def found() -> tuple[list[str], int | None]:
        db = hub.db.Database(fresh_database_url)
        try:
            async with db.connect() as conn:
                raw = [r[0] for r in await conn.execute(text("SELECT updated_at FROM contacts ORDER BY name"))]
                hit = (
                    await conn.execute(
                        select(C.c.id).where(C.c.updated_at == datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC))
                    )
                ).scalar_one_or_none()
            return raw, hit
        finally:
            await db.dispose()

    asyncio.run(seed())
    assert asyncio.run(found())[1] is None  # the suffixed row is missed
    upgrade(fresh_database_url)
    raw, hit = asyncio.run(found())
    assert raw == ["2026-12-07 10:00:00.123456", right, stored[2]]
    assert hit is not None

"""SQLite's shared writer (hub.db.sqlite_writer.SharedWriter): writers queued behind one another share one transaction
and one commit, each in a savepoint of its own; each returns once its work is committed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import event, text

import hub.db
import hub.db.sqlite_writer


@pytest.fixture(autouse=True)
def _sqlite_only(is_postgres: bool) -> None:
    if is_postgres:
        pytest.skip("SQLite's writer")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[hub.db.Database]:
    database = hub.db.Database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with database.begin() as conn:
        await conn.execute(text("CREATE TABLE t (v INTEGER)"))
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def commits(db: hub.db.Database) -> list[int]:
    """Every commit of SQLite's writer connection."""
    made: list[int] = []
    event.listen(db.engines[-1].sync_engine, "commit", lambda _conn: made.append(1))
    return made


async def _values(db: hub.db.Database) -> list[int]:
    async with db.engine.connect() as conn:  # a reader: sees committed rows only
        return list((await conn.execute(text("SELECT v FROM t ORDER BY v"))).scalars())


async def _insert(db: hub.db.Database, v: int, seen: dict[int, list[int]] | None = None) -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": v})
    if seen is not None:
        seen[v] = await _values(db)  # what a reader sees as soon as the block has returned


async def _holding_the_turn(db: hub.db.Database, v: int, release: asyncio.Event) -> None:
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": v})
        await release.wait()


async def _behind_a_held_turn(
    db: hub.db.Database, release: asyncio.Event, *writers: Coroutine[Any, Any, None], first_value: int = 1
) -> tuple[asyncio.Task[None], list[asyncio.Task[None]]]:
    """A writer that holds the turn until ``release``, and ``writers`` queued behind it."""
    first = asyncio.create_task(_holding_the_turn(db, first_value, release))
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(w) for w in writers]
    for _ in range(5):
        await asyncio.sleep(0)
    assert not first.done() and not any(t.done() for t in queued)
    return first, queued


async def test_writers_queued_behind_one_another_share_one_commit(db: hub.db.Database, commits: list[int]) -> None:
    release = asyncio.Event()
    seen: dict[int, list[int]] = {}
    first, queued = await _behind_a_held_turn(db, release, *(_insert(db, v, seen) for v in (2, 3, 4)))
    commits.clear()
    release.set()
    await asyncio.gather(first, *queued)
    assert commits == [1]  # one transaction for the four
    # Each returned once its row was committed: a reader saw it (and the whole transaction) at once.
    assert all(v in values for v, values in seen.items()) and seen[2] == [1, 2, 3, 4]
    # A writer alone commits on its own.
    await _insert(db, 5)
    assert commits == [1, 1] and await _values(db) == [1, 2, 3, 4, 5]


async def test_a_writer_that_raises_rolls_back_its_own_work_alone(db: hub.db.Database) -> None:

    async def refused() -> None:
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (20)"))
            raise ValueError("refused")

    release = asyncio.Event()
    first, queued = await _behind_a_held_turn(db, release, _insert(db, 11), refused(), _insert(db, 12), first_value=10)
    release.set()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert [type(r) for r in results] == [type(None), type(None), ValueError, type(None)]
    assert await _values(db) == [10, 11, 12]


async def test_when_the_database_rolls_the_shared_transaction_back_every_writer_in_it_fails(
    db: hub.db.Database,
) -> None:
    """SQLite rolls a whole transaction back on some errors (a full disk, an I/O error); here a writer ends it
    itself. The writers whose work was in it get an error, not a success; the next writers start afresh."""

    async def rolls_back() -> None:
        async with db.begin() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            driver._conn.execute("ROLLBACK")

    release = asyncio.Event()
    first, queued = await _behind_a_held_turn(db, release, _insert(db, 2), rolls_back())
    release.set()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert all(isinstance(r, Exception) for r in results), results
    assert "rolled back" in str(results[0])
    assert await _values(db) == []
    await _insert(db, 3)
    assert await _values(db) == [3]


async def test_a_writer_cancelled_while_waiting_gives_its_turn_to_the_next(db: hub.db.Database) -> None:
    release = asyncio.Event()
    first, (second, third) = await _behind_a_held_turn(db, release, _insert(db, 2), _insert(db, 3))
    second.cancel()
    release.set()
    await asyncio.wait_for(asyncio.gather(first, third), 5)
    assert second.cancelled()
    assert await _values(db) == [1, 3]


async def test_a_writer_cancelled_just_after_it_was_handed_the_turn_passes_it_on(db: hub.db.Database) -> None:
    release = asyncio.Event()
    first, (second, third) = await _behind_a_held_turn(db, release, _insert(db, 2), _insert(db, 3))
    # Let the first hand its turn to the second, and cancel the second before it runs.
    shared = db._shared
    assert shared is not None
    turn_of_second = shared._waiting[0]
    release.set()
    # Polled: the cancellation must land between the turn being handed over and the second's next step.
    while not turn_of_second.done():  # noqa: ASYNC110
        await asyncio.sleep(0)
    second.cancel()
    await asyncio.wait_for(asyncio.gather(first, third), 5)
    assert second.cancelled()
    assert await _values(db) == [1, 3]


async def test_a_shared_transaction_holds_at_most_max_turns_writers(
    db: hub.db.Database, commits: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub.db.sqlite_writer.SharedWriter, "max_turns", 2)
    release = asyncio.Event()
    first, queued = await _behind_a_held_turn(db, release, *(_insert(db, v) for v in (2, 3, 4, 5)))
    commits.clear()
    release.set()
    await asyncio.gather(first, *queued)
    assert commits == [1, 1, 1]  # 1+2, 3+4, 5
    assert await _values(db) == [1, 2, 3, 4, 5]


async def test_a_writer_whose_work_cannot_be_undone_lets_nothing_of_its_transaction_commit(
    db: hub.db.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If rolling back to a failed writer's savepoint fails, its work is still in the transaction: then
    nothing of that transaction may commit, and its writers get an error; the next writers start afresh."""
    real = aiosqlite.Connection.execute_fetchall

    async def failing_undo(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        if sql == "ROLLBACK TO switchboard_turn":
            raise sqlite3.OperationalError("disk I/O error")
        return await real(self, sql, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "execute_fetchall", failing_undo)

    async def refused() -> None:
        async with db.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (20)"))
            raise ValueError("refused")

    release = asyncio.Event()
    first, queued = await _behind_a_held_turn(db, release, refused(), _insert(db, 3))
    release.set()
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and "disk I/O error" in str(results[0])
    assert isinstance(results[1], ValueError)
    assert results[2] is None
    assert await _values(db) == [3]

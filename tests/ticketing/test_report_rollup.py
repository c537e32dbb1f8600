"""The reports' hourly rollup: kept exact from the event log as tickets arrive, are answered, replied to, solved,
abandoned and moved between queues; equal to a direct count of the tickets; and each queue's days in its own
timezone, DST-correct."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update

from hub.runtime import Runtime
from tests.ticketing.routing_helpers import agent, arrive, message, queue, who
from ticketing import report_rollup, reports, routing_service, supervisor, tables
from ticketing.models import AgentStatus, Priority, QueueUpdate, TicketStatus, TicketUpdate
from ticketing.queues import update_queue
from ticketing.replies import reply
from ticketing.ticket_updates import update_ticket

SUPERVISOR = who(0, "supervisor")


async def _direct(rt: Runtime, r: reports.Range) -> Any:
    """The report counted from the tickets (the rollup's cursor taken away), then the cursor put back."""
    async with rt.db.begin() as conn:
        seq = (await conn.execute(select(tables.report_cursor.c.seq))).scalar()
        await conn.execute(delete(tables.report_cursor))
    try:
        return await reports.collect(rt, r)
    finally:
        async with rt.db.begin() as conn:
            await conn.execute(tables.report_cursor.insert().values(id=1, seq=seq))


def _same(a: Any, b: Any) -> bool:
    """Equal cells and counts; sums of seconds to a millisecond (SQLite's julianday() is a float of days)."""
    return a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=0.01) for k in a)


async def _rollup_rows(rt: Runtime) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(tables.report_hours))).scalar() or 0)


async def test_rollup_follows_real_changes_and_equals_a_direct_count(rt: Runtime) -> None:
    """Built empty, then every change (arrival, offer accepted, reply, solve, abandon, requeue) is taken in from
    the events alone: the report from the rollup equals the report counted from the tickets, figure by figure."""
    await queue(rt, "support", channels=["webchat"])
    other = await queue(rt, "sales", channels=["webchat"])
    ada = await agent(rt, "ada", ["support"])
    assert await report_rollup.catch_up(rt) is False  # never built: reports read the tickets
    assert await report_rollup.catch_up(rt, build=True) is True
    t1, t2, t3 = await arrive(rt, *(message("webchat", queue="support") for _ in range(3)))
    await routing_service.set_agent_status(rt, agent_id=ada, status=AgentStatus.AVAILABLE)
    await routing_service.accept_offer(rt, ticket_id=t1, principal=who(ada))
    await reply(rt, ticket_id=t1, principal=who(ada), text="on it")
    await update_ticket(rt, ticket_id=t1, principal=who(ada), data=TicketUpdate(status=TicketStatus.SOLVED))
    await routing_service.set_agent_status(rt, agent_id=ada, status=AgentStatus.AWAY)
    await supervisor.requeue(rt, principal=SUPERVISOR, ticket_id=t3, queue_id=other)
    await update_ticket(rt, ticket_id=t2, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.CLOSED))
    today = datetime.now(UTC).date()
    r = reports.report_range(today, today, "hour", "UTC")
    from_rollup = await reports.collect(rt, r)
    assert await _rollup_rows(rt) > 0
    direct = await _direct(rt, r)
    assert _same(from_rollup, direct)
    total = {k: sum(cell[k] for cell in from_rollup.values()) for k in reports.FIELDS}
    assert (total["volume"], total["answered"], total["abandoned"], total["solved"]) == (3, 1, 1, 1)
    assert total["first_responses"] == 1 and total["handled"] == 1
    # t3 counts for sales now, not support: the requeue took it back from its old cell
    by_queue: dict[Any, float] = {}
    for (_, q, _), cell in from_rollup.items():
        by_queue[q] = by_queue.get(q, 0) + cell["volume"]
    assert by_queue[other] == 1
    # applying the same events again changes nothing (each ticket is recounted, not added twice)
    async with rt.db.begin() as conn:
        await conn.execute(update(tables.report_cursor).values(seq=0))
    assert _same(await reports.collect(rt, r), direct)


def at(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


async def _seed(rt: Runtime, queue_name: str, moments: list[datetime]) -> None:
    ids = await arrive(rt, *(message("email", queue=queue_name) for _ in moments))
    async with rt.write() as tx:
        for ticket_id, moment in zip(ids, moments, strict=True):
            await tx.conn.execute(
                update(tables.tickets).where(tables.tickets.c.id == ticket_id).values(created_at=moment)
            )
    await report_rollup.rebuild(rt)


@pytest.mark.parametrize("source", ["rollup", "tickets"])
async def test_days_follow_each_queues_timezone_across_a_dst_change(rt: Runtime, source: str) -> None:
    """New York leaves DST on Sun 1 Nov 2026 (a 25-hour day: 04:00 UTC to 05:00 UTC next day); Madrid left it a
    week before. A ticket at 03:30 UTC on 1 Nov is still 31 Oct in New York (23:30 EDT) but 1 Nov in Madrid;
    one at 04:30 UTC on 2 Nov is 1 Nov 23:30 EST in New York (the long day's last hour). Counted from the rollup
    and from the tickets alike."""
    ny = await queue(rt, "ny", channels=["email"])
    await update_queue(rt, queue_id=ny, data=QueueUpdate(hours={"timezone": "America/New_York"}))
    mad = await queue(rt, "madrid", channels=["email"])
    await update_queue(rt, queue_id=mad, data=QueueUpdate(hours={"timezone": "Europe/Madrid"}))
    await _seed(rt, "ny", [at(2026, 11, 1, 3, 30), at(2026, 11, 2, 4, 30), at(2026, 11, 2, 5, 30)])
    await _seed(rt, "madrid", [at(2026, 11, 1, 3, 30), at(2026, 10, 31, 22, 30)])
    if source == "tickets":
        async with rt.db.begin() as conn:
            await conn.execute(delete(tables.report_cursor))
    r = reports.report_range(date(2026, 10, 31), date(2026, 11, 2), "day", "UTC")
    data = await reports.collect(rt, r)
    per_queue: dict[int | None, list[float]] = {}
    for (b, q, _), cell in data.items():
        per_queue.setdefault(q, [0.0] * 3)[b] += cell["volume"]
    # New York: 31 Oct (23:30 EDT), 1 Nov (23:30 EST, the 25th hour), 2 Nov (00:30 EST)
    assert per_queue[ny] == [1, 1, 1]
    # Madrid (CET since 25 Oct): 22:30 UTC on 31 Oct is 23:30 local, 03:30 UTC on 1 Nov is 04:30 local
    assert per_queue[mad] == [1, 1, 0]
    # the filtered queue's report is labelled in its zone; its 25-hour day has 25 hourly buckets, the repeated
    # 01:00 named with its offset the second time
    hourly = reports.report_range(date(2026, 11, 1), date(2026, 11, 1), "hour", "America/New_York")
    assert len(hourly.labels) == 25
    assert hourly.labels[1:3] == ["2026-11-01 01:00", "2026-11-01 01:00 -0500"]
    data = await reports.collect(rt, hourly, queue_id=ny)
    assert {b: cell["volume"] for (b, _, _), cell in data.items()} == {24: 1}


async def test_a_queue_filter_labels_the_report_in_that_queues_zone(rt: Runtime, client: Any) -> None:
    """GET /api/reports/summary?queue_id= names the queue's timezone and counts its days from its midnight."""
    from tests.conftest import login, make_agent

    ny = await queue(rt, "ny", channels=["email"])
    await update_queue(rt, queue_id=ny, data=QueueUpdate(hours={"timezone": "America/New_York"}))
    await _seed(rt, "ny", [at(2026, 11, 2, 4, 30)])
    await make_agent(rt, "sam", role="supervisor")
    sam = await login(client, "sam", "password-123")
    params = {"start": "2026-11-01", "end": "2026-11-02", "queue_id": ny}
    report = (await client.get("/api/reports/summary", params=params, headers=sam)).json()
    assert report["timezone"] == "America/New_York"
    assert [s["volume"] for s in report["series"]] == [1, 0]


async def test_events_pruned_before_the_rollup_read_them_make_it_count_again(rt: Runtime) -> None:
    """The rollup's cursor is behind the oldest event kept (the log was pruned while no process took events
    in): the next catch-up counts every ticket again, so the changes those events named are not lost."""
    from hub.events import Event

    await queue(rt, "support", channels=["webchat"])
    assert await report_rollup.catch_up(rt, build=True)
    await arrive(rt, *(message("webchat", queue="support") for _ in range(2)))
    events = Event.__table__  # type: ignore[attr-defined]
    async with rt.db.begin() as conn:
        newest = (await conn.execute(select(func.max(events.c.seq)))).scalar()
        await conn.execute(delete(events).where(events.c.seq < newest))  # pruned: only the newest kept
    assert await report_rollup.catch_up(rt) is True
    today = datetime.now(UTC).date()
    data = await reports.collect(rt, reports.report_range(today, today, "day", "UTC"))
    assert sum(cell["volume"] for cell in data.values()) == 2


async def test_a_changed_threshold_is_applied_to_past_hours_by_a_recount(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threshold 60 s: answered after 30 s (within) and 90 s (not), abandoned after 45 s (within: on neither
    side) and 120 s (after): service level 1 / 3. The threshold becomes 100 s: the queue's past hours are counted
    again in batches, with progress, and the report says 2 / 3 (90 s now within, 120 s still after), as a count
    of the tickets does."""
    qid = await queue(rt, "support", channels=["email"])
    ids = await arrive(rt, *(message("email", queue="support") for _ in range(4)))
    base = at(2026, 11, 2, 10)
    waits = {ids[0]: ("answered_at", 30), ids[1]: ("answered_at", 90), ids[2]: ("abandoned_at", 45),
             ids[3]: ("abandoned_at", 120)}  # fmt: skip
    async with rt.write() as tx:
        for ticket_id, (column, seconds) in waits.items():
            moment = base + timedelta(seconds=seconds)
            await tx.conn.execute(
                update(tables.tickets)
                .where(tables.tickets.c.id == ticket_id)
                .values(created_at=base, queued_at=base, status="closed", **{column: moment})
            )
    await report_rollup.rebuild(rt)
    r = reports.report_range(date(2026, 11, 2), date(2026, 11, 2), "day", "UTC")

    async def service_level() -> float | None:
        return reports.figures(reports.sum_cells(list((await reports.collect(rt, r)).values())))["service_level"]

    assert await service_level() == pytest.approx(1 / 3)
    await update_queue(rt, queue_id=qid, data=QueueUpdate(service_level_seconds=100))
    summary = await reports.summary(rt, r)
    assert summary["recounting"] == [{"queue_id": qid, "queue": "support", "done": 0, "total": 4}]
    monkeypatch.setattr(report_rollup, "BATCH", 3)
    await report_rollup.recount(rt, batches=1)
    assert (await reports.summary(rt, r))["recounting"][0]["done"] == 3
    assert await report_rollup.catch_up(rt, build=True)  # the periodic job finishes it
    summary = await reports.summary(rt, r)
    assert summary["recounting"] == []
    assert summary["totals"]["service_level"] == pytest.approx(2 / 3)
    assert _same(await reports.collect(rt, r), await _direct(rt, r))
    # a change to anything else recounts nothing
    await update_queue(rt, queue_id=qid, data=QueueUpdate(service_level_target=90))
    assert (await reports.summary(rt, r))["recounting"] == []


_COUNT_WRITES = {
    "sqlite": [
        "CREATE TABLE rollup_writes (n INTEGER NOT NULL)",
        "INSERT INTO rollup_writes VALUES (0)",
        "CREATE TRIGGER rollup_ins AFTER INSERT ON report_tickets BEGIN UPDATE rollup_writes SET n = n + 1; END",
        "CREATE TRIGGER rollup_del AFTER DELETE ON report_tickets BEGIN UPDATE rollup_writes SET n = n + 1; END",
    ],
    "postgresql": [
        "CREATE TABLE rollup_writes (n INTEGER NOT NULL)",
        "INSERT INTO rollup_writes VALUES (0)",
        "CREATE FUNCTION count_rollup_write() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN UPDATE rollup_writes SET n = n + 1; RETURN NULL; END $$",
        "CREATE TRIGGER rollup_writes AFTER INSERT OR DELETE ON report_tickets "
        "FOR EACH ROW EXECUTE FUNCTION count_rollup_write()",
    ],
}
_UNCOUNT_WRITES = {
    "sqlite": ["DROP TRIGGER rollup_ins", "DROP TRIGGER rollup_del", "DROP TABLE rollup_writes"],
    "postgresql": [
        "DROP TRIGGER rollup_writes ON report_tickets",
        "DROP FUNCTION count_rollup_write()",
        "DROP TABLE rollup_writes",
    ],
}


@asynccontextmanager
async def counted_writes(rt: Runtime) -> AsyncIterator[Callable[[], Awaitable[int]]]:
    """Count the rows written to (or deleted from) ``report_tickets`` while inside, by a trigger made for the test
    and dropped after; yields a function that reads the count so far."""
    dialect = "postgresql" if not rt.db.is_sqlite else "sqlite"
    async with rt.db.begin() as conn:
        for statement in _COUNT_WRITES[dialect]:
            await conn.execute(text(statement))

    async def writes() -> int:
        async with rt.read() as conn:
            return int((await conn.execute(text("SELECT n FROM rollup_writes"))).scalar_one())

    try:
        yield writes
    finally:
        async with rt.db.begin() as conn:
            for statement in _UNCOUNT_WRITES[dialect]:
                await conn.execute(text(statement))


async def test_a_catch_up_writes_only_the_tickets_whose_figures_changed(rt: Runtime) -> None:
    """Three tickets counted; then one's priority and tags change (events that name it, but change nothing it
    counts for) and another is solved: the next catch-up rewrites the solved ticket's row of the rollup alone
    (what it counted for taken back, what it counts for now written), and the report still equals a count of
    the tickets."""
    await queue(rt, "support", channels=["webchat"])
    ids = await arrive(rt, *(message("webchat", queue="support") for _ in range(3)))
    assert await report_rollup.catch_up(rt, build=True)
    async with counted_writes(rt) as writes:
        # events name it, but nothing a figure reads changed
        await update_ticket(rt, ticket_id=ids[0], principal=SUPERVISOR, data=TicketUpdate(priority=Priority.HIGH))
        await update_ticket(rt, ticket_id=ids[0], principal=SUPERVISOR, data=TicketUpdate(tags=["vip"]))
        await update_ticket(rt, ticket_id=ids[1], principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.SOLVED))
        assert await report_rollup.catch_up(rt)
        written = await writes()
    assert written == 2  # the solved ticket's row: deleted and written again; the other's untouched
    today = datetime.now(UTC).date()
    r = reports.report_range(today, today, "hour", "UTC")
    assert _same(await reports.collect(rt, r), await _direct(rt, r))


async def test_ingest_counts_its_new_tickets_and_the_catch_up_leaves_them(rt: Runtime) -> None:
    """Three arrivals, stored and routed (queued): ingest counted each in the transaction that created it, so
    the rollup holds their volume before any catch-up, and the catch-up that meets their events (created,
    queued) writes nothing; a reply then makes it count the ticket replied to again, and the report equals a
    count of the tickets."""
    await queue(rt, "support", channels=["webchat"])
    ada = await agent(rt, "ada", ["support"])
    assert await report_rollup.catch_up(rt, build=True)
    async with counted_writes(rt) as writes:
        ids = await arrive(rt, *(message("webchat", queue="support") for _ in range(3)))
        async with rt.read() as conn:
            volume = (await conn.execute(select(func.sum(tables.report_hours.c.volume)))).scalar()
        arrivals = await writes()
        assert await report_rollup.catch_up(rt)
        after_catch_up = await writes()
        await routing_service.set_agent_status(rt, agent_id=ada, status=AgentStatus.AVAILABLE)
        await routing_service.accept_offer(rt, ticket_id=ids[0], principal=who(ada))
        await reply(rt, ticket_id=ids[0], principal=who(ada), text="on it")
        assert await report_rollup.catch_up(rt)
        after_reply = await writes()
    assert (volume, arrivals, after_catch_up) == (3, 3, 3)
    assert after_reply == 5  # the answered ticket's row: taken back and written again
    today = datetime.now(UTC).date()
    r = reports.report_range(today, today, "hour", "UTC")
    assert _same(await reports.collect(rt, r), await _direct(rt, r))


async def test_two_ingests_counting_the_same_two_hours_at_once_do_not_deadlock(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two transactions (two processes' ingest) count new tickets of the same two hour rows, listed in opposite
    orders, and each pauses after its first row until the other has written one too: both commit, one after the
    other (each adds to the rows in the order of their key), where adding in the order given deadlocked."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite runs one writing transaction at a time")
    import asyncio

    from hub.db import execute as real_execute

    first_rows: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]
    mine: dict[int, int] = {}  # connection -> its index

    async def paced(conn: Any, statement: Any, params: Any = None) -> Any:
        result = await real_execute(conn, statement, params)
        which = mine.get(id(conn))
        if which is not None and not first_rows[which].is_set():
            first_rows[which].set()
            try:  # wait for the other to hold a row too (it cannot, when it waits for this one's)
                await asyncio.wait_for(first_rows[1 - which].wait(), 2)
            except TimeoutError:
                pass
        return result

    monkeypatch.setattr(report_rollup, "execute", paced)
    now = datetime.now(UTC)
    cells = [
        {"created_at": now, "queue_id": 1, "channel": "webchat"},
        {"created_at": now, "queue_id": 1, "channel": "sms"},
    ]

    async def count(which: int, order: list[dict[str, Any]], first_id: int) -> None:
        async with rt.db.begin() as conn:
            mine[id(conn)] = which
            rows = [{**cell, "id": first_id + i} for i, cell in enumerate(order)]
            await report_rollup.count_arrivals(conn, rows)

    await asyncio.gather(count(0, cells, 1000), count(1, cells[::-1], 2000))
    async with rt.read() as conn:
        volumes = dict((await conn.execute(select(tables.report_hours.c.channel, tables.report_hours.c.volume))).all())
    assert volumes == {"webchat": 2, "sms": 2}

"""The reports' hourly rollup: per UTC hour, queue and channel, the sums and counts a report adds up
(``ticketing.reports.FIELDS``), kept from the event log so a report over a month reads a few narrow rows per
hour instead of every ticket of the month (four grouped scans of the tickets took 2-7 s over a bench of a
million messages).

How it stays exact:
- Every change to a ticket's reported columns (created, queued, answered, first reply, rating, abandoned,
  solved, its queue) appends an event naming the ticket, in the same transaction. ``catch_up`` reads the events
  after ``report_cursor.seq``, and for each ticket they name takes back what the ticket last added
  (``report_tickets.cells``) and adds what its row counts for now: the rollup is a function of the ticket rows,
  not of the events' payloads, so applying a ticket twice changes nothing.
- Every ticket is created by ingest, which counts its arrival in the same transaction (``count_arrivals``,
  with the values in hand). A catch-up skips a counted ticket that only its creation and routing's queueing
  and offers name, unless it is answered or abandoned: those events change nothing else a figure reads
  (``_named_tickets``). During a burst of arrivals this is nearly every ticket: the rollup had cost a quarter
  of an arrival's CPU time in ingest, reading every ticket back.
- The cursor, the cells and the hour rows change in one transaction, under the cursor's row lock on
  PostgreSQL (several processes may catch up; one at a time applies a batch) and SQLite's write lock.
- Seqs are handed out in commit order (``hub.events.append_events`` holds a lock to commit), so no event can
  appear behind the cursor later.
- Events pruned before the rollup took them in (``hub.events.prune_events``; no process ran for longer than
  the log is kept): it is counted again from the tickets.
- No cursor row: the rollup was never built (a new or upgraded database); ``rebuild`` counts every ticket, and
  until then reports read the tickets directly.

Each figure is counted in the hour it happened, as the direct report counts it. The service level's threshold
is the queue's current one, for every period, as the direct report applies it: when a queue's
``service_level_seconds`` changes (``schedule_recount``, in the change's transaction), the ``report-rollup``
job counts the queue's answered and abandoned tickets again, a batch per transaction (``recount``), and the
reports show its progress until it is done. (Reporting past periods with the threshold of their time would
make a report's service level mix thresholds whenever a ticket is touched after the change, and could not
agree with a count from the tickets.)
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, exists, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import execute, fetch_records, insert_rows, one_of_param
from hub.events import Event, EventType, seq_bounds
from hub.runtime import Runtime
from ticketing.tables import queues, report_cursor, report_hours, report_recounts, report_tickets, tickets

FIELDS = (
    "volume",
    "first_responses",
    "first_response_sum",
    "rated",
    "rating_sum",
    "answered",
    "answered_within",
    "wait_sum",
    "abandoned",
    "abandoned_after",
    "solved",
    "handle_sum",
    "handled",
    "resolution_sum",
    "abandon_wait_sum",
)
_INTEGER = {"volume", "first_responses", "rated", "rating_sum", "answered", "answered_within", "abandoned",
            "abandoned_after", "solved", "handled"}  # fmt: skip
ROLLUP_LOCK_KEY = 0x5B0A_4D03  # beside hub.events' and routing's advisory locks
# Tickets applied per transaction: bounds how long one catch-up holds the write lock.
BATCH = 2000
_events = Event.__table__  # type: ignore[attr-defined]
_COLUMNS = (
    tickets.c.id,
    tickets.c.queue_id,
    tickets.c.channel,
    tickets.c.created_at,
    tickets.c.queued_at,
    tickets.c.first_response_at,
    tickets.c.rating,
    tickets.c.answered_at,
    tickets.c.abandoned_at,
    tickets.c.solved_at,
    func.coalesce(queues.c.service_level_seconds, 60).label("threshold"),
)

Cell = tuple[int, int, str]


def _hour(at: datetime) -> int:
    return int(at.timestamp()) // 3600


def _seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def contributions(row: Any) -> dict[Cell, dict[str, float]]:
    """What one ticket row adds to each (hour, queue id or 0, channel) cell, by the definitions of
    ``ticketing.reports``."""
    q, ch = row.queue_id or 0, row.channel
    if (
        row.first_response_at is None
        and row.rating is None
        and row.answered_at is None
        and row.abandoned_at is None
        and row.solved_at is None
    ):
        # Nothing yet but its arrival (nearly every ticket a catch-up meets during a burst of arrivals).
        return {(_hour(row.created_at), q, ch): {"volume": 1}}
    out: dict[Cell, dict[str, float]] = {}

    def add(at: datetime, **values: float) -> None:
        cell = out.setdefault((_hour(at), q, ch), {})
        for k, v in values.items():
            cell[k] = cell.get(k, 0) + v

    created = row.created_at
    first = row.first_response_at
    add(
        created,
        volume=1,
        first_responses=1 if first is not None else 0,
        first_response_sum=_seconds(first, created) if first is not None else 0.0,
        rated=1 if row.rating is not None else 0,
        rating_sum=row.rating or 0,
    )
    queued = row.queued_at or created
    if row.answered_at is not None:
        wait = _seconds(row.answered_at, queued)
        add(row.answered_at, answered=1, answered_within=1 if wait <= row.threshold else 0, wait_sum=wait)
    if row.abandoned_at is not None:
        gave_up = _seconds(row.abandoned_at, queued)
        add(
            row.abandoned_at, abandoned=1, abandoned_after=1 if gave_up > row.threshold else 0, abandon_wait_sum=gave_up
        )
    if row.solved_at is not None:
        answered = row.answered_at is not None
        add(
            row.solved_at,
            solved=1,
            handle_sum=_seconds(row.solved_at, row.answered_at) if answered else 0.0,
            handled=1 if answered else 0,
            resolution_sum=_seconds(row.solved_at, created),
        )
    cells = {k: {f: v for f, v in cell.items() if v} for k, cell in out.items()}
    return {k: values for k, values in cells.items() if values}


def _encode(cells: dict[Cell, dict[str, float]]) -> list[Any]:
    return [[h, q, ch, values] for (h, q, ch), values in cells.items() if values]


def _decode(stored: list[Any]) -> dict[Cell, dict[str, float]]:
    return {(int(h), int(q), str(ch)): dict(values) for h, q, ch, values in stored}


# The tickets' reported columns and what each counted for last (``cells``, NULL if never counted), for the ids
# bound as ``ids``; then the cells of tickets that are gone (none of the first's rows). Built once per dialect
# and sent to the driver directly (``hub.db.fetch_records``): a catch-up reads every ticket its events name.
_READ = {
    dialect: (
        select(*_COLUMNS, report_tickets.c.cells)
        .select_from(
            tickets.outerjoin(queues, queues.c.id == tickets.c.queue_id).outerjoin(
                report_tickets, report_tickets.c.ticket_id == tickets.c.id
            )
        )
        .where(one_of_param(dialect, tickets.c.id, "ids")),
        select(report_tickets.c.ticket_id, report_tickets.c.cells).where(
            one_of_param(dialect, report_tickets.c.ticket_id, "ids")
        ),
        report_tickets.delete().where(one_of_param(dialect, report_tickets.c.ticket_id, "ids")),
    )
    for dialect in ("sqlite", "postgresql")
}


async def apply_tickets(conn: AsyncConnection, ticket_ids: list[int]) -> None:
    """Take back what ``ticket_ids`` last added and add what their rows count for now (in the caller's
    transaction: a change no event names, such as a deleted queue's tickets leaving it, applies itself)."""
    read, read_gone, forget = _READ[conn.dialect.name]
    delta: dict[Cell, dict[str, float]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0.0))
    for i in range(0, len(ticket_ids), 500):
        chunk = ticket_ids[i : i + 500]
        rows = await fetch_records(conn, read, {"ids": chunk})
        old: dict[int, dict[Cell, dict[str, float]]] = {}
        new: dict[int, dict[Cell, dict[str, float]]] = {}
        stale: list[int] = []  # whose cells change
        for r in rows:
            cells = contributions(r)
            before = None if r.cells is None else _decode(r.cells)
            # A ticket that counts for what it counted for already (most of what a catch-up is named: a
            # ticket queued, offered or touched in a way no figure reads) costs no write.
            if before != cells:
                stale.append(r.id)
                new[r.id] = cells
                if before is not None:
                    old[r.id] = before
        if len(rows) < len(chunk):  # tickets deleted since they were counted: what they added is taken back
            found = {r.id for r in rows}
            gone = [tid for tid in chunk if tid not in found]
            for r in await fetch_records(conn, read_gone, {"ids": gone}):
                old[r.ticket_id] = _decode(r.cells)
                stale.append(r.ticket_id)
        for tid in stale:
            for cell, values in old.get(tid, {}).items():
                for k, v in values.items():
                    delta[cell][k] -= v
            for cell, values in new.get(tid, {}).items():
                for k, v in values.items():
                    delta[cell][k] += v
        if old:
            await execute(conn, forget, {"ids": list(old)})
        await insert_rows(conn, report_tickets, [{"ticket_id": tid, "cells": _encode(new[tid])} for tid in new])
    await _add_hours(conn, delta)


async def _add_hours(conn: AsyncConnection, delta: dict[Cell, dict[str, float]]) -> None:
    """Add ``delta`` (each cell with every field of ``FIELDS``) to the hour rows, in the order of their key: every
    writer (ingest's transactions in every process, a catch-up) locks the rows it adds to in one order, so two of
    them adding to the same two rows wait for each other instead of deadlocking (PostgreSQL)."""
    changed = [
        {"hour": h, "queue_id": q, "channel": ch, **{k: int(v) if k in _INTEGER else v for k, v in values.items()}}
        for (h, q, ch), values in sorted(delta.items())
        if any(values.values())
    ]
    if len(changed) <= 4:
        # A catch-up during arrivals, or one batch of ingest's (``count_arrivals``): a cell or two, each one
        # statement built once and sent to the driver directly (building and compiling the upsert for each
        # batch cost ingest more than its rows did)
        for row in changed:
            await execute(conn, _ADD_HOUR[conn.dialect.name], row)
        return
    await conn.execute(_upsert_hours(conn.dialect.name), changed)


def _upsert_hours(dialect: str, values: dict[str, Any] | None = None) -> Any:
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(report_hours)
    if values is not None:
        insert = insert.values(values)
    return insert.on_conflict_do_update(
        index_elements=["hour", "queue_id", "channel"],
        set_={k: report_hours.c[k] + insert.excluded[k] for k in FIELDS},
    )


_ADD_HOUR = {
    dialect: _upsert_hours(dialect, {c: bindparam(c) for c in ("hour", "queue_id", "channel", *FIELDS)})
    for dialect in ("sqlite", "postgresql")
}


async def count_arrivals(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Count tickets in the transaction that creates them (ingest's, where every ticket is created): a new
    ticket counts for its arrival alone (no reply, rating, answer, abandonment or solve yet), known without
    reading it back. The catch-up that later meets its ``ticket.created`` (and the routing that queued or
    offered it) finds it counted and leaves it (``_named_tickets``).

    Written whether or not the rollup is built: a build empties the rollup and counts every ticket anyway. On
    PostgreSQL: a catch-up running meanwhile stays exact (these rows and the ticket commit together, and a
    catch-up reads a ticket and its row in one statement, finding both or neither); a build waits for this
    transaction (the rollup's lock, shared here), and while one runs nothing is counted here, so that no
    arrival lands between the build's deletes: it or a later catch-up counts these tickets, which have no row
    yet."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        shared = text("SELECT pg_try_advisory_xact_lock_shared(:k)")
        if not (await conn.execute(shared, {"k": ROLLUP_LOCK_KEY})).scalar():
            return
    delta: dict[Cell, dict[str, float]] = {}
    stored = []
    for r in rows:
        cell = (_hour(r["created_at"]), r["queue_id"] or 0, r["channel"])
        delta.setdefault(cell, dict.fromkeys(FIELDS, 0.0))["volume"] += 1
        stored.append({"ticket_id": r["id"], "cells": _encode({cell: {"volume": 1}})})
    await insert_rows(conn, report_tickets, stored)
    await _add_hours(conn, delta)


# Events that never change what a ticket counts for: a message's (a customer's reopens the ticket, an agent's
# first reply stamps first_response_at: each with its own ticket.updated). In a busy live chat they are nearly
# all the events; recounting their tickets every pass took SQLite's one writer long enough to show in chat
# latency (bench.chat p99).
_NO_TICKET_CHANGE = frozenset({EventType.MESSAGE_CREATED.value, EventType.MESSAGE_STATUS.value})
# A ticket's creation (counted by ingest in its transaction, ``count_arrivals``) and routing's offers and queueing,
# which move only ``queued_at`` of what a figure reads (and the SLA deadlines, offers and reasons, which none
# reads): a ticket that events of these kinds alone name, that is counted, and that is neither answered nor
# abandoned (the waits that read ``queued_at``) counts for what it counted for already: a catch-up skips it.
# During a burst of arrivals, nearly every ticket a catch-up meets.
_ROUTED = (EventType.TICKET_CREATED.value, EventType.TICKET_QUEUED.value, EventType.TICKET_OFFERED.value)


async def _locked_cursor(conn: AsyncConnection) -> int | None:
    stmt = select(report_cursor.c.seq).where(report_cursor.c.id == 1)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    value = (await conn.execute(stmt)).scalar()
    return None if value is None else int(value)


async def rebuild(rt: Runtime, *, only_if_missing: bool = False) -> None:
    """Count every ticket afresh (a new or upgraded database, or tickets written behind the event log's back,
    as bulk seeding does): empties the rollup, applies every ticket, and sets the cursor to the newest event.
    One process at a time (several starting together on PostgreSQL all find no cursor): the others wait, and
    with ``only_if_missing`` find it built and leave it."""
    async with rt.db.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ROLLUP_LOCK_KEY})
        if await _locked_cursor(conn) is not None and only_if_missing:
            return
        newest = (await conn.execute(select(func.coalesce(func.max(_events.c.seq), 0)))).scalar() or 0
        await conn.execute(report_hours.delete())
        await conn.execute(report_tickets.delete())
        await conn.execute(report_cursor.delete())
        await conn.execute(report_recounts.delete())  # every ticket is counted with the thresholds of now
        await conn.execute(report_cursor.insert().values(id=1, seq=int(newest)))
        last = 0
        while True:
            ids = list(
                (
                    await conn.execute(
                        select(tickets.c.id).where(tickets.c.id > last).order_by(tickets.c.id).limit(BATCH * 5)
                    )
                ).scalars()
            )
            if not ids:
                break
            await apply_tickets(conn, ids)
            last = ids[-1]


async def catch_up(rt: Runtime, *, build: bool = False) -> bool:
    """Take in the events after the cursor; whether the rollup is ready (built). Without a cursor it builds
    the rollup when ``build`` is set (the periodic job), and otherwise leaves it to that job; the periodic job
    also goes on with the recounts of changed thresholds. Reads first, so a rollup that is up to date costs no
    write transaction."""
    ready = await _take_in(rt, build=build)
    if ready and build:
        await recount(rt)
    return ready


async def schedule_recount(conn: AsyncConnection, queue_id: int) -> None:
    """Count ``queue_id``'s answered and abandoned tickets again under its new service-level threshold (in
    the transaction that changes it); a recount under way starts over. Under the cursor's lock, as the job's
    batches: a batch counted under the old threshold cannot write its progress over the fresh start."""
    if await _locked_cursor(conn) is None:
        return  # not built yet: the build counts every ticket with the thresholds of then
    total = (
        await conn.execute(select(func.count()).select_from(tickets).where(tickets.c.queue_id == queue_id, _WAITED))
    ).scalar() or 0
    await conn.execute(report_recounts.delete().where(report_recounts.c.queue_id == queue_id))
    await conn.execute(report_recounts.insert().values(queue_id=queue_id, next_ticket_id=0, done=0, total=total))


# The tickets a threshold counts for: only those answered or abandoned.
_WAITED = or_(tickets.c.answered_at.is_not(None), tickets.c.abandoned_at.is_not(None))


async def recount(rt: Runtime, *, batches: int = 5) -> None:
    """Go on with the recounts of queues whose threshold changed: up to ``batches`` batches of ``BATCH``
    tickets, each in its own transaction under the cursor's lock (as ``catch_up``), so the job also takes
    in new events between long recounts. Reads first: with nothing to recount (nearly always) it takes no
    write lock."""
    async with rt.read() as conn:
        if (await conn.execute(select(report_recounts.c.queue_id).limit(1))).first() is None:
            return
    for _ in range(batches):
        async with rt.db.begin() as conn:
            if await _locked_cursor(conn) is None:
                return  # not built: the rebuild counts every ticket with the current thresholds
            job = (await conn.execute(select(report_recounts).order_by(report_recounts.c.queue_id).limit(1))).first()
            if job is None:
                return
            ids = list(
                (
                    await conn.execute(
                        select(tickets.c.id)
                        .where(tickets.c.queue_id == job.queue_id, tickets.c.id > job.next_ticket_id, _WAITED)
                        .order_by(tickets.c.id)
                        .limit(BATCH)
                    )
                ).scalars()
            )
            if not ids:
                await conn.execute(report_recounts.delete().where(report_recounts.c.queue_id == job.queue_id))
                continue
            await apply_tickets(conn, ids)
            await conn.execute(
                report_recounts.update()
                .where(report_recounts.c.queue_id == job.queue_id)
                .values(next_ticket_id=ids[-1], done=job.done + len(ids))
            )


async def recounts(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The recounts under way: queue id, tickets counted again so far and in all."""
    rows = await conn.execute(select(report_recounts).order_by(report_recounts.c.queue_id))
    return [{"queue_id": r.queue_id, "done": r.done, "total": max(r.total, r.done)} for r in rows]


async def _take_in(rt: Runtime, *, build: bool) -> bool:
    while True:
        async with rt.read() as conn:
            seq = (await conn.execute(select(report_cursor.c.seq).where(report_cursor.c.id == 1))).scalar()
            oldest, newest = await seq_bounds(conn)
        if seq is None:
            if not build:
                return False
            await rebuild(rt, only_if_missing=True)
            continue
        if oldest > seq + 1:
            # Events it never took in were pruned (no process ran the job for longer than the log is kept):
            # only counting every ticket again is exact.
            await rebuild(rt)
            continue
        if newest <= seq:
            return True
        # Which tickets the next batch of events names is read before the write lock is taken (committed
        # events never change), in the database rather than event by event: a batch of ingest is mostly
        # messages' events and names each ticket several times.
        async with rt.read() as conn:
            last, ids = await _named_tickets(conn, seq, newest)
        async with rt.db.begin() as conn:
            if await _locked_cursor(conn) != seq:
                continue  # another process took them in meanwhile
            await apply_tickets(conn, ids)
            await conn.execute(report_cursor.update().where(report_cursor.c.id == 1).values(seq=last))


async def _named_tickets(conn: AsyncConnection, after: int, newest: int) -> tuple[int, list[int]]:
    """The next batch of events after seq ``after``: its last seq, and the tickets its events name whose
    figures they may change."""
    last = (
        await conn.execute(
            select(_events.c.seq).where(_events.c.seq > after).order_by(_events.c.seq).offset(BATCH * 4 - 1).limit(1)
        )
    ).scalar()
    last = newest if last is None else int(last)
    named = (
        select(_events.c.ticket_id)
        .where(
            _events.c.seq > after,
            _events.c.seq <= last,
            _events.c.ticket_id.is_not(None),
            _events.c.type.not_in(_NO_TICKET_CHANGE),
        )
        .group_by(_events.c.ticket_id)
        .having(
            or_(
                # named by an event that may change what it counts for
                func.max(case((_events.c.type.in_(_ROUTED), 0), else_=1)) == 1,
                # not counted yet (created before its ingest counted arrivals, or the rollup was emptied)
                ~exists().where(report_tickets.c.ticket_id == _events.c.ticket_id),
                # answered or abandoned: its wait runs from queued_at, which routing may have moved (or gone)
                ~exists().where(
                    tickets.c.id == _events.c.ticket_id,
                    tickets.c.answered_at.is_(None),
                    tickets.c.abandoned_at.is_(None),
                ),
            )
        )
    )
    ids = (await conn.execute(named)).scalars()
    return last, sorted(int(i) for i in ids)

"""Reports over a date range, by hour, day or week: volume by channel and queue; first response, handle and
resolution times; service level; abandonment; satisfaction (CSAT). Each figure is counted when it happened:
volume, first response and CSAT by the ticket's creation, answers by their answer, abandonment by its time,
handle and resolution times by the solve.

Definitions (as the wallboard's): answered = first taken by an agent; service level = answered within T /
(answered + abandoned after T), T the queue's ``service_level_seconds``; abandonment = abandoned / created;
first response = first reply - creation; handle = solved - answered; resolution = solved - creation.

Dates are calendar days in ``SWITCHBOARD_SUPERVISOR_TIMEZONE``; buckets are of fixed length (an hour, a day,
a week) from the start's midnight there. Each figure is one grouped statement on an index of its time
column, so a report costs what the tickets in its range cost, not the whole table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, case, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.csv_export import spreadsheet_safe
from hub.errors import SwitchboardError
from hub.runtime import Runtime
from ticketing.tables import queues, tickets

Bucket = Literal["hour", "day", "week"]
BUCKET_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
# The longest range each bucket may cover: beyond it a report would be a wall of bars (and a long scan).
MAX_DAYS = {"hour": 31, "day": 366, "week": 5 * 366}


class ReportRangeInvalid(SwitchboardError):
    status = 422
    code = "report_range_invalid"


@dataclass(frozen=True, slots=True)
class Range:
    start: datetime  # UTC
    end: datetime  # UTC, exclusive
    bucket: Bucket
    labels: list[str]

    @property
    def size(self) -> int:
        return BUCKET_SECONDS[self.bucket]


def report_range(start: date, end: date, bucket: Bucket, timezone: str) -> Range:
    """The UTC bounds and bucket labels of the days ``start`` to ``end`` (both included); refuses an end
    before the start and a range longer than the bucket allows, naming the field."""
    if end < start:
        raise ReportRangeInvalid("end is before start", loc=("query", "end"))
    days = (end - start).days + 1
    if days > MAX_DAYS[bucket]:
        raise ReportRangeInvalid(
            f"a report by {bucket} covers at most {MAX_DAYS[bucket]} days; this range has {days}: "
            f"shorten it or choose a longer bucket",
            loc=("query", "end"),
        )
    zone = ZoneInfo(timezone)
    first = datetime.combine(start, time(0), tzinfo=zone).astimezone(UTC)
    last = datetime.combine(end + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    size = BUCKET_SECONDS[bucket]
    count = -(-int((last - first).total_seconds()) // size)
    fmt = "%Y-%m-%d %H:00" if bucket == "hour" else "%Y-%m-%d"
    labels = [(first + timedelta(seconds=i * size)).astimezone(zone).strftime(fmt) for i in range(count)]
    return Range(first, last, bucket, labels)


def _epoch(conn: AsyncConnection, column: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _bucket(conn: AsyncConnection, column: Any, r: Range) -> Any:
    if conn.dialect.name == "postgresql":
        offset = (_epoch(conn, column) - literal(r.start.timestamp())) / literal(float(r.size))
        return cast(func.floor(offset), Integer)
    # julianday() is a float of days: 10:00:00 may come out a hair before; a millisecond more puts it back.
    # Never negative in the range: truncation is the floor.
    offset = (_epoch(conn, column) - literal(r.start.timestamp() - 0.001)) / literal(float(r.size))
    return cast(offset, Integer)


def _seconds(conn: AsyncConnection, later: Any, earlier: Any) -> Any:
    return _epoch(conn, later) - _epoch(conn, earlier)


def _filters(queue_id: int | None, channel: str | None) -> list[Any]:
    out = []
    if queue_id is not None:
        out.append(tickets.c.queue_id == queue_id)
    if channel:
        out.append(tickets.c.channel == channel)
    return out


async def _grouped(conn: AsyncConnection, column: Any, r: Range, extra: list[Any], measures: list[Any]) -> list[Any]:
    b = _bucket(conn, column, r).label("b")
    stmt = (
        select(b, tickets.c.queue_id, tickets.c.channel, *measures)
        .select_from(tickets.outerjoin(queues, queues.c.id == tickets.c.queue_id))
        .where(column >= r.start, column < r.end, *extra)
        .group_by(b, tickets.c.queue_id, tickets.c.channel)
    )
    return list((await conn.execute(stmt)).all())


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
)


async def collect(
    rt: Runtime, r: Range, *, queue_id: int | None = None, channel: str | None = None
) -> dict[tuple[int, int | None, str], dict[str, float]]:
    """(bucket, queue id, channel) -> the sums and counts of ``FIELDS``."""
    extra = _filters(queue_id, channel)
    out: dict[tuple[int, int | None, str], dict[str, float]] = {}

    def add(rows: list[Any], names: tuple[str, ...]) -> None:
        for row in rows:
            cell = out.setdefault((int(row[0]), row[1], row[2]), dict.fromkeys(FIELDS, 0.0))
            for name, value in zip(names, row[3:], strict=True):
                cell[name] += float(value or 0)

    threshold = func.coalesce(queues.c.service_level_seconds, 60)
    async with rt.read() as conn:
        created = tickets.c.created_at
        first = _seconds(conn, tickets.c.first_response_at, created)
        add(
            await _grouped(
                conn,
                created,
                r,
                extra,
                [
                    func.count(),
                    func.count(tickets.c.first_response_at),
                    func.sum(case((tickets.c.first_response_at.is_not(None), first), else_=0)),
                    func.count(tickets.c.rating),
                    func.sum(func.coalesce(tickets.c.rating, 0)),
                ],
            ),
            ("volume", "first_responses", "first_response_sum", "rated", "rating_sum"),
        )
        queued = func.coalesce(tickets.c.queued_at, created)
        wait = _seconds(conn, tickets.c.answered_at, queued)
        add(
            await _grouped(
                conn,
                tickets.c.answered_at,
                r,
                extra,
                [func.count(), func.sum(case((wait <= threshold, 1), else_=0)), func.sum(wait)],
            ),
            ("answered", "answered_within", "wait_sum"),
        )
        gave_up = _seconds(conn, tickets.c.abandoned_at, queued)
        add(
            await _grouped(
                conn,
                tickets.c.abandoned_at,
                r,
                extra,
                [func.count(), func.sum(case((gave_up > threshold, 1), else_=0))],
            ),
            ("abandoned", "abandoned_after"),
        )
        answered = tickets.c.answered_at.is_not(None)
        add(
            await _grouped(
                conn,
                tickets.c.solved_at,
                r,
                extra,
                [
                    func.count(),
                    func.sum(case((answered, _seconds(conn, tickets.c.solved_at, tickets.c.answered_at)), else_=0)),
                    func.sum(case((answered, 1), else_=0)),
                    func.sum(_seconds(conn, tickets.c.solved_at, created)),
                ],
            ),
            ("solved", "handle_sum", "handled", "resolution_sum"),
        )
    return {k: v for k, v in out.items() if 0 <= k[0] < len(r.labels)}


def figures(cell: dict[str, float]) -> dict[str, float | None]:
    """The report's figures from sums and counts."""

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return {
        "volume": cell["volume"],
        "answered": cell["answered"],
        "abandoned": cell["abandoned"],
        "solved": cell["solved"],
        "service_level": ratio(cell["answered_within"], cell["answered"] + cell["abandoned_after"]),
        "abandonment": ratio(cell["abandoned"], cell["volume"]),
        "asa": ratio(cell["wait_sum"], cell["answered"]),
        "first_response_avg": ratio(cell["first_response_sum"], cell["first_responses"]),
        "handle_avg": ratio(cell["handle_sum"], cell["handled"]),
        "resolution_avg": ratio(cell["resolution_sum"], cell["solved"]),
        "csat": ratio(cell["rating_sum"], cell["rated"]),
    }


def _sum(cells: list[dict[str, float]]) -> dict[str, float]:
    total = dict.fromkeys(FIELDS, 0.0)
    for c in cells:
        for k in FIELDS:
            total[k] += c[k]
    return total


CHARTS = ("volume", "service_level", "answered_abandoned", "times")


async def summary(rt: Runtime, r: Range, *, queue_id: int | None = None, channel: str | None = None) -> dict[str, Any]:
    """The report as JSON: totals, a series per bucket, and volume per bucket by channel and by queue."""
    data = await collect(rt, r, queue_id=queue_id, channel=channel)
    async with rt.read() as conn:
        names = {q.id: q.name for q in await conn.execute(select(queues.c.id, queues.c.name))}
    by_bucket: list[list[dict[str, float]]] = [[] for _ in r.labels]
    by_channel: dict[str, list[float]] = {}
    by_queue: dict[str, list[float]] = {}
    for (b, qid, ch), cell in data.items():
        by_bucket[b].append(cell)
        by_channel.setdefault(ch, [0.0] * len(r.labels))[b] += cell["volume"]
        qname = names.get(qid, "(no queue)") if qid is not None else "(no queue)"
        by_queue.setdefault(qname, [0.0] * len(r.labels))[b] += cell["volume"]
    return {
        "start": r.start.isoformat(),
        "end": r.end.isoformat(),
        "bucket": r.bucket,
        "timezone": rt.settings.supervisor_timezone,
        "labels": r.labels,
        "totals": {**figures(_sum(list(data.values()))), "deflections": None},
        "series": [figures(_sum(cells)) for cells in by_bucket],
        "volume_by_channel": dict(sorted(by_channel.items())),
        "volume_by_queue": dict(sorted(by_queue.items())),
        "charts": list(CHARTS),
    }


CSV_COLUMNS = (
    "bucket",
    "queue",
    "channel",
    "volume",
    "answered",
    "abandoned",
    "solved",
    "service_level",
    "abandonment",
    "asa",
    "first_response_avg",
    "handle_avg",
    "resolution_avg",
    "csat",
)


async def summary_csv(rt: Runtime, r: Range, *, queue_id: int | None = None, channel: str | None = None) -> str:
    """One row per bucket, queue and channel; every cell a spreadsheet would run as a formula (=, +, -, @) is
    made text."""
    data = await collect(rt, r, queue_id=queue_id, channel=channel)
    async with rt.read() as conn:
        names = {q.id: q.name for q in await conn.execute(select(queues.c.id, queues.c.name))}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for (b, qid, ch), cell in sorted(data.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])):
        f = figures(cell)
        values: list[Any] = [r.labels[b], names.get(qid, "") if qid is not None else "", ch]
        values += [("" if f[c] is None else round(f[c], 4)) for c in CSV_COLUMNS[3:]]  # type: ignore[arg-type]
        writer.writerow([spreadsheet_safe(v) for v in values])
    return out.getvalue()

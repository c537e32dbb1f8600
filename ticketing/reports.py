"""Reports over a date range, by hour, day or week: volume by channel and queue; first response, handle and
resolution times; service level; abandonment; satisfaction (CSAT). Each figure is counted when it happened:
volume, first response and CSAT by the ticket's creation, answers by their answer, abandonment by its time,
handle and resolution times by the solve.

Definitions (as the wallboard's): answered = first taken by an agent; service level = answered within T /
(answered + abandoned after T), T the queue's ``service_level_seconds``; abandonment = abandoned / created;
first response = first reply - creation; handle = solved - answered; resolution = solved - creation.

Days are calendar days in each queue's own timezone (its business hours', else
``SWITCHBOARD_SUPERVISOR_TIMEZONE``): a queue in New York and one in Madrid each count "2 Nov" from their own
midnight, and a day across a DST change is 23 or 25 hours long. Hours are UTC hours, labelled in the report's
timezone (the filtered queue's, else the setting's; the repeated hour of a fall-back night names its offset).
Service level applies each queue's current threshold T to every period, past ones included: after T changes,
the rollup counts the queue's tickets again in the background and the summary's ``recounting`` lists the
queues still being counted (tickets done / total).

Figures come from the hourly rollup (``ticketing.report_rollup``): a report costs a few narrow rows per hour
of its range, not the tickets of it. The tickets are read directly only until the rollup is first built and
for a timezone whose days do not begin on a UTC hour (India's, Nepal's...).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, case, cast, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.csv_export import spreadsheet_safe
from hub.errors import SwitchboardError
from hub.hours import calendar_zone, local_midnight
from hub.runtime import Runtime
from ticketing import report_rollup
from ticketing.tables import queues, report_hours, tickets

Bucket = Literal["hour", "day", "week"]
BUCKET_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400}
# The longest range each bucket may cover: beyond it a report would be a wall of bars (and a long scan).
MAX_DAYS = {"hour": 31, "day": 366, "week": 5 * 366}


class ReportRangeInvalid(SwitchboardError):
    status = 422
    code = "report_range_invalid"


@dataclass(frozen=True, slots=True)
class Range:
    first_day: date
    last_day: date  # included
    bucket: Bucket
    zone: str  # the timezone of the labels (and of the hour buckets' range)
    start: datetime  # UTC, the first day's midnight in ``zone``
    end: datetime  # UTC, exclusive
    labels: list[str]

    @property
    def size(self) -> int:
        return BUCKET_SECONDS[self.bucket]

    def bounds(self, zone: str) -> list[int]:
        """The buckets' boundaries in epoch seconds for a queue whose days are in ``zone``: local midnights
        for days and weeks (DST-correct: 23 or 25 hours apart across a change), UTC hours for hours."""
        if self.bucket == "hour":
            first = int(self.start.timestamp())
            return [first + 3600 * i for i in range(len(self.labels) + 1)]
        tz = ZoneInfo(zone)
        step = 1 if self.bucket == "day" else 7
        days = [self.first_day + timedelta(days=step * i) for i in range(len(self.labels))]
        days.append(self.last_day + timedelta(days=1))
        return [int(local_midnight(d, tz).timestamp()) for d in days]


def report_range(start: date, end: date, bucket: Bucket, timezone: str) -> Range:
    """The UTC bounds and bucket labels of the days ``start`` to ``end`` (both included) in ``timezone``;
    refuses an end before the start and a range longer than the bucket allows, naming the field."""
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
    first = local_midnight(start, zone)
    last = local_midnight(end + timedelta(days=1), zone)
    if bucket == "hour":
        labels: list[str] = []
        for i in range(-(-int((last - first).total_seconds()) // 3600)):
            local = (first + timedelta(hours=i)).astimezone(zone)
            label = local.strftime("%Y-%m-%d %H:00")
            # the hour a fall-back night repeats is named with its offset, the second time
            labels.append(f"{label} {local.strftime('%z')}" if labels and labels[-1].startswith(label) else label)
    else:
        step = 1 if bucket == "day" else 7
        labels = [(start + timedelta(days=i)).isoformat() for i in range(0, days, step)]
    return Range(start, end, bucket, timezone, first, last, labels)


def _epoch(conn: AsyncConnection, column: Any) -> Any:
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


def _runs(bounds: list[int]) -> list[tuple[int, int, int, int]]:
    """``bounds`` cut into runs of equally long buckets: (first bucket, its start, length, the run's end)."""
    out = []
    i = 0
    while i < len(bounds) - 1:
        step = bounds[i + 1] - bounds[i]
        j = i + 1
        while j < len(bounds) - 1 and bounds[j + 1] - bounds[j] == step:
            j += 1
        out.append((i, bounds[i], step, bounds[j]))
        i = j
    return out


def _rollup_bucket(bounds: list[int]) -> Any:
    """The bucket of a rollup row, from its hour (an integer): exact integer arithmetic, run by run."""
    hour = report_hours.c.hour
    whens = [
        (hour < end // 3600, literal(first) + (hour - literal(lo // 3600)) // literal(step // 3600))
        for first, lo, step, end in _runs(bounds)
    ]
    return case(*whens, else_=literal(len(bounds)))


def _ticket_bucket(conn: AsyncConnection, column: Any, bounds: list[int]) -> Any:
    """The bucket of a ticket's moment (a float of epoch seconds), run by run."""
    epoch = _epoch(conn, column)
    whens = []
    for first, lo, step, end in _runs(bounds):
        if conn.dialect.name == "postgresql":
            index = cast(func.floor((epoch - literal(lo)) / literal(float(step))), Integer)
        else:
            # julianday() is a float of days: 10:00:00 may come out a hair before; a millisecond more puts it
            # back. Never negative in the range: truncation is the floor.
            index = cast((epoch - literal(lo - 0.001)) / literal(float(step)), Integer)
        whens.append((epoch < literal(end - 0.001), literal(first) + index))
    return case(*whens, else_=literal(len(bounds)))


def _seconds(conn: AsyncConnection, later: Any, earlier: Any) -> Any:
    return _epoch(conn, later) - _epoch(conn, earlier)


def _queue_filter(column: Any, ids: list[int], none: bool, none_value: Any) -> Any:
    condition = column.in_(ids) if ids else literal(False)
    return or_(condition, column.is_(None) if none_value is None else column == none_value) if none else condition


async def _grouped(
    conn: AsyncConnection, column: Any, bounds: list[int], where: list[Any], measures: list[Any]
) -> list[Any]:
    b = _ticket_bucket(conn, column, bounds).label("b")
    lo, hi = datetime.fromtimestamp(bounds[0], UTC), datetime.fromtimestamp(bounds[-1], UTC)
    stmt = (
        select(b, tickets.c.queue_id, tickets.c.channel, *measures)
        .select_from(tickets.outerjoin(queues, queues.c.id == tickets.c.queue_id))
        .where(column >= lo, column < hi, *where)
        .group_by(b, tickets.c.queue_id, tickets.c.channel)
    )
    return list((await conn.execute(stmt)).all())


FIELDS = report_rollup.FIELDS
Cells = dict[tuple[int, int | None, str], dict[str, float]]


async def _from_tickets(conn: AsyncConnection, bounds: list[int], where: list[Any], add: Any) -> None:
    threshold = func.coalesce(queues.c.service_level_seconds, 60)
    created = tickets.c.created_at
    first = _seconds(conn, tickets.c.first_response_at, created)
    add(
        await _grouped(
            conn,
            created,
            bounds,
            where,
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
            bounds,
            where,
            [func.count(), func.sum(case((wait <= threshold, 1), else_=0)), func.sum(wait)],
        ),
        ("answered", "answered_within", "wait_sum"),
    )
    gave_up = _seconds(conn, tickets.c.abandoned_at, queued)
    add(
        await _grouped(
            conn,
            tickets.c.abandoned_at,
            bounds,
            where,
            [func.count(), func.sum(case((gave_up > threshold, 1), else_=0)), func.sum(gave_up)],
        ),
        ("abandoned", "abandoned_after", "abandon_wait_sum"),
    )
    answered = tickets.c.answered_at.is_not(None)
    add(
        await _grouped(
            conn,
            tickets.c.solved_at,
            bounds,
            where,
            [
                func.count(),
                func.sum(case((answered, _seconds(conn, tickets.c.solved_at, tickets.c.answered_at)), else_=0)),
                func.sum(case((answered, 1), else_=0)),
                func.sum(_seconds(conn, tickets.c.solved_at, created)),
            ],
        ),
        ("solved", "handle_sum", "handled", "resolution_sum"),
    )


async def _from_rollup(conn: AsyncConnection, bounds: list[int], where: list[Any], add: Any) -> None:
    b = _rollup_bucket(bounds).label("b")
    stmt = (
        select(b, report_hours.c.queue_id, report_hours.c.channel, *(func.sum(report_hours.c[f]) for f in FIELDS))
        .where(report_hours.c.hour >= bounds[0] // 3600, report_hours.c.hour < bounds[-1] // 3600, *where)
        .group_by(b, report_hours.c.queue_id, report_hours.c.channel)
    )
    add([(row[0], row[1] or None, *row[2:]) for row in await conn.execute(stmt)], FIELDS)


async def report_zones(rt: Runtime, queue_id: int | None = None) -> dict[str, list[int]]:
    """Timezone -> the ids of the queues whose calendar days are in it (only ``queue_id`` when given)."""
    default = rt.settings.supervisor_timezone
    zones: dict[str, list[int]] = {}
    async with rt.read() as conn:
        for q in await conn.execute(select(queues.c.id, queues.c.hours)):
            if queue_id is None or q.id == queue_id:
                zones.setdefault(calendar_zone(q.hours, default), []).append(q.id)
    return zones


async def collect(rt: Runtime, r: Range, *, queue_id: int | None = None, channel: str | None = None) -> Cells:
    """(bucket, queue id, channel) -> the sums and counts of ``FIELDS``; each queue's days in its own
    timezone, work without a queue in the default one."""
    out: Cells = {}

    def add(rows: list[Any], names: tuple[str, ...]) -> None:
        for row in rows:
            cell = out.setdefault((int(row[0]), row[1], row[2]), dict.fromkeys(FIELDS, 0.0))
            for name, value in zip(names, row[3:], strict=True):
                cell[name] += float(value or 0)

    zones = await report_zones(rt, queue_id)
    default = rt.settings.supervisor_timezone
    ready = await report_rollup.catch_up(rt)
    for zone in {*zones, *([default] if queue_id is None else [])}:
        ids, none = zones.get(zone, []), queue_id is None and zone == default
        bounds = r.bounds(zone)
        async with rt.read() as conn:
            if ready and all(b % 3600 == 0 for b in bounds):
                where = [_queue_filter(report_hours.c.queue_id, ids, none, 0)]
                if channel:
                    where.append(report_hours.c.channel == channel)
                await _from_rollup(conn, bounds, where, add)
            else:
                where = [_queue_filter(tickets.c.queue_id, ids, none, None)]
                if channel:
                    where.append(tickets.c.channel == channel)
                await _from_tickets(conn, bounds, where, add)
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


def sum_cells(cells: list[dict[str, float]]) -> dict[str, float]:
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
        recounting = [{**job, "queue": names.get(job["queue_id"], "")} for job in await report_rollup.recounts(conn)]
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
        "timezone": r.zone,
        "labels": r.labels,
        "totals": {**figures(sum_cells(list(data.values()))), "deflections": None},
        "series": [figures(sum_cells(cells)) for cells in by_bucket],
        "volume_by_channel": dict(sorted(by_channel.items())),
        "volume_by_queue": dict(sorted(by_queue.items())),
        "charts": list(CHARTS),
        # queues whose service-level threshold changed and whose past hours are being counted again under it
        "recounting": recounting,
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

"""The staffing forecast: for each queue and hour of the week, the arrivals and handle time of the recent
weeks, and the agents needed to meet the queue's service level by Erlang C and, where callers are seen to
give up, by Erlang A (``ticketing.erlang``), beside the queue's agents available now.

Arrivals: tickets created in the queue, per hour of the week (in the queue's business-hours timezone, else
``SWITCHBOARD_SUPERVISOR_TIMEZONE``: an hour of a DST change counts where the local clock puts it; in a
zone off the UTC hour, such as India's, the local hour in which the UTC hour begins), over the whole weeks
before now, divided by the number of weeks. AHT: the queue's mean handle time (answer to solve) of the
tickets solved in the period, 300 s when it has none yet. Patience: the maximum-likelihood estimate for
exponential patience, the total time callers waited (the answered until their answer, the abandoned until
they gave up, in the period) over the number who gave up; none when nobody gave up (then Erlang A is not
shown).

The inputs come from the reports' hourly rollup (``ticketing.report_rollup``), as the reports do: reading
the tickets of four weeks took 2.7-3.5 s over the bench's history (bench.supervisor). Until the rollup is
first built they are counted from the tickets, by the same definitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, cast, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import utcnow
from hub.hours import calendar_zone
from hub.runtime import Runtime
from ticketing import erlang, report_rollup
from ticketing.models import AgentStatus
from ticketing.tables import agent_queues, agents, queues, report_hours, tickets

DEFAULT_AHT = 300.0
MAX_WEEKS = 12


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the forecast reads from the history of ``start`` to ``end``: arrivals per queue and hour (hours
    since ``start``), and per queue the handle times, abandonments and waits, each counted in the hour it
    happened (as the reports count them)."""

    arrivals: list[tuple[int, int, int]]  # (queue id, hour index, tickets created)
    handle_sum: dict[int, float]  # seconds from answer to solve, of the tickets solved
    handled: dict[int, int]  # tickets solved after an answer
    abandoned: dict[int, int]
    waited: dict[int, float]  # seconds in the queue of the answered (at the answer) and of the abandoned


def _epoch(dialect: str, column: Any) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


async def inputs_from_rollup(conn: AsyncConnection, start: datetime, end: datetime) -> Inputs:
    """The inputs from the reports' hourly rollup (``ticketing.report_rollup``): a few narrow rows per queue
    and hour of the range, whatever the number of tickets and messages."""
    first, last = int(start.timestamp()) // 3600, int(end.timestamp()) // 3600
    in_range = (report_hours.c.hour >= first, report_hours.c.hour < last, report_hours.c.queue_id != 0)
    arrivals = [
        (int(q), int(h) - first, int(n))
        for q, h, n in await conn.execute(
            select(report_hours.c.queue_id, report_hours.c.hour, func.sum(report_hours.c.volume))
            .where(*in_range, report_hours.c.volume > 0)
            .group_by(report_hours.c.queue_id, report_hours.c.hour)
        )
    ]
    out = Inputs(arrivals, {}, {}, {}, {})
    for r in await conn.execute(
        select(
            report_hours.c.queue_id,
            func.sum(report_hours.c.handle_sum),
            func.sum(report_hours.c.handled),
            func.sum(report_hours.c.abandoned),
            func.sum(report_hours.c.wait_sum + report_hours.c.abandon_wait_sum),
        )
        .where(*in_range)
        .group_by(report_hours.c.queue_id)
    ):
        q = int(r[0])
        out.handle_sum[q], out.handled[q] = float(r[1] or 0), int(r[2] or 0)
        out.abandoned[q], out.waited[q] = int(r[3] or 0), float(r[4] or 0)
    return out


async def inputs_from_tickets(conn: AsyncConnection, start: datetime, end: datetime) -> Inputs:
    """The same inputs counted from the tickets: until the rollup is first built (and for the tests that
    check the rollup gives the same)."""
    dialect = conn.dialect.name
    hour = (_epoch(dialect, tickets.c.created_at) - literal(start.timestamp() - 0.001)) / literal(3600.0)
    hour_index = (cast(func.floor(hour), Integer) if dialect == "postgresql" else cast(hour, Integer)).label("h")
    queued = func.coalesce(tickets.c.queued_at, tickets.c.created_at)
    has_queue = tickets.c.queue_id.is_not(None)

    def within(column: Any) -> tuple[Any, ...]:
        return (column >= start, column < end, has_queue)

    arrivals = [
        (int(q), int(h), int(n))
        for q, h, n in await conn.execute(
            select(tickets.c.queue_id, hour_index, func.count())
            .where(*within(tickets.c.created_at))
            .group_by(tickets.c.queue_id, hour_index)
        )
    ]
    out = Inputs(arrivals, {}, {}, {}, {})
    handle = _epoch(dialect, tickets.c.solved_at) - _epoch(dialect, tickets.c.answered_at)
    for q, total, n in await conn.execute(
        select(tickets.c.queue_id, func.sum(handle), func.count())
        .where(*within(tickets.c.solved_at), tickets.c.answered_at.is_not(None))
        .group_by(tickets.c.queue_id)
    ):
        out.handle_sum[int(q)], out.handled[int(q)] = float(total or 0), int(n)
    for q, total in await conn.execute(
        select(tickets.c.queue_id, func.sum(_epoch(dialect, tickets.c.answered_at) - _epoch(dialect, queued)))
        .where(*within(tickets.c.answered_at))
        .group_by(tickets.c.queue_id)
    ):
        out.waited[int(q)] = float(total or 0)
    for q, n, total in await conn.execute(
        select(
            tickets.c.queue_id,
            func.count(),
            func.sum(_epoch(dialect, tickets.c.abandoned_at) - _epoch(dialect, queued)),
        )
        .where(*within(tickets.c.abandoned_at))
        .group_by(tickets.c.queue_id)
    ):
        out.abandoned[int(q)] = int(n)
        out.waited[int(q)] = out.waited.get(int(q), 0.0) + float(total or 0)
    return out


async def forecast(rt: Runtime, *, weeks: int = 4) -> dict[str, Any]:
    now = utcnow()
    zone = ZoneInfo(rt.settings.supervisor_timezone)
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(weeks=weeks)
    ready = await report_rollup.catch_up(rt)
    async with rt.read() as conn:
        data = await (inputs_from_rollup if ready else inputs_from_tickets)(conn, start, end)
        queue_rows = (await conn.execute(select(queues).order_by(queues.c.name))).all()
        available: dict[int, int] = dict(
            (
                await conn.execute(
                    select(agent_queues.c.queue_id, func.count())
                    .select_from(agent_queues.join(agents, agents.c.id == agent_queues.c.agent_id))
                    .where(agents.c.status == AgentStatus.AVAILABLE.value, agents.c.active.is_(True))
                    .group_by(agent_queues.c.queue_id)
                )
            ).all()
        )
    zones = {q.id: ZoneInfo(calendar_zone(q.hours, rt.settings.supervisor_timezone)) for q in queue_rows}
    slots: dict[tuple[int, ZoneInfo], tuple[int, int]] = {}  # (hour index, zone) -> (weekday, hour): a few hundred
    counts: dict[int, dict[tuple[int, int], int]] = {}
    for queue_id, h, n in data.arrivals:
        key = (h, zones.get(queue_id, zone))
        slot = slots.get(key)
        if slot is None:
            at = (start + timedelta(hours=key[0])).astimezone(key[1])
            slot = slots[key] = (at.weekday(), at.hour)
        per_slot = counts.setdefault(queue_id, {})
        per_slot[slot] = per_slot.get(slot, 0) + n
    out = []
    for q in queue_rows:
        handled, abandoned, waited = data.handled.get(q.id, 0), data.abandoned.get(q.id, 0), data.waited.get(q.id, 0)
        # Whole seconds: the forecast's Erlang calls are remembered by their arguments (ticketing.erlang).
        aht = float(max(1, round(data.handle_sum[q.id] / handled))) if handled else DEFAULT_AHT
        patience = float(max(1, round(waited / abandoned))) if abandoned and waited else None
        target = q.service_level_target / 100
        hours = []
        for (weekday, hour), n in sorted(counts.get(q.id, {}).items()):
            per_hour = n / weeks
            rate = per_hour / 3600
            c_agents = erlang.agents_needed(rate, aht, q.service_level_seconds, target)
            a_agents = (
                erlang.agents_needed(rate, aht, q.service_level_seconds, target, patience=patience)
                if patience
                else None
            )
            hours.append(
                {
                    "weekday": weekday,
                    "hour": hour,
                    "arrivals_per_hour": per_hour,
                    "aht_seconds": aht,
                    "patience_seconds": patience,
                    "traffic_erlangs": rate * aht,
                    "erlang_c_agents": c_agents,
                    "erlang_a_agents": a_agents,
                }
            )
        out.append(
            {
                "id": q.id,
                "name": q.name,
                "service_level_seconds": q.service_level_seconds,
                "service_level_target": q.service_level_target,
                "available_now": int(available.get(q.id, 0)),
                "hours": hours,
            }
        )
    return {
        "start": start.astimezone(UTC).isoformat(),
        "end": end.astimezone(UTC).isoformat(),
        "weeks": weeks,
        "timezone": rt.settings.supervisor_timezone,
        "generated_at": datetime.now(UTC).isoformat(),
        "queues": out,
    }

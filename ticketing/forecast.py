"""The staffing forecast: for each queue and hour of the week, the arrivals and handle time of the recent
weeks, and the agents needed to meet the queue's service level by Erlang C and, where callers are seen to
give up, by Erlang A (``ticketing.erlang``), beside the queue's agents available now.

Arrivals: tickets created in the queue, per hour of the week (in ``SWITCHBOARD_SUPERVISOR_TIMEZONE``), over
the whole weeks before now, divided by the number of weeks. AHT: the queue's mean handle time (answer to
solve) over the period, 300 s when it has none yet. Patience: the maximum-likelihood estimate for
exponential patience, the total time callers waited (answered or not) over the number who gave up; none
when nobody gave up (then Erlang A is not shown).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, case, cast, func, literal, select

from hub.db import utcnow
from hub.runtime import Runtime
from ticketing import erlang
from ticketing.models import AgentStatus
from ticketing.tables import agent_queues, agents, queues, tickets

DEFAULT_AHT = 300.0
MAX_WEEKS = 12


def _epoch(dialect: str, column: Any) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", column)
    return (func.julianday(column) - 2440587.5) * 86400.0


async def forecast(rt: Runtime, *, weeks: int = 4) -> dict[str, Any]:
    now = utcnow()
    zone = ZoneInfo(rt.settings.supervisor_timezone)
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(weeks=weeks)
    async with rt.read() as conn:
        dialect = conn.dialect.name
        hour = (_epoch(dialect, tickets.c.created_at) - literal(start.timestamp() - 0.001)) / literal(3600.0)
        hour_index = cast(func.floor(hour), Integer) if dialect == "postgresql" else cast(hour, Integer)
        b = hour_index.label("h")
        arrivals = (
            await conn.execute(
                select(tickets.c.queue_id, b, func.count())
                .where(tickets.c.created_at >= start, tickets.c.created_at < end, tickets.c.queue_id.is_not(None))
                .group_by(tickets.c.queue_id, b)
            )
        ).all()
        handle = _epoch(dialect, tickets.c.solved_at) - _epoch(dialect, tickets.c.answered_at)
        queued = func.coalesce(tickets.c.queued_at, tickets.c.created_at)
        waited = case(
            (tickets.c.answered_at.is_not(None), _epoch(dialect, tickets.c.answered_at) - _epoch(dialect, queued)),
            (tickets.c.abandoned_at.is_not(None), _epoch(dialect, tickets.c.abandoned_at) - _epoch(dialect, queued)),
            else_=0,
        )
        per_queue = {
            r.queue_id: r
            for r in await conn.execute(
                select(
                    tickets.c.queue_id,
                    func.avg(case((tickets.c.answered_at.is_not(None), handle), else_=None)).label("aht"),
                    func.count(tickets.c.abandoned_at).label("abandoned"),
                    func.sum(waited).label("waited"),
                )
                .where(tickets.c.created_at >= start, tickets.c.created_at < end, tickets.c.queue_id.is_not(None))
                .group_by(tickets.c.queue_id)
            )
        }
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
    counts: dict[int, dict[tuple[int, int], int]] = {}
    for queue_id, h, n in arrivals:
        at = (start + timedelta(hours=int(h))).astimezone(zone)
        slot = (at.weekday(), at.hour)
        counts.setdefault(queue_id, {})[slot] = counts.setdefault(queue_id, {}).get(slot, 0) + int(n)
    out = []
    for q in queue_rows:
        stats = per_queue.get(q.id)
        aht = float(stats.aht) if stats is not None and stats.aht else DEFAULT_AHT
        patience = None
        if stats is not None and stats.abandoned and stats.waited:
            patience = max(1.0, float(stats.waited) / int(stats.abandoned))
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

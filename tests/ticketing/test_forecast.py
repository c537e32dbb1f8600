"""The staffing forecast from seeded arrivals: the reference vector's traffic (200 calls an hour, AHT 180 s,
80 % within 20 s) asks for 14 agents by Erlang C; with callers who give up, Erlang A asks for no more."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert

from hub.db import utcnow
from hub.runtime import Runtime
from tests.ticketing.routing_helpers import queue
from ticketing import tables
from ticketing.forecast import forecast
from ticketing.models import QueueUpdate
from ticketing.queues import update_queue


async def test_forecast_from_four_weeks_of_the_reference_traffic(rt: Runtime) -> None:
    qid = await queue(rt, "phones", channels=["voice"])
    await update_queue(rt, queue_id=qid, data=QueueUpdate(service_level_seconds=20, service_level_target=80))
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=2, hours=3)  # one hour of the week
    async with rt.write() as tx:
        contact = (
            await tx.conn.execute(
                insert(tables.contacts).values(name="c", attributes={}, created_at=now, updated_at=now)
            )
        ).inserted_primary_key[0]
        rows = []
        for week in range(4):
            start = hour - timedelta(weeks=week)
            for i in range(200):  # 200 calls in the hour, each answered at once and handled 180 s
                at = start + timedelta(seconds=i * 18)
                rows.append(
                    dict(subject="", status="solved", priority="normal", channel="voice", contact_id=contact,
                         queue_id=qid, tags=[], created_at=at, updated_at=at, queued_at=at, answered_at=at,
                         solved_at=at + timedelta(seconds=180), overflow_stage=0)
                )  # fmt: skip
        await tx.conn.execute(insert(tables.tickets), rows)
    result = await forecast(rt, weeks=4)
    [phones] = [q for q in result["queues"] if q["name"] == "phones"]
    [slot] = phones["hours"]
    assert (slot["weekday"], slot["hour"]) == (hour.weekday(), hour.hour)  # UTC, the default timezone
    assert slot["arrivals_per_hour"] == pytest.approx(200)
    assert slot["aht_seconds"] == pytest.approx(180)
    assert slot["traffic_erlangs"] == pytest.approx(10)
    assert slot["erlang_c_agents"] == 14  # 13 give 79.6 % within 20 s, 14 give 88.8 %
    assert slot["patience_seconds"] is None and slot["erlang_a_agents"] is None  # nobody gave up
    assert phones["available_now"] == 0

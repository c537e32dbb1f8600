"""The staffing forecast from seeded arrivals: the reference vector's traffic (200 calls an hour, AHT 180 s,
80 % within 20 s) asks for 14 agents by Erlang C; with callers who give up, Erlang A asks for no more. Its
inputs read from the reports' rollup equal a count of the tickets and the hand-computed values."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, insert

from hub.db import utcnow
from hub.runtime import Runtime
from tests.ticketing.routing_helpers import queue
from ticketing import report_rollup, tables
from ticketing.forecast import forecast, inputs_from_rollup, inputs_from_tickets
from ticketing.models import QueueUpdate
from ticketing.queues import update_queue


@pytest.mark.parametrize("source", ["rollup", "tickets"])
async def test_forecast_from_four_weeks_of_the_reference_traffic(rt: Runtime, source: str) -> None:
    """Read from the rollup (built, as a running hub keeps it) and from the tickets (before it is built)."""
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
    if source == "rollup":
        await report_rollup.rebuild(rt)
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


async def test_hours_of_the_week_are_in_the_queues_own_timezone(rt: Runtime) -> None:
    """A queue in Tokyo (UTC+9, no DST) sees an arrival at 20:00 UTC on a Monday as Tuesday 05:00."""
    from zoneinfo import ZoneInfo

    qid = await queue(rt, "tokyo", channels=["email"])
    await update_queue(rt, queue_id=qid, data=QueueUpdate(hours={"timezone": "Asia/Tokyo"}))
    now = utcnow()
    at = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=3)
    async with rt.write() as tx:
        contact = (
            await tx.conn.execute(
                insert(tables.contacts).values(name="c", attributes={}, created_at=now, updated_at=now)
            )
        ).inserted_primary_key[0]
        await tx.conn.execute(
            insert(tables.tickets),
            [dict(subject="", status="new", priority="normal", channel="email", contact_id=contact, queue_id=qid,
                  tags=[], created_at=at, updated_at=at, queued_at=at, overflow_stage=0)],
        )  # fmt: skip
    result = await forecast(rt, weeks=1)
    [tokyo] = [q for q in result["queues"] if q["name"] == "tokyo"]
    [slot] = tokyo["hours"]
    local = at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (slot["weekday"], slot["hour"]) == (local.weekday(), local.hour)
    assert (slot["weekday"], slot["hour"]) != (at.weekday(), at.hour)


async def test_inputs_from_the_rollup_equal_a_count_of_the_tickets_and_the_hand_computed_values(rt: Runtime) -> None:
    """Two queues over two weeks. "phones": answered after 10 s and handled 100 s, answered after 30 s and
    handled 200 s, one caller who gave up after 60 s, one still waiting (counts as an arrival only): AHT 150 s,
    patience (10 + 30 + 60) / 1 = 100 s. "mail": one solved ticket, one created before the range (not
    counted). The rollup's figures equal a count of the tickets, and the forecast built on each is the same."""
    phones = await queue(rt, "phones", channels=["voice"])
    mail = await queue(rt, "mail", channels=["email"])
    now = utcnow()
    base = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=3, hours=5)
    async with rt.write() as tx:
        contact = (
            await tx.conn.execute(
                insert(tables.contacts).values(name="c", attributes={}, created_at=now, updated_at=now)
            )
        ).inserted_primary_key[0]

        def ticket(qid: int, at: object, **kw: object) -> dict[str, object]:
            row = dict(subject="", status="solved", priority="normal", channel="voice", contact_id=contact,
                       queue_id=qid, tags=[], created_at=at, updated_at=at, queued_at=at, overflow_stage=0,
                       answered_at=None, solved_at=None, abandoned_at=None)  # fmt: skip
            return {**row, **kw}

        s = timedelta(seconds=1)
        await tx.conn.execute(
            insert(tables.tickets),
            [
                ticket(phones, base, answered_at=base + 10 * s, solved_at=base + 110 * s),
                ticket(phones, base + 600 * s, answered_at=base + 630 * s, solved_at=base + 830 * s),
                ticket(phones, base - timedelta(weeks=1), abandoned_at=base - timedelta(weeks=1) + 60 * s),
                ticket(phones, base + timedelta(hours=2), status="new"),
                ticket(mail, base, answered_at=base + 5 * s, solved_at=base + 65 * s),
                ticket(mail, now - timedelta(weeks=3), answered_at=now - timedelta(weeks=3)),
            ],
        )
    await report_rollup.rebuild(rt)
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(weeks=2)
    async with rt.read() as conn:
        rolled = await inputs_from_rollup(conn, start, end)
        counted = await inputs_from_tickets(conn, start, end)
    assert sorted(rolled.arrivals) == sorted(counted.arrivals)
    first = int((base - start).total_seconds()) // 3600
    assert sorted(rolled.arrivals) == sorted(
        [(phones, first, 2), (phones, first - 7 * 24, 1), (phones, first + 2, 1), (mail, first, 1)]
    )
    for field in ("handle_sum", "handled", "abandoned", "waited"):
        mine, theirs = getattr(rolled, field), getattr(counted, field)
        assert all(mine.get(k, 0) == pytest.approx(theirs.get(k, 0), abs=0.01) for k in {*mine, *theirs}), field
    assert rolled.handle_sum[phones] == pytest.approx(300, abs=0.01) and rolled.handled[phones] == 2
    assert rolled.abandoned[phones] == 1 and rolled.waited[phones] == pytest.approx(100, abs=0.01)
    assert rolled.handled[mail] == 1 and rolled.abandoned.get(mail, 0) == 0

    from_rollup = await forecast(rt, weeks=2)
    async with rt.db.begin() as conn:
        await conn.execute(delete(tables.report_cursor))  # not built: the forecast counts the tickets
    from_tickets = await forecast(rt, weeks=2)
    for result in (from_rollup, from_tickets):
        for q in result.pop("queues"):
            if q["name"] == "phones":
                assert {(h["aht_seconds"], h["patience_seconds"]) for h in q["hours"]} == {(150.0, 100.0)}
                assert sorted(h["arrivals_per_hour"] for h in q["hours"]) == [
                    0.5,
                    1.5,
                ]  # (2 + 1) / 2 weeks at that hour of the week, 1 / 2 two hours later
        result.pop("generated_at")
    assert from_rollup == from_tickets

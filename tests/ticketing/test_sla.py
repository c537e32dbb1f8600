"""SLA clocks in business hours (a weekend and a holiday, in a non-UTC timezone), paused while pending on the
customer, per-priority targets, and the breach sweep's events and escalation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from hub.db import utcnow
from hub.events import events_after
from hub.runtime import Runtime
from tests.ticketing.routing_helpers import SUPERVISOR, arrive, message, queue, ticket
from ticketing import sla, tables
from ticketing.models import QueueUpdate, TicketStatus, TicketUpdate
from ticketing.queues import update_queue
from ticketing.sla_service import check_breaches
from ticketing.ticket_updates import update_ticket

BERLIN = ZoneInfo("Europe/Berlin")
HOURS = {"timezone": "Europe/Berlin", "weekly": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}}


def berlin(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=BERLIN)


def test_a_deadline_skips_the_weekend_and_a_holiday_in_the_queues_timezone() -> None:
    # Friday 18 Dec 16:30 in Berlin (15:30 UTC), a 2-hour target: 30 min on Friday, 90 min on Monday
    hours = sla.BusinessHours.parse(HOURS)
    due = sla.due_at(hours, berlin(18, 16, 30).astimezone(UTC), 2 * 3600)
    assert due == berlin(21, 10, 30)
    assert due is not None and due.astimezone(UTC).hour == 9  # 10:30 in Berlin is 09:30 UTC in winter
    # Monday 21 Dec a holiday: Tuesday 10:30
    with_holiday = sla.BusinessHours.parse({**HOURS, "holidays": ["2026-12-21"]})
    assert sla.due_at(with_holiday, berlin(18, 16, 30), 2 * 3600) == berlin(22, 10, 30)
    # open time between two moments counts only the open spans
    assert with_holiday is not None and with_holiday.open_seconds(berlin(18, 16, 30), berlin(22, 10, 30)) == 7200


def test_a_pause_pushes_the_deadline_by_the_business_time_it_took() -> None:
    hours = sla.BusinessHours.parse({**HOURS, "holidays": ["2026-12-21"]})
    due = berlin(22, 10, 30)  # 2 h target from Friday 16:30 (see above)
    # pending from Friday 16:45 (15 min used, 105 left) until Tuesday 09:30: due Tuesday 11:15
    assert sla.resume_due(hours, due, berlin(18, 16, 45), berlin(22, 9, 30)) == berlin(22, 11, 15)
    # back during the weekend: the 105 minutes start on the next opening (Tuesday 09:00, Monday is a holiday)
    assert sla.resume_due(hours, due, berlin(18, 16, 45), berlin(19, 12, 0)) == berlin(22, 10, 45)
    # a deadline already missed when the pause began stays missed
    assert sla.resume_due(hours, berlin(18, 16, 40), berlin(18, 16, 45), berlin(22, 9, 0)) == berlin(18, 16, 40)


def test_targets_per_priority_fall_back_to_the_queues_own() -> None:
    q = SimpleNamespace(
        sla_policies={"urgent": {"first_response_seconds": 600}},
        sla_first_response_seconds=3600,
        sla_resolution_seconds=86400,
    )
    assert sla.targets_for(q, "urgent") == (600, 86400)
    assert sla.targets_for(q, "normal") == (3600, 86400)
    assert sla.escalated("normal") == "high" and sla.escalated("urgent") == "urgent"


async def test_bad_sla_and_hours_definitions_are_refused_naming_the_field(rt: Runtime) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        QueueUpdate.model_validate({"sla_policies": {"urgent": {"first_response_seconds": 0}}})
    assert e.value.errors()[0]["loc"][:3] == ("sla_policies", "urgent", "first_response_seconds")
    with pytest.raises(ValidationError) as e:
        QueueUpdate.model_validate({"sla_policies": {"whenever": {"first_response_seconds": 60}}})
    assert e.value.errors()[0]["loc"][0] == "sla_policies"
    with pytest.raises(ValidationError) as e:
        QueueUpdate.model_validate({"hours": {"timezone": "Mars/Olympus", "weekly": {}}})
    assert "unknown timezone" in str(e.value)


async def test_per_priority_targets_stamp_deadlines_and_pending_pauses_them(rt: Runtime) -> None:
    qid = await queue(rt, "support", channels=["email"])
    await update_queue(
        rt,
        queue_id=qid,
        data=QueueUpdate.model_validate(
            {"sla_first_response_seconds": 3600, "sla_policies": {"normal": {"first_response_seconds": 600}}}
        ),
    )
    before = utcnow()
    [t] = await arrive(rt, message("email", queue="support"))
    row = await ticket(rt, t)
    assert row.first_response_due_at is not None
    assert abs((row.first_response_due_at - row.created_at).total_seconds() - 600) < 1
    assert row.created_at >= before - timedelta(seconds=1)
    # pending: paused; back to open 0 s of business time later (no hours: always open) -> moved by the pause
    await update_ticket(rt, ticket_id=t, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.PENDING))
    paused = await ticket(rt, t)
    assert paused.sla_paused_at is not None
    # pretend the pause began 5 minutes ago
    async with rt.write() as tx:
        await tx.conn.execute(
            update(tables.tickets)
            .where(tables.tickets.c.id == t)
            .values(sla_paused_at=paused.sla_paused_at - timedelta(minutes=5))
        )
    await update_ticket(rt, ticket_id=t, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.OPEN))
    resumed = await ticket(rt, t)
    assert resumed.sla_paused_at is None
    moved = (resumed.first_response_due_at - row.first_response_due_at).total_seconds()
    assert 299 <= moved <= 302
    # a customer writing to a pending ticket resumes its clocks too
    first = message("email", queue="support", sender="pat@example.com")
    [t3] = await arrive(rt, first)
    await update_ticket(rt, ticket_id=t3, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.PENDING))
    assert (await ticket(rt, t3)).sla_paused_at is not None
    answer = message("email", queue="support", sender="pat@example.com", references=[first.external_id])
    assert await arrive(rt, answer) == [t3]
    back = await ticket(rt, t3)
    assert back.status == "open" and back.sla_paused_at is None


async def test_a_breach_is_announced_once_and_escalates_the_priority(rt: Runtime) -> None:
    qid = await queue(rt, "support", channels=["email"])
    await update_queue(rt, queue_id=qid, data=QueueUpdate(sla_first_response_seconds=60))
    [t] = await arrive(rt, message("email", queue="support"))
    assert await check_breaches(rt) == 0  # not due yet
    async with rt.write() as tx:
        await tx.conn.execute(
            update(tables.tickets)
            .where(tables.tickets.c.id == t)
            .values(first_response_due_at=utcnow() - timedelta(seconds=30))
        )
    assert await check_breaches(rt) == 1
    row = await ticket(rt, t)
    assert row.priority == "high" and row.first_response_breached_at is not None
    async with rt.read() as conn:
        events = [e for e in await events_after(conn, 0) if e.ticket_id == t]
    breached = [e for e in events if e.type == "sla.breached"]
    assert len(breached) == 1 and breached[0].payload["target"] == "first_response"
    assert breached[0].payload["late_seconds"] >= 30
    assert [e.payload["from_priority"] for e in events if e.type == "ticket.escalated"] == ["normal"]
    assert await check_breaches(rt) == 0  # once
    # a paused ticket is not breached while pending
    [t2] = await arrive(rt, message("email", queue="support"))
    await update_ticket(rt, ticket_id=t2, principal=SUPERVISOR, data=TicketUpdate(status=TicketStatus.PENDING))
    async with rt.write() as tx:
        await tx.conn.execute(
            update(tables.tickets)
            .where(tables.tickets.c.id == t2)
            .values(first_response_due_at=utcnow() - timedelta(seconds=30))
        )
    assert await check_breaches(rt) == 0

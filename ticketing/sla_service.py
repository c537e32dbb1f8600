"""SLA clocks on tickets: pausing while pending on the customer, resuming, and the breach sweep that
announces breaches (``sla.breached``) and escalates (priority one step up, ``ticket.escalated``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import utcnow
from hub.events import NewEvent
from hub.runtime import Runtime
from ticketing import sla
from ticketing.tables import OPEN_STATUS_VALUES, queues, tickets
from ticketing.tickets import ticket_event

SLA_BREACHED = "sla.breached"
TICKET_ESCALATED = "ticket.escalated"


async def queue_hours(conn: AsyncConnection, queue_ids: Iterable[int | None]) -> dict[int, sla.BusinessHours | None]:
    ids = sorted({q for q in queue_ids if q is not None})
    if not ids:
        return {}
    rows = await conn.execute(select(queues.c.id, queues.c.hours).where(queues.c.id.in_(ids)))
    return {r.id: sla.BusinessHours.parse(r.hours) for r in rows}


async def resumed_clocks(conn: AsyncConnection, rows: Iterable[Any], now: datetime) -> dict[int, dict[str, Any]]:
    """For tickets leaving ``pending`` (rows with ``sla_paused_at`` set): their deadlines moved on by the
    business time the pause took, and the pause cleared; by ticket id."""
    paused = [r for r in rows if r.sla_paused_at is not None]
    if not paused:
        return {}
    hours = await queue_hours(conn, (r.queue_id for r in paused))
    out: dict[int, dict[str, Any]] = {}
    for r in paused:
        h = hours.get(r.queue_id) if r.queue_id is not None else None
        values: dict[str, Any] = {"sla_paused_at": None}
        if r.first_response_at is None:
            values["first_response_due_at"] = sla.resume_due(h, r.first_response_due_at, r.sla_paused_at, now)
        values["resolution_due_at"] = sla.resume_due(h, r.resolution_due_at, r.sla_paused_at, now)
        out[r.id] = values
    return out


async def resume_paused(conn: AsyncConnection, ticket_ids: Iterable[int], now: datetime) -> None:
    """Resume the clocks of these tickets if paused (a customer wrote to a pending ticket)."""
    ids = sorted(set(ticket_ids))
    if not ids:
        return
    rows = (
        await conn.execute(
            select(
                tickets.c.id,
                tickets.c.queue_id,
                tickets.c.sla_paused_at,
                tickets.c.first_response_at,
                tickets.c.first_response_due_at,
                tickets.c.resolution_due_at,
            ).where(tickets.c.id.in_(ids), tickets.c.sla_paused_at.is_not(None))
        )
    ).all()
    for ticket_id, values in (await resumed_clocks(conn, rows, now)).items():
        await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(**values))


def _first_due(now: datetime) -> Any:
    return and_(
        tickets.c.first_response_at.is_(None),
        tickets.c.first_response_due_at.is_not(None),
        tickets.c.first_response_due_at < now,
        tickets.c.first_response_breached_at.is_(None),
    )


def _resolution_due(now: datetime) -> Any:
    return and_(
        tickets.c.resolution_due_at.is_not(None),
        tickets.c.resolution_due_at < now,
        tickets.c.resolution_breached_at.is_(None),
    )


def _breaching(now: datetime) -> Any:
    return and_(
        tickets.c.status.in_(OPEN_STATUS_VALUES),
        tickets.c.sla_paused_at.is_(None),
        or_(_first_due(now), _resolution_due(now)),
    )


async def check_breaches(rt: Runtime, *, limit: int = 500) -> int:
    """Announce every SLA target passed since the last sweep, once per target: ``sla.breached`` (which
    target, by how much), and escalate the ticket one priority step (``ticket.escalated``). Returns the
    number of breaches announced."""
    now = utcnow()
    async with rt.read() as conn:
        if (await conn.execute(select(tickets.c.id).where(_breaching(now)).limit(1))).first() is None:
            return 0
    count = 0
    async with rt.write() as tx:
        stmt = select(tickets).where(_breaching(now)).order_by(tickets.c.id).limit(limit)
        if tx.conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        for r in (await tx.conn.execute(stmt)).all():
            values: dict[str, Any] = {"updated_at": now}
            kinds = []
            if r.first_response_at is None and r.first_response_due_at is not None and r.first_response_due_at < now:
                if r.first_response_breached_at is None:
                    values["first_response_breached_at"] = now
                    kinds.append(("first_response", r.first_response_due_at))
            if r.resolution_due_at is not None and r.resolution_due_at < now and r.resolution_breached_at is None:
                values["resolution_breached_at"] = now
                kinds.append(("resolution", r.resolution_due_at))
            if not kinds:
                continue
            raised = sla.escalated(r.priority)
            if raised != r.priority:
                values["priority"] = raised
            updated = (
                await tx.conn.execute(
                    update(tickets).where(tickets.c.id == r.id).values(**values).returning(*tickets.c)
                )
            ).one()
            for kind, due in kinds:
                count += 1
                tx.emit(
                    NewEvent(
                        type=SLA_BREACHED,
                        payload={
                            "ticket_id": r.id,
                            "target": kind,
                            "due_at": due.isoformat(),
                            "late_seconds": int((now - due).total_seconds()),
                            "priority": updated.priority,
                        },
                        ticket_id=r.id,
                        queue_id=r.queue_id,
                        agent_id=r.assignee_id,
                    )
                )
            if raised != r.priority:
                tx.emit(ticket_event(TICKET_ESCALATED, updated, reason="SLA breached", from_priority=r.priority))
    return count

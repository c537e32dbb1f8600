"""Agents' and supervisors' changes to a ticket: status, priority, tags and subject; assignment; transfer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from hub.db import utcnow
from hub.events import EventType
from hub.principals import Principal
from hub.runtime import Runtime, Tx
from ticketing.exceptions import AgentNotFound, QueueNotFound
from ticketing.models import OPEN_STATUSES, TicketRead, TicketStatus, TicketUpdate
from ticketing.routing_service import route_tickets, routing_decision, work_done
from ticketing.sla_service import resumed_clocks
from ticketing.tables import OPEN_STATUS_VALUES, agents, queues, tickets
from ticketing.tickets import (
    ANSWERED_BY_CHANNEL,
    abandoned_event,
    answered_on_take,
    check_visible,
    ticket_event,
    ticket_row,
)


async def update_ticket(rt: Runtime, *, ticket_id: int, principal: Principal, data: TicketUpdate) -> TicketRead:
    """Change status, priority, tags or subject."""
    now = utcnow()
    values: dict[str, Any] = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    async with rt.write() as tx:
        row = await ticket_row(tx.conn, ticket_id, lock=True)
        check_visible(principal, row)
        if "status" in values:
            status = TicketStatus(values["status"])
            values["status"] = status.value
            if status is TicketStatus.SOLVED and row.solved_at is None:
                values["solved_at"] = now
            if status is TicketStatus.CLOSED:
                values["closed_at"] = now
            if status in OPEN_STATUSES:
                values["solved_at"] = None
                values["closed_at"] = None
            if status not in OPEN_STATUSES:
                values["offered_agent_id"] = None
                values["offer_expires_at"] = None
                if row.assignee_id is None and row.answered_at is None and row.abandoned_at is None:
                    # It leaves its queue unanswered: abandoned (the wallboard and reports count it).
                    values["abandoned_at"] = now
            if status is TicketStatus.PENDING and row.status != TicketStatus.PENDING.value:
                values["sla_paused_at"] = now  # the SLA clocks stop while the customer is to answer
            elif row.status == TicketStatus.PENDING.value and status in (TicketStatus.NEW, TicketStatus.OPEN):
                values.update((await resumed_clocks(tx.conn, [row], now)).get(row.id, {}))
        if "priority" in values:
            values["priority"] = (
                values["priority"].value if hasattr(values["priority"], "value") else values["priority"]
            )
        values["updated_at"] = now
        updated = (
            await tx.conn.execute(
                update(tickets).where(tickets.c.id == ticket_id).values(**values).returning(*tickets.c)
            )
        ).one()
        tx.emit(
            ticket_event(
                EventType.TICKET_UPDATED,
                updated,
                changes=sorted(k for k in values if k != "updated_at"),
                by=principal.agent_id,
            )
        )
        if values.get("abandoned_at"):
            tx.emit(abandoned_event(updated, now))
        if (
            row.status in OPEN_STATUS_VALUES
            and updated.status not in OPEN_STATUS_VALUES
            and row.assignee_id is not None
        ):
            await work_done(rt, tx, agent_id=row.assignee_id, channel=row.channel)
    return TicketRead.model_validate(updated._mapping)


async def assign(rt: Runtime, *, ticket_id: int, principal: Principal, agent_id: int | None) -> TicketRead:
    """A supervisor assigns a ticket to an agent, or unassigns it (back to its queue)."""
    principal.require_supervisor()
    async with rt.write() as tx:
        return await assign_in(rt, tx, ticket_id=ticket_id, principal=principal, agent_id=agent_id)


async def assign_in(rt: Runtime, tx: Tx, *, ticket_id: int, principal: Principal, agent_id: int | None) -> TicketRead:
    """``assign`` inside the caller's transaction (which may add to it: an audit entry)."""
    principal.require_supervisor()
    now = utcnow()
    await ticket_row(tx.conn, ticket_id, lock=True)
    if agent_id is not None and not (await tx.conn.execute(select(agents.c.id).where(agents.c.id == agent_id))).first():
        raise AgentNotFound(f"agent {agent_id} does not exist")
    updated = (
        await tx.conn.execute(
            update(tickets)
            .where(tickets.c.id == ticket_id)
            .values(
                assignee_id=agent_id,
                offered_agent_id=None,
                offer_expires_at=None,
                updated_at=now,
                answered_at=tickets.c.answered_at if agent_id is None else answered_on_take(now),
                routing=routing_decision(
                    "assigned" if agent_id else "unassigned", f"by {principal.username}", now, agent_id=agent_id
                ),
            )
            .returning(*tickets.c)
        )
    ).one()
    tx.emit(ticket_event(EventType.TICKET_ASSIGNED, updated, by=principal.agent_id))
    if agent_id is None:
        await route_tickets(rt, tx, [ticket_id], returned=[ticket_id])
    return TicketRead.model_validate(updated._mapping)


async def transfer(
    rt: Runtime, *, ticket_id: int, principal: Principal, queue_id: int | None, agent_id: int | None
) -> TicketRead:
    """Hand a ticket to another queue (it is routed there afresh) or straight to another agent."""
    async with rt.write() as tx:
        return await transfer_in(rt, tx, ticket_id=ticket_id, principal=principal, queue_id=queue_id, agent_id=agent_id)


async def transfer_in(
    rt: Runtime, tx: Tx, *, ticket_id: int, principal: Principal, queue_id: int | None, agent_id: int | None
) -> TicketRead:
    """``transfer`` inside the caller's transaction."""
    now = utcnow()
    row = await ticket_row(tx.conn, ticket_id, lock=True)
    check_visible(principal, row)
    values: dict[str, Any] = {
        "updated_at": now,
        "offered_agent_id": None,
        "offer_expires_at": None,
        "assignee_id": agent_id,
    }
    if agent_id is not None and row.answered_at is None and row.channel not in ANSWERED_BY_CHANNEL:
        values["answered_at"] = now
    if queue_id is not None:
        if not (await tx.conn.execute(select(queues.c.id).where(queues.c.id == queue_id))).first():
            raise QueueNotFound(f"queue {queue_id} does not exist")
        values["queue_id"] = queue_id
        if queue_id != row.queue_id:
            values.update(queued_at=None, overflow_stage=0)  # waits afresh in the new queue
    values["routing"] = routing_decision("transferred", f"by {principal.username}", now, agent_id=agent_id)
    if agent_id is not None and not (await tx.conn.execute(select(agents.c.id).where(agents.c.id == agent_id))).first():
        raise AgentNotFound(f"agent {agent_id} does not exist")
    updated = (
        await tx.conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(**values).returning(*tickets.c))
    ).one()
    tx.emit(
        ticket_event(
            EventType.TICKET_UPDATED,
            updated,
            changes=["transfer"],
            by=principal.agent_id,
            from_queue_id=row.queue_id,
            from_agent_id=row.assignee_id,
        )
    )
    if agent_id is None:
        await route_tickets(rt, tx, [ticket_id], exclude={ticket_id: {principal.agent_id}}, returned=[ticket_id])
    return TicketRead.model_validate(updated._mapping)

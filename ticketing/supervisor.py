"""Supervisor actions: reassign or re-queue a ticket, change an agent's status, join a conversation visibly or
silently. Each is for supervisors and admins only, and each is written to the audit log (``hub.audit``) in
the transaction of the change itself, so an entry exists exactly when the change does (a visible join sends
its message through the reply path, which commits on its own: its entry follows it)."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select

from hub.audit import record
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing import replies
from ticketing.exceptions import AgentNotFound
from ticketing.models import AgentRead, AgentStatus, MessageRead, TicketRead
from ticketing.routing_service import change_status
from ticketing.tables import agents
from ticketing.ticket_updates import assign_in, transfer_in
from ticketing.tickets import check_visible, ticket_row


async def reassign(rt: Runtime, *, principal: Principal, ticket_id: int, agent_id: int) -> TicketRead:
    """Give the ticket to ``agent_id`` (taking it from whoever held it or was offered it)."""
    principal.require_supervisor()
    async with rt.write() as tx:
        before = await ticket_row(tx.conn, ticket_id, lock=True)
        result = await assign_in(rt, tx, ticket_id=ticket_id, principal=principal, agent_id=agent_id)
        await record(
            tx.conn,
            actor=principal,
            action="ticket.reassign",
            target=f"ticket:{ticket_id}",
            detail={"from_agent_id": before.assignee_id, "to_agent_id": agent_id},
        )
    return result


async def requeue(rt: Runtime, *, principal: Principal, ticket_id: int, queue_id: int | None) -> TicketRead:
    """Put the ticket back to waiting: in its own queue, or in ``queue_id``; routing offers it afresh."""
    principal.require_supervisor()
    async with rt.write() as tx:
        before = await ticket_row(tx.conn, ticket_id, lock=True)
        if queue_id is None or queue_id == before.queue_id:
            result = await assign_in(rt, tx, ticket_id=ticket_id, principal=principal, agent_id=None)
        else:
            result = await transfer_in(
                rt, tx, ticket_id=ticket_id, principal=principal, queue_id=queue_id, agent_id=None
            )
        await record(
            tx.conn,
            actor=principal,
            action="ticket.requeue",
            target=f"ticket:{ticket_id}",
            detail={
                "from_agent_id": before.assignee_id,
                "from_queue_id": before.queue_id,
                "to_queue_id": result.queue_id,
            },
        )
    return result


async def set_status(rt: Runtime, *, principal: Principal, agent_id: int, status: AgentStatus) -> AgentRead:
    """Set an agent's status (available pulls waiting work; leaving returns the agent's pending offers)."""
    principal.require_supervisor()
    async with rt.write() as tx:
        old = (await tx.conn.execute(select(agents.c.status).where(agents.c.id == agent_id))).scalar()
        if old is None:
            raise AgentNotFound(f"agent {agent_id} does not exist")
        result = await change_status(rt, tx, agent_id, status, reason=f"set by {principal.username}")
        await record(
            tx.conn,
            actor=principal,
            action="agent.status",
            target=f"agent:{agent_id}",
            detail={"from": old, "to": status.value},
        )
    return result


JoinMode = Literal["visible", "silent"]


async def join(rt: Runtime, *, principal: Principal, ticket_id: int, mode: JoinMode) -> MessageRead:
    """Join a conversation. Visibly: the customer is told ("Sam Supervisor joined the conversation"), as a
    reply on their channel. Silently: only an internal note says so, which the customer never sees. Either
    way the supervisor follows it live (supervisors see every ticket's events) and may reply or add notes."""
    principal.require_supervisor()
    async with rt.read() as conn:
        check_visible(principal, await ticket_row(conn, ticket_id))
    if mode == "visible":
        message = await replies.reply(
            rt, ticket_id=ticket_id, principal=principal, text=f"{principal.display_name} joined the conversation."
        )
    else:
        message = await replies.add_note(
            rt, ticket_id=ticket_id, principal=principal, text=f"{principal.display_name} joined silently."
        )
    async with rt.write() as tx:
        await record(
            tx.conn,
            actor=principal,
            action=f"ticket.join_{mode}",
            target=f"ticket:{ticket_id}",
            detail={"message_id": message.id},
        )
    return message

"""The supervisor's API: the wallboard's snapshot and the supervisor actions (``/api/supervisor/...``).
Supervisors and admins only: an agent gets 403 (``supervisor_only``)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter

from hub.deps import CurrentSupervisor, RuntimeDep
from hub.errors import SwitchboardError
from hub.inputs import Id, IdParam, Input
from ticketing import supervisor
from ticketing.models import AgentRead, AgentStatus, MessageRead, TicketRead
from ticketing.wallboard import wallboard

router = APIRouter(prefix="/api/supervisor", tags=["supervisor"])


class WallboardOff(SwitchboardError):
    status = 503
    code = "wallboard_off"


class ReassignRequest(Input):
    agent_id: Id


class RequeueRequest(Input):
    queue_id: Id | None = None


class JoinRequest(Input):
    mode: Literal["visible", "silent"] = "visible"


class StatusRequest(Input):
    status: AgentStatus


@router.get("/wallboard")
async def get_wallboard(principal: CurrentSupervisor, rt: RuntimeDep) -> dict[str, Any]:
    """Every queue's and every agent's live figures (see the supervisor page's help for the definitions).
    ``seq`` is the newest event they include; ``wallboard.update`` frames on ``/ws/agent`` carry the rows
    that change after it."""
    board = wallboard(rt)
    if board is None:
        raise WallboardOff("the wallboard is off (SWITCHBOARD_WALLBOARD=false)")
    return board.snapshot()


@router.post("/tickets/{ticket_id}/reassign", response_model=TicketRead)
async def reassign(
    ticket_id: IdParam, body: ReassignRequest, principal: CurrentSupervisor, rt: RuntimeDep
) -> TicketRead:
    """Give the ticket to another agent (audited)."""
    return await supervisor.reassign(rt, principal=principal, ticket_id=ticket_id, agent_id=body.agent_id)


@router.post("/tickets/{ticket_id}/requeue", response_model=TicketRead)
async def requeue(ticket_id: IdParam, body: RequeueRequest, principal: CurrentSupervisor, rt: RuntimeDep) -> TicketRead:
    """Put the ticket back to waiting, in its queue or in ``queue_id`` (audited)."""
    return await supervisor.requeue(rt, principal=principal, ticket_id=ticket_id, queue_id=body.queue_id)


@router.post("/tickets/{ticket_id}/join", response_model=MessageRead, status_code=201)
async def join(ticket_id: IdParam, body: JoinRequest, principal: CurrentSupervisor, rt: RuntimeDep) -> MessageRead:
    """Join the conversation: ``visible`` tells the customer, ``silent`` leaves only an internal note (audited)."""
    return await supervisor.join(rt, principal=principal, ticket_id=ticket_id, mode=body.mode)


@router.put("/agents/{agent_id}/status", response_model=AgentRead)
async def set_agent_status(
    agent_id: IdParam, body: StatusRequest, principal: CurrentSupervisor, rt: RuntimeDep
) -> AgentRead:
    """Set an agent's status (audited)."""
    return await supervisor.set_status(rt, principal=principal, agent_id=agent_id, status=body.status)

"""The supervisor's API: the wallboard's snapshot and the supervisor actions (``/api/supervisor/...``).
Supervisors and admins only: an agent gets 403 (``supervisor_only``)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from hub.csv_export import CSV_ANSWER, CsvResponse
from hub.deps import CurrentSupervisor, RuntimeDep
from hub.errors import SwitchboardError
from hub.inputs import Id, IdParam, Input
from ticketing import charts, reports, supervisor
from ticketing.forecast import MAX_WEEKS, forecast
from ticketing.models import AgentRead, AgentStatus, MessageRead, TicketRead
from ticketing.reports import Bucket, Range, report_range
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


@router.get("/forecast")
async def get_forecast(
    principal: CurrentSupervisor, rt: RuntimeDep, weeks: Annotated[int, Query(ge=1, le=MAX_WEEKS)] = 4
) -> dict[str, Any]:
    """Agents needed per queue and hour of the week (Erlang C; Erlang A where callers give up), from the
    arrivals and handle times of the last ``weeks`` weeks, beside the agents available now."""
    return await forecast(rt, weeks=weeks)


# --- reports ---------------------------------------------------------------------------------------------

reports_router = APIRouter(prefix="/api/reports", tags=["reports"])


async def _range(
    principal: CurrentSupervisor,
    rt: RuntimeDep,
    start: Annotated[date, Query(description="first day (in each queue's timezone)")],
    end: Annotated[date, Query(description="last day, included")],
    bucket: Bucket = "day",
    queue_id: Annotated[IdParam | None, Query(description="only this queue")] = None,
) -> Range:
    zone = rt.settings.supervisor_timezone
    if queue_id is not None:
        zone = next(iter(await reports.report_zones(rt, queue_id)), zone)
    return report_range(start, end, bucket, zone)


RangeDep = Annotated[Range, Depends(_range)]
QueueFilter = Annotated[IdParam | None, Query(description="only this queue")]
ChannelFilter = Annotated[str | None, Query(max_length=20, description="only this channel")]


@reports_router.get("/summary")
async def report_summary(
    r: RangeDep, rt: RuntimeDep, queue_id: QueueFilter = None, channel: ChannelFilter = None
) -> dict[str, Any]:
    """Volume by channel and queue, service level, abandonment, ASA, first response, handle and resolution
    times and CSAT, per bucket and in total, for the days ``start`` to ``end``. A range longer than the bucket
    allows (31 days by hour, 366 by day, 1830 by week) is refused (422)."""
    return await reports.summary(rt, r, queue_id=queue_id, channel=channel)


@reports_router.get("/summary.csv", responses=CSV_ANSWER)
async def report_csv(
    r: RangeDep, rt: RuntimeDep, queue_id: QueueFilter = None, channel: ChannelFilter = None
) -> Response:
    """The report as CSV, one row per bucket, queue and channel."""
    text = await reports.summary_csv(rt, r, queue_id=queue_id, channel=channel)
    name = f"switchboard-report-{r.labels[0][:10]}-{r.bucket}.csv"
    return CsvResponse(text, headers={"Content-Disposition": f'attachment; filename="{name}"'})


@reports_router.get(
    "/chart/{name}.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {"schema": {"type": "string"}}}, "description": "an SVG chart"}},
)
async def report_chart(
    name: Literal["volume", "service_level", "answered_abandoned", "times"],
    r: RangeDep,
    rt: RuntimeDep,
    queue_id: QueueFilter = None,
    channel: ChannelFilter = None,
) -> Response:
    """One of the report's charts, drawn on the server as SVG."""
    report = await reports.summary(rt, r, queue_id=queue_id, channel=channel)
    return Response(charts.report_chart(name, report), media_type="image/svg+xml")

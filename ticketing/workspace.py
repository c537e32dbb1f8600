"""The agent's workspace: views of the tickets beyond what is offered to them (waiting in their queues,
unassigned, theirs, all open, pending on the customer, solved recently), each with a count, filters and a sort.

Every view is a condition on ``tickets`` within what the principal may see (``scope``); the filters (channel,
queue, priority, tag, SLA state) and the sort are further conditions and orders of the same statement. Taking
a waiting ticket from a view is ``ticketing.routing_service.pull_ticket``: it goes through routing's lock and
capacity, never around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import and_, case, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import utcnow
from hub.errors import PermissionDenied
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing.models import Priority, TicketPage, TicketRead, TicketStatus
from ticketing.routing_reads import WAITING
from ticketing.tables import OPEN_STATUS_VALUES, tickets

SOLVED_RECENTLY_DAYS = 7
DUE_SOON = timedelta(hours=1)


class View(StrEnum):
    WAITING = "waiting"  # waiting in my queues: open, held by nobody
    UNASSIGNED = "unassigned"  # open, no assignee (waiting, or offered to someone)
    MINE = "mine"  # open and assigned to me
    PENDING = "pending"  # waiting on the customer
    ALL_OPEN = "all_open"  # every open ticket (supervisors)
    SOLVED_RECENTLY = "solved_recently"  # solved in the last SOLVED_RECENTLY_DAYS days


VIEW_NAMES = {
    View.WAITING: "Waiting in my queues",
    View.UNASSIGNED: "Unassigned",
    View.MINE: "Mine",
    View.PENDING: "Pending on the customer",
    View.ALL_OPEN: "All open",
    # Not "Solved ...": a button named so would make "Solve" ambiguous to whoever finds buttons by name.
    View.SOLVED_RECENTLY: f"Done in the last {SOLVED_RECENTLY_DAYS} days",
}
SUPERVISOR_VIEWS = frozenset({View.ALL_OPEN})


class SlaState(StrEnum):
    BREACHED = "breached"  # the deadline in force has passed
    DUE_SOON = "due_soon"  # within the hour
    ON_TRACK = "on_track"
    NONE = "none"  # no SLA target


class Sort(StrEnum):
    NEWEST = "newest"  # latest activity first
    OLDEST = "oldest"  # longest waiting first
    PRIORITY = "priority"  # urgent first, then oldest
    DUE = "due"  # SLA deadline first (none last)


class ViewCount(BaseModel):
    id: View
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class ViewFilters:
    channel: str | None = None
    queue_id: int | None = None
    priority: Priority | None = None
    tag: str | None = None
    sla: SlaState | None = None


def views_for(principal: Principal) -> list[View]:
    """The views this principal has: all open is for supervisors and admins."""
    return [v for v in View if principal.sees_all or v not in SUPERVISOR_VIEWS]


def scope(principal: Principal) -> Any:
    """The tickets the principal may see (as ``Principal.can_see_ticket`` says, in SQL)."""
    if principal.sees_all:
        return literal(True)
    return or_(
        tickets.c.queue_id.in_(sorted(principal.queue_ids) or [-1]),
        tickets.c.assignee_id == principal.agent_id,
        tickets.c.offered_agent_id == principal.agent_id,
    )


def view_condition(view: View, principal: Principal, now: datetime) -> Any:
    open_ = tickets.c.status.in_(OPEN_STATUS_VALUES)
    if view is View.WAITING:
        return and_(WAITING, tickets.c.queue_id.in_(sorted(principal.queue_ids) or [-1]))
    if view is View.UNASSIGNED:
        return and_(open_, tickets.c.assignee_id.is_(None), scope(principal))
    if view is View.MINE:
        return and_(open_, tickets.c.assignee_id == principal.agent_id)
    if view is View.PENDING:
        return and_(tickets.c.status == TicketStatus.PENDING.value, scope(principal))
    if view is View.ALL_OPEN:
        return open_
    cutoff = now - timedelta(days=SOLVED_RECENTLY_DAYS)
    return and_(tickets.c.status == TicketStatus.SOLVED.value, tickets.c.solved_at >= cutoff, scope(principal))


def due_column() -> Any:
    """The SLA deadline in force: the first response's until it is given, then the resolution's."""
    return case(
        (tickets.c.first_response_at.is_(None), tickets.c.first_response_due_at), else_=tickets.c.resolution_due_at
    )


def tag_condition(conn: AsyncConnection, tag: str) -> Any:
    """The ticket carries ``tag`` (tags are a JSON list of strings)."""
    if conn.dialect.name == "postgresql":
        return func.jsonb_exists(tickets.c.tags, tag)
    return text("EXISTS (SELECT 1 FROM json_each(tickets.tags) WHERE json_each.value = :view_tag)").bindparams(
        view_tag=tag
    )


def filter_conditions(conn: AsyncConnection, filters: ViewFilters, now: datetime) -> list[Any]:
    conds: list[Any] = []
    if filters.channel:
        conds.append(tickets.c.channel == filters.channel)
    if filters.queue_id is not None:
        conds.append(tickets.c.queue_id == filters.queue_id)
    if filters.priority is not None:
        conds.append(tickets.c.priority == filters.priority.value)
    if filters.tag:
        conds.append(tag_condition(conn, filters.tag.strip().lower()))
    if filters.sla is not None:
        due = due_column()
        conds.append(
            {
                SlaState.BREACHED: due < now,
                SlaState.DUE_SOON: and_(due >= now, due < now + DUE_SOON),
                SlaState.ON_TRACK: due >= now + DUE_SOON,
                SlaState.NONE: due.is_(None),
            }[filters.sla]
        )
    return conds


_PRIORITY_RANK = case(
    {Priority.URGENT.value: 0, Priority.HIGH.value: 1, Priority.NORMAL.value: 2, Priority.LOW.value: 3},
    value=tickets.c.priority,
    else_=4,
)


def order_by(sort: Sort) -> Sequence[Any]:
    activity = func.coalesce(tickets.c.last_message_at, tickets.c.created_at)
    if sort is Sort.OLDEST:
        return (tickets.c.created_at.asc(), tickets.c.id.asc())
    if sort is Sort.PRIORITY:
        return (_PRIORITY_RANK.asc(), tickets.c.created_at.asc(), tickets.c.id.asc())
    if sort is Sort.DUE:
        due = due_column()
        return (case((due.is_(None), 1), else_=0).asc(), due.asc(), tickets.c.id.asc())
    return (activity.desc(), tickets.c.id.desc())


def _check_view(view: View, principal: Principal) -> None:
    if view in SUPERVISOR_VIEWS and not principal.sees_all:
        raise PermissionDenied(f"the {view.value} view is for supervisors")


async def view_counts(rt: Runtime, *, principal: Principal, filters: ViewFilters) -> list[ViewCount]:
    """Each view this principal has, with how many tickets it holds under ``filters``: one statement."""
    now = utcnow()
    views = views_for(principal)
    async with rt.read() as conn:
        conds = filter_conditions(conn, filters, now)
        counts = [func.count().filter(view_condition(v, principal, now)).label(v.value) for v in views]
        row = (await conn.execute(select(*counts).select_from(tickets).where(*conds))).one()
    return [ViewCount(id=v, name=VIEW_NAMES[v], count=int(row._mapping[v.value] or 0)) for v in views]


async def view_tickets(
    rt: Runtime,
    *,
    principal: Principal,
    view: View,
    filters: ViewFilters,
    sort: Sort = Sort.NEWEST,
    offset: int = 0,
    limit: int = 50,
) -> TicketPage:
    """The tickets of ``view`` under ``filters``, in ``sort`` order, a page at a time, with the view's total."""
    _check_view(view, principal)
    now = utcnow()
    async with rt.read() as conn:
        conds = [view_condition(view, principal, now), *filter_conditions(conn, filters, now)]
        total = (await conn.execute(select(func.count()).select_from(tickets).where(*conds))).scalar_one()
        rows = (
            await conn.execute(select(tickets).where(*conds).order_by(*order_by(sort)).offset(offset).limit(limit))
        ).all()
    return TicketPage(
        items=[TicketRead.model_validate(r._mapping) for r in rows], total=total, offset=offset, limit=limit
    )

"""The audit log: who changed what, when — every supervisor action (reassign, re-queue, status change, join),
every admin change and every contact merge, undo, export and erase. Admins read it at ``GET /api/audit`` and
export it as CSV at ``GET /api/audit.csv``.

A package records an entry with ``record`` on the connection of the change's own transaction, so an entry
exists exactly when the change does:

    async with rt.db.begin() as conn:
        ...  # the change
        await audit.record(conn, actor=me, action="ticket.reassign", target=f"ticket:{ticket_id}",
                           detail={"from": old_agent, "to": new_agent})

Actions are dotted names, ``<thing>.<verb>``; targets ``<kind>:<id>``. ``detail`` holds what a reader needs to
see what changed (old and new values), never secrets (passwords, tokens).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy import Index, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel

from hub.csv_export import CSV_ANSWER, CsvResponse, spreadsheet_safe
from hub.db import JSONType, UTCDateTime, utcnow
from hub.deps import CurrentAdmin, RuntimeDep
from hub.errors import InvalidInput
from hub.inputs import Count, Instant, clean
from hub.principals import Principal

EXPORT_LIMIT = 100_000


class AuditEntry(SQLModel, table=True):
    """One audited change."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_target", "target"))

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor_id: int | None = None  # the agent (no foreign key: agents belong to ticketing); None: the system
    actor: str = Field(default="system", max_length=200)  # the actor's username as it was then
    action: str = Field(max_length=100)
    target: str = Field(default="", max_length=200)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)


class AuditRead(BaseModel):
    id: int
    at: datetime
    actor_id: int | None
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


async def record(
    conn: AsyncConnection,
    *,
    actor: Principal | None,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one entry in ``conn``'s transaction (``actor`` None: the system, e.g. a retention job)."""
    await conn.execute(
        insert(AuditEntry).values(  # type: ignore[arg-type]
            at=utcnow(),
            actor_id=actor.agent_id if actor else None,
            actor=actor.username if actor else "system",
            action=action,
            target=target,
            detail=clean(detail or {}),
        )
    )


async def entries(
    conn: AsyncConnection,
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    offset: int = 0,
    limit: int = 100,
) -> list[AuditRead]:
    """Entries newest first; ``action`` matches a prefix (``ticket.`` is every ticket action)."""
    table = AuditEntry.__table__  # type: ignore[attr-defined]
    query = select(table)
    if action:
        query = query.where(table.c.action.startswith(action, autoescape=True))
    if actor:
        query = query.where(table.c.actor == actor)
    if target:
        query = query.where(table.c.target == target)
    if since:
        query = query.where(table.c.at >= since)
    if until:
        query = query.where(table.c.at < until)
    rows = await conn.execute(query.order_by(table.c.id.desc()).offset(offset).limit(limit))
    return [AuditRead.model_validate(dict(row._mapping)) for row in rows]


def to_csv(rows: list[AuditRead]) -> Iterator[str]:
    """The entries as CSV lines, header first, every cell spreadsheet-safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "at", "actor_id", "actor", "action", "target", "detail"])
    for row in rows:
        detail = ", ".join(f"{k}={v}" for k, v in row.detail.items())
        cells = (row.id, row.at.isoformat(), row.actor_id, row.actor, row.action, row.target, detail)
        writer.writerow([spreadsheet_safe(v) for v in cells])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


router = APIRouter(prefix="/api", tags=["audit"])

Text = Annotated[str | None, Query(max_length=200)]


def _check_range(since: datetime | None, until: datetime | None) -> None:
    if since and until and until < since:
        raise InvalidInput("until is before since", loc=("query", "until"))


@router.get("/audit", response_model=list[AuditRead])
async def list_audit(
    me: CurrentAdmin,
    rt: RuntimeDep,
    action: Text = None,
    actor: Text = None,
    target: Text = None,
    since: Instant | None = None,
    until: Instant | None = None,
    offset: Annotated[Count, Query()] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditRead]:
    """Admins: the audit log, newest first, filtered by action prefix, actor (username), target and time."""
    _check_range(since, until)
    async with rt.read() as conn:
        return await entries(
            conn, action=action, actor=actor, target=target, since=since, until=until, offset=offset, limit=limit
        )


@router.get("/audit.csv", responses=CSV_ANSWER)
async def export_audit(
    me: CurrentAdmin,
    rt: RuntimeDep,
    action: Text = None,
    actor: Text = None,
    target: Text = None,
    since: Instant | None = None,
    until: Instant | None = None,
) -> StreamingResponse:
    """Admins: the audit log as CSV (newest first, at most 100,000 entries; narrow by time for more)."""
    _check_range(since, until)
    async with rt.read() as conn:
        rows = await entries(
            conn, action=action, actor=actor, target=target, since=since, until=until, limit=EXPORT_LIMIT
        )
    return StreamingResponse(
        to_csv(rows),
        media_type=CsvResponse.media_type,
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )

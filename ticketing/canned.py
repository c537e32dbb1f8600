"""Canned responses: saved answers agents insert by typing ``/`` and a few letters in the console.

A change made by a person (``actor``: the API's caller) is written to the audit log (``hub.audit``) in its own
transaction; seeds, the CLI and a rules file read at start pass no actor and are not audited."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PField
from sqlalchemy import delete, func, or_, select, update

from hub import audit
from hub.db import taken_as, utcnow
from hub.deps import CurrentAgent, RuntimeDep
from hub.errors import Conflict, NotFound
from hub.events import NewEvent
from hub.inputs import IdParam, Input
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing.models import CannedResponse

CR = CannedResponse.__table__  # type: ignore[attr-defined]


class CannedTaken(Conflict):
    code = "canned_shortcut_taken"


class CannedNotFound(NotFound):
    code = "canned_not_found"


class CannedCreate(Input):
    shortcut: str = PField(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    title: str = PField(min_length=1, max_length=200)
    text: str = PField(min_length=1, max_length=20_000)


class CannedUpdate(Input):
    """Fields to change; a field left out stays as it is."""

    shortcut: str | None = PField(default=None, min_length=1, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")
    title: str | None = PField(default=None, min_length=1, max_length=200)
    text: str | None = PField(default=None, min_length=1, max_length=20_000)


class CannedRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    shortcut: str
    title: str
    text: str
    created_at: datetime


async def search_canned(rt: Runtime, *, query: str = "", limit: int = 20) -> list[CannedRead]:
    """Canned responses whose shortcut, title or text contains ``query`` (all of them for an empty one);
    shortcut matches first."""
    stmt = select(CR)
    q = query.strip().lower()
    if q:
        like = f"%{q.replace('%', '').replace('_', '')}%"
        stmt = stmt.where(
            or_(
                func.lower(CR.c.shortcut).like(like),
                func.lower(CR.c.title).like(like),
                func.lower(CR.c.text).like(like),
            )
        )
    async with rt.read() as conn:
        rows = (await conn.execute(stmt.order_by(CR.c.shortcut).limit(200))).all()
    items = [CannedRead.model_validate(r._mapping) for r in rows]
    if q:
        items.sort(key=lambda c: (not c.shortcut.lower().startswith(q), q not in c.shortcut.lower(), c.shortcut))
    return items[:limit]


async def create_canned(rt: Runtime, *, data: CannedCreate, actor: Principal | None = None) -> CannedRead:
    async with rt.write() as tx:
        taken = CannedTaken(f"a canned response /{data.shortcut} exists")
        if (await tx.conn.execute(select(CR.c.id).where(CR.c.shortcut == data.shortcut))).first():
            raise taken
        with taken_as(taken):
            inserted = await tx.conn.execute(
                CR.insert().values(**data.model_dump(), created_at=utcnow()).returning(*CR.c)
            )
        row = inserted.one()
        if actor is not None:
            await audit.record(
                tx.conn, actor=actor, action="canned.create", target=f"canned:{row.id}", detail=data.model_dump()
            )
        tx.emit(NewEvent(type="canned.created", payload={"id": row.id, "shortcut": row.shortcut}))
    return CannedRead.model_validate(row._mapping)


async def update_canned(
    rt: Runtime, *, canned_id: int, data: CannedUpdate, actor: Principal | None = None
) -> CannedRead:
    """Change a canned response's shortcut, title or text."""
    values = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    async with rt.write() as tx:
        row = (await tx.conn.execute(select(CR).where(CR.c.id == canned_id))).first()
        if row is None:
            raise CannedNotFound(f"canned response {canned_id} does not exist")
        taken = CannedTaken(f"a canned response /{values.get('shortcut')} exists")
        if "shortcut" in values and values["shortcut"] != row.shortcut:
            if (await tx.conn.execute(select(CR.c.id).where(CR.c.shortcut == values["shortcut"]))).first():
                raise taken
        if actor is not None:
            await audit.record(
                tx.conn,
                actor=actor,
                action="canned.update",
                target=f"canned:{canned_id}",
                detail={
                    "shortcut": row.shortcut,
                    "before": {k: row._mapping[k] for k in values if row._mapping[k] != values[k]},
                    "after": {k: v for k, v in values.items() if row._mapping[k] != v},
                },
            )
        if values:
            with taken_as(taken):
                row = (
                    await tx.conn.execute(update(CR).where(CR.c.id == canned_id).values(**values).returning(*CR.c))
                ).one()
        tx.emit(NewEvent(type="canned.updated", payload={"id": row.id, "shortcut": row.shortcut}))
    return CannedRead.model_validate(row._mapping)


async def delete_canned(rt: Runtime, *, canned_id: int, actor: Principal | None = None) -> None:
    async with rt.write() as tx:
        row = (await tx.conn.execute(select(CR).where(CR.c.id == canned_id))).first()
        done = await tx.conn.execute(delete(CR).where(CR.c.id == canned_id))
        if row is None or not done.rowcount:
            raise CannedNotFound(f"canned response {canned_id} does not exist")
        detail = {"shortcut": row.shortcut, "title": row.title, "text": row.text}
        if actor is not None:
            await audit.record(
                tx.conn, actor=actor, action="canned.delete", target=f"canned:{canned_id}", detail=detail
            )
        tx.emit(NewEvent(type="canned.deleted", payload={"id": canned_id}))


router = APIRouter(prefix="/api/canned", tags=["canned responses"])


@router.get("", response_model=list[CannedRead])
async def list_canned(agent: CurrentAgent, rt: RuntimeDep, q: str = "", limit: int = 20) -> list[CannedRead]:
    """Search canned responses (what the console shows when an agent types ``/``)."""
    return await search_canned(rt, query=q[:100], limit=max(1, min(limit, 100)))


@router.post("", response_model=CannedRead, status_code=201)
async def add_canned(body: CannedCreate, agent: CurrentAgent, rt: RuntimeDep) -> CannedRead:
    """Supervisors and admins: add a canned response."""
    agent.require_supervisor()
    return await create_canned(rt, data=body, actor=agent)


@router.patch("/{canned_id}", response_model=CannedRead)
async def change_canned(canned_id: IdParam, body: CannedUpdate, agent: CurrentAgent, rt: RuntimeDep) -> CannedRead:
    """Supervisors and admins: change a canned response."""
    agent.require_supervisor()
    return await update_canned(rt, canned_id=canned_id, data=body, actor=agent)


@router.delete("/{canned_id}", status_code=204)
async def remove_canned(canned_id: IdParam, agent: CurrentAgent, rt: RuntimeDep) -> Response:
    agent.require_supervisor()
    await delete_canned(rt, canned_id=canned_id, actor=agent)
    return Response(status_code=204)

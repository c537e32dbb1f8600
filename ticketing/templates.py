"""Message templates: the approved templates (WhatsApp) an agent may send once the customer's messaging window
has closed (``hub.windows``), with ``{{1}}``, ``{{2}}``... where the variables go.

They live in ``message_templates`` and are edited in the admin page (``/admin/templates``) or the API
(``/api/templates``, admins). ``SWITCHBOARD_WHATSAPP_TEMPLATES`` seeds the table at start
(``seed_from_settings``): a template of the setting whose name and language the table does not have is added.
A deleted template keeps its row, marked deleted, so the seed does not bring it back; adding it again revives
the row. The reply path (``ticketing.replies``) and the composer's picker read the table only.

A change is written to the audit log (``hub.audit``) in its own transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PField
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import audit
from hub.channels import SPECS
from hub.config import MessageTemplate
from hub.db import insert_rows, taken_as, utcnow
from hub.deps import CurrentAdmin, CurrentAgent, RuntimeDep
from hub.errors import Conflict, NotFound
from hub.inputs import IdParam, Input
from hub.principals import Principal
from hub.runtime import Runtime
from hub.windows import PLACEHOLDER, variables_of
from ticketing.models import MessageTemplateRow

MT = MessageTemplateRow.__table__  # type: ignore[attr-defined]
CONTENT_SID = r"^HX[0-9a-fA-F]{32}$"
# The channels whose messaging window lets templates through (hub.channels: WhatsApp).
TEMPLATE_CHANNELS = tuple(name for name, spec in SPECS.items() if spec.window is not None and spec.window.templates)


class TemplateTaken(Conflict):
    code = "template_taken"


class TemplateNotFound(NotFound):
    code = "template_not_found"


def _channels_ok(value: list[str]) -> list[str]:
    unknown = [c for c in value if c not in TEMPLATE_CHANNELS]
    if unknown:
        raise ValueError(f"templates are sent on {', '.join(TEMPLATE_CHANNELS)} only, not {', '.join(unknown)}")
    return sorted(set(value))


def _body_ok(value: str) -> str:
    numbers = sorted({int(n) for n in PLACEHOLDER.findall(value)})
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError("the variables must be numbered {{1}}, {{2}}... without gaps")
    return value


class TemplateCreate(Input):
    """An approved template, exactly as Meta approved it: its name, language and body (``{{1}}``... for the
    variables)."""

    name: str = PField(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: str = PField(default="en_US", min_length=2, max_length=15, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]+)*$")
    body: str = PField(min_length=1, max_length=1024)
    channels: list[str] = PField(default_factory=lambda: ["whatsapp"], min_length=1, max_length=5)
    # Twilio's Content API SID of the template, when WhatsApp goes through Twilio (``HX`` and 32 hex digits).
    content_sid: str | None = PField(default=None, pattern=CONTENT_SID)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str]) -> list[str]:
        return _channels_ok(value)

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        return _body_ok(value)


class TemplateUpdate(Input):
    """Fields to change; a field left out stays as it is."""

    name: str | None = PField(default=None, min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$")
    language: str | None = PField(
        default=None, min_length=2, max_length=15, pattern=r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]+)*$"
    )
    body: str | None = PField(default=None, min_length=1, max_length=1024)
    channels: list[str] | None = PField(default=None, min_length=1, max_length=5)
    content_sid: str | None = PField(default=None, pattern=CONTENT_SID)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _channels_ok(value)

    @field_validator("body")
    @classmethod
    def _body(cls, value: str | None) -> str | None:
        return None if value is None else _body_ok(value)


class TemplateRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    language: str
    body: str
    channels: list[str]
    content_sid: str | None = None
    variables: int  # how many values it takes: {{1}} to {{n}}
    created_at: datetime
    updated_at: datetime


def _read(row: Any) -> TemplateRead:
    return TemplateRead.model_validate({**row._mapping, "variables": variables_of(row.body)})


_IN_FORCE = select(MT).where(MT.c.deleted_at.is_(None)).order_by(MT.c.name, MT.c.language)


async def templates_of(conn: AsyncConnection, channel: str | None = None) -> list[MessageTemplate]:
    """The templates in force (for ``channel``, when given), as the reply path and the window read them."""
    rows = (await conn.execute(_IN_FORCE)).all()
    return [
        MessageTemplate(
            name=r.name, language=r.language, body=r.body, channels=list(r.channels), content_sid=r.content_sid
        )
        for r in rows
        if channel is None or channel in (r.channels or [])
    ]


async def list_templates(rt: Runtime) -> list[TemplateRead]:
    async with rt.read() as conn:
        rows = (await conn.execute(_IN_FORCE)).all()
    return [_read(r) for r in rows]


async def seed_from_settings(rt: Runtime) -> int:
    """Add the templates of ``SWITCHBOARD_WHATSAPP_TEMPLATES`` whose name and language the table does not have
    (deleted ones included: an admin's deletion stands); answers how many were added. Several processes may
    start at once: the unique name and language keep one row each."""
    wanted = rt.settings.whatsapp_templates
    if not wanted:
        return 0
    async with rt.write() as tx:
        have = {(r.name, r.language) for r in await tx.conn.execute(select(MT.c.name, MT.c.language))}
        now = utcnow()
        rows = [
            {
                "name": t.name,
                "language": t.language,
                "body": t.body,
                "channels": list(t.channels),
                "content_sid": t.content_sid,
                "created_at": now,
                "updated_at": now,
                "deleted_at": None,
            }
            for t in {(t.name, t.language): t for t in wanted}.values()
            if (t.name, t.language) not in have
        ]
        await insert_rows(tx.conn, MT, rows, ignore_conflicts=True)
    return len(rows)


async def create_template(rt: Runtime, *, data: TemplateCreate, actor: Principal | None = None) -> TemplateRead:
    """Add a template (or bring back a deleted one of the same name and language)."""
    now = utcnow()
    taken = TemplateTaken(f"a template {data.name!r} in {data.language} exists", loc=("body", "name"))
    async with rt.write() as tx:
        row = (await tx.conn.execute(select(MT).where(MT.c.name == data.name, MT.c.language == data.language))).first()
        if row is not None and row.deleted_at is None:
            raise taken
        values = {**data.model_dump(), "updated_at": now, "deleted_at": None}
        with taken_as(taken):
            if row is None:
                row = (await tx.conn.execute(MT.insert().values(**values, created_at=now).returning(*MT.c))).one()
            else:
                revived = update(MT).where(MT.c.id == row.id).values(**values).returning(*MT.c)
                row = (await tx.conn.execute(revived)).one()
        if actor is not None:
            await audit.record(
                tx.conn, actor=actor, action="template.create", target=f"template:{row.id}", detail=data.model_dump()
            )
    return _read(row)


async def update_template(
    rt: Runtime, *, template_id: int, data: TemplateUpdate, actor: Principal | None = None
) -> TemplateRead:
    # null leaves a field as it is, but clears the Content SID (a template no longer sent through Twilio)
    values = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None or k == "content_sid"}
    async with rt.write() as tx:
        row = (await tx.conn.execute(select(MT).where(MT.c.id == template_id, MT.c.deleted_at.is_(None)))).first()
        if row is None:
            raise TemplateNotFound(f"template {template_id} does not exist")
        name, language = values.get("name", row.name), values.get("language", row.language)
        taken = TemplateTaken(f"a template {name!r} in {language} exists", loc=("body", "name"))
        if (name, language) != (row.name, row.language):
            other = (await tx.conn.execute(select(MT.c.id).where(MT.c.name == name, MT.c.language == language))).first()
            if other is not None:
                raise taken
        changed = {k: v for k, v in values.items() if row._mapping[k] != v}
        if changed:
            with taken_as(taken):
                row = (
                    await tx.conn.execute(
                        update(MT).where(MT.c.id == template_id).values(**changed, updated_at=utcnow()).returning(*MT.c)
                    )
                ).one()
            if actor is not None:
                await audit.record(
                    tx.conn, actor=actor, action="template.update", target=f"template:{template_id}", detail=changed
                )
    return _read(row)


async def delete_template(rt: Runtime, *, template_id: int, actor: Principal | None = None) -> None:
    async with rt.write() as tx:
        done = await tx.conn.execute(
            update(MT).where(MT.c.id == template_id, MT.c.deleted_at.is_(None)).values(deleted_at=utcnow())
        )
        if not done.rowcount:
            raise TemplateNotFound(f"template {template_id} does not exist")
        if actor is not None:
            await audit.record(tx.conn, actor=actor, action="template.delete", target=f"template:{template_id}")


router = APIRouter(prefix="/api/templates", tags=["message templates"])


@router.get("", response_model=list[TemplateRead])
async def get_templates(agent: CurrentAgent, rt: RuntimeDep) -> list[TemplateRead]:
    """The approved templates agents may send outside a messaging window."""
    return await list_templates(rt)


@router.post("", response_model=TemplateRead, status_code=201)
async def add_template(body: TemplateCreate, admin: CurrentAdmin, rt: RuntimeDep) -> TemplateRead:
    """Admins: add an approved template (as Meta approved it)."""
    return await create_template(rt, data=body, actor=admin)


@router.patch("/{template_id}", response_model=TemplateRead)
async def change_template(
    template_id: IdParam, body: TemplateUpdate, admin: CurrentAdmin, rt: RuntimeDep
) -> TemplateRead:
    """Admins: change a template."""
    return await update_template(rt, template_id=template_id, data=body, actor=admin)


@router.delete("/{template_id}", status_code=204)
async def remove_template(template_id: IdParam, admin: CurrentAdmin, rt: RuntimeDep) -> Response:
    """Admins: delete a template (a template in SWITCHBOARD_WHATSAPP_TEMPLATES stays deleted)."""
    await delete_template(rt, template_id=template_id, actor=admin)
    return Response(status_code=204)

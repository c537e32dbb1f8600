"""The messages of webhook batches that ingest refused (``social_quarantine``), for the people who look after
them: list (by channel and account, a page at a time), show one with what was kept of it as text, try it again,
or throw it away. Each of the three changes is written to the audit log (``hub.audit``).

Trying again runs the kept message through ingest as the webhook did. It is idempotent on the provider's message
id, as ingest is: a message that was stored meanwhile (the provider sent it again and ingest took it) is found,
not stored twice; either way it leaves quarantine. A message ingest refuses again stays, with the new reason.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy import delete, func, select, update

from channels.social.models import SocialQuarantine
from hub import audit
from hub.errors import NotFound, SwitchboardError
from hub.messages import InboundMessage, Ingest
from hub.principals import Principal
from hub.runtime import Runtime

log = logging.getLogger(__name__)

Q = SocialQuarantine.__table__  # type: ignore[attr-defined]
# The channels whose webhooks quarantine (channels.social.service): the filter's choices.
QuarantineChannel = Literal["messenger", "instagram", "whatsapp", "comments", "telegram"]
RAW_TEXT_MAX = 200_000  # what the detail shows of a kept message; the row keeps it whole


class QuarantineNotFound(NotFound):
    code = "quarantine_not_found"


class QuarantinedRead(BaseModel):
    """A refused message in a list: where it came from, why it was refused, and a glimpse of it."""

    channel: str
    external_id: str
    account: str
    reason: str
    created_at: datetime
    sender: str
    text: str


class QuarantinedDetail(QuarantinedRead):
    """One refused message with what was kept of it, as text (JSON, indented): never markup to render."""

    raw: str


class QuarantinePage(BaseModel):
    items: list[QuarantinedRead]
    total: int
    offset: int
    limit: int


class ReprocessAnswer(BaseModel):
    """Whether the message became a message of a ticket (and which), or stays in quarantine (and why)."""

    ok: bool
    channel: str
    external_id: str
    message_id: int | None = None
    ticket_id: int | None = None
    created: bool = False
    reason: str | None = None


def _summary(row: Any) -> dict[str, Any]:
    kept = row.message if isinstance(row.message, dict) else {}
    given = kept.get("sender")
    sender: dict[str, Any] = given if isinstance(given, dict) else {}
    name, value = str(sender.get("name") or ""), str(sender.get("value") or "")
    return {
        "channel": row.channel,
        "external_id": row.external_id,
        "account": row.account,
        "reason": row.reason,
        "created_at": row.created_at,
        "sender": f"{name} ({value})" if name and value else name or value,
        "text": str(kept.get("text") or "")[:300],
    }


async def list_quarantined(
    rt: Runtime, *, channel: str | None, account: str | None, offset: int, limit: int
) -> QuarantinePage:
    """The refused messages, newest first, filtered by channel and account."""
    where = []
    if channel:
        where.append(Q.c.channel == channel)
    if account:
        where.append(Q.c.account == account)
    async with rt.read() as conn:
        total = (await conn.execute(select(func.count()).select_from(Q).where(*where))).scalar_one()
        rows = await conn.execute(
            select(Q)
            .where(*where)
            .order_by(Q.c.created_at.desc(), Q.c.channel, Q.c.external_id)
            .offset(offset)
            .limit(limit)
        )
        items = [QuarantinedRead(**_summary(row)) for row in rows]
    return QuarantinePage(items=items, total=int(total), offset=offset, limit=limit)


async def _row(rt: Runtime, channel: str, external_id: str) -> Any:
    async with rt.read() as conn:
        row = (await conn.execute(select(Q).where(Q.c.channel == channel, Q.c.external_id == external_id))).first()
    if row is None:
        raise QuarantineNotFound(f"no {channel} message {external_id[:255]!r} is in quarantine")
    return row


async def get_quarantined(rt: Runtime, *, channel: str, external_id: str) -> QuarantinedDetail:
    """One refused message, what was kept of it as indented JSON text."""
    row = await _row(rt, channel, external_id)
    raw = json.dumps(row.message, indent=2, ensure_ascii=False, sort_keys=True)
    if len(raw) > RAW_TEXT_MAX:
        raw = raw[:RAW_TEXT_MAX] + f"\n… ({len(raw) - RAW_TEXT_MAX} more characters kept)"
    return QuarantinedDetail(**_summary(row), raw=raw)


async def reprocess(
    rt: Runtime, ingest: Ingest, *, channel: str, external_id: str, actor: Principal, fetch: Any = None
) -> ReprocessAnswer:
    """Run the kept message through ingest again (see the module docstring). ``fetch`` (the service's
    ``fetch_media``) gets its files first, when they were not fetched the first time."""
    row = await _row(rt, channel, external_id)
    target = f"social_quarantine:{channel}:{external_id}"[:200]
    reason: str | None = None
    result = None
    try:
        message = InboundMessage.model_validate(row.message)
    except ValidationError as exc:
        reason = f"unreadable: {exc.errors()[0].get('msg', 'not a message')}"
    else:
        if fetch is not None:
            await fetch([message])
        try:
            result = await ingest(message)
        except SwitchboardError as exc:
            reason = f"{exc.code}: {exc.message}"[:2000]
    async with rt.db.begin() as conn:
        if result is None:
            await conn.execute(
                update(Q).where(Q.c.channel == channel, Q.c.external_id == external_id).values(reason=reason)
            )
        else:
            await conn.execute(delete(Q).where(Q.c.channel == channel, Q.c.external_id == external_id))
        detail: dict[str, Any] = {"ok": result is not None, "old_reason": row.reason[:500]}
        if result is not None:
            detail.update(message_id=result.message_id, ticket_id=result.ticket_id, created=result.created)
        else:
            detail["reason"] = (reason or "")[:500]
        await audit.record(conn, actor=actor, action="social_quarantine.reprocess", target=target, detail=detail)
    if result is None:
        log.info("%s message %s stays in quarantine: %s", channel, external_id, reason)
        return ReprocessAnswer(ok=False, channel=channel, external_id=external_id, reason=reason)
    return ReprocessAnswer(
        ok=True,
        channel=channel,
        external_id=external_id,
        message_id=result.message_id,
        ticket_id=result.ticket_id,
        created=result.created,
    )


async def discard(rt: Runtime, *, channel: str, external_id: str, actor: Principal) -> None:
    """Throw a refused message away (it is not stored anywhere else)."""
    row = await _row(rt, channel, external_id)
    async with rt.db.begin() as conn:
        gone = await conn.execute(delete(Q).where(Q.c.channel == channel, Q.c.external_id == external_id))
        if gone.rowcount == 0:
            raise QuarantineNotFound(f"no {channel} message {external_id[:255]!r} is in quarantine")
        await audit.record(
            conn,
            actor=actor,
            action="social_quarantine.discard",
            target=f"social_quarantine:{channel}:{external_id}"[:200],
            detail={"account": row.account, "reason": row.reason[:500]},
        )

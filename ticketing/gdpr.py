"""A contact's personal data: exporting all of it (JSON, attachments included), erasing it, and erasing closed
tickets past the retention period (``SWITCHBOARD_RETENTION_DAYS``).

What an erase leaves: the contact row (no name, no attributes, marked ``erased_at``) and its tickets, with their
channel, queue, status, priority, tags and times, so reports still count them; every message's text, HTML,
subject, sender, recipient, attachments and metadata are gone, and so are the identities, the notes on the
contact, outbound messages not yet sent, the event-log rows of those tickets (they carry message text), and
the attachment files (and those uploaded in its conversations, sent or not) no other message refers to.
Contacts merged into the erased one are erased with it (they are the same person), and those merges can no
longer be undone.

A contact in a live conversation (an open call or chat) is not erased: the conversation would go on with
half of it gone. The answer says which ticket to end first.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import String, and_, cast, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import audit
from hub.channels import SPECS
from hub.db import utcnow
from hub.errors import Conflict
from hub.events import EventType
from hub.files import FileStore, StoredFileMissing
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing.contact_index import contacts_changed
from ticketing.contacts import ContactGone, contact_event, contact_row, gone_reason
from ticketing.identities import identity_read
from ticketing.identity_cache import forget_identities
from ticketing.models import OPEN_STATUSES, ContactNoteRead, MessageRead, TicketRead, TicketStatus
from ticketing.tables import (
    contact_identities,
    contact_merges,
    contact_notes,
    contacts,
    file_uploads,
    messages,
    outbox,
    tickets,
)
from ticketing.tickets import ticket_event

log = logging.getLogger(__name__)

LIVE_CHANNELS = [name for name, spec in SPECS.items() if spec.live]
OPEN_STATUS_VALUES = [s.value for s in OPEN_STATUSES]
RETENTION_BATCH = 500


class ContactBusy(Conflict):
    """The contact is in a live conversation (an open call or chat)."""

    code = "contact_in_live_conversation"


class ErasedSummary(BaseModel):
    contact_ids: list[int]
    tickets: int
    messages: int
    files_removed: int


def _event_table() -> Any:
    from hub.events import Event

    return Event.__table__  # type: ignore[attr-defined]


# --- export ---------------------------------------------------------------------------------------------


def _file_refs(message: Any) -> list[tuple[str, str]]:
    """(sha256, what it is) of every stored file a message refers to."""
    refs = []
    for a in message.attachments or []:
        if isinstance(a, dict) and isinstance(a.get("sha256"), str):
            refs.append((a["sha256"], str(a.get("filename") or "attachment")))
    raw = (message.meta or {}).get("raw_sha256")
    if isinstance(raw, str):
        refs.append((raw, "raw message"))
    return refs


async def export_contact(rt: Runtime, *, contact_id: int, principal: Principal | None) -> dict[str, Any]:
    """Supervisors and admins (``principal``; None: the command line): everything stored about the contact, as
    JSON: the contact, its identities, notes, merges, every ticket with every message, and every stored file
    they refer to (base64)."""
    if principal is not None:
        principal.require_supervisor()
    store = FileStore(rt.settings.attachment_dir)
    async with rt.read() as conn:
        row = await contact_row(conn, contact_id)
        idents = (
            await conn.execute(
                select(contact_identities.c.kind, contact_identities.c.value, contact_identities.c.created_at)
                .where(contact_identities.c.contact_id == contact_id)
                .order_by(contact_identities.c.id)
            )
        ).all()
        notes = (
            await conn.execute(
                select(contact_notes).where(contact_notes.c.contact_id == contact_id).order_by(contact_notes.c.id)
            )
        ).all()
        merges = (
            await conn.execute(
                select(contact_merges).where(
                    (contact_merges.c.survivor_id == contact_id) | (contact_merges.c.merged_id == contact_id)
                )
            )
        ).all()
        ticket_rows = (
            await conn.execute(select(tickets).where(tickets.c.contact_id == contact_id).order_by(tickets.c.id))
        ).all()
        ids = [t.id for t in ticket_rows]
        msg_rows = (
            (await conn.execute(select(messages).where(messages.c.ticket_id.in_(ids)).order_by(messages.c.id))).all()
            if ids
            else []
        )
    files: dict[str, dict[str, Any]] = {}
    by_ticket: dict[int, list[dict[str, Any]]] = {}
    for m in msg_rows:
        by_ticket.setdefault(m.ticket_id, []).append(
            {**MessageRead.model_validate(m._mapping).model_dump(mode="json"), "meta": m.meta}
        )
        for sha, what in _file_refs(m):
            if sha in files:
                continue
            try:
                data = store.get(sha)
            except StoredFileMissing:
                files[sha] = {"sha256": sha, "name": what, "missing": True}
                continue
            files[sha] = {"sha256": sha, "name": what, "size": len(data), "base64": base64.b64encode(data).decode()}
    async with rt.db.begin() as conn:
        await audit.record(
            conn,
            actor=principal,
            action="contact.export",
            target=f"contact:{contact_id}",
            detail={"tickets": len(ticket_rows), "messages": len(msg_rows), "files": len(files)},
        )
    return {
        "format": "switchboard-contact-export/1",
        "exported_at": utcnow().isoformat(),
        "contact": {
            "id": row.id,
            "name": row.name,
            "attributes": row.attributes,
            "created_at": row.created_at.isoformat(),
            "updated_at": row.updated_at.isoformat(),
            "deleted_at": row.deleted_at.isoformat() if row.deleted_at else None,
            "merged_into_id": row.merged_into_id,
            "erased_at": row.erased_at.isoformat() if row.erased_at else None,
        },
        "identities": [
            {**identity_read(k, v).model_dump(), "created_at": created.isoformat()} for k, v, created in idents
        ],
        "notes": [ContactNoteRead.model_validate(n._mapping).model_dump(mode="json") for n in notes],
        "merges": [
            {"id": m.id, "survivor_id": m.survivor_id, "merged_id": m.merged_id, "created_at": m.created_at.isoformat()}
            for m in merges
        ],
        "tickets": [
            {**TicketRead.model_validate(t._mapping).model_dump(mode="json"), "messages": by_ticket.get(t.id, [])}
            for t in ticket_rows
        ],
        "attachments": list(files.values()),
    }


# --- erase ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Erased:
    tickets: int
    messages: int
    shas: set[str]


async def _erase_tickets(conn: AsyncConnection, ticket_ids: list[int], now: datetime) -> _Erased:
    """Blank every message of ``ticket_ids`` and what else holds their text (see the module docstring); the
    files they referred to, for the caller to remove after commit if no other message refers to them."""
    if not ticket_ids:
        return _Erased(0, 0, set())
    rows = (
        await conn.execute(
            select(messages.c.id, messages.c.attachments, messages.c.meta).where(messages.c.ticket_id.in_(ticket_ids))
        )
    ).all()
    shas = {sha for r in rows for sha, _ in _file_refs(r)}
    message_ids = [r.id for r in rows]
    if message_ids:
        await conn.execute(delete(outbox).where(outbox.c.message_id.in_(message_ids)))
        await conn.execute(
            update(messages)
            .where(messages.c.id.in_(message_ids))
            .values(
                text="",
                html=None,
                subject=None,
                sender=None,
                recipient=None,
                attachments=[],
                meta={"erased": True},
                delivery_error=None,
            )
        )
    # The conversations' uploads go too (sent or not), before the tickets forget their thread keys.
    threads = [
        tuple(r)
        for r in await conn.execute(
            select(tickets.c.channel, tickets.c.thread_key)
            .where(tickets.c.id.in_(ticket_ids), tickets.c.thread_key.is_not(None))
            .distinct()
        )
    ]
    if threads:
        uploaded = tuple_(file_uploads.c.channel, file_uploads.c.thread_key).in_(threads)
        shas |= set((await conn.execute(select(file_uploads.c.sha256).where(uploaded))).scalars())
        await conn.execute(delete(file_uploads).where(uploaded))
    await conn.execute(
        update(tickets)
        .where(tickets.c.id.in_(ticket_ids))
        .values(subject="", rating_comment=None, reply_to=None, thread_key=None, erased_at=now)
    )
    events = _event_table()
    newest = (await conn.execute(select(func.max(events.c.seq)))).scalar()
    if newest is not None:  # the newest event anchors seq: keep it, blanked
        await conn.execute(delete(events).where(events.c.ticket_id.in_(ticket_ids), events.c.seq < newest))
        await conn.execute(
            update(events).where(events.c.ticket_id.in_(ticket_ids), events.c.seq == newest).values(payload={})
        )
    return _Erased(len(ticket_ids), len(message_ids), shas)


async def _unreferenced(conn: AsyncConnection, shas: set[str]) -> set[str]:
    """Those of ``shas`` that no message refers to any more."""
    if not shas:
        return set()
    text_of = or_(*(cast(messages.c.attachments, String).contains(s) for s in shas)) | or_(
        *(cast(messages.c.meta, String).contains(s) for s in shas)
    )
    still = set()
    for attachments, meta in await conn.execute(select(messages.c.attachments, messages.c.meta).where(text_of)):
        blob = f"{attachments} {meta}"
        still |= {s for s in shas if s in blob}
    return shas - still


def _remove_files(rt: Runtime, shas: set[str]) -> int:
    store = FileStore(rt.settings.attachment_dir)
    removed = 0
    for sha in shas:
        try:
            path = store.path(sha)
        except StoredFileMissing:
            continue
        if path.exists():
            path.unlink()
            removed += 1
    return removed


async def erase_contact(rt: Runtime, *, contact_id: int, principal: Principal) -> ErasedSummary:
    """Admins: erase the contact's personal data (see the module docstring). 409 when the contact is in an
    open call or chat, or was merged into another (erase that one) or erased already."""
    principal.require_admin()
    now = utcnow()
    async with rt.write() as tx:
        conn = tx.conn
        row = await contact_row(conn, contact_id, lock=True)
        if row.deleted_at is not None:
            raise ContactGone(gone_reason(row) + ("; erase that contact" if row.merged_into_id else ""))
        family = [contact_id]
        frontier = [contact_id]
        while frontier:  # contacts merged into it, and into those
            found = [
                int(r[0])
                for r in await conn.execute(select(contacts.c.id).where(contacts.c.merged_into_id.in_(frontier)))
            ]
            frontier = [f for f in found if f not in family]
            family += frontier
        live = (
            await conn.execute(
                select(tickets.c.id, tickets.c.channel)
                .where(
                    tickets.c.contact_id.in_(family),
                    tickets.c.channel.in_(LIVE_CHANNELS),
                    tickets.c.status.in_(OPEN_STATUS_VALUES),
                )
                .order_by(tickets.c.id)
                .limit(1)
            )
        ).first()
        if live is not None:
            what = "call" if live.channel == "voice" else "chat"
            raise ContactBusy(
                f"contact {contact_id} is in an open {what} (ticket #{live.id} on {live.channel}); "
                "end it before erasing the contact"
            )
        ticket_rows = (
            await conn.execute(
                select(tickets.c.id, tickets.c.status, tickets.c.queue_id).where(tickets.c.contact_id.in_(family))
            )
        ).all()
        ticket_ids = [t.id for t in ticket_rows]
        erased = await _erase_tickets(conn, ticket_ids, now)
        open_ids = [t.id for t in ticket_rows if t.status in OPEN_STATUS_VALUES]
        if open_ids:  # nobody is left to answer: close them, freeing whoever held them
            await conn.execute(
                update(tickets)
                .where(tickets.c.id.in_(open_ids))
                .values(
                    status=TicketStatus.CLOSED.value,
                    closed_at=now,
                    updated_at=now,
                    offered_agent_id=None,
                    offer_expires_at=None,
                )
            )
            for t in (await conn.execute(select(tickets).where(tickets.c.id.in_(open_ids)))).all():
                tx.emit(ticket_event(EventType.TICKET_UPDATED, t, erased=True))
        await conn.execute(delete(contact_identities).where(contact_identities.c.contact_id.in_(family)))
        await conn.execute(delete(contact_notes).where(contact_notes.c.contact_id.in_(family)))
        await conn.execute(
            update(contact_merges)
            .where(
                and_(
                    contact_merges.c.undone_at.is_(None),
                    contact_merges.c.survivor_id.in_(family) | contact_merges.c.merged_id.in_(family),
                )
            )
            .values(moved={"erased": True})
        )
        await conn.execute(
            update(contacts)
            .where(contacts.c.id.in_(family))
            .values(name=None, attributes={}, updated_at=now, erased_at=now, deleted_at=now)
        )
        tx.emit(contact_event(EventType.CONTACT_ERASED, family))
        tx.after_commit.append(lambda: forget_identities(rt, family))
        tx.after_commit.append(lambda: contacts_changed(rt))
        await audit.record(
            conn,
            actor=principal,
            action="contact.erase",
            target=f"contact:{contact_id}",
            detail={"contacts": family, "tickets": erased.tickets, "messages": erased.messages},
        )
    async with rt.read() as conn:
        gone = await _unreferenced(conn, erased.shas)
    removed = _remove_files(rt, gone)
    return ErasedSummary(contact_ids=family, tickets=erased.tickets, messages=erased.messages, files_removed=removed)


async def erase_expired_tickets(rt: Runtime, *, older_than: timedelta, batch: int = RETENTION_BATCH) -> int:
    """Erase the messages of tickets solved or closed longer than ``older_than`` ago (a batch at a time, the
    oldest first); how many tickets were erased. The retention worker runs this when
    ``SWITCHBOARD_RETENTION_DAYS`` is set."""
    cutoff = utcnow() - older_than
    ended = func.coalesce(tickets.c.closed_at, tickets.c.solved_at)
    total = 0
    while True:
        async with rt.write() as tx:
            stmt = (
                select(tickets.c.id)
                .where(
                    tickets.c.status.in_([TicketStatus.SOLVED.value, TicketStatus.CLOSED.value]),
                    ended < cutoff,
                    or_(tickets.c.erased_at.is_(None), tickets.c.erased_at < ended),
                )
                .order_by(ended)
                .limit(batch)
            )
            if tx.conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            ids = [int(r[0]) for r in await tx.conn.execute(stmt)]
            erased = await _erase_tickets(tx.conn, ids, utcnow())
            if ids:
                await audit.record(
                    tx.conn,
                    actor=None,
                    action="ticket.retention_erase",
                    target=f"tickets:{len(ids)}",
                    detail={"tickets": ids, "older_than_days": older_than.days},
                )
        if erased.shas:
            async with rt.read() as conn:
                _remove_files(rt, await _unreferenced(conn, erased.shas))
        total += len(ids)
        if len(ids) < batch:
            return total

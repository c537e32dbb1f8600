"""A contact across channels: its page (identities, attributes, every ticket, notes, suggested duplicates),
editing it, notes on it, and merging two contacts into one, with undo.

Merge invariants:
- The survivor gets every identity, ticket, note and (for keys it lacks) attribute of the merged contact; the
  merged contact stays as a row marked ``deleted_at`` and ``merged_into_id``, so nothing refers to a missing
  row and the merge can be undone.
- A ``contact_merges`` row records exactly what moved (ids and attribute keys). Undo moves back what still sits
  where the merge put it; what arrived later (a new identity, a new ticket) stays with the survivor.
- Both contacts' rows are locked (PostgreSQL, in id order) before anything moves; a contact merged or erased
  meanwhile is refused with 409, never merged twice.
- Ingest keeps a per-process cache of identity -> contact (``ticketing.ingest``). A merge, an undo and an erase
  append a ``contact.merged`` / ``contact.unmerged`` / ``contact.erased`` event naming the contacts whose
  identities moved; every process hears it (Redis with several processes) and drops those cache entries.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from hub import audit
from hub.db import utcnow
from hub.errors import Conflict, NotFound
from hub.events import EventType, NewEvent
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing import tickets as ticket_reads
from ticketing.contact_index import contacts_changed, suggested_duplicates
from ticketing.exceptions import ContactNotFound, NotYourTicket
from ticketing.identity_cache import forget_identities
from ticketing.models import ContactHistory, ContactNoteRead, ContactRead, ContactUpdate, MergeRead
from ticketing.tables import contact_identities, contact_merges, contact_notes, contacts, messages, tickets


class ContactGone(Conflict):
    """The contact was merged into another or erased: the answer says which."""

    code = "contact_gone"


class SameContact(Conflict):
    code = "merge_into_itself"


class MergeNotFound(NotFound):
    code = "merge_not_found"


class MergeNotUndoable(Conflict):
    code = "merge_not_undoable"


def gone_reason(row: Any) -> str:
    if row.erased_at is not None:
        return f"contact {row.id} was erased"
    if row.merged_into_id is not None:
        return f"contact {row.id} was merged into contact {row.merged_into_id}"
    return f"contact {row.id} was deleted"


async def contact_row(conn: AsyncConnection, contact_id: int, *, lock: bool = False) -> Any:
    stmt = select(contacts).where(contacts.c.id == contact_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    if row is None:
        raise ContactNotFound(f"contact {contact_id} does not exist")
    return row


async def check_may_see(conn: AsyncConnection, principal: Principal, contact_id: int) -> None:
    """Supervisors see every contact; an agent one with a ticket they may see, or with no ticket at all."""
    if principal.sees_all:
        return
    rows = (
        await conn.execute(
            select(tickets.c.queue_id, tickets.c.assignee_id, tickets.c.offered_agent_id).where(
                tickets.c.contact_id == contact_id
            )
        )
    ).all()
    if rows and not any(principal.can_see_ticket(queue_id=q, assignee_id=a, offered_agent_id=o) for q, a, o in rows):
        raise NotYourTicket(f"contact {contact_id} has no tickets in your queues")


def contact_event(type_: str, contact_ids: list[int], **payload: Any) -> NewEvent:
    """An event about contacts (visible to every agent: it names contacts, never their details)."""
    return NewEvent(type=type_, payload={"contact_ids": contact_ids, **payload})


# --- the page -------------------------------------------------------------------------------------------


async def contact_page(rt: Runtime, *, contact_id: int, principal: Principal) -> ContactHistory:
    """A contact with every ticket and message across channels, its notes, its merges and suggested
    duplicates."""
    history = await ticket_reads.get_contact_history(rt, contact_id=contact_id, principal=principal)
    async with rt.read() as conn:
        notes = (
            await conn.execute(
                select(contact_notes).where(contact_notes.c.contact_id == contact_id).order_by(contact_notes.c.id)
            )
        ).all()
        merges = (
            await conn.execute(
                select(contact_merges)
                .where((contact_merges.c.survivor_id == contact_id) | (contact_merges.c.merged_id == contact_id))
                .order_by(contact_merges.c.id.desc())
            )
        ).all()
    duplicates = (
        [] if history.deleted_at else await suggested_duplicates(rt, contact_id=contact_id, principal=principal)
    )
    return history.model_copy(
        update={
            "notes": [ContactNoteRead.model_validate(n._mapping) for n in notes],
            "merges": [MergeRead.model_validate(m._mapping) for m in merges],
            "duplicates": duplicates,
        }
    )


async def update_contact(rt: Runtime, *, contact_id: int, principal: Principal, data: ContactUpdate) -> ContactRead:
    """Change the name and/or replace the attributes."""
    values: dict[str, Any] = {}
    fields = data.model_fields_set
    if "name" in fields:
        values["name"] = (data.name or "").strip() or None
    if "attributes" in fields and data.attributes is not None:
        values["attributes"] = dict(data.attributes)
    async with rt.write() as tx:
        row = await contact_row(tx.conn, contact_id, lock=True)
        await check_may_see(tx.conn, principal, contact_id)
        if row.deleted_at is not None:
            raise ContactGone(gone_reason(row))
        if values:
            values["updated_at"] = utcnow()
            await tx.conn.execute(update(contacts).where(contacts.c.id == contact_id).values(**values))
            tx.after_commit.append(lambda: contacts_changed(rt))
            fields_changed = sorted(k for k in values if k != "updated_at")
            tx.emit(
                NewEvent(type=EventType.CONTACT_UPDATED, payload={"contact_id": contact_id, "fields": fields_changed})
            )
            # The field names only: the values are personal data, which an erase must be able to remove.
            await audit.record(
                tx.conn,
                actor=principal,
                action="contact.update",
                target=f"contact:{contact_id}",
                detail={"fields": fields_changed},
            )
        return await ticket_reads.contact_read(tx.conn, contact_id)


async def add_contact_note(rt: Runtime, *, contact_id: int, principal: Principal, text: str) -> ContactNoteRead:
    """An internal note on the contact (agents only, never sent)."""
    async with rt.write() as tx:
        row = await contact_row(tx.conn, contact_id)
        await check_may_see(tx.conn, principal, contact_id)
        if row.deleted_at is not None:
            raise ContactGone(gone_reason(row))
        now = utcnow()
        result = await tx.conn.execute(
            contact_notes.insert()
            .values(contact_id=contact_id, author_agent_id=principal.agent_id, text=text, created_at=now)
            .returning(contact_notes.c.id)
        )
        note_id = int(result.scalar_one())
        tx.emit(NewEvent(type=EventType.CONTACT_UPDATED, payload={"contact_id": contact_id, "note_id": note_id}))
    return ContactNoteRead(
        id=note_id, contact_id=contact_id, author_agent_id=principal.agent_id, text=text, created_at=now
    )


# --- merge and undo -------------------------------------------------------------------------------------


def _counts(moved: dict[str, Any]) -> dict[str, int]:
    """How many of each kind of thing a merge moved: counts for the audit log, never the values."""
    return {key: len(moved.get(key) or []) for key in ("identities", "tickets", "messages", "notes", "attributes")}


async def _ids(conn: AsyncConnection, stmt: Any) -> list[int]:
    return [int(r[0]) for r in await conn.execute(stmt)]


async def merge_contacts(rt: Runtime, *, survivor_id: int, merged_id: int, principal: Principal) -> MergeRead:
    """Supervisors and admins: move everything of ``merged_id`` to ``survivor_id`` (see the module docstring).
    409 for a contact merged into itself, or either contact merged or erased already."""
    principal.require_supervisor()
    if survivor_id == merged_id:
        raise SameContact(f"contact {survivor_id} cannot be merged into itself")
    async with rt.write() as tx:
        conn = tx.conn
        rows = {}
        for cid in sorted((survivor_id, merged_id)):  # one lock order: two merges never deadlock
            rows[cid] = await contact_row(conn, cid, lock=True)
        survivor, merged = rows[survivor_id], rows[merged_id]
        for row in (survivor, merged):
            if row.deleted_at is not None:
                raise ContactGone(gone_reason(row) + "; it cannot be merged")
        now = utcnow()
        identity_ids = await _ids(
            conn, select(contact_identities.c.id).where(contact_identities.c.contact_id == merged_id)
        )
        ticket_ids = await _ids(conn, select(tickets.c.id).where(tickets.c.contact_id == merged_id))
        message_ids = (
            await _ids(
                conn,
                select(messages.c.id).where(messages.c.ticket_id.in_(ticket_ids), messages.c.contact_id == merged_id),
            )
            if ticket_ids
            else []
        )
        note_ids = await _ids(conn, select(contact_notes.c.id).where(contact_notes.c.contact_id == merged_id))
        if identity_ids:
            await conn.execute(
                update(contact_identities)
                .where(contact_identities.c.id.in_(identity_ids))
                .values(contact_id=survivor_id)
            )
        if ticket_ids:
            await conn.execute(update(tickets).where(tickets.c.id.in_(ticket_ids)).values(contact_id=survivor_id))
        if message_ids:
            await conn.execute(update(messages).where(messages.c.id.in_(message_ids)).values(contact_id=survivor_id))
        if note_ids:
            await conn.execute(
                update(contact_notes).where(contact_notes.c.id.in_(note_ids)).values(contact_id=survivor_id)
            )
        attributes = dict(survivor.attributes or {})
        added = {k: v for k, v in (merged.attributes or {}).items() if k not in attributes}
        attributes.update(added)
        survivor_values: dict[str, Any] = {"attributes": attributes, "updated_at": now}
        name_taken = not survivor.name and bool(merged.name)
        if name_taken:
            survivor_values["name"] = merged.name
        await conn.execute(update(contacts).where(contacts.c.id == survivor_id).values(**survivor_values))
        await conn.execute(
            update(contacts)
            .where(contacts.c.id == merged_id)
            .values(deleted_at=now, merged_into_id=survivor_id, updated_at=now)
        )
        moved = {
            "identities": identity_ids,
            "tickets": ticket_ids,
            "messages": message_ids,
            "notes": note_ids,
            "attributes": added,
            "name": merged.name if name_taken else None,
        }
        merge_id = int(
            (
                await conn.execute(
                    contact_merges.insert()
                    .values(
                        survivor_id=survivor_id,
                        merged_id=merged_id,
                        moved=moved,
                        agent_id=principal.agent_id,
                        created_at=now,
                    )
                    .returning(contact_merges.c.id)
                )
            ).scalar_one()
        )
        tx.emit(
            contact_event(EventType.CONTACT_MERGED, [survivor_id, merged_id], merge_id=merge_id, ticket_ids=ticket_ids)
        )
        tx.after_commit.append(lambda: forget_identities(rt, (survivor_id, merged_id)))
        tx.after_commit.append(lambda: contacts_changed(rt))
        await audit.record(
            conn,
            actor=principal,
            action="contact.merge",
            target=f"contact:{survivor_id}",
            detail={"merge_id": merge_id, "merged": merged_id, **_counts(moved)},
        )
    return MergeRead(
        id=merge_id,
        survivor_id=survivor_id,
        merged_id=merged_id,
        moved=moved,
        agent_id=principal.agent_id,
        created_at=now,
    )


async def undo_merge(rt: Runtime, *, merge_id: int, principal: Principal) -> MergeRead:
    """Supervisors and admins: move back what the merge moved and bring the merged contact back. 409 when it
    was undone already, or either contact has since been merged elsewhere or erased."""
    principal.require_supervisor()
    async with rt.write() as tx:
        conn = tx.conn
        stmt = select(contact_merges).where(contact_merges.c.id == merge_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        merge = (await conn.execute(stmt)).first()
        if merge is None:
            raise MergeNotFound(f"merge {merge_id} does not exist")
        if merge.undone_at is not None:
            raise MergeNotUndoable(f"merge {merge_id} was undone already")
        rows = {cid: await contact_row(conn, cid, lock=True) for cid in sorted((merge.survivor_id, merge.merged_id))}
        survivor, merged = rows[merge.survivor_id], rows[merge.merged_id]
        if survivor.deleted_at is not None:
            raise MergeNotUndoable(gone_reason(survivor) + " since; undo or reverse that first")
        if merged.erased_at is not None or merged.merged_into_id != survivor.id:
            raise MergeNotUndoable(gone_reason(merged) + "; the merge cannot be undone")
        moved = merge.moved or {}
        s_id, m_id = survivor.id, merged.id
        moved_back: list[int] = []  # the tickets, for the event
        for table, key in (
            (contact_identities, "identities"),
            (tickets, "tickets"),
            (messages, "messages"),
            (contact_notes, "notes"),
        ):
            ids = [int(i) for i in moved.get(key) or []]
            if ids:
                result = await conn.execute(
                    update(table)
                    .where(and_(table.c.id.in_(ids), table.c.contact_id == s_id))
                    .values(contact_id=m_id)
                    .returning(table.c.id)
                )
                if table is tickets:
                    moved_back = sorted(int(r[0]) for r in result)
        now = utcnow()
        attributes = dict(survivor.attributes or {})
        for k, v in (moved.get("attributes") or {}).items():
            if k in attributes and attributes[k] == v:
                del attributes[k]
        values: dict[str, Any] = {"attributes": attributes, "updated_at": now}
        if moved.get("name") and survivor.name == moved["name"]:
            values["name"] = None
        await conn.execute(update(contacts).where(contacts.c.id == s_id).values(**values))
        await conn.execute(
            update(contacts).where(contacts.c.id == m_id).values(deleted_at=None, merged_into_id=None, updated_at=now)
        )
        await conn.execute(
            update(contact_merges)
            .where(contact_merges.c.id == merge_id)
            .values(undone_at=now, undone_by=principal.agent_id)
        )
        tx.emit(contact_event(EventType.CONTACT_UNMERGED, [s_id, m_id], merge_id=merge_id, ticket_ids=moved_back))
        tx.after_commit.append(lambda: forget_identities(rt, (s_id, m_id)))
        tx.after_commit.append(lambda: contacts_changed(rt))
        await audit.record(
            conn,
            actor=principal,
            action="contact.merge_undo",
            target=f"contact:{s_id}",
            detail={"merge_id": merge_id, "restored": m_id, **_counts(moved)},
        )
        return MergeRead.model_validate({**merge._mapping, "undone_at": now})

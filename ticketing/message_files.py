"""Which messages carry which stored files, and who may read a file: whoever may see one of its messages.

A file's hash alone grants nothing. ``record`` writes a message's files (``hub.files.carried_files``: its
attachments, inline images, an email's raw bytes) into ``message_files`` in the transaction that stores the
message, for every channel (ingest) and every reply; the reads below answer the ports' ``may_read_file`` and
``carries_file``, which ``hub.file_access`` asks for every file route. The answer follows the tickets as they
move: a ticket transferred to another queue takes its files' readers with it.

Which files a customer's message may carry is bound the same way: ``record_upload`` keeps the conversation an
upload was made in (``file_uploads``), and ``attachable`` allows a conversation's message only its own uploads
and the files its messages already carry. Without it, a visitor who knew another conversation's file hash could
send a message carrying it and then read it as theirs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hub.db import insert_rows, utcnow
from hub.files import FILE_METADATA_KEYS, carried_files, is_sha256
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing.models import Direction
from ticketing.tables import file_uploads, message_files, messages, tickets
from ticketing.tickets import visible_tickets

_FILE_KEYS = frozenset(FILE_METADATA_KEYS)
# What a customer sees of their conversation: never an internal note.
_CUSTOMER_VISIBLE = (Direction.INBOUND.value, Direction.OUTBOUND.value)


def file_rows(stored: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The ``message_files`` rows of stored messages (rows of ``messages`` with their ``id``, ``attachments``
    and ``meta``)."""
    rows: list[dict[str, Any]] = []
    for m in stored:
        attachments, meta = m.get("attachments"), m.get("meta")
        # Most messages carry no file: two checks, and on.
        if attachments or (meta and not _FILE_KEYS.isdisjoint(meta)):
            rows.extend({"sha256": sha, "message_id": m["id"]} for sha in sorted(carried_files(attachments, meta)))
    return rows


async def record(conn: AsyncConnection, stored: Iterable[Mapping[str, Any]]) -> None:
    """Record the files of messages just stored, in their transaction. A message without files costs a
    dictionary lookup or two: this runs for every message ingested."""
    rows = file_rows(stored)
    if rows:
        await insert_rows(conn, message_files, rows)


def _carrying(sha256: str) -> Any:
    return (
        select(message_files.c.message_id)
        .select_from(
            message_files.join(messages, messages.c.id == message_files.c.message_id).join(
                tickets, tickets.c.id == messages.c.ticket_id
            )
        )
        .where(message_files.c.sha256 == sha256)
        .limit(1)
    )


async def may_read_file(rt: Runtime, *, principal: Principal, sha256: str) -> bool:
    """Whether a message carrying the file is in a ticket ``principal`` may see (internal notes included: an
    agent who sees the ticket sees them)."""
    if not is_sha256(sha256):
        return False
    query = _carrying(sha256)
    visible = visible_tickets(principal)
    if visible is not None:
        query = query.where(visible)
    async with rt.read() as conn:
        return (await conn.execute(query)).first() is not None


async def conversation_carries_file(rt: Runtime, *, channel: str, thread_key: str, sha256: str) -> bool:
    """Whether a message its customer sees (not a note) of the conversation ``(channel, thread_key)`` carries
    the file."""
    if not is_sha256(sha256):
        return False
    query = _carrying(sha256).where(
        tickets.c.channel == channel,
        tickets.c.thread_key == thread_key,
        messages.c.direction.in_(_CUSTOMER_VISIBLE),
    )
    async with rt.read() as conn:
        return (await conn.execute(query)).first() is not None


async def record_upload(rt: Runtime, *, channel: str, thread_key: str, sha256: str) -> None:
    """Keep that the file was uploaded in the conversation ``(channel, thread_key)`` (once: an upload repeated is
    no new row). Returns once committed, so a message sent after the upload's answer finds it."""
    if not is_sha256(sha256):
        raise ValueError(f"{sha256!r} is not a SHA-256")
    row = {"channel": channel, "thread_key": thread_key, "sha256": sha256, "created_at": utcnow()}
    async with rt.write() as tx:
        await tx.conn.execute(rt.db.insert_ignore(file_uploads), [row])


async def attachable(rt: Runtime, *, channel: str, thread_key: str, sha256s: Collection[str]) -> set[str]:
    """Those of ``sha256s`` a new message of the conversation may carry: uploaded in it, or carried already by a
    message of it that its customer sees. Two indexed lookups at most, only for messages with files."""
    wanted = {sha for sha in sha256s if is_sha256(sha)}
    if not wanted:
        return set()
    async with rt.read() as conn:
        found = set(
            (
                await conn.execute(
                    select(file_uploads.c.sha256).where(
                        file_uploads.c.channel == channel,
                        file_uploads.c.thread_key == thread_key,
                        file_uploads.c.sha256.in_(sorted(wanted)),
                    )
                )
            ).scalars()
        )
        rest = wanted - found
        if rest:
            carried = (
                select(message_files.c.sha256)
                .select_from(
                    message_files.join(messages, messages.c.id == message_files.c.message_id).join(
                        tickets, tickets.c.id == messages.c.ticket_id
                    )
                )
                .where(
                    message_files.c.sha256.in_(sorted(rest)),
                    tickets.c.channel == channel,
                    tickets.c.thread_key == thread_key,
                    messages.c.direction.in_(_CUSTOMER_VISIBLE),
                )
            )
            found |= set((await conn.execute(carried)).scalars())
    return found

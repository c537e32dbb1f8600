"""Files agents attach to their replies. An agent uploads the file for one ticket first
(``POST /api/reply-attachments``); the answer's ``id`` names it in the reply (``ReplyCreate.attachments``).

The id is the file's SHA-256 and a signature (HMAC-SHA256 under ``SWITCHBOARD_SECRET_KEY``) of that hash and
the ticket, so an upload is bound to its ticket without a table: the id of a file uploaded for another ticket,
or one made up, is refused (422). The bytes go to the shared content-addressed ``FileStore``; once a reply
carries a file, whoever may see that reply may read it (``hub.file_access``: the ticket's agents, the chat
visitor of the conversation), and nobody before. A file for a ticket whose channel takes none
(``FILE_CHANNELS``) is refused as it is uploaded (422, with the reason). Only images (PNG, JPEG, GIF, WebP) and
PDF, recognized by their bytes (``hub.files.sniff_safe_type``), up to ``reply_attachment_max_bytes`` (413
beyond it, 415 for another type).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence

from pydantic import BaseModel
from pydantic import Field as PField

from hub.files import FileStore, StoredFileMissing, is_sha256, sniff_safe_type
from hub.messages import Attachment
from hub.principals import Principal
from hub.runtime import Runtime
from ticketing.exceptions import AttachmentTooLarge, InvalidAttachment, UnsupportedAttachment
from ticketing.models import MAX_REPLY_FILES as MAX_FILES
from ticketing.models import ReplyAttachment
from ticketing.tickets import check_visible, ticket_row

UPLOAD_PATH = "/api/reply-attachments"  # under ticketing's "/api" router: "/reply-attachments"
# Channels whose senders deliver a reply's files: email (MIME attachments), the chat widget (shown inline),
# Telegram, WhatsApp and Messenger (uploaded as multipart to the provider's API: none of them can fetch our
# private URLs). A file on another channel is refused when it is uploaded, and a reply naming one, rather than
# sent without it. What each provider takes of a file (WhatsApp's types and sizes) its sender checks.
FILE_CHANNELS = frozenset({"email", "webchat", "telegram", "whatsapp", "messenger"})
# Why a channel takes no files, where an agent can act on more than "cannot".
WHY_NO_FILES = {
    "instagram": (
        "Instagram takes files only as public links Meta downloads, and Switchboard keeps files private; "
        "put a link in the text instead"
    ),
    "comments": "a reply to a public comment carries text only",
}


class UploadedFile(BaseModel):
    id: str = PField(description="what the reply's attachments name: valid for this ticket only")
    sha256: str
    filename: str
    content_type: str
    size: int


def clean_filename(name: str | None) -> str:
    """A file name safe in a header and a page: printable, no path or quote, at most 200 characters."""
    kept = "".join(ch for ch in (name or "") if ch.isprintable() and ch not in '/\\"')
    return kept.strip()[:200] or "attachment"


def _refuse_files(channel: str, *, loc: tuple[str, ...]) -> None:
    if channel not in FILE_CHANNELS:
        why = WHY_NO_FILES.get(channel, "its sender delivers no files")
        raise InvalidAttachment(f"replies on {channel} cannot carry files: {why}", loc=loc)


def _signature(rt: Runtime, ticket_id: int, sha256: str) -> str:
    key = rt.settings.secret_key.get_secret_value().encode()
    return hmac.new(key, f"reply-attachment:{ticket_id}:{sha256}".encode(), hashlib.sha256).hexdigest()[:40]


async def upload(
    rt: Runtime, *, principal: Principal, ticket_id: int, data: bytes, filename: str | None
) -> UploadedFile:
    """Store a file an agent will attach to a reply on ``ticket_id`` (one they may see)."""
    async with rt.read() as conn:
        row = await ticket_row(conn, ticket_id)
    check_visible(principal, row)
    _refuse_files(row.reply_channel or row.channel, loc=("body", "ticket_id"))
    limit = rt.settings.reply_attachment_max_bytes
    if len(data) > limit:
        raise AttachmentTooLarge(f"a reply's attachment is at most {limit // 1024} KB")
    content_type = sniff_safe_type(data[:16])
    if not data or content_type is None:
        raise UnsupportedAttachment("only PNG, JPEG, GIF, WebP images and PDF files can be attached")
    sha = await asyncio.to_thread(FileStore(rt.settings.attachment_dir).put, data)
    return UploadedFile(
        id=f"{sha}.{_signature(rt, ticket_id, sha)}",
        sha256=sha,
        filename=clean_filename(filename),
        content_type=content_type,
        size=len(data),
    )


def _describe(store: FileStore, sha256: str, filename: str) -> Attachment | None:
    try:
        head, size = store.head(sha256, 16), store.size(sha256)
    except StoredFileMissing:
        return None
    content_type = sniff_safe_type(head)
    if content_type is None:
        return None
    return Attachment(filename=filename, content_type=content_type, size=size, sha256=sha256)


async def resolve(
    rt: Runtime, *, principal: Principal, ticket_id: int, named: Sequence[ReplyAttachment]
) -> list[Attachment]:
    """The attachments a reply on ``ticket_id`` names, as the message will carry them (type and size read from
    the stored file); 422 for an id not uploaded for this ticket, or for files on a channel that cannot carry
    them."""
    if not named:
        return []
    async with rt.read() as conn:
        row = await ticket_row(conn, ticket_id)
    check_visible(principal, row)
    channel = row.reply_channel or row.channel
    if len(named) > MAX_FILES:
        raise InvalidAttachment(f"at most {MAX_FILES} attachments per reply", loc=("body", "attachments"))
    _refuse_files(channel, loc=("body", "attachments"))
    store = FileStore(rt.settings.attachment_dir)
    out: list[Attachment] = []
    for n, item in enumerate(named):
        sha, _, signature = item.id.partition(".")
        valid = is_sha256(sha) and hmac.compare_digest(signature, _signature(rt, ticket_id, sha))
        found = await asyncio.to_thread(_describe, store, sha, clean_filename(item.filename)) if valid else None
        if found is None:
            raise InvalidAttachment(
                f"attachment {n + 1} was not uploaded for ticket {ticket_id}", loc=("body", "attachments", n)
            )
        out.append(found)
    return out

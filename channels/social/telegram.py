"""Telegram bot updates, sans I/O: the secret-token check and the parse of one update into a normalized message.

Telegram does not sign its updates: the secret token set with ``setWebhook`` (sent as
``X-Telegram-Bot-Api-Secret-Token``) is the only check, compared in constant time. An update is deduplicated on
its ``update_id`` (unique per bot). A message of a kind we cannot show is stored as "unsupported message
type X"; updates that are not messages (edits, polls, member changes) are acknowledged and skipped.
"""

from __future__ import annotations

import hmac
import json
from datetime import UTC, datetime
from typing import Any

from channels.social.meta import BadPayload
from hub.messages import Attachment, Identity, InboundMessage


def secret_ok(expected: str, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(expected.encode(), header.encode())


def load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadPayload("the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("update_id"), int) or isinstance(data["update_id"], bool):
        raise BadPayload("not a Telegram update: an object with an integer update_id is expected")
    return data


_MESSAGE_KEYS = ("message", "business_message", "channel_post")
# Kinds of message a customer sends, and how they are shown.
_MEDIA = {
    "photo": "photo",
    "document": "document",
    "video": "video",
    "voice": "voice message",
    "audio": "audio",
    "sticker": "sticker",
    "animation": "animation",
    "video_note": "video message",
}


def parse(data: dict[str, Any], *, bot: str, queue: str) -> InboundMessage | None:
    """The update's message, or None for an update that carries none we store."""
    message = next((data[k] for k in _MESSAGE_KEYS if isinstance(data.get(k), dict)), None)
    if message is None:
        return None
    chat = message.get("chat") if isinstance(message.get("chat"), dict) else {}
    sender = message.get("from") if isinstance(message.get("from"), dict) else {}
    chat_id = chat.get("id")
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        raise BadPayload("a Telegram message without chat.id")
    name = " ".join(str(sender.get(k)) for k in ("first_name", "last_name") if sender.get(k)) or None
    username = sender.get("username")
    text, attachments, meta = content(message)
    when = message.get("date")
    return InboundMessage(
        channel="telegram",
        external_id=f"{bot}:{data['update_id']}",
        sender=Identity(kind="telegram", value=str(chat_id), name=name[:200] if name else None),
        recipient=bot,
        subject=f"Telegram: {name or ('@' + str(username) if username else chat_id)}",
        text=text,
        attachments=attachments,
        thread_key=f"tg:{bot}:{chat_id}",
        queue=queue,
        received_at=datetime.fromtimestamp(when, UTC)
        if isinstance(when, int) and 0 < when < 2**33
        else datetime.now(UTC),
        metadata={
            "account": bot,
            "chat_id": chat_id,
            "message_id": message.get("message_id"),
            **({"username": str(username)} if username else {}),
            **meta,
        },
    )


def content(message: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
    caption = message.get("caption") if isinstance(message.get("caption"), str) else None
    if isinstance(message.get("text"), str):
        return message["text"], [], {"type": "text"}
    for kind, label in _MEDIA.items():
        body = message.get(kind)
        if body is None:
            continue
        if kind == "photo" and isinstance(body, list) and body:
            body = body[-1]  # the largest size
        body = body if isinstance(body, dict) else {}
        filename = str(body.get("file_name") or kind)[:255]
        mime = str(body.get("mime_type") or ("image/jpeg" if kind == "photo" else "application/octet-stream"))[:255]
        size = body.get("file_size")
        attachment = Attachment(filename=filename, content_type=mime, size=max(0, size) if isinstance(size, int) else 0)
        shown = f"[{label}: {filename}]" if kind == "document" else f"[{label}]"
        if kind == "sticker" and body.get("emoji"):
            shown = f"[sticker {body['emoji']}]"
        return (
            (f"{shown} {caption}" if caption else shown),
            [attachment],
            {"type": kind, "file_id": body.get("file_id")},
        )
    if isinstance(message.get("location"), dict):
        loc = message["location"]
        return f"[location] ({loc.get('latitude')}, {loc.get('longitude')})", [], {"type": "location"}
    if isinstance(message.get("contact"), dict):
        c = message["contact"]
        name = " ".join(str(c.get(k)) for k in ("first_name", "last_name") if c.get(k))
        return f"[shared contact] {name}: {c.get('phone_number', '')}", [], {"type": "contact"}
    known = [k for k in message if k not in ("message_id", "from", "chat", "date", "sender_chat", "message_thread_id")]
    kind = known[0] if known else "empty"
    return f"unsupported message type {kind}", [], {"type": kind}

"""Meta's webhooks (Messenger, Instagram, WhatsApp Cloud API, page comments), sans I/O: the signature check on
the raw body, and the parse of a verified body into normalized messages and delivery receipts.

A body is a batch (``entry[]``, each with ``messaging[]`` or ``changes[]``): every item is parsed, none is
dropped. A WhatsApp message of a type we cannot show is still stored, as "unsupported message type X".
Echoes of our own messages (``is_echo``, our own page's comments) are skipped. Raises ``BadPayload`` for a body
that is not Meta's JSON or names an object type we do not know, and ``UnknownAccount`` for a page or number
that is not configured, before anything is stored.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from hub.messages import Attachment, Identity, InboundMessage

OBJECTS = ("page", "instagram", "whatsapp_business_account")


class BadPayload(ValueError):
    """Not a Meta webhook body we can read."""


class UnknownAccount(LookupError):
    """A webhook for a page, Instagram account or WhatsApp number that is not configured here."""

    def __init__(self, kind: str, account: str) -> None:
        super().__init__(f"no {kind} {account!r} is configured (SWITCHBOARD_{_SETTING[kind]})")
        self.kind = kind
        self.account = account


_SETTING = {"page": "META_PAGES", "instagram account": "META_PAGES", "WhatsApp number": "WHATSAPP_NUMBERS"}


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``, compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[7:].strip().lower().encode())


@dataclass(frozen=True, slots=True)
class Receipt:
    """A provider's word on one of our messages: sent, delivered, read or failed (with its reason)."""

    channel: str
    provider_id: str
    status: str
    error: str | None = None
    # Messenger and Instagram acknowledge "everything up to" a time (watermark), not a message id.
    watermark: datetime | None = None
    recipient: str | None = None


@dataclass(slots=True)
class Parsed:
    messages: list[InboundMessage] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)
    accounts: set[tuple[str, str]] = field(default_factory=set)  # (channel kind, account id) that spoke
    skipped: int = 0  # echoes and events we do not store


@dataclass(frozen=True, slots=True)
class Account:
    """A configured page, Instagram account or WhatsApp number: its queue."""

    id: str
    queue: str
    kind: str  # messenger | instagram | whatsapp


def load(body: bytes) -> dict[str, Any]:
    """The body as Meta's JSON: an object with a known ``object`` and an ``entry`` list. Strict JSON (orjson:
    UTF-8, no NaN or Infinity), read in a third of the standard library's time: a batch of 100 WhatsApp entries
    is 40 KB, read on the event loop."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadPayload("the body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("entry"), list):
        raise BadPayload("not a Meta webhook: an object with an entry list is expected")
    if data.get("object") not in OBJECTS:
        raise BadPayload(f"unknown object type {str(data.get('object'))[:40]!r}; expected one of {', '.join(OBJECTS)}")
    return data


def parse(data: dict[str, Any], pages: Mapping[str, Account], numbers: Mapping[str, Account]) -> Parsed:
    """Every message and receipt of a verified body (``load``)."""
    out = Parsed()
    kind = data["object"]
    for entry in data["entry"]:
        if not isinstance(entry, dict):
            raise BadPayload("an entry is not an object")
        if kind == "whatsapp_business_account":
            _whatsapp_entry(entry, numbers, out)
        else:
            _page_entry(entry, kind, pages, out)
    return out


def _str(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _time(value: Any, *, millis: bool) -> datetime | None:
    try:
        seconds = float(value) / (1000 if millis else 1)
        return datetime.fromtimestamp(seconds, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


# --- WhatsApp Cloud API -------------------------------------------------------------------------------------------


def _whatsapp_entry(entry: dict[str, Any], numbers: Mapping[str, Account], out: Parsed) -> None:
    for change in _list(entry.get("changes")):
        value = _obj(_obj(change).get("value"))
        if _obj(change).get("field") not in (None, "messages"):
            out.skipped += 1
            continue
        number_id = _str(_obj(value.get("metadata")).get("phone_number_id"))
        if number_id is None:
            raise BadPayload("a WhatsApp change without metadata.phone_number_id")
        account = numbers.get(number_id)
        if account is None:
            raise UnknownAccount("WhatsApp number", number_id)
        out.accounts.add(("whatsapp", number_id))
        names = {
            _str(c.get("wa_id")): _str(_obj(c.get("profile")).get("name"))
            for c in _list(value.get("contacts"))
            if isinstance(c, dict)
        }
        for message in _list(value.get("messages")):
            message = _obj(message)
            sender = _str(message.get("from"))
            wamid = _str(message.get("id"))
            if sender is None or wamid is None:
                raise BadPayload("a WhatsApp message without from or id")
            text, attachments, meta = whatsapp_content(message)
            out.messages.append(
                InboundMessage(
                    channel="whatsapp",
                    external_id=wamid,
                    sender=Identity(kind="whatsapp", value="+" + sender.lstrip("+"), name=names.get(sender)),
                    recipient=number_id,
                    subject=f"WhatsApp: {names.get(sender) or '+' + sender.lstrip('+')}",
                    text=text,
                    attachments=attachments,
                    thread_key=f"wa:{number_id}:{sender}",
                    queue=account.queue,
                    received_at=_time(message.get("timestamp"), millis=False) or datetime.now(UTC),
                    metadata={"account": number_id, "wa_id": sender, **meta},
                )
            )
        for status in _list(value.get("statuses")):
            status = _obj(status)
            provider_id = _str(status.get("id"))
            state = _str(status.get("status"))
            if provider_id is None or state is None:
                continue
            errors = [_obj(e) for e in _list(status.get("errors"))]
            error = "; ".join(f"{e.get('code')}: {e.get('title') or e.get('message')}" for e in errors) or None
            out.receipts.append(
                Receipt("whatsapp", provider_id, state, error, recipient=_str(status.get("recipient_id")))
            )


# What each WhatsApp media type is called when shown.
_MEDIA = {"image": "image", "audio": "voice message", "video": "video", "document": "document", "sticker": "sticker"}


def whatsapp_content(message: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
    """What a WhatsApp message of any type shows: (text, attachments, metadata). A type we do not know is shown
    as "unsupported message type X", never dropped."""
    kind = _str(message.get("type")) or "unknown"
    body = _obj(message.get(kind))
    meta: dict[str, Any] = {"type": kind}
    context = _obj(message.get("context"))
    if context.get("id"):
        meta["in_reply_to"] = _str(context.get("id"))
    if kind == "text":
        return _str(body.get("body")) or "", [], meta
    if kind in _MEDIA:
        media_id = _str(body.get("id"))
        mime = _str(body.get("mime_type")) or "application/octet-stream"
        filename = _str(body.get("filename")) or f"{kind}-{media_id or 'unknown'}"
        caption = _str(body.get("caption"))
        meta["media_id"] = media_id
        attachment = Attachment(filename=filename[:255], content_type=mime[:255], size=0)
        label = f"[{_MEDIA[kind]}: {filename}]" if kind == "document" else f"[{_MEDIA[kind]}]"
        if kind == "sticker" and body.get("animated"):
            label = "[animated sticker]"
        return (f"{label} {caption}" if caption else label), [attachment], meta
    if kind == "location":
        lat, lon = body.get("latitude"), body.get("longitude")
        place = " - ".join(p for p in (_str(body.get("name")), _str(body.get("address"))) if p)
        meta["location"] = {"latitude": lat, "longitude": lon}
        where = f"{lat}, {lon}"
        return (
            f"[location] {place + ' ' if place else ''}({where}) https://www.openstreetmap.org/?mlat={lat}&mlon={lon}",
            [],
            meta,
        )
    if kind == "contacts":
        shown = []
        for contact in _list(message.get("contacts")):
            contact = _obj(contact)
            name = _str(_obj(contact.get("name")).get("formatted_name")) or "(no name)"
            phones = [_str(_obj(p).get("phone")) for p in _list(contact.get("phones"))]
            emails = [_str(_obj(e).get("email")) for e in _list(contact.get("emails"))]
            details = ", ".join(x for x in (*phones, *emails) if x)
            shown.append(f"{name}{': ' + details if details else ''}")
        return "[shared contact] " + "; ".join(shown or ["(empty)"]), [], meta
    if kind == "interactive":
        reply = _obj(body.get("button_reply")) or _obj(body.get("list_reply"))
        sub = _str(body.get("type")) or "reply"
        if not reply:
            sub = _str(body.get("type")) or "unknown"
            return f"unsupported message type interactive/{sub}", [], meta
        meta["reply_id"] = _str(reply.get("id"))
        described = _str(reply.get("description"))
        title = _str(reply.get("title")) or _str(reply.get("id")) or ""
        return f"[{sub.replace('_', ' ')}] {title}{' - ' + described if described else ''}", [], meta
    if kind == "button":
        meta["payload"] = _str(body.get("payload"))
        return f"[button] {_str(body.get('text')) or _str(body.get('payload')) or ''}", [], meta
    if kind == "reaction":
        emoji = _str(body.get("emoji"))
        meta["reacted_to"] = _str(body.get("message_id"))
        return (f"[reaction] {emoji} to an earlier message" if emoji else "[reaction removed]"), [], meta
    if kind == "order":
        items = _list(body.get("product_items"))
        return f"[order] {len(items)} item(s) from catalog {_str(body.get('catalog_id')) or '?'}", [], meta
    if kind == "system":
        return f"[system] {_str(body.get('body')) or ''}", [], meta
    errors = [_obj(e) for e in _list(message.get("errors"))]
    detail = "; ".join(str(e.get("title") or e.get("message") or e.get("code")) for e in errors)
    return f"unsupported message type {kind}{': ' + detail if detail else ''}", [], meta


# --- Messenger, Instagram, page comments --------------------------------------------------------------------------


def _page_entry(entry: dict[str, Any], kind: str, pages: Mapping[str, Account], out: Parsed) -> None:
    account_id = _str(entry.get("id"))
    what = "page" if kind == "page" else "instagram account"
    if account_id is None:
        raise BadPayload(f"a {what} entry without id")
    account = pages.get(account_id)
    if account is None:
        raise UnknownAccount(what, account_id)
    channel = "messenger" if kind == "page" else "instagram"
    out.accounts.add((channel, account_id))
    for event in _list(entry.get("messaging")) + _list(entry.get("standby")):
        _messaging_event(_obj(event), channel, account, out)
    for change in _list(entry.get("changes")):
        _comment_change(_obj(change), channel, account, out)


def _messaging_event(event: dict[str, Any], channel: str, account: Account, out: Parsed) -> None:
    sender = _str(_obj(event.get("sender")).get("id"))
    received = _time(event.get("timestamp"), millis=True) or datetime.now(UTC)
    if "delivery" in event or "read" in event:
        receipt = _obj(event.get("delivery") or event.get("read"))
        status = "delivered" if "delivery" in event else "read"
        watermark = _time(receipt.get("watermark"), millis=True)
        mids = [m for m in (_str(x) for x in _list(receipt.get("mids"))) if m]
        for mid in mids:
            out.receipts.append(Receipt(channel, mid, status, recipient=sender))
        if not mids and watermark is not None and sender:
            out.receipts.append(Receipt(channel, "", status, watermark=watermark, recipient=sender))
        return
    message = _obj(event.get("message"))
    postback = _obj(event.get("postback"))
    if message.get("is_echo"):
        out.skipped += 1  # our own message, echoed back
        return
    if sender is None or sender == account.id:
        out.skipped += 1
        return
    if message:
        given = _str(message.get("mid"))
        if given is None:
            raise BadPayload(f"a {channel} message without mid")
        mid = given
        text, attachments, meta = messenger_content(message)
    elif postback:
        mid = _str(postback.get("mid")) or f"postback:{sender}:{event.get('timestamp')}"
        text = f"[button] {_str(postback.get('title')) or _str(postback.get('payload')) or ''}"
        attachments, meta = [], {"type": "postback", "payload": _str(postback.get("payload"))}
    elif "reaction" in event:
        reaction = _obj(event.get("reaction"))
        mid = f"reaction:{_str(reaction.get('mid'))}:{sender}:{event.get('timestamp')}"
        emoji = _str(reaction.get("emoji")) or _str(reaction.get("reaction"))
        action = _str(reaction.get("action")) or "react"
        text = f"[reaction] {emoji} to an earlier message" if action == "react" else "[reaction removed]"
        attachments, meta = [], {"type": "reaction", "reacted_to": _str(reaction.get("mid"))}
    else:
        out.skipped += 1  # optins, referrals, handovers: nothing to answer
        return
    out.messages.append(
        InboundMessage(
            channel=channel,
            external_id=mid,
            sender=Identity(kind=channel, value=sender),
            recipient=account.id,
            subject=f"{channel.capitalize()} conversation",
            text=text,
            attachments=attachments,
            thread_key=f"{channel[:2]}:{account.id}:{sender}",
            queue=account.queue,
            received_at=received,
            metadata={"account": account.id, **meta},
        )
    )


def messenger_content(message: dict[str, Any]) -> tuple[str, list[Attachment], dict[str, Any]]:
    """What a Messenger or Instagram message shows: its text, and each attachment named by its type."""
    text = _str(message.get("text")) or ""
    attachments: list[Attachment] = []
    labels = []
    urls = []
    for item in _list(message.get("attachments")):
        item = _obj(item)
        kind = _str(item.get("type")) or "file"
        payload = _obj(item.get("payload"))
        url = _str(payload.get("url"))
        if kind == "location":
            coords = _obj(payload.get("coordinates"))
            labels.append(f"[location] ({coords.get('lat')}, {coords.get('long')})")
            continue
        labels.append(f"[{kind}]")
        if url:
            urls.append(url)
        attachments.append(
            Attachment(filename=f"{kind}", content_type=_MIME.get(kind, "application/octet-stream"), size=0, url=url)
        )
    meta: dict[str, Any] = {"type": "text" if not labels else "attachment"}
    quick = _obj(message.get("quick_reply"))
    if quick.get("payload"):
        meta["payload"] = _str(quick.get("payload"))
    if urls:
        meta["media_urls"] = urls
    shown = " ".join([*labels, text]).strip()
    return shown or "unsupported message type (empty message)", attachments, meta


_MIME = {"image": "image/*", "video": "video/*", "audio": "audio/*", "file": "application/octet-stream"}


def _comment_change(change: dict[str, Any], channel: str, account: Account, out: Parsed) -> None:
    """A public comment (``feed`` for a page, ``comments`` for Instagram) becomes a message of the ``comments``
    channel, threaded per post and author; edits, removals and likes are skipped."""
    field_name = change.get("field")
    value = _obj(change.get("value"))
    if channel == "messenger":
        if field_name != "feed" or value.get("item") != "comment" or value.get("verb") not in ("add", None):
            out.skipped += 1
            return
        comment_id = _str(value.get("comment_id"))
        post_id = _str(value.get("post_id"))
        author = _obj(value.get("from"))
        text = _str(value.get("message")) or ""
        when = _time(value.get("created_time"), millis=False)
    else:
        if field_name not in ("comments", "live_comments"):
            out.skipped += 1
            return
        comment_id = _str(value.get("id"))
        post_id = _str(_obj(value.get("media")).get("id"))
        author = _obj(value.get("from"))
        text = _str(value.get("text")) or ""
        when = None
    author_id = _str(author.get("id"))
    if comment_id is None or author_id is None:
        raise BadPayload("a comment without its id or its author")
    if author_id == account.id:
        out.skipped += 1  # the page's own comment (our reply)
        return
    name = _str(author.get("name")) or _str(author.get("username"))
    out.messages.append(
        InboundMessage(
            channel="comments",
            external_id=comment_id,
            sender=Identity(kind=channel, value=author_id, name=name),
            recipient=account.id,
            subject=f"Comment on {'post' if channel == 'messenger' else 'Instagram media'} {post_id}",
            text=text or "(comment without text)",
            thread_key=f"cm:{account.id}:{post_id}:{author_id}",
            queue=account.queue,
            received_at=when or datetime.now(UTC),
            metadata={
                "account": account.id,
                "kind": channel,
                "comment_id": comment_id,
                "post_id": post_id,
                # When the customer commented (Facebook says; Instagram does not): a private reply's 7 days
                # count from it, not from when we stored the comment (a late webhook, a quarantine retried).
                **({"commented_at": when.isoformat()} if when else {}),
            },
        )
    )

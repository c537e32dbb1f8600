"""The pretend social app of ``switchboard demo`` (``/demo/social``), sans I/O: which of the send-API calls the
demo's catcher kept (``hub.api_catcher``) are replies to one customer, and what each shows.

The page posts the customer's messages through the real webhooks, signed by ``sign`` with the demo's own
secrets (only in demo mode); the agent's replies leave through the real senders, to the catcher, and come back
to the page from here. The calls are read as the senders make them (``service.SocialService.send_*``):
WhatsApp ``POST {graph}/{number}/messages`` with ``to``, Messenger and Instagram ``POST {graph}/{page}/messages``
with ``recipient.id`` (a Messenger file: multipart, its ``recipient`` and ``message`` JSON form fields), Telegram
``POST {api}/bot{token}/send*`` with ``chat_id``. A file shows as its kind and name, as ``[image: photo.png]``,
then its caption; a WhatsApp file is named by the upload (``{graph}/{number}/media``) whose media id it carries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from channels.social.meta import Account


class DemoReply(BaseModel):
    """An agent's reply as the customer's app shows it."""

    text: str
    at: float  # seconds since the epoch, when the provider (the catcher) was handed it


def meta_signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256`` as Meta computes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def replies_to(
    calls: list[dict[str, Any]], *, channel: str, customer: str, pages: Mapping[str, Account]
) -> list[DemoReply]:
    """The calls that sent something to ``customer`` on ``channel``, oldest first."""
    uploads = _uploads(calls) if channel == "whatsapp" else {}
    out = []
    for call in calls:
        if call.get("method") != "POST":
            continue
        text = _reply_text(call, channel=channel, customer=customer, pages=pages, uploads=uploads)
        if text is not None:
            out.append(DemoReply(text=text, at=float(call.get("at") or 0)))
    return out


def _uploads(calls: list[dict[str, Any]]) -> dict[str, str]:
    """The names of the files uploaded to WhatsApp (``{number}/media``), by the media id the catcher answered."""
    return {
        f"demo{call.get('n')}": str(files[0])
        for call in calls
        if call.get("method") == "POST"
        and str(call.get("path") or "").endswith("/media")
        and (files := call.get("files") or [])
    }


def _file_text(kind: str, name: str, caption: Any = None) -> str:
    shown = f"[{kind}: {name}]"
    return f"{shown} {caption}" if isinstance(caption, str) and caption.strip() else shown


def _reply_text(
    call: dict[str, Any], *, channel: str, customer: str, pages: Mapping[str, Account], uploads: Mapping[str, str]
) -> str | None:
    path = str(call.get("path") or "")
    body, form = _dict(call.get("json")), _dict(call.get("form"))
    files = ", ".join(str(f) for f in call.get("files") or []) or "a file"
    if channel == "telegram":
        method = path.rsplit("/", 1)[-1]
        if "/bot" not in path or not method.startswith("send"):
            return None
        chat = body.get("chat_id", form.get("chat_id"))
        if str(chat) != customer:
            return None
        if method == "sendMessage":
            return str(body.get("text") or "")
        return _file_text(method.removeprefix("send").lower(), files, form.get("caption"))
    if not path.endswith("/messages"):
        return None
    account = path.rsplit("/", 2)[-2]
    if channel == "whatsapp":
        if body.get("messaging_product") != "whatsapp" or str(body.get("to") or "").lstrip("+") != customer.lstrip("+"):
            return None
        if body.get("type") == "template":
            template = _dict(body.get("template"))
            values = [
                str(_dict(p).get("text"))
                for c in template.get("components") or []
                for p in _dict(c).get("parameters") or []
            ]
            return f"[template {template.get('name')}] {', '.join(values)}".strip()
        kind = str(body.get("type") or "text")
        if kind == "text":
            return str(_dict(body.get("text")).get("body") or "")
        media = _dict(body.get(kind))
        name = media.get("filename") or uploads.get(str(media.get("id"))) or "a file"
        return _file_text(kind, str(name), media.get("caption"))
    if form:  # a Messenger file: the message's JSON travels as form fields next to the file
        body = {"recipient": _json(form.get("recipient")), "message": _json(form.get("message"))}
    page = pages.get(account)
    if page is None or page.kind != channel or str(_dict(body.get("recipient")).get("id")) != customer:
        return None
    message = _dict(body.get("message"))
    attachment = _dict(message.get("attachment"))
    if attachment:
        return _file_text(str(attachment.get("type") or "file"), files)
    return str(message.get("text") or "")


def _json(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

"""The pretend social app of ``switchboard demo`` (``/demo/social``), sans I/O: which of the send-API calls the
demo's catcher kept (``hub.api_catcher``) are replies to one customer, and what each shows.

The page posts the customer's messages through the real webhooks, signed by ``sign`` with the demo's own
secrets (only in demo mode); the agent's replies leave through the real senders, to the catcher, and come back
to the page from here. The calls are read as the senders make them (``service.SocialService.send_*``):
WhatsApp ``POST {graph}/{number}/messages`` with ``to``, Messenger and Instagram ``POST {graph}/{page}/messages``
with ``recipient.id``, Telegram ``POST {api}/bot{token}/send*`` with ``chat_id``.
"""

from __future__ import annotations

import hashlib
import hmac
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
    out = []
    for call in calls:
        if call.get("method") != "POST":
            continue
        text = _reply_text(call, channel=channel, customer=customer, pages=pages)
        if text is not None:
            out.append(DemoReply(text=text, at=float(call.get("at") or 0)))
    return out


def _reply_text(call: dict[str, Any], *, channel: str, customer: str, pages: Mapping[str, Account]) -> str | None:
    path = str(call.get("path") or "")
    body, form = _dict(call.get("json")), _dict(call.get("form"))
    if channel == "telegram":
        method = path.rsplit("/", 1)[-1]
        if "/bot" not in path or not method.startswith("send"):
            return None
        chat = body.get("chat_id", form.get("chat_id"))
        if str(chat) != customer:
            return None
        if method == "sendMessage":
            return str(body.get("text") or "")
        files = ", ".join(str(f) for f in call.get("files") or []) or "a file"
        return f"[{method.removeprefix('send').lower()}: {files}]"
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
        return str(_dict(body.get("text")).get("body") or "")
    page = pages.get(account)
    if page is None or page.kind != channel or str(_dict(body.get("recipient")).get("id")) != customer:
        return None
    return str(_dict(body.get("message")).get("text") or "")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

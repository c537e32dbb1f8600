"""Replies out through each provider's API (captured by a local server), receipts, retries, the provider's
reasons, expired tokens, and the messaging windows across their boundaries."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from hub.db import utcnow
from hub.events import Event, EventType
from hub.runtime import Runtime
from tests.channels.social.conftest import BOT, NUMBER, PAGE, TG_SECRET, Provider, encode, fixture, sign
from tests.conftest import login, make_agent, make_queue, until
from ticketing.tables import messages as M

_events = Event.__table__  # type: ignore[attr-defined]


def _wa(wamid: str, *, age: timedelta = timedelta(minutes=1), sender: str = "4915112345678") -> bytes:
    at = int((utcnow() - age).timestamp())
    return encode(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"display_phone_number": "1555", "phone_number_id": NUMBER},
                                "contacts": [{"profile": {"name": "Wanda"}, "wa_id": sender}],
                                "messages": [
                                    {
                                        "from": sender,
                                        "id": wamid,
                                        "timestamp": str(at),
                                        "type": "text",
                                        "text": {"body": "hi"},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    )


def _messenger(mid: str, *, age: timedelta, sender: str = "2400001") -> bytes:
    at = int((utcnow() - age).timestamp() * 1000)
    return encode(
        {
            "object": "page",
            "entry": [
                {
                    "id": PAGE,
                    "time": at,
                    "messaging": [
                        {
                            "sender": {"id": sender},
                            "recipient": {"id": PAGE},
                            "timestamp": at,
                            "message": {"mid": mid, "text": "hello page"},
                        }
                    ],
                }
            ],
        }
    )


def _statuses(*pairs: tuple[str, str]) -> bytes:
    return encode(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"display_phone_number": "1555", "phone_number_id": NUMBER},
                                "statuses": [
                                    {"id": pid, "status": status, "timestamp": "1", "recipient_id": "4915112345678"}
                                    for pid, status in pairs
                                ],
                            },
                        }
                    ],
                }
            ],
        }
    )


async def _post(hub: httpx.AsyncClient, body: bytes) -> dict[str, Any]:
    r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _agent(rt: Runtime, hub: httpx.AsyncClient) -> dict[str, str]:
    await make_queue(rt, "social", channels=["whatsapp", "messenger", "instagram", "telegram", "comments"])
    await make_agent(rt, "sam", role="admin", queues=["social"])
    return await login(hub, "sam", "password-123")


async def _ticket_of(rt: Runtime, external_id: str) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(select(M.c.ticket_id).where(M.c.external_id == external_id))).scalar_one())


async def _settled(rt: Runtime, message_id: int, *, not_in: tuple[str, ...] = ("pending",)) -> Any:
    """The message once its delivery status left ``not_in`` (the dispatcher runs in the server's thread)."""
    deadline = time.monotonic() + 30
    while True:
        async with rt.read() as conn:
            row = (await conn.execute(select(M).where(M.c.id == message_id))).one()
        if row.delivery_status not in not_in or time.monotonic() > deadline:
            return row
        await asyncio.sleep(0.05)


async def test_whatsapp_reply_goes_to_the_cloud_api_and_receipts_only_move_forward(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """The reply is POSTed to {graph}/{phone_number_id}/messages with the number's token; delivered and read
    receipts move it forward, a late "sent" does not move it back."""
    auth = await _agent(rt, hub)
    await _post(hub, _wa("wamid.IN1"))
    ticket = await _ticket_of(rt, "wamid.IN1")
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "Hello Wanda"}, headers=auth)
    assert r.status_code == 201, r.text
    row = await _settled(rt, r.json()["id"])
    assert row.delivery_status == "sent"
    [call] = provider.sent
    assert call.path == f"/graph/{NUMBER}/messages"
    assert call.headers["Authorization"] == "Bearer wa-token"
    assert call.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "4915112345678",
        "type": "text",
        "text": {"body": "Hello Wanda", "preview_url": False},
    }
    assert (await _post(hub, _statuses(("wamid.OUT1", "delivered"))))["receipts"] == 1
    assert (await _settled(rt, row.id, not_in=("sent",))).delivery_status == "delivered"
    assert (await _post(hub, _statuses(("wamid.OUT1", "sent"))))["receipts"] == 0
    await _post(hub, _statuses(("wamid.OUT1", "read"), ("wamid.NOT_OURS", "read")))
    assert (await _settled(rt, row.id, not_in=("delivered",))).delivery_status == "read"


async def test_messenger_and_telegram_replies_reach_their_apis(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """Messenger: {graph}/{page}/messages with the page's token, a RESPONSE to the sender's PSID. Telegram:
    {api}/bot<token>/sendMessage to the chat."""
    auth = await _agent(rt, hub)
    await _post(hub, _messenger("m_in_9", age=timedelta(minutes=5)))
    body = json.dumps(fixture("telegram_message.json")).encode()
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    assert (await hub.post(f"/webhooks/telegram/{BOT}", content=body, headers=headers)).status_code == 200
    for external_id, text in (("m_in_9", "page answer"), ("shop:10000", "bot answer")):
        ticket = await _ticket_of(rt, external_id)
        r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": text}, headers=auth)
        assert r.status_code == 201, r.text
        assert (await _settled(rt, r.json()["id"])).delivery_status == "sent"
    page_call, bot_call = provider.sent
    assert page_call.path == f"/graph/{PAGE}/messages"
    assert page_call.headers["Authorization"] == "Bearer page-token"
    assert page_call.json() == {
        "recipient": {"id": "2400001"},
        "message": {"text": "page answer"},
        "messaging_type": "RESPONSE",
    }
    assert bot_call.path == "/tg/bot123456:ABC/sendMessage"
    assert bot_call.json() == {"chat_id": "1111111", "text": "bot answer"}


async def test_5xx_and_429_are_retried_then_sent(hub: httpx.AsyncClient, rt: Runtime, provider: Provider) -> None:
    """The provider answers 500, then 429: the outbox tries again with backoff, and the third try sends."""
    auth = await _agent(rt, hub)
    await _post(hub, _wa("wamid.IN2"))
    provider.script.extend(
        [(500, {"error": {"message": "oops", "code": 2}}), (429, {"error": {"message": "slow down", "code": 4}})]
    )
    ticket = await _ticket_of(rt, "wamid.IN2")
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "third time lucky"}, headers=auth)
    row = await _settled(rt, r.json()["id"])
    assert row.delivery_status == "sent", row.delivery_error
    assert len(provider.sent) == 3
    assert {c.json()["text"]["body"] for c in provider.sent} == {"third time lucky"}


async def test_a_4xx_fails_the_message_with_the_providers_reason(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """A refusal other than the token's is final, and the agent reads Meta's own reason."""
    auth = await _agent(rt, hub)
    await _post(hub, _wa("wamid.IN3"))
    provider.script.append(
        (400, {"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}})
    )
    ticket = await _ticket_of(rt, "wamid.IN3")
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "nope"}, headers=auth)
    row = await _settled(rt, r.json()["id"])
    assert row.delivery_status == "failed"
    assert row.delivery_error == "Meta error 100: (#100) Invalid parameter"
    assert len(provider.sent) == 1


async def test_an_expired_token_fails_the_message_and_raises_the_alert(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """Meta's error 190: the message fails with "token expired — reconnect the page in Admin" (never "sent"),
    the page's health turns token_expired, a channel.health event tells every console, and the next message
    that goes through clears it."""
    auth = await _agent(rt, hub)
    await _post(hub, _messenger("m_in_exp", age=timedelta(minutes=5)))
    provider.script.append(
        (
            400,
            {
                "error": {
                    "message": "Error validating access token: Session has expired on Friday.",
                    "type": "OAuthException",
                    "code": 190,
                    "error_subcode": 463,
                }
            },
        )
    )
    ticket = await _ticket_of(rt, "m_in_exp")
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "are you there"}, headers=auth)
    row = await _settled(rt, r.json()["id"])
    assert row.delivery_status == "failed"
    assert row.delivery_error.startswith("token expired — reconnect the page in Admin")
    health = (await hub.get("/api/social/health", headers=auth)).json()
    assert [(h["channel"], h["account"], h["status"]) for h in health] == [("messenger", PAGE, "token_expired")]
    async with rt.read() as conn:
        events = list(await conn.execute(select(_events).where(_events.c.type == EventType.CHANNEL_HEALTH)))
    assert [e.payload["status"] for e in events] == ["token_expired"]
    assert events[0].queue_id is None and events[0].agent_id is None  # every console sees it
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "reconnected"}, headers=auth)
    assert (await _settled(rt, r.json()["id"])).delivery_status == "sent"
    assert (await hub.get("/api/social/health", headers=auth)).json() == []
    accounts = (await hub.get("/api/social/accounts", headers=auth)).json()
    assert {a["account"] for a in accounts} == {PAGE, "IG_ID", NUMBER, BOT}
    assert "token" not in json.dumps(accounts).replace("token_expired", "")


async def test_whatsapp_window_free_text_until_24h_then_templates_only(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """23 h 59 min after the customer wrote, free text goes; at 24 h 1 min it is refused (422 with the reason)
    before anything is stored, and an approved template with its variables goes instead."""
    auth = await _agent(rt, hub)
    await _post(hub, _wa("wamid.OPEN", age=timedelta(hours=23, minutes=59), sender="4915100000001"))
    await _post(hub, _wa("wamid.SHUT", age=timedelta(hours=24, minutes=1), sender="4915100000002"))
    open_ticket, shut_ticket = await _ticket_of(rt, "wamid.OPEN"), await _ticket_of(rt, "wamid.SHUT")
    window = (await hub.get(f"/api/tickets/{open_ticket}/window", headers=auth)).json()
    assert window["status"] == "open" and 0 < window["seconds_left"] <= 60
    assert (
        await hub.post(f"/api/tickets/{open_ticket}/reply", json={"text": "in time"}, headers=auth)
    ).status_code == 201
    window = (await hub.get(f"/api/tickets/{shut_ticket}/window", headers=auth)).json()
    assert window["status"] == "closed" and window["templates_allowed"] is True
    assert [t["name"] for t in window["templates"]] == ["order_update"]
    refused = await hub.post(f"/api/tickets/{shut_ticket}/reply", json={"text": "too late"}, headers=auth)
    assert refused.status_code == 422
    assert refused.json()["code"] == "outside_messaging_window"
    assert "24-hour whatsapp window is closed" in refused.json()["detail"][0]["msg"]
    bad = await hub.post(
        f"/api/tickets/{shut_ticket}/reply",
        json={"template": {"name": "order_update", "variables": ["Wanda"]}},
        headers=auth,
    )
    assert bad.status_code == 422 and bad.json()["code"] == "unknown_template"
    sent = await hub.post(
        f"/api/tickets/{shut_ticket}/reply",
        json={"template": {"name": "order_update", "variables": ["Wanda", "A-17"]}},
        headers=auth,
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["text"] == "Hello Wanda, your order A-17 has news."
    await _settled(rt, sent.json()["id"])
    texts = [c.json().get("text", {}).get("body") for c in provider.sent]
    assert "too late" not in texts
    template_call = next(c.json() for c in provider.sent if c.json()["type"] == "template")
    assert template_call["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Wanda"}, {"type": "text", "text": "A-17"}]}
        ],
    }
    async with rt.read() as conn:
        stored = [r.text for r in await conn.execute(select(M.c.text).where(M.c.direction == "outbound"))]
    assert "too late" not in stored


async def test_messenger_window_tags_human_agent_replies_up_to_7_days(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """Messenger: after 24 h a reply goes with the HUMAN_AGENT tag; after 7 days nothing goes (422)."""
    auth = await _agent(rt, hub)
    await _post(hub, _messenger("m_old", age=timedelta(hours=25), sender="2400010"))
    await _post(hub, _messenger("m_older", age=timedelta(days=7, minutes=1), sender="2400011"))
    tagged, gone = await _ticket_of(rt, "m_old"), await _ticket_of(rt, "m_older")
    window = (await hub.get(f"/api/tickets/{tagged}/window", headers=auth)).json()
    assert window["status"] == "tagged" and window["tag"] == "HUMAN_AGENT"
    r = await hub.post(f"/api/tickets/{tagged}/reply", json={"text": "a human here"}, headers=auth)
    assert r.status_code == 201
    await _settled(rt, r.json()["id"])
    assert provider.sent[-1].json()["messaging_type"] == "MESSAGE_TAG"
    assert provider.sent[-1].json()["tag"] == "HUMAN_AGENT"
    refused = await hub.post(f"/api/tickets/{gone}/reply", json={"text": "too late"}, headers=auth)
    assert refused.status_code == 422 and refused.json()["code"] == "outside_messaging_window"
    template = await hub.post(
        f"/api/tickets/{gone}/reply", json={"template": {"name": "order_update", "variables": ["a", "b"]}}, headers=auth
    )
    assert template.status_code == 422 and template.json()["code"] == "unknown_template"


def _comment(*, age: timedelta) -> bytes:
    """The recorded page comment, written ``age`` ago."""
    payload = fixture("page_feed_comment.json")
    for change in payload["entry"][0]["changes"]:
        change["value"]["created_time"] = int((utcnow() - age).timestamp())
    return encode(payload)


async def test_a_private_reply_counts_its_7_days_from_the_comment_not_from_its_storing(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """A comment written 8 days ago reaches us only now (a webhook backlog, a quarantined comment tried again):
    a public answer goes, a private one fails before Meta is asked, saying why."""
    auth = await _agent(rt, hub)
    await _post(hub, _comment(age=timedelta(days=8)))
    ticket = await _ticket_of(rt, "111_222")
    public = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "Sorry to hear!"}, headers=auth)
    assert (await _settled(rt, public.json()["id"])).delivery_status == "sent"
    private = await hub.post(
        f"/api/tickets/{ticket}/reply", json={"text": "Here is your tracking link", "private": True}, headers=auth
    )
    refused = await _settled(rt, private.json()["id"])
    assert refused.delivery_status == "failed"
    assert "within 7 days of the comment; this one is 8 days old" in refused.delivery_error
    assert [c.path for c in provider.sent] == ["/graph/111_222/comments"]


async def test_comment_tickets_are_answered_publicly_or_once_privately(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """A reply on a comments ticket is a comment under the customer's comment; with ``private`` it is a private
    message to its author, and a second private one fails with the reason."""
    auth = await _agent(rt, hub)
    await _post(hub, _comment(age=timedelta(hours=2)))
    ticket = await _ticket_of(rt, "111_222")
    public = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "Sorry to hear!"}, headers=auth)
    assert (await _settled(rt, public.json()["id"])).delivery_status == "sent"
    private = await hub.post(
        f"/api/tickets/{ticket}/reply", json={"text": "Here is your tracking link", "private": True}, headers=auth
    )
    assert (await _settled(rt, private.json()["id"])).delivery_status == "sent"
    again = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "and again", "private": True}, headers=auth)
    refused = await _settled(rt, again.json()["id"])
    assert refused.delivery_status == "failed" and "already answered privately" in refused.delivery_error
    assert [c.path for c in provider.sent] == ["/graph/111_222/comments", f"/graph/{PAGE}/messages"]
    assert provider.sent[1].json()["recipient"] == {"comment_id": "111_222"}


async def test_messenger_delivery_and_read_watermarks_move_replies_forward(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """Messenger's delivery receipt names our message ids; its read receipt says "everything up to this time":
    both move the reply forward, and a late delivery receipt does not move it back."""
    auth = await _agent(rt, hub)
    await _post(hub, _messenger("m_in_w", age=timedelta(minutes=2), sender="2400099"))
    ticket = await _ticket_of(rt, "m_in_w")
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "on its way"}, headers=auth)
    row = await _settled(rt, r.json()["id"])
    assert row.delivery_status == "sent"
    mid = "m_out_1"  # what the stand-in answered to the first send

    def receipt(kind: str, body: dict[str, Any]) -> bytes:
        now = int(utcnow().timestamp() * 1000) + 1000
        event = {"sender": {"id": "2400099"}, "recipient": {"id": PAGE}, "timestamp": now, kind: body}
        return encode({"object": "page", "entry": [{"id": PAGE, "time": now, "messaging": [event]}]})

    now = int(utcnow().timestamp() * 1000) + 1000
    assert (await _post(hub, receipt("delivery", {"mids": [mid], "watermark": now})))["receipts"] == 1
    assert (await _settled(rt, row.id, not_in=("sent",))).delivery_status == "delivered"
    assert (await _post(hub, receipt("read", {"watermark": now})))["receipts"] == 1
    assert (await _settled(rt, row.id, not_in=("delivered",))).delivery_status == "read"
    assert (await _post(hub, receipt("delivery", {"mids": [mid], "watermark": now})))["receipts"] == 0
    async with rt.read() as conn:
        assert (await conn.execute(select(M.c.delivery_status).where(M.c.id == row.id))).scalar_one() == "read"


async def test_a_read_watermark_moves_only_replies_the_provider_took_by_then(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """Messenger's "read everything up to this time" is about what reached the customer: a reply written
    before that time but still waiting in the outbox (the provider answering 500) is not read, nor is one
    written before it and taken after it; a watermark after the send moves it."""
    auth = await _agent(rt, hub)
    await _post(hub, _messenger("m_in_wm", age=timedelta(minutes=2), sender="2400077"))
    ticket = await _ticket_of(rt, "m_in_wm")

    def read_up_to(when: datetime) -> bytes:
        ms = int(when.timestamp() * 1000)
        event = {"sender": {"id": "2400077"}, "recipient": {"id": PAGE}, "timestamp": ms, "read": {"watermark": ms}}
        return encode({"object": "page", "entry": [{"id": PAGE, "time": ms, "messaging": [event]}]})

    async def status(message_id: int) -> str:
        async with rt.read() as conn:
            return str((await conn.execute(select(M.c.delivery_status).where(M.c.id == message_id))).scalar_one())

    provider.script.extend([(500, {"error": {"message": "oops", "code": 2}})] * 8)  # ~13 s of backoff
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "still trying"}, headers=auth)
    waiting = r.json()["id"]
    await until(lambda: bool(provider.sent), 30, what="the first try reaching the provider")
    assert (await _post(hub, read_up_to(utcnow() + timedelta(seconds=1))))["receipts"] == 0
    assert await status(waiting) == "pending"

    provider.script.clear()
    provider.script.append((500, {"error": {"message": "oops", "code": 2}}))  # taken on its retry, 50 ms on
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "sent on the second try"}, headers=auth)
    row = await _settled(rt, r.json()["id"])
    assert row.delivery_status == "sent"
    written = row.created_at + timedelta(milliseconds=1)  # the watermark's millisecond after the reply's time
    assert (await _post(hub, read_up_to(written)))["receipts"] == 0  # written by then, taken after
    assert await status(row.id) == "sent"
    assert (await _post(hub, read_up_to(utcnow() + timedelta(seconds=1))))["receipts"] >= 1
    assert await status(row.id) == "read"


async def test_an_agents_files_on_a_telegram_reply_are_uploaded_to_the_bot_api(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """An agent uploads a photo and a PDF for a Telegram ticket and replies naming them: the reply is accepted,
    and the bot API gets both as multipart uploads of the bytes (sendPhoto, sendDocument), then the text."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    pdf = b"%PDF-1.4 the receipt"
    auth = await _agent(rt, hub)
    body = json.dumps(fixture("telegram_message.json")).encode()
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    assert (await hub.post(f"/webhooks/telegram/{BOT}", content=body, headers=headers)).status_code == 200

    async def upload(ticket: int, data: bytes, name: str) -> dict[str, Any]:
        r = await hub.post(
            "/api/reply-attachments", data={"ticket_id": str(ticket)}, files={"file": (name, data)}, headers=auth
        )
        assert r.status_code == 201, r.text
        return {"id": r.json()["id"], "filename": name}

    ticket = await _ticket_of(rt, "shop:10000")
    files = [await upload(ticket, png, "photo.png"), await upload(ticket, pdf, "receipt.pdf")]
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "Here you go", "attachments": files}, headers=auth)
    assert r.status_code == 201, r.text
    assert (await _settled(rt, r.json()["id"])).delivery_status == "sent"
    photo, document, text = provider.sent
    assert photo.path == "/tg/bot123456:ABC/sendPhoto" and photo.headers["Content-Type"].startswith("multipart/")
    assert png in photo.body and b'filename="photo.png"' in photo.body
    assert document.path == "/tg/bot123456:ABC/sendDocument" and pdf in document.body
    assert text.path == "/tg/bot123456:ABC/sendMessage" and text.json()["text"] == "Here you go"


async def test_an_agents_files_on_a_whatsapp_reply_are_uploaded_to_graph(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """An agent uploads a photo and a PDF for a WhatsApp ticket and replies naming them: each file goes up to
    {graph}/{number}/media as multipart, then a message names the media id Graph answered (the photo with the
    text as caption, the PDF as a document), and the reply is sent."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    pdf = b"%PDF-1.4 the receipt"
    auth = await _agent(rt, hub)
    await _post(hub, _wa("wamid.FILES"))
    ticket = await _ticket_of(rt, "wamid.FILES")
    files = []
    for data, name in ((png, "photo.png"), (pdf, "receipt.pdf")):
        r = await hub.post(
            "/api/reply-attachments", data={"ticket_id": str(ticket)}, files={"file": (name, data)}, headers=auth
        )
        assert r.status_code == 201, r.text
        files.append({"id": r.json()["id"], "filename": name})
    provider.script.extend(
        [
            (200, {"id": "MEDIA_1"}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.P"}]}),
            (200, {"id": "MEDIA_2"}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.D"}]}),
        ]
    )
    r = await hub.post(f"/api/tickets/{ticket}/reply", json={"text": "Here you go", "attachments": files}, headers=auth)
    assert r.status_code == 201, r.text
    assert (await _settled(rt, r.json()["id"])).delivery_status == "sent"
    up_photo, photo, up_pdf, document = provider.sent
    assert up_photo.path == up_pdf.path == f"/graph/{NUMBER}/media"
    assert png in up_photo.body and b"image/png" in up_photo.body
    assert pdf in up_pdf.body and b"application/pdf" in up_pdf.body
    assert photo.json()["image"] == {"id": "MEDIA_1", "caption": "Here you go"}
    assert document.json()["document"] == {"id": "MEDIA_2", "filename": "receipt.pdf"}


async def test_a_file_for_an_instagram_ticket_is_refused_as_it_is_uploaded(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider
) -> None:
    """Instagram takes files only as links Meta downloads: the console's upload for an Instagram ticket is refused
    (422) with the reason, so the agent knows before writing the reply; nothing is sent."""
    auth = await _agent(rt, hub)
    await _post(hub, encode(fixture("instagram.json")))
    ticket = await _ticket_of(rt, "aWdfZAG1faXRlbToxOklH")
    refused = await hub.post(
        "/api/reply-attachments",
        data={"ticket_id": str(ticket)},
        files={"file": ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(64))},
        headers=auth,
    )
    assert refused.status_code == 422, refused.text
    assert "replies on instagram cannot carry files" in refused.text and "public links" in refused.text
    await asyncio.sleep(0.3)
    assert provider.sent == []

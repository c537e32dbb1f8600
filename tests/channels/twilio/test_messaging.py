"""SMS and WhatsApp through Twilio: recorded inbound webhooks (signed), replies through the outbox to a local
stand-in for Twilio's REST API, and status callbacks that arrive out of order."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from hub.db import utcnow
from hub.runtime import Runtime
from tests.channels.twilio.helpers import FakeTwilioApi, Phone, recorded, sid
from tests.conftest import login, make_agent, make_queue
from ticketing.tables import contact_identities, messages, tickets


async def setup(rt: Runtime, client: httpx.AsyncClient) -> dict[str, str]:
    await make_queue(rt, "support", channels=["sms", "whatsapp", "voice"])
    await make_agent(rt, "sup", role="supervisor")
    return await login(client, "sup", "password-123")


async def post(client: httpx.AsyncClient, path: str, params: dict[str, str], *, sign: bool = True) -> httpx.Response:
    return await Phone(client, sid("CA", 0)).post(path, params, sign=sign)


async def ticket_of(rt: Runtime, channel: str) -> Any:
    async with rt.read() as conn:
        return (await conn.execute(select(tickets).where(tickets.c.channel == channel))).one()


async def message(rt: Runtime, message_id: int) -> Any:
    async with rt.read() as conn:
        return (await conn.execute(select(messages).where(messages.c.id == message_id))).one()


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def status(client: httpx.AsyncClient, message_sid: str, value: str, **extra: str) -> None:
    params = {
        "AccountSid": "AC" + "a" * 32,
        "MessageSid": message_sid,
        "MessageStatus": value,
        "SmsStatus": value,
        "To": "+14155550142",
        "From": "+14155550199",
        **extra,
    }
    r = await post(client, "/webhooks/twilio/messaging/status", params)
    assert r.status_code == 200, r.text


async def test_unsigned_messages_and_receipts_are_refused_and_store_nothing(
    client: httpx.AsyncClient, rt: Runtime
) -> None:
    await setup(rt, client)
    sms = recorded("sms_incoming")
    assert (await post(client, "/webhooks/twilio/messaging", sms, sign=False)).status_code == 403
    r = await client.post("/webhooks/twilio/messaging", data=sms, headers={"X-Twilio-Signature": "AAAA"})
    assert r.status_code == 403
    assert (await post(client, "/webhooks/twilio/messaging/status", sms, sign=False)).status_code == 403
    async with rt.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(messages))).scalar_one() == 0


async def test_an_sms_conversation_with_receipts_out_of_order(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """An SMS becomes a ticket (once, however often Twilio retries); the agent's reply is sent with
    messages.create and a status callback; receipts arriving out of order only move the status forward."""
    headers = await setup(rt, client)
    sms = recorded("sms_incoming")
    for _ in range(2):  # a retried webhook stores the message once
        r = await post(client, "/webhooks/twilio/messaging", sms)
        assert r.status_code == 200 and "<Response" in r.text
    ticket = await ticket_of(rt, "sms")
    async with rt.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(messages))).scalar_one() == 1
        identity = (await conn.execute(select(contact_identities.c.value))).scalar_one()
    assert identity == "+14155550142"
    r = await client.post(
        f"/api/tickets/{ticket.id}/reply", json={"text": "It left our warehouse today."}, headers=headers
    )
    assert r.status_code == 201, r.text
    reply_id = r.json()["id"]
    await wait_for(lambda: _has(api, "/Messages.json"))
    [sent] = api.posts("/Messages.json")
    assert sent["To"] == "+14155550142" and sent["From"] == "+14155550199"
    assert sent["Body"] == "It left our warehouse today."
    assert sent["StatusCallback"] == "http://testserver.local/webhooks/twilio/messaging/status"

    async def sent_status() -> bool:
        return (await message(rt, reply_id)).delivery_status == "sent"

    await wait_for(sent_status)
    provider_sid = (await message(rt, reply_id)).meta["provider_id"]
    await status(client, provider_sid, "delivered")
    await status(client, provider_sid, "sent")  # late
    await status(client, provider_sid, "queued")  # later still
    await status(client, provider_sid, "delivered")  # repeated
    assert (await message(rt, reply_id)).delivery_status == "delivered"
    await status(client, provider_sid, "undelivered", ErrorCode="30003")
    row = await message(rt, reply_id)
    assert row.delivery_status == "failed" and "30003" in row.delivery_error


async def _has(api: FakeTwilioApi, suffix: str) -> bool:
    return bool(api.posts(suffix))


async def _count(api: FakeTwilioApi, n: int) -> bool:
    return len(api.posts("/Messages.json")) >= n


async def test_whatsapp_with_media_inside_and_outside_the_24_hour_window(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """A WhatsApp message with a picture: one contact with the same number's SMS and calls, the picture served
    to agents by the hub; a reply inside the window goes out from the WhatsApp number; outside it, free text is
    refused with the reason (the core's messaging window, the one the console shows), and an approved template
    (``SWITCHBOARD_WHATSAPP_TEMPLATES`` with its content_sid) goes out through Twilio's Content API."""
    headers = await setup(rt, client)
    wa = recorded("whatsapp_incoming")
    assert (await post(client, "/webhooks/twilio/messaging", wa)).status_code == 200
    ticket = await ticket_of(rt, "whatsapp")
    async with rt.read() as conn:
        inbound = (await conn.execute(select(messages).where(messages.c.ticket_id == ticket.id))).one()
    [attachment] = inbound.attachments
    assert attachment["url"] == "/api/twilio/media/MM00000000000000000000000000000002/0"
    assert "api.twilio.com" not in str(inbound.attachments)
    client.cookies.clear()  # no session: the login's cookie is gone
    assert (await client.get(attachment["url"])).status_code in (401, 403)
    picture = await client.get(attachment["url"], headers=headers)
    assert picture.status_code == 200 and picture.content == b"\xff\xd8fake-jpeg"
    window = (await client.get(f"/api/tickets/{ticket.id}/window", headers=headers)).json()
    assert window["status"] == "open" and window["seconds_left"] > 23 * 3600

    r = await client.post(f"/api/tickets/{ticket.id}/reply", json={"text": "Thanks, got it!"}, headers=headers)
    assert r.status_code == 201
    await wait_for(lambda: _has(api, "/Messages.json"))
    [sent] = api.posts("/Messages.json")
    assert sent["To"] == "whatsapp:+14155550142" and sent["From"] == "whatsapp:+14155550199"

    long_ago = utcnow() - timedelta(hours=25)
    async with rt.write() as tx:  # the customer last wrote 25 hours ago
        await tx.conn.execute(
            update(messages).where(messages.c.id == inbound.id).values(created_at=long_ago, received_at=long_ago)
        )
    window = (await client.get(f"/api/tickets/{ticket.id}/window", headers=headers)).json()
    assert window["status"] == "closed" and window["templates_allowed"] is True
    assert [t["name"] for t in window["templates"]] == ["order_update"]
    r = await client.post(f"/api/tickets/{ticket.id}/reply", json={"text": "Any news?"}, headers=headers)
    assert r.status_code == 422 and "24-hour whatsapp window is closed" in r.text
    assert len(api.posts("/Messages.json")) == 1  # nothing more reached Twilio

    # An approved template goes out at any time, as Twilio's Content API takes it.
    r = await client.post(
        f"/api/tickets/{ticket.id}/reply",
        json={"template": {"name": "order_update", "variables": ["Maria", "4411"]}, "client_key": "t1"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    templated = r.json()["id"]
    await wait_for(lambda: _count(api, 2))
    sent = api.posts("/Messages.json")[-1]
    assert sent["ContentSid"] == "HX" + "c" * 32 and "Body" not in sent
    assert json.loads(sent["ContentVariables"]) == {"1": "Maria", "2": "4411"}
    row = await message(rt, templated)
    assert row.text == "Hi Maria, there is news about your order 4411."
    bad = await client.post(
        f"/api/tickets/{ticket.id}/reply", json={"template": {"name": "nope", "variables": []}}, headers=headers
    )
    assert bad.status_code == 422


async def test_replies_are_retried_while_the_twilio_api_is_down(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """Twilio answering 503: the reply stays pending with the error, is retried with backoff, and goes out once
    the API is back."""
    headers = await setup(rt, client)
    assert (await post(client, "/webhooks/twilio/messaging", recorded("sms_incoming"))).status_code == 200
    ticket = await ticket_of(rt, "sms")
    api.down = True
    r = await client.post(f"/api/tickets/{ticket.id}/reply", json={"text": "Checking now."}, headers=headers)
    reply_id = r.json()["id"]

    async def retried() -> bool:
        return len(api.posts("/Messages.json")) >= 2 and bool((await message(rt, reply_id)).delivery_error)

    await wait_for(retried)
    assert (await message(rt, reply_id)).delivery_status == "pending"
    api.down = False

    async def sent() -> bool:
        return (await message(rt, reply_id)).delivery_status == "sent"

    await wait_for(sent, timeout=20)


async def test_a_reply_with_files_on_whatsapp_through_twilio_fails_with_the_reason_not_without_them(
    client: httpx.AsyncClient, rt: Runtime, api: FakeTwilioApi
) -> None:
    """WhatsApp takes reply files (Meta's Cloud API sends them), but Twilio takes files only as public URLs it
    fetches: a reply with a file on a Twilio-carried WhatsApp fails for good with the reason, and nothing goes
    to Twilio (not the text without its file)."""
    headers = await setup(rt, client)
    assert (await post(client, "/webhooks/twilio/messaging", recorded("whatsapp_incoming"))).status_code == 200
    ticket = await ticket_of(rt, "whatsapp")
    up = await client.post(
        "/api/reply-attachments",
        data={"ticket_id": str(ticket.id)},
        files={"file": ("receipt.pdf", b"%PDF-1.4 receipt")},
        headers=headers,
    )
    assert up.status_code == 201, up.text
    r = await client.post(
        f"/api/tickets/{ticket.id}/reply",
        json={"text": "Your receipt", "attachments": [{"id": up.json()["id"], "filename": "receipt.pdf"}]},
        headers=headers,
    )
    assert r.status_code == 201, r.text

    async def failed() -> bool:
        return (await message(rt, r.json()["id"])).delivery_status == "failed"

    await wait_for(failed)
    assert "cannot carry this reply's files" in (await message(rt, r.json()["id"])).delivery_error
    assert api.posts("/Messages.json") == []

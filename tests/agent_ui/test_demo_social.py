"""The pretend social app of ``switchboard demo`` (/demo/social) in Chromium: a customer writes on Telegram and on
WhatsApp through the real, signed webhooks; the agent answers in the console; the replies leave through the real
senders to the demo's stand-in for the providers' send APIs (``hub.api_catcher``) and show in the app."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr

from hub.api_catcher import read_calls
from hub.cli import demo_social_settings
from hub.config import DEMO_SOCIAL, Settings
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page, set_available, shot
from tests.conftest import LiveServer, login, make_agent, make_queue


@pytest.fixture
def social_demo(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    """A hub as ``switchboard demo`` runs it with no social accounts configured: the demo's own, sending to its
    catcher."""
    base = settings.model_copy(
        update={"demo_mode": True, "offer_timeout_seconds": 120, "attachment_dir": tmp_path / "files"}
    )
    demo, catcher = demo_social_settings(base)
    assert catcher is not None
    server = LiveServer(demo).start()
    try:
        yield server
    finally:
        server.stop()
        catcher.stop()


async def _answer(agent: Page, said: str, reply: str) -> None:
    """Accept the offered conversation whose customer said ``said``, and reply."""
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    await expect(agent.locator("#timeline .msg.in .msg-text").last).to_have_text(said)
    box = agent.get_by_label("Reply to the customer")
    await box.fill(reply)
    await agent.get_by_role("button", name="Send").click()
    await expect(agent.locator("#timeline .msg.out .msg-text").last).to_have_text(reply)


async def test_a_telegram_and_a_whatsapp_customer_get_the_agents_replies(
    rt: Runtime, social_demo: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Pick Telegram, write; the agent accepts and replies in the console; the reply shows in the app. Then the
    same on WhatsApp, whose conversation is its own."""
    await make_queue(rt, "support", ["telegram", "whatsapp"])
    await make_agent(rt, "alice", queues=["support"])
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, social_demo.url, "alice")
    await set_available(agent)

    _, app = await new_page(browser, dialogs)
    await app.goto(f"{social_demo.url}/demo/social")
    conversation = app.get_by_label("Conversation")
    await app.get_by_role("button", name="Telegram").click()
    await app.get_by_label("Your name").fill("Tina Telegram")
    await app.get_by_label("Message").fill("Where is my kettle?")
    await app.get_by_role("button", name="Send").click()
    await expect(app.locator("#status")).to_contain_text("Delivered to the hub")
    await expect(agent.locator(".offer")).to_contain_text("Tina Telegram")
    await _answer(agent, "Where is my kettle?", "It left our warehouse today.")
    await expect(conversation.locator(".theirs")).to_have_text(["It left our warehouse today."], timeout=20_000)
    await expect(conversation.locator(".mine")).to_have_text(["Where is my kettle?"])

    await app.get_by_role("button", name="WhatsApp").click()
    await expect(conversation.locator(".theirs")).to_have_count(0)
    await app.get_by_label("Message").fill("And my teapot?")
    await app.get_by_role("button", name="Send").click()
    await agent.locator(".offer").wait_for()
    await _answer(agent, "And my teapot?", "Tomorrow, by courier.")
    await expect(conversation.locator(".theirs")).to_have_text(["Tomorrow, by courier."], timeout=20_000)
    await app.screenshot(path=shot("demo-social"))

    # They went out through the real senders, as each provider's send API call.
    calls = [c for c in read_calls(social_demo.settings.demo_social_dir) if c["method"] == "POST"]
    telegram = [c for c in calls if c["path"].endswith("/sendMessage")]
    whatsapp = [c for c in calls if c["path"] == f"/graph/{DEMO_SOCIAL.whatsapp}/messages"]
    assert [c["json"]["text"] for c in telegram] == ["It left our warehouse today."]
    assert [c["json"]["text"]["body"] for c in whatsapp] == ["Tomorrow, by courier."]
    assert dialogs.seen == []


async def test_the_demo_signs_only_with_its_own_secrets(social_demo: LiveServer, server: LiveServer) -> None:
    """The signer and the replies exist only in the demo with its own accounts; a forged signature is still
    refused by the webhook."""
    body = '{"object": "page", "entry": []}'
    async with httpx.AsyncClient(base_url=social_demo.url) as client:
        signed = await client.post("/api/social/demo/sign", json={"to": "meta", "body": body})
        assert signed.status_code == 200
        header = signed.json()
        ok = await client.post("/webhooks/meta", content=body, headers={header["header"]: header["value"]})
        assert ok.status_code == 200, ok.text
        forged = await client.post("/webhooks/meta", content=body, headers={header["header"]: "sha256=" + "0" * 64})
        assert forged.status_code == 403
        wrong_bot = await client.post("/api/social/demo/sign", json={"to": "telegram", "bot": "other", "body": "{}"})
        assert wrong_bot.status_code == 403
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/api/social/demo/sign", json={"to": "meta", "body": body})
        assert r.status_code == 403 and r.json()["code"] == "demo_only"
        r = await client.get("/api/social/demo/replies", params={"channel": "telegram", "customer": "1"})
        assert r.status_code == 403


def test_configured_social_accounts_are_kept(settings: Settings) -> None:
    """With a real app secret configured, the demo neither replaces it nor starts a catcher."""
    chosen = settings.model_copy(update={"meta_app_secret": SecretStr("x" * 20)})
    demo, catcher = demo_social_settings(chosen)
    assert catcher is None and demo is chosen


async def _delivered(c: httpx.AsyncClient, body: str) -> tuple[dict[str, str], dict[str, Any]]:
    """Post a customer's Meta webhook as the demo app does (signed by the demo); answers an admin's headers and
    the one ticket it opened."""
    signed = (await c.post("/api/social/demo/sign", json={"to": "meta", "body": body})).json()
    r = await c.post("/webhooks/meta", content=body, headers={signed["header"]: signed["value"]})
    assert r.status_code == 200 and r.json()["stored"] == 1, r.text
    auth = await login(c, "root", "password-123")
    [ticket] = (await c.get("/api/tickets", headers=auth)).json()["items"]
    return auth, ticket


@pytest.mark.parametrize("app", ["messenger", "instagram"])
async def test_messenger_and_instagram_customers_get_replies_in_the_app(
    rt: Runtime, social_demo: LiveServer, app: str
) -> None:
    """What the app does for a Messenger or Instagram customer, over HTTP: the signed webhook stores the
    message on that channel; the agent's reply leaves through the page's sender, and the app's replies for this
    customer (and only for them) show it."""
    account = DEMO_SOCIAL.page if app == "messenger" else DEMO_SOCIAL.instagram
    customer = "7000000000000" + ("1" if app == "messenger" else "2")
    event = {
        "sender": {"id": customer},
        "recipient": {"id": account},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": f"m_{app}", "text": f"hi on {app}"},
    }
    body = json.dumps(
        {"object": "page" if app == "messenger" else "instagram", "entry": [{"id": account, "messaging": [event]}]}
    )
    await make_queue(rt, "support", [app])
    await make_agent(rt, "root", role="admin", queues=["support"])
    async with httpx.AsyncClient(base_url=social_demo.url, timeout=10) as c:
        auth, ticket = await _delivered(c, body)
        assert ticket["channel"] == app
        sent = await c.post(f"/api/tickets/{ticket['id']}/reply", json={"text": f"answer on {app}"}, headers=auth)
        assert sent.status_code == 201, sent.text
        params = {"channel": app, "customer": customer}
        for _ in range(200):
            replies = (await c.get("/api/social/demo/replies", params=params)).json()
            if replies:
                break
            await asyncio.sleep(0.05)
        assert [x["text"] for x in replies] == [f"answer on {app}"]
        other = {"channel": "instagram" if app == "messenger" else "messenger", "customer": customer}
        assert (await c.get("/api/social/demo/replies", params=other)).json() == []
        assert (await c.get("/api/social/demo/replies", params={**params, "customer": "1"})).json() == []


def _customer_message(app: str, account: str, customer: str) -> str:
    """The signed webhook's body the app sends for a customer's "hi" on ``app``."""
    now = int(time.time())
    if app == "whatsapp":
        message = {
            "from": customer,
            "id": "wamid.demo_in",
            "timestamp": str(now),
            "type": "text",
            "text": {"body": "hi"},
        }
        value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": account}, "messages": [message]}
        return json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
            }
        )
    event = {
        "sender": {"id": customer},
        "recipient": {"id": account},
        "timestamp": now * 1000,
        "message": {"mid": "m_in", "text": "hi"},
    }
    return json.dumps({"object": "page", "entry": [{"id": account, "messaging": [event]}]})


@pytest.mark.parametrize(
    ("app", "shown"),
    [
        ("whatsapp", ["[image: photo.png] Here they are", "[document: invoice.pdf]"]),
        ("messenger", ["[image: photo.png]", "[file: invoice.pdf]", "Here they are"]),
    ],
)
async def test_the_agents_files_show_in_the_app_by_kind_and_name(
    rt: Runtime, social_demo: LiveServer, app: str, shown: list[str]
) -> None:
    """An agent's reply with a photo and a PDF goes out as a message per file (WhatsApp: the text as the photo's
    caption; Messenger: the text after them): the app shows each file by its kind and name, never as an empty
    message, nor leaves it out."""
    account, customer = (
        (DEMO_SOCIAL.whatsapp, "4915112345678") if app == "whatsapp" else (DEMO_SOCIAL.page, "70000000000009")
    )
    body = _customer_message(app, account, customer)
    await make_queue(rt, "support", [app])
    await make_agent(rt, "root", role="admin", queues=["support"])
    async with httpx.AsyncClient(base_url=social_demo.url, timeout=10) as c:
        auth, ticket = await _delivered(c, body)
        files = []
        for name, data in (("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(64)), ("invoice.pdf", b"%PDF-1.4 invoice")):
            up = await c.post(
                "/api/reply-attachments",
                data={"ticket_id": str(ticket["id"])},
                files={"file": (name, data)},
                headers=auth,
            )
            assert up.status_code == 201, up.text
            files.append({"id": up.json()["id"], "filename": name})
        sent = await c.post(
            f"/api/tickets/{ticket['id']}/reply", json={"text": "Here they are", "attachments": files}, headers=auth
        )
        assert sent.status_code == 201, sent.text
        params = {"channel": app, "customer": customer}
        for _ in range(200):
            replies = (await c.get("/api/social/demo/replies", params=params)).json()
            if len(replies) == len(shown):
                break
            await asyncio.sleep(0.05)
        assert [x["text"] for x in replies] == shown

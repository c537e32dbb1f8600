"""Messaging windows and channel health in the console, in Chromium: the composer counts down the customer's
WhatsApp window; once it is closed free text cannot be typed and the agent sends an approved template with its
variables; an expired token shows on the message and in the alert every agent sees."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from hub.config import Settings
from hub.db import utcnow
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page, set_available
from tests.channels.social.conftest import (  # noqa: F401
    BOT,
    NUMBER,
    TG_SECRET,
    Provider,
    encode,
    provider,
    sign,
    social_settings,
)
from tests.conftest import LiveServer, make_agent, make_queue


@pytest.fixture
def live(social_settings: Settings) -> Iterator[LiveServer]:  # noqa: F811
    server = LiveServer(social_settings.model_copy(update={"offer_timeout_seconds": 120})).start()
    try:
        yield server
    finally:
        server.stop()


async def _customer_writes(live: LiveServer, wamid: str, sender: str, age: timedelta) -> None:
    at = int((utcnow() - age).timestamp())
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "1555", "phone_number_id": NUMBER},
        "contacts": [{"profile": {"name": f"Customer {sender[-2:]}"}, "wa_id": sender}],
        "messages": [{"from": sender, "id": wamid, "timestamp": str(at), "type": "text", "text": {"body": wamid}}],
    }
    body = encode(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
        }
    )
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{live.url}/webhooks/meta", content=body, headers=sign(body))
        assert r.status_code == 200, r.text


async def _accept(agent: Page, text: str) -> None:
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    await expect(agent.locator("#timeline .msg.in .msg-text").last).to_have_text(text)


async def test_window_countdown_template_picker_and_token_alert(
    rt: Runtime,
    live: LiveServer,
    browser: Browser,
    dialogs: Dialogs,
    provider: Provider,  # noqa: F811
) -> None:
    await make_queue(rt, "social", ["whatsapp"])
    await make_agent(rt, "alice", queues=["social"])
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await set_available(agent)

    # Two minutes left: the composer says so, and counts down.
    await _customer_writes(live, "wamid.open", "4915100000011", timedelta(hours=23, minutes=58))
    await _accept(agent, "wamid.open")
    window = agent.locator("#window")
    await expect(window).to_have_text(re.compile(r"^WhatsApp window open: 1 min \d+ s left to reply$"))
    first = await window.text_content()
    await expect(window).not_to_have_text(first or "", timeout=5000)
    await expect(agent.get_by_label("Reply to the customer")).to_be_enabled()
    await expect(agent.locator("#templates")).to_be_hidden()

    # 25 hours: closed. Free text cannot be typed; the agent picks the template and fills its variables.
    await _customer_writes(live, "wamid.shut", "4915100000012", timedelta(hours=25))
    await _accept(agent, "wamid.shut")
    await expect(window).to_have_text(
        "WhatsApp window closed: free text cannot be sent. Pick an approved template below."
    )
    await expect(agent.get_by_label("Reply to the customer")).to_be_disabled()
    await expect(agent.locator("#templates")).to_be_visible()
    await expect(agent.get_by_label("Approved template")).to_have_value("order_update")
    send = agent.get_by_role("button", name="Send template")
    await expect(send).to_be_disabled()
    await agent.get_by_label("Template variable 1").fill("Maria")
    await agent.get_by_label("Template variable 2").fill("A-17")
    await expect(agent.locator("#template-preview")).to_have_text("Hello Maria, your order A-17 has news.")
    await send.click()
    sent = agent.locator("#timeline .msg.out").last
    await expect(sent.locator(".msg-text")).to_have_text("Hello Maria, your order A-17 has news.")
    await expect(sent.locator(".delivery")).to_have_text("sent", timeout=15_000)
    call = provider.sent[-1].json()
    assert call["type"] == "template" and call["template"]["name"] == "order_update"

    # The number's token expired: the message says what to do, and the alert shows above the console.
    provider.script.append((401, {"error": {"message": "Session has expired", "type": "OAuthException", "code": 190}}))
    await agent.get_by_label("Template variable 1").fill("Maria")
    await agent.get_by_label("Template variable 2").fill("A-18")
    await send.click()
    failed = agent.locator("#timeline .msg.out").last
    await expect(failed.locator(".delivery")).to_have_text("failed", timeout=15_000)
    await expect(failed.locator(".delivery-error")).to_contain_text(
        "token expired — reconnect the WhatsApp number in Admin"
    )
    await expect(agent.locator("#health-alert")).to_contain_text(
        f"whatsapp {NUMBER}: token expired — reconnect the WhatsApp number in Admin"
    )
    await agent.reload()  # as the API gives it, not only as the event said it
    await expect(agent.locator("#health-alert")).to_contain_text("token expired")
    assert dialogs.seen == []


async def _telegram_customer_writes(live: LiveServer, text: str) -> None:
    update = {
        "update_id": 9001,
        "message": {
            "message_id": 1,
            "from": {"id": 7001, "is_bot": False, "first_name": "Tom"},
            "chat": {"id": 7001, "type": "private"},
            "date": int(utcnow().timestamp()),
            "text": text,
        },
    }
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{live.url}/webhooks/telegram/{BOT}",
            content=encode(update),
            headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"},
        )
        assert r.status_code == 200, r.text


async def test_the_composer_says_when_this_conversations_account_is_unhealthy(
    rt: Runtime,
    live: LiveServer,
    browser: Browser,
    dialogs: Dialogs,
    provider: Provider,  # noqa: F811
) -> None:
    """The WhatsApp number's token expires while the agent is on its conversation: besides the alert every
    agent sees, the composer of that conversation says its replies cannot be delivered; a Telegram conversation
    (a healthy bot) says nothing; back on the WhatsApp one, the warning is there again, and on a reload."""
    await make_queue(rt, "social", ["whatsapp", "telegram"])
    await make_agent(rt, "alice", queues=["social"])
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await set_available(agent)
    await _customer_writes(live, "wamid.health", "4915100000021", timedelta(minutes=5))
    await _accept(agent, "wamid.health")
    warning = agent.locator("#ticket-health")
    await expect(warning).to_be_hidden()

    provider.script.append((401, {"error": {"message": "Session has expired", "type": "OAuthException", "code": 190}}))
    await agent.get_by_label("Reply to the customer").fill("On its way")
    await agent.get_by_role("button", name="Send").click()
    await expect(agent.locator("#timeline .msg.out .delivery").last).to_have_text("failed", timeout=15_000)
    await expect(warning).to_have_text(
        f"This conversation's whatsapp account {NUMBER}: token expired — reconnect the WhatsApp number in Admin"
        " (Meta error 190: Session has expired). Replies on this conversation cannot be delivered until it is"
        " reconnected in Admin."
    )
    whatsapp_ticket = await agent.locator("#mine li.active").get_attribute("data-id")

    await _telegram_customer_writes(live, "hello from telegram")
    await _accept(agent, "hello from telegram")
    await expect(warning).to_be_hidden()
    await expect(agent.locator("#health-alert")).to_contain_text("token expired")  # everyone's alert stays

    await agent.locator(f'#mine li[data-id="{whatsapp_ticket}"]').click()
    await expect(warning).to_contain_text("cannot be delivered until it is reconnected")
    await agent.reload()
    await agent.locator(f'#mine li[data-id="{whatsapp_ticket}"]').click()
    await expect(warning).to_contain_text("token expired")
    assert dialogs.seen == []

"""The demo phone (/demo/phone) in Chromium: a pretend call through the signed webhooks into the demo flow,
reaching an agent who accepts it in the console."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, expect

from hub.config import MessageTemplate, Settings
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page, set_available, shot
from tests.conftest import LiveServer, make_agent, make_queue


@pytest.fixture
def demo_live(settings: Settings) -> Iterator[LiveServer]:
    """A hub in demo mode with no Twilio token: the demo's own token signs the demo phone's webhooks."""
    template = MessageTemplate(
        name="order_update", content_sid="HX" + "c" * 32, body="Hi {{1}}, there is news about your order {{2}}."
    )
    update = {"demo_mode": True, "offer_timeout_seconds": 60, "whatsapp_templates": [template]}
    server = LiveServer(settings.model_copy(update=update)).start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_demo_phone_walks_the_menu_and_reaches_an_agent(
    rt: Runtime, demo_live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Dial, press 1 (English) and 2 (technical support): the caller holds; the call is offered to the
    available agent, who accepts it in the console and sees the IVR path; the phone hears them connected."""
    for name in ("support", "billing", "sales"):
        await make_queue(rt, name, ["voice"])
    await make_agent(rt, "alice", queues=["support"])
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, demo_live.url, "alice")
    await set_available(agent)

    _, phone = await new_page(browser, dialogs)
    await phone.goto(f"{demo_live.url}/demo/phone")
    await phone.get_by_label("Read prompts aloud").uncheck()
    await phone.get_by_role("button", name="Call").click()
    transcript = phone.locator("#transcript")
    await expect(transcript).to_contain_text("For English, press 1")
    await phone.get_by_role("button", name="Key 1").click()
    await expect(transcript).to_contain_text("For technical support, press 2")
    await phone.get_by_role("button", name="Key 2").click()
    await expect(phone.locator("#status")).to_have_text("On hold, waiting for an agent")
    await expect(transcript).to_contain_text("number 1 in line")

    offer = agent.locator(".offer")
    await offer.wait_for()
    pop = offer.locator(".screen-pop")  # the screen pop: caller, menu path, what else they have open
    await expect(pop).to_contain_text("Caller: +14155550142")
    await expect(pop).to_contain_text("Menu: choose_language:en › main_menu:2 › support")
    await expect(pop).to_contain_text("Nothing else open")
    await offer.get_by_role("button", name="Accept").click()
    await expect(agent.locator("#timeline")).to_contain_text("main_menu:2")  # the IVR path, on screen
    await expect(phone.locator("#status")).to_have_text("Connected to an agent", timeout=15_000)
    await expect(transcript).to_contain_text("You are now connected to")
    await phone.screenshot(path=shot("demo-phone"))
    await phone.get_by_role("button", name="Hang up").click()
    await expect(phone.locator("#status")).to_have_text("You hung up")
    assert dialogs.seen == []


async def test_the_demo_signer_exists_only_in_demo_mode(rt: Runtime, server: LiveServer) -> None:
    """Outside ``switchboard demo`` nobody can have webhooks signed."""
    import httpx

    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/api/twilio/demo/sign", json={"path": "/webhooks/twilio/voice", "params": {}})
    assert r.status_code == 403


async def test_the_composer_shows_whatsapps_window(
    rt: Runtime, demo_live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """A Twilio WhatsApp conversation shows the time left for free text; once 24 hours have passed, that a reply
    will be refused, and one template picker (the core's messaging window, the same for every channel with a
    window: no second one of the Twilio channel's) sends an approved template."""
    from datetime import timedelta

    from sqlalchemy import update

    from hub.db import utcnow
    from hub.messages import Identity, InboundMessage
    from ticketing.ingest import ingest_batch
    from ticketing.tables import messages

    await make_queue(rt, "support", ["whatsapp"])
    sup = await make_agent(rt, "sup", role="supervisor")
    [r] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="whatsapp",
                external_id="MM1",
                sender=Identity(kind="whatsapp", value="whatsapp:+14155550142"),
                recipient="whatsapp:+14155550199",
                text="photo of the label",
            )
        ],
    )
    assert not isinstance(r, Exception)
    from ticketing.tables import tickets

    async with rt.write() as tx:
        await tx.conn.execute(update(tickets).where(tickets.c.id == r.ticket_id).values(assignee_id=sup))
    _, page = await new_page(browser, dialogs)
    await agent_login(page, demo_live.url, "sup")
    await page.locator(f'#mine li[data-id="{r.ticket_id}"]').click()
    window = page.locator("#window")
    await expect(window).to_contain_text("WhatsApp window open: 23 h")
    long_ago = utcnow() - timedelta(hours=25)
    async with rt.write() as tx:
        await tx.conn.execute(
            update(messages).where(messages.c.id == r.message_id).values(created_at=long_ago, received_at=long_ago)
        )
    await page.reload()
    await page.locator(f'#mine li[data-id="{r.ticket_id}"]').click()
    await expect(window).to_contain_text("WhatsApp window closed")
    # An approved template can still go out: picked, its variables filled in, sent through the outbox.
    picker = page.locator("#templates")
    await expect(picker).to_be_visible()
    await expect(page.get_by_label("Approved template")).to_have_count(1)  # one picker, not a twin
    await expect(page.get_by_role("button", name="Send template")).to_have_count(1)
    await expect(page.locator("#wa-window, .wa-templates")).to_have_count(0)
    await page.get_by_label("Approved template").select_option("order_update")
    await picker.get_by_label("Template variable 1").fill("Maria")
    await picker.get_by_label("Template variable 2").fill("4411")
    await picker.get_by_role("button", name="Send template").click()
    await expect(page.locator("#timeline")).to_contain_text("Hi Maria, there is news about your order 4411.")
    assert dialogs.seen == []

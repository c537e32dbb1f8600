"""The demo phone (/demo/phone) in Chromium: a pretend call through the signed webhooks into the demo flow,
reaching an agent who accepts it in the console."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, expect

from hub.config import Settings
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page, set_available, shot
from tests.conftest import LiveServer, make_agent, make_queue


@pytest.fixture
def demo_live(settings: Settings) -> Iterator[LiveServer]:
    """A hub in demo mode with no Twilio token: the demo's own token signs the demo phone's webhooks."""
    server = LiveServer(settings.model_copy(update={"demo_mode": True, "offer_timeout_seconds": 60})).start()
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

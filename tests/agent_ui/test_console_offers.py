"""Offers in the console, in a real browser: the countdown to the offer's deadline, also after a reload."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Locator, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, offered
from tests.conftest import LiveServer

SECONDS = re.compile(r"^(\d+)s$")


async def seconds_left(badge: Locator) -> int:
    await expect(badge).to_have_text(SECONDS)
    match = SECONDS.match(await badge.text_content() or "")
    assert match is not None
    return int(match[1])


async def test_offer_counts_down_to_its_deadline_after_a_reload(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """An offer shows the seconds left until it expires. After a reload, the offer (now loaded over REST, not
    from its event) still counts down to the same deadline: neither "offered" without a time nor a fresh
    timeout."""
    _, agent = await offered(rt, live, browser, dialogs, "Where is my order?")

    badge = agent.locator(".offer .countdown")
    before = await seconds_left(badge)
    assert 0 < before <= 60  # offer_timeout_seconds in chat_settings

    await agent.reload()
    await agent.locator("#conn.live").wait_for()
    await expect(agent.locator(".offer")).to_have_count(1)
    after = await seconds_left(badge)
    assert 0 < after <= before
    await expect(badge).not_to_have_text(f"{after}s")  # it ticks
    assert dialogs.seen == []

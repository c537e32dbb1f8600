"""The customer's rating of a solved chat, in the agent's console: the conversation header shows it at once."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, chatting
from tests.conftest import LiveServer


async def test_header_shows_the_rating_as_the_customer_sends_it(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The agent solves a chat and keeps it in view; when the customer rates it 4 with a comment, the header
    shows the rating and the comment (as text) without a reload."""
    customer, agent = await chatting(rt, live, browser, dialogs)
    header = agent.locator("#conv-sub")
    await agent.get_by_role("button", name="Solve").click()
    await expect(header).to_contain_text("solved")

    await customer.get_by_title("4 out of 5").click()
    await customer.get_by_label("Anything to add? (optional)").fill("Quick <b>and</b> kind")
    await customer.get_by_role("button", name="Send rating").click()
    await expect(customer.get_by_text("Thank you for your feedback!")).to_be_visible()
    await expect(header).to_contain_text("rated 4/5: “Quick <b>and</b> kind”")
    assert dialogs.seen == []

"""The console's "Suggested articles" panel against the real knowledge base, in Chromium: suggestions for the
customer's words with scores, asked again when the customer writes and as the agent types; one click puts the
link (or an internal article's text) in the reply; helpful / not helpful is stored and taught."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from hub.runtime import Runtime
from knowledge_base import service
from tests.agent_ui.conftest import Dialogs, chatting, customer_says
from tests.conftest import LiveServer


async def test_panel_suggests_updates_inserts_and_takes_feedback(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    customer, agent = await chatting(rt, kb_server, browser, dialogs, first="how do I send the teapot back")
    panel = agent.locator("#suggestions li")
    await expect(panel.first).to_contain_text("Return an item")
    await expect(panel.first).to_contain_text("score")
    await panel.first.get_by_role("button", name="Return an item", exact=True).click()
    await expect(agent.locator("#text")).to_have_value(f"Return an item: {kb_server.url}/help/returns")
    await panel.first.get_by_role("button", name="Return an item is helpful").click()
    await expect(panel.first).to_contain_text("Thanks: marked helpful")
    helpful = await service.feedback_counts(rt)
    assert helpful[articles["returns:en"]] == (1, 0)
    # the customer's wording became one of the article's phrasings for the ranking
    [taught] = await service.ranking_docs(rt, article_ids=[articles["returns:en"]])
    assert "how do I send the teapot back" in taught.phrasings
    # a published article's text, instead of its link (typing asks for suggestions again: the list is redrawn)
    await agent.locator("#text").fill("")
    await panel.first.get_by_role("button", name="Insert the text of Return an item").click()
    await expect(agent.locator("#text")).to_have_value("You can return any item within 30 days. Print the free label.")

    await agent.locator("#text").press("Enter")  # the reply goes out, the composer is empty again
    await expect(agent.locator("#timeline .msg.out")).to_have_count(1)
    await customer_says(customer, "thanks! and how long does delivery take usually")
    await expect(panel.first).to_contain_text("Delivery times")

    await agent.locator("#text").fill("")
    await agent.locator("#text").type("let me check the goodwill credit we may offer")
    await expect(panel.first).to_contain_text("Secret goodwill credit policy")
    await expect(panel.first).to_contain_text("internal")
    await agent.locator("#text").fill("")
    await panel.first.get_by_role("button", name="Secret goodwill credit policy", exact=True).click()
    await expect(agent.locator("#text")).to_have_value("Agents may give a zanzibar credit of $10.")
    assert dialogs.seen == []


async def test_suggest_answers_the_console_contract(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """GET /api/kb/suggest?ticket_id=N: 404 for a ticket that does not exist, 422 for a huge draft, and the
    console finds the route (it asks for suggestions only where the server has one)."""
    import httpx

    from tests.conftest import login

    _, agent = await chatting(rt, kb_server, browser, dialogs, first="where is my parcel")
    async with httpx.AsyncClient(base_url=kb_server.url) as client:
        auth = await login(client, "alice", "password-123")
        missing = await client.get("/api/kb/suggest", params={"ticket_id": 999999}, headers=auth)
        assert missing.status_code == 404
        huge = await client.get("/api/kb/suggest", params={"ticket_id": 1, "draft": "x" * 3000}, headers=auth)
        assert huge.status_code == 422
    await expect(agent.locator("#no-suggestions")).to_be_hidden()


async def test_a_new_customer_message_is_answered_even_with_a_draft_waiting(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The agent inserted a suggestion's link and has not sent it yet when the customer asks something else:
    the panel answers the customer's new question (the waiting draft, words of its own, steered it before)."""
    customer, agent = await chatting(rt, kb_server, browser, dialogs, first="how do I send the teapot back")
    panel = agent.locator("#suggestions li")
    await expect(panel.first).to_contain_text("Return an item")
    await panel.first.get_by_role("button", name="Return an item", exact=True).click()
    await expect(agent.locator("#text")).to_have_value(f"Return an item: {kb_server.url}/help/returns")
    await customer_says(customer, "and how long does delivery take usually")
    await expect(agent.locator("#timeline .msg.in .msg-text").last).to_have_text(
        "and how long does delivery take usually"
    )
    await expect(panel.first).to_contain_text("Delivery times")
    await expect(agent.locator("#text")).to_have_value(f"Return an item: {kb_server.url}/help/returns")
    assert dialogs.seen == []


async def test_a_hostile_article_in_the_panel_runs_nothing(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """An article whose title and Markdown carry markup, scripts and event handlers is suggested as text: its
    title shows as written, no element of it reaches the panel, and its inserted text opens no dialog."""
    _, agent = await chatting(rt, kb_server, browser, dialogs, first="read this first, are returns free")
    item = agent.locator("#suggestions li").filter(has_text="Hostile")
    await expect(item.get_by_role("button", name='Hostile <b>title</b> & "quotes"', exact=True)).to_be_visible()
    assert await agent.locator("#suggestions").locator("b, script, img, iframe, svg, [onerror]").count() == 0
    await item.get_by_role("button", name='Insert the text of Hostile <b>title</b> & "quotes"').click()
    await expect(agent.locator("#text")).to_have_value(re.compile("Returns are free within 30 days"))
    assert dialogs.seen == []

"""Transfers in the console, in real browsers: to another queue (its agent gets the offer live) and to a named
agent (the conversation appears in their list live, flagged as new work)."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, customer_says, new_page, set_available, start_chat
from tests.conftest import LiveServer, make_agent, make_queue


async def _console(browser: Browser, dialogs: Dialogs, live: LiveServer, username: str) -> Page:
    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, username)
    return page


async def _accepted(browser: Browser, dialogs: Dialogs, live: LiveServer, agent: Page, text: str) -> Page:
    """A customer who wrote ``text``, accepted by ``agent``."""
    _, customer = await new_page(browser, dialogs)
    await start_chat(customer, live.url)
    await customer_says(customer, text)
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text([text])
    return customer


async def test_transfer_to_another_queue_is_offered_live_to_its_agent(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Alice moves a chat to the billing queue: it leaves her list, Carol (billing) gets the offer live with the
    title badge, accepts it and sees the whole conversation, and the customer sees Carol join and answer."""
    await make_queue(rt, "support", ["webchat"])
    await make_queue(rt, "billing", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    await make_agent(rt, "carol", queues=["billing"])
    alice = await _console(browser, dialogs, live, "alice")
    await set_available(alice)
    carol = await _console(browser, dialogs, live, "carol")
    await set_available(carol)
    customer = await _accepted(browser, dialogs, live, alice, "I was charged twice")
    await alice.locator("#text").fill("Let me pass you to billing.")
    await alice.locator("#text").press("Enter")
    await expect(customer.locator(".msg.out .bubble")).to_have_text(["Let me pass you to billing."])
    await expect(carol.locator(".offer")).to_have_count(0)

    await alice.get_by_role("button", name="Transfer").click()
    await alice.get_by_label("To a queue").select_option(label="billing")
    await alice.locator("#transfer-form").get_by_role("button", name="Transfer").click()
    await expect(alice.locator("#mine .conv-item")).to_have_count(0)
    await expect(alice.locator("#compose-error")).to_have_text("Transferred.")

    offer = carol.locator(".offer")
    await expect(offer).to_contain_text("I was charged twice")
    await expect(carol).to_have_title("(1) Switchboard console")
    await offer.get_by_role("button", name="Accept").click()
    await expect(carol.locator("#timeline .msg.in .msg-text")).to_have_text(["I was charged twice"])
    await expect(carol.locator("#timeline .msg.out .msg-text")).to_have_text(["Let me pass you to billing."])
    await expect(carol.locator("#mine .conv-item")).to_have_count(1)
    await expect(customer.get_by_text("carol joined the chat")).to_be_visible()
    await carol.locator("#text").fill("Refund on its way.")
    await carol.locator("#text").press("Enter")
    await expect(customer.locator(".msg.out .bubble")).to_have_text(
        ["Let me pass you to billing.", "Refund on its way."]
    )
    assert dialogs.seen == []


async def test_transfer_to_an_agent_appears_live_in_their_list(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Alice hands a chat to Bob by name: without a reload Bob's list shows it flagged unread with the title
    badge; opening it clears the flag and shows the history, and Bob's reply reaches the customer."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    await make_agent(rt, "bob", queues=["support"])
    bob = await _console(browser, dialogs, live, "bob")
    async with bob.expect_response(lambda r: r.url.endswith("/api/agents/me/status") and r.ok):
        await bob.get_by_label("Your status").select_option("away")
    alice = await _console(browser, dialogs, live, "alice")
    await set_available(alice)
    customer = await _accepted(browser, dialogs, live, alice, "Can Bob call me back?")
    await expect(bob.locator("#mine .conv-item")).to_have_count(0)

    await alice.keyboard.press("Alt+t")
    await alice.get_by_label("Or to an agent").select_option(label="bob (away)")
    await alice.locator("#transfer-form").get_by_role("button", name="Transfer").click()
    await expect(alice.locator("#mine .conv-item")).to_have_count(0)

    item = bob.locator("#mine .conv-item")
    await expect(item).to_have_count(1)
    await expect(item).to_contain_text("Can Bob call me back?")
    await expect(item.locator(".unread-badge")).to_have_text("1")
    await expect(bob).to_have_title("(1) Switchboard console")
    await expect(customer.get_by_text("bob joined the chat")).to_be_visible()
    await item.click()
    await expect(item.locator(".unread-badge")).to_have_count(0)
    await expect(bob).to_have_title("Switchboard console")
    await expect(bob.locator("#timeline .msg.in .msg-text")).to_have_text(["Can Bob call me back?"])
    await bob.locator("#text").fill("Calling you in five minutes.")
    await bob.locator("#text").press("Enter")
    await expect(customer.locator(".msg.out .bubble")).to_have_text(["Calling you in five minutes."])
    assert dialogs.seen == []

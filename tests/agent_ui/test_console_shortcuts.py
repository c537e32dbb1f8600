"""The console by keyboard, in a real browser: the shortcuts are listed in the help dialog and the buttons'
tooltips, and work (Alt+A accepts the offer, Alt+R puts the cursor in the reply box, leaving note mode); the
conversation list and the canned responses' popup work by keyboard and name what is selected."""

from __future__ import annotations

import re

from playwright.async_api import Browser, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, chatting, customer_says, new_page, set_available, start_chat
from tests.conftest import LiveServer, make_agent, make_queue
from ticketing.canned import CannedCreate, create_canned


async def test_help_lists_the_shortcuts_and_accept_and_focus_reply_work(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """ "?" opens the list of shortcuts; the offer's buttons name theirs; Alt+A accepts the offer with the focus
    anywhere; with the focus away from the composer and the composer in note mode, Alt+R focuses the reply box
    in reply mode, and what is typed then reaches the customer."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await set_available(agent)

    await agent.locator("body").press("?")
    help_dialog = agent.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(help_dialog).to_be_visible()
    for line in (
        "Accept the oldest offer",
        "Write a reply (focus the reply box)",
        "Switch between reply and internal note",
    ):
        await expect(help_dialog).to_contain_text(line)
    await agent.keyboard.press("Escape")
    await expect(help_dialog).to_be_hidden()
    await expect(agent.get_by_role("button", name="Keyboard shortcuts")).to_have_attribute(
        "title", "Keyboard shortcuts (?)"
    )

    _, customer = await new_page(browser, dialogs)
    await start_chat(customer, live.url)
    await customer_says(customer, "Is anyone there?")
    offer = agent.locator(".offer")
    await expect(offer.get_by_role("button", name="Accept")).to_have_attribute("title", "Accept (Alt+A)")
    await expect(offer.get_by_role("button", name="Decline")).to_have_attribute("title", "Decline (Alt+D)")
    await agent.get_by_label("Your status").focus()
    await agent.keyboard.press("Alt+a")
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(["Is anyone there?"])
    await expect(offer).to_have_count(0)
    await expect(customer.get_by_text("alice joined the chat")).to_be_visible()

    await agent.keyboard.press("Alt+n")
    await expect(agent.get_by_label("Internal note (not sent to the customer)")).to_be_focused()
    await agent.get_by_role("button", name="Solve").focus()
    await agent.keyboard.press("Alt+r")
    reply = agent.get_by_label("Reply to the customer")
    await expect(reply).to_be_focused()
    await expect(agent.locator("#mode-reply")).to_have_attribute("aria-selected", "true")
    await agent.keyboard.type("Yes, I am here.")
    await agent.keyboard.press("Enter")
    await expect(customer.locator(".msg.out .bubble")).to_have_text(["Yes, I am here."])
    await expect(agent.locator("#timeline .msg.note")).to_have_count(0)
    assert dialogs.seen == []


async def test_the_conversation_list_and_canned_responses_work_by_keyboard_and_screen_reader(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """My conversations is one Tab stop, and the arrows (Home and End too) move the focus within it; the canned
    responses' popup keeps the focus in the composer, which names the highlighted response for a screen reader
    (aria-activedescendant), following the arrows, and names none once the popup closes."""
    await create_canned(rt, data=CannedCreate(shortcut="order", title="Order status", text="It is on its way."))
    await create_canned(rt, data=CannedCreate(shortcut="ordernumber", title="Order number", text="Which order?"))
    _, agent = await chatting(rt, live, browser, dialogs, "first chat")
    _, other = await new_page(browser, dialogs)
    await start_chat(other, live.url, name="Omar")
    await customer_says(other, "second chat")
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    # Accepting opens the conversation and then puts the focus in the composer: wait for that to be over.
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text("second chat")
    await expect(agent.locator("#text")).to_be_focused()
    items = agent.locator("#mine .conv-item")
    await expect(items).to_have_count(2)
    await expect(agent.locator("#mine .conv-item[tabindex='0']")).to_have_count(1)

    await agent.locator("#mine .conv-item[tabindex='0']").focus()
    await agent.keyboard.press("Home")
    await expect(items.nth(0)).to_be_focused()
    await agent.keyboard.press("ArrowDown")
    await expect(items.nth(1)).to_be_focused()
    await expect(items.nth(1)).to_have_attribute("tabindex", "0")
    await expect(items.nth(0)).to_have_attribute("tabindex", "-1")
    await agent.keyboard.press("ArrowUp")
    await expect(items.nth(0)).to_be_focused()

    box = agent.locator("#text")
    await box.focus()
    await box.press_sequentially("/ord")
    await expect(agent.locator("#canned [role=option]")).to_have_count(2)
    await expect(box).to_have_attribute("aria-controls", "canned")
    await expect(box).to_have_attribute("aria-activedescendant", "canned-0")
    await expect(agent.locator("#canned-0")).to_have_attribute("aria-selected", "true")
    await box.press("ArrowDown")
    await expect(box).to_have_attribute("aria-activedescendant", "canned-1")
    await expect(agent.locator("#canned-1")).to_have_attribute("aria-selected", "true")
    await expect(box).to_be_focused()
    await box.press("Escape")
    await expect(agent.locator("#canned")).to_be_hidden()
    await expect(box).not_to_have_attribute("aria-activedescendant", re.compile(".*"))
    assert dialogs.seen == []

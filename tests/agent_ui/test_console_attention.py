"""What draws an agent's attention in the console, in a real browser: unread counts and waiting times in the
list of open conversations, the title badge, and the chime on new work."""

from __future__ import annotations

import re

from playwright.async_api import Browser, BrowserContext, Page, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, customer_says, new_page, set_available, start_chat
from tests.conftest import LiveServer, make_agent, make_queue

# Counts every sound the page starts, by wrapping the browser's own Web Audio start() before the console loads:
# the chime is observed where it is played, not through a hook of the console's. The count lands on <html
# data-sounds> for expect() to wait on (the console's CSP forbids evaluating strings).
COUNT_SOUNDS = """
(() => {
  let n = 0;
  const start = AudioScheduledSourceNode.prototype.start;
  AudioScheduledSourceNode.prototype.start = function (...args) {
    document.documentElement.dataset.sounds = String(++n);
    return start.apply(this, args);
  };
})();
"""


async def sounds(page: Page) -> int:
    return int(await page.locator("html").get_attribute("data-sounds") or 0)


async def wait_sounds(page: Page, n: int) -> None:
    await expect(page.locator("html")).to_have_attribute("data-sounds", str(n))


async def _customer(browser: Browser, dialogs: Dialogs, live: LiveServer, name: str, text: str) -> Page:
    _, page = await new_page(browser, dialogs)
    await start_chat(page, live.url, name=name)
    await customer_says(page, text)
    return page


async def test_unread_counts_waiting_times_title_badge_and_chime(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """An offer chimes and badges the title. With Maria's chat open, Otto's two new messages chime twice and
    raise his unread count to 2 and the title to (2), while Maria's messages in view count nothing and stay
    silent; each list item shows how long the customer has waited, ticking, until the agent answers; opening
    Otto's chat clears his count and the title. Read and unread survive a reload."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    context: BrowserContext
    context, agent = await new_page(browser, dialogs)
    await context.add_init_script(COUNT_SOUNDS)
    await agent_login(agent, live.url, "alice")
    await set_available(agent)
    assert await sounds(agent) == 0

    maria = await _customer(browser, dialogs, live, "Maria", "Where is my order?")
    await expect(agent.locator(".offer")).to_be_visible()
    await expect(agent).to_have_title("(1) Switchboard console")
    await wait_sounds(agent, 1)
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    await expect(agent).to_have_title("Switchboard console")
    otto = await _customer(browser, dialogs, live, "Otto", "Do you ship to Norway?")
    await wait_sounds(agent, 2)
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(["Do you ship to Norway?"])

    items = agent.locator("#mine .conv-item")
    maria_item, otto_item = items.filter(has_text="Where is my order?"), items.filter(has_text="Norway")
    await maria_item.click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(["Where is my order?"])
    await expect(maria_item).to_have_class(re.compile(r"\bactive\b"))

    waiting = otto_item.locator(".waiting")
    await expect(waiting).to_have_text(re.compile(r"^waiting \d+s$"))
    before = await waiting.text_content()
    await expect(waiting).not_to_have_text(before or "")  # the clock runs

    await customer_says(otto, "Hello?")
    await expect(otto_item.locator(".unread-badge")).to_have_text("1")
    await expect(agent).to_have_title("(1) Switchboard console")
    await wait_sounds(agent, 3)
    await customer_says(otto, "Anyone there?")
    await expect(otto_item.locator(".unread-badge")).to_have_text("2")
    await expect(otto_item.locator(".unread-badge")).to_have_attribute("aria-label", "2 unread")
    await expect(agent).to_have_title("(2) Switchboard console")
    await wait_sounds(agent, 4)

    # the conversation in view: its messages show, nothing counts, nothing sounds
    await customer_says(maria, "It is order 1234")
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(["Where is my order?", "It is order 1234"])
    await expect(maria_item.locator(".unread-badge")).to_have_count(0)
    await expect(agent).to_have_title("(2) Switchboard console")
    assert await sounds(agent) == 4

    await expect(maria_item.locator(".waiting")).to_have_text(re.compile(r"^waiting \d+s$"))
    await agent.locator("#text").fill("It ships today.")
    await agent.locator("#text").press("Enter")
    await expect(maria_item.locator(".waiting")).to_have_count(0)
    await expect(maria_item).to_contain_text("answered")

    # what was read and what was not survives a reload
    await agent.reload()
    await expect(otto_item.locator(".unread-badge")).to_have_text("2")
    await expect(maria_item.locator(".unread-badge")).to_have_count(0)
    await expect(agent).to_have_title("(2) Switchboard console")

    await otto_item.click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(
        ["Do you ship to Norway?", "Hello?", "Anyone there?"]
    )
    await expect(otto_item.locator(".unread-badge")).to_have_count(0)
    await expect(agent).to_have_title("Switchboard console")
    await expect(otto_item.locator(".waiting")).to_have_text(re.compile(r"^waiting \d+s$"))

    # waiting times come from the stored messages: a reload keeps them; what was read stays read
    await agent.reload()
    await expect(items).to_have_count(2)
    await expect(agent.locator("#mine .unread-badge")).to_have_count(0)
    await expect(agent).to_have_title("Switchboard console")
    await expect(otto_item.locator(".waiting")).to_have_text(re.compile(r"^waiting \d+s$"))
    await expect(maria_item).to_contain_text("answered")
    assert dialogs.seen == []

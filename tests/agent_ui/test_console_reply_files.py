"""Files in an agent's reply, in real browsers: the agent picks an image in the console's composer, it is
uploaded for the ticket and listed, and the reply carries it to the chat visitor, whose widget shows it loaded;
a file of another type is refused with the server's reason and nothing is listed."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, chatting
from tests.channels.webchat.test_protocol import png
from tests.conftest import LiveServer


async def test_agent_attaches_an_image_to_a_reply_and_the_visitor_sees_it(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    customer, agent = await chatting(rt, live, browser, dialogs, first="Can you show me the spare part?")
    picker = agent.get_by_label("Attach files to the reply")
    await picker.set_input_files({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"just text"})
    await expect(agent.locator("#compose-error")).to_contain_text("notes.txt: only PNG, JPEG, GIF, WebP images")
    attached = agent.get_by_role("list", name="Files attached to the reply")
    await expect(attached).to_be_hidden()

    await picker.set_input_files({"name": "spare-part.png", "mimeType": "image/png", "buffer": png()})
    await expect(attached).to_contain_text("spare-part.png")
    await agent.locator("#text").fill("This one fits your kettle.")
    await agent.locator("#text").press("Enter")
    sent = agent.locator("#timeline .msg.out")
    await expect(sent).to_have_count(1)
    await expect(sent.locator(".atts img")).to_have_attribute("alt", "spare-part.png")
    await expect(attached).to_be_hidden()  # the list is empty again for the next reply

    shown = customer.locator(".msg.out .att img")
    await expect(shown).to_have_attribute("alt", "spare-part.png")
    await expect(customer.locator(".msg.out")).to_contain_text("This one fits your kettle.")
    await expect(shown).to_have_js_property("naturalWidth", 1)  # loaded, with the visitor's own token
    assert dialogs.seen == []

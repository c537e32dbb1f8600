"""The chat widget on a phone-width screen (375x667, touch), in a real browser: the panel fills the screen
without spilling over, its controls are reachable, and chatting works."""

from __future__ import annotations

from playwright.async_api import Browser, Page, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page, set_available, shot
from tests.conftest import LiveServer, make_agent, make_queue

PHONE = {"viewport": {"width": 375, "height": 667}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


async def inside_screen(page: Page, selector: str) -> None:
    """The element is shown (waiting for it: the pre-chat form, say, appears only once the widget's settings
    have loaded) and lies wholly inside the 375x667 screen."""
    element = page.locator(selector)
    await expect(element).to_be_visible()
    box = await element.bounding_box()
    assert box is not None, selector
    assert box["x"] >= 0 and box["y"] >= 0, (selector, box)
    assert box["x"] + box["width"] <= 375 + 0.5 and box["y"] + box["height"] <= 667 + 0.5, (selector, box)


async def test_widget_fills_a_phone_screen_and_chatting_works(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Tapping the launcher opens a panel exactly the size of the screen with no sideways scroll; the pre-chat
    form, the message box and the send button lie inside it and take taps (nothing covers them); text fields
    use 16px type so the phone does not zoom; a tapped send delivers the message and the agent's reply shows;
    the close button gives the page back."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await set_available(agent)

    _, phone = await new_page(browser, dialogs, **PHONE)
    await phone.goto(f"{live.url}/demo")
    await phone.get_by_role("button", name="Open chat").tap()
    panel = phone.get_by_role("dialog", name="Chat with us")
    await expect(panel).to_be_visible()
    assert await panel.bounding_box() == {"x": 0, "y": 0, "width": 375, "height": 667}
    name = phone.get_by_label("Your name")
    await inside_screen(phone, "form.prechat")
    await name.tap()
    await expect(name).to_be_focused()
    await expect(name).to_have_css("font-size", "16px")
    await name.fill("Maria")
    await phone.get_by_role("button", name="Start chat").tap()

    box = phone.get_by_label("Type your message")
    send = phone.get_by_role("button", name="Send message")
    await expect(box).to_be_visible()
    for selector in ("form.composer", "form.composer textarea", "button.send", "button.close"):
        await inside_screen(phone, selector)
    await expect(box).to_have_css("font-size", "16px")
    assert await phone.evaluate("() => document.documentElement.scrollWidth") <= 375
    await box.tap()
    await box.fill("Hi from my phone")
    await send.tap()  # a tap lands only if nothing (the launcher, say) covers the button
    await expect(phone.locator(".msg.in .state")).to_have_text("Sent")
    await expect(box).to_have_value("")

    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(["Hi from my phone"])
    await agent.locator("#text").fill("Hello Maria, how can I help?")
    await agent.locator("#text").press("Enter")
    reply = phone.locator(".msg.out .bubble")
    await expect(reply).to_have_text("Hello Maria, how can I help?")
    await inside_screen(phone, ".msg.out .bubble")
    await phone.screenshot(path=shot("widget-phone-375"))

    await phone.get_by_role("button", name="Close chat").tap()
    await expect(panel).to_be_hidden()
    await expect(phone.get_by_role("button", name="Open chat")).to_be_visible()
    assert dialogs.seen == []

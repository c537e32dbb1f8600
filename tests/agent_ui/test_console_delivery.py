"""A reply the channel has not taken yet, in a real browser: while it is retried the console shows why under the
message (the last attempt's error), and the note goes once the reply is out (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.async_api import Browser, expect

from hub.config import Settings
from hub.messages import DeliveryError, DeliveryResult, OutboundMessage
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, chatting
from tests.conftest import LiveServer


class RefusingThenTaking:
    """A chat sender that fails (for a while) with a temporary error, then delivers."""

    def __init__(self) -> None:
        self.refusing = True

    async def send(self, message: OutboundMessage) -> DeliveryResult:
        if self.refusing:
            raise DeliveryError("visitor relay unreachable")
        return DeliveryResult()


@pytest.fixture
def sender() -> RefusingThenTaking:
    return RefusingThenTaking()


@pytest.fixture
def live(chat_settings: Settings, sender: RefusingThenTaking) -> Iterator[LiveServer]:
    quick = chat_settings.model_copy(update={"outbox_backoff_base_seconds": 0.5})
    server = LiveServer(quick, senders={"webchat": sender}).start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_reply_being_retried_shows_its_last_error(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs, sender: RefusingThenTaking
) -> None:
    """The agent's reply stays pending while the channel refuses it, with "retrying: <error>" under it; once the
    channel takes it, it reads sent and the error is gone."""
    _, agent = await chatting(rt, live, browser, dialogs)
    box = agent.get_by_label("Reply to the customer")
    await box.fill("On it")
    await box.press("Enter")
    reply = agent.locator("#timeline .msg.out").last
    await expect(reply.locator(".delivery")).to_have_text("pending")
    await expect(reply.locator(".delivery-error")).to_have_text("retrying: visitor relay unreachable")
    await agent.reload()  # as the API gives it, not only as the event said it
    await agent.locator("#conn.live").wait_for()
    await agent.locator("#mine .conv-item").first.click()
    reply = agent.locator("#timeline .msg.out").last
    await expect(reply.locator(".delivery-error")).to_have_text("retrying: visitor relay unreachable")
    sender.refusing = False
    await expect(reply.locator(".delivery")).to_have_text("sent", timeout=15_000)
    await expect(reply.locator(".delivery-error")).to_have_text("")
    assert dialogs.seen == []

"""Send clicked again after a network error, in a real browser: the first request reached the server but its
answer was lost; the second carries the same client key, so the reply is stored and shown once (issue 19)."""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, Route, expect
from sqlalchemy import func, select

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, chatting
from tests.conftest import LiveServer
from ticketing.tables import messages


async def test_send_again_after_a_lost_answer_stores_the_reply_once(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The console shows the error of the lost answer, keeps the text, and on the second click the server
    answers the reply it already stored: one message in the database and one in the timeline."""
    _, agent = await chatting(rt, live, browser, dialogs)
    keys: list[str] = []

    async def lose_the_first_answer(route: Route) -> None:
        keys.append(route.request.post_data_json["client_key"])
        if len(keys) == 1:
            await route.fetch()  # the server stores the reply...
            await route.abort("connectionreset")  # ...and its answer never arrives
        else:
            await route.continue_()

    await agent.route("**/api/tickets/*/reply", lose_the_first_answer)
    box = agent.get_by_label("Reply to the customer")
    await box.fill("Sending twice")
    await box.press("Enter")
    await expect(agent.locator("#compose-error")).not_to_have_text("")
    await expect(box).to_have_value("Sending twice")
    await agent.get_by_role("button", name="Send").click()
    await expect(box).to_have_value("")
    await expect(agent.locator("#timeline .msg.out .msg-text")).to_have_text(["Sending twice"])
    assert len(keys) == 2 and keys[0] == keys[1]
    async with rt.read() as conn:
        stored = await conn.execute(
            select(func.count()).where(messages.c.direction == "outbound", messages.c.text == "Sending twice")
        )
        assert stored.scalar_one() == 1
    assert dialogs.seen == []


async def test_what_is_typed_while_a_reply_is_on_its_way_stays(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The reply's answer comes back only after the agent has switched to a note and typed it (the customer can
    see the reply before the agent's request returns): the note's text stays in the composer, and Enter adds it."""
    _, agent = await chatting(rt, live, browser, dialogs)
    release = asyncio.Event()

    async def answer_late(route: Route) -> None:
        response = await route.fetch()  # stored and delivered...
        await release.wait()  # ...but the answer reaches the console late
        await route.fulfill(response=response)

    await agent.route("**/api/tickets/*/reply", answer_late)
    box = agent.locator("#text")
    await box.fill("The reply")
    await box.press("Enter")
    await agent.keyboard.press("Alt+n")
    await box.fill("A note typed meanwhile")
    release.set()
    await expect(agent.locator("#timeline .msg.out .msg-text")).to_have_text(["The reply"])
    await expect(box).to_have_value("A note typed meanwhile")
    await box.press("Enter")
    await expect(agent.locator("#timeline .msg.note .msg-text")).to_have_text(["A note typed meanwhile"])
    await expect(box).to_have_value("")
    assert dialogs.seen == []

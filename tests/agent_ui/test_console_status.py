"""The agent's status in the console, in a real browser: wrap-up after a live conversation shows as wrap-up (not
as away), survives a reload, ends in available when the server ends it, and the agent may leave it."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from hub.config import Settings
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, chatting
from tests.conftest import LiveServer
from ticketing.models import Agent

A = Agent.__table__  # type: ignore[attr-defined]
WRAP_UP_SECONDS = 5


@pytest.fixture
def chat_settings(chat_settings: Settings) -> Settings:
    """Wrap-up short enough to see it end by itself."""
    return chat_settings.model_copy(update={"wrap_up_seconds": WRAP_UP_SECONDS})


async def _status(rt: Runtime, username: str) -> str:
    async with rt.read() as conn:
        return str((await conn.execute(select(A.c.status).where(A.c.username == username))).scalar_one())


async def test_wrap_up_shows_as_wrap_up_and_ends_in_available(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Solving a chat puts the agent in wrap-up: the status control reads "Wrap-up", an entry the agent cannot
    pick, also after a reload; when the server ends wrap-up it reads "Available" again."""
    _, agent = await chatting(rt, live, browser, dialogs)
    status = agent.get_by_label("Your status")
    await expect(status).to_have_value("available")
    await expect(status.locator("option[value=wrap_up]")).to_be_disabled()

    await agent.get_by_role("button", name="Solve").click()
    await expect(status).to_have_value("wrap_up")
    await expect(status.locator("option:checked")).to_have_text("Wrap-up")
    assert await _status(rt, "alice") == "wrap_up"

    await agent.reload()
    await agent.locator("#conn.live").wait_for()
    await expect(status).to_have_value("wrap_up")

    await expect(status).to_have_value("available", timeout=(WRAP_UP_SECONDS + 5) * 1000)
    assert await _status(rt, "alice") == "available"
    assert dialogs.seen == []


async def test_agent_may_choose_a_status_during_wrap_up(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """During wrap-up the agent may still choose away (the server allows any status then), and the console and
    the server agree on it; wrap-up's end then leaves the agent away."""
    _, agent = await chatting(rt, live, browser, dialogs)
    status = agent.get_by_label("Your status")
    await agent.get_by_role("button", name="Solve").click()
    await expect(status).to_have_value("wrap_up")

    async with agent.expect_response(lambda r: r.url.endswith("/api/agents/me/status") and r.ok):
        await status.select_option("away")
    await expect(status).to_have_value("away")
    assert await _status(rt, "alice") == "away"
    await agent.wait_for_timeout((WRAP_UP_SECONDS + 2) * 1000)
    await expect(status).to_have_value("away")
    assert await _status(rt, "alice") == "away"
    assert dialogs.seen == []

"""Browser fixtures: Debian's Chromium driven by Playwright (never a downloaded browser), and a live server
with a chat queue and an agent."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from hub.config import Settings
from hub.runtime import Runtime
from tests.conftest import LiveServer

CHROMIUM = os.environ.get("SWITCHBOARD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HAVE_CHROMIUM = Path(CHROMIUM).exists()
SCREENSHOTS = Path(os.environ.get("SWITCHBOARD_TEST_SCREENSHOTS", "/tmp/switchboard-screenshots"))


@pytest.fixture
def chat_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"attachment_dir": tmp_path / "attachments", "offer_timeout_seconds": 60})


@pytest.fixture
def live(chat_settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(chat_settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


class Dialogs:
    """Records every JavaScript dialog a page opens (an alert() would mean injected script ran)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def watch(self, page: Page) -> None:
        async def on_dialog(dialog: Any) -> None:
            self.seen.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", on_dialog)


@pytest.fixture
def dialogs() -> Dialogs:
    return Dialogs()


async def new_page(browser: Browser, dialogs: Dialogs, **kwargs: Any) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(**kwargs)
    context.set_default_timeout(10_000)
    page = await context.new_page()
    dialogs.watch(page)
    return context, page


async def agent_login(page: Page, base: str, username: str, password: str = "password-123") -> None:
    await page.goto(f"{base}/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{base}/console")
    await page.locator("#conn.live").wait_for()


async def set_available(page: Page) -> None:
    async with page.expect_response(lambda r: r.url.endswith("/api/agents/me/status") and r.ok):
        await page.get_by_label("Your status").select_option("available")


async def start_chat(page: Page, base: str, name: str = "Maria", email: str | None = None) -> None:
    await page.goto(f"{base}/demo")
    await page.get_by_role("button", name="Open chat").click()
    await page.get_by_label("Your name").fill(name)
    if email:
        await page.get_by_label("Email address").fill(email)
    await page.get_by_role("button", name="Start chat").click()
    await page.get_by_label("Type your message").wait_for()


async def customer_says(page: Page, text: str) -> None:
    box = page.get_by_label("Type your message")
    await box.fill(text)
    await box.press("Enter")


def shot(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


async def offered(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs, first: str = "first", name: str = "Maria"
) -> tuple[Page, Page]:
    """A customer (``name``) whose chat, opened by ``first``, is offered to an available agent (alice, queue
    support); the customer's page and the agent's."""
    from tests.conftest import make_agent, make_queue

    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await set_available(agent)
    _, customer = await new_page(browser, dialogs)
    await start_chat(customer, live.url, name=name)
    await customer_says(customer, first)
    await agent.locator(".offer").wait_for()
    return customer, agent


async def chatting(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs, first: str = "first"
) -> tuple[Page, Page]:
    """A customer and an agent (alice, queue support) in an accepted conversation opened by ``first``."""
    customer, agent = await offered(rt, live, browser, dialogs, first)
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(first)
    return customer, agent

"""The help center in Chromium: hostile Markdown runs nothing, and the pages work without JavaScript."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.agent_ui.conftest import Dialogs, new_page
from tests.conftest import LiveServer


async def test_hostile_article_runs_no_script_in_chromium(
    articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Scripts, event handlers and javascript: links in an article's Markdown open no dialog: on the article
    page, when its links are clicked and its elements hovered, and on a search results page."""
    _, page = await new_page(browser, dialogs)
    await page.goto(f"{kb_server.url}/help/hostile")
    await expect(page.get_by_role("heading", name='Hostile <b>title</b> & "quotes"')).to_be_visible()
    await page.get_by_text("hover here").hover()
    await page.get_by_text("click me").click()
    await page.goto(f"{kb_server.url}/help/search?q=read+this+first")
    await expect(page.locator("mark").first).to_have_text("Read")
    assert dialogs.seen == []


async def test_help_center_works_without_javascript(
    articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """With JavaScript off: browse from the front page to an article, switch its language, and search."""
    _, page = await new_page(browser, dialogs, java_script_enabled=False)
    await page.goto(f"{kb_server.url}/help")
    await page.get_by_role("link", name="Return an item").click()
    await expect(page).to_have_title("Return an item · Kettle & Co.")
    await page.get_by_role("link", name="Deutsch").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Artikel zurücksenden")
    await page.get_by_role("link", name="English").click()
    await page.get_by_label("Search the help center").fill("delivery")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("link", name="Delivery times")).to_be_visible()
    assert dialogs.seen == []

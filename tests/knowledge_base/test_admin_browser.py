"""The knowledge base's admin page in Chromium: a supervisor writes an article with a preview, edits it, and
restores the first version; hostile Markdown in the preview runs nothing."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from hub.runtime import Runtime
from knowledge_base import service
from tests.agent_ui.conftest import Dialogs, agent_login, new_page
from tests.conftest import LiveServer, make_agent
from tests.knowledge_base.conftest import HOSTILE


async def test_supervisor_writes_previews_edits_and_restores_an_article(
    rt: Runtime, kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_agent(rt, "sam", role="supervisor")
    _, page = await new_page(browser, dialogs)
    await agent_login(page, kb_server.url, "sam")
    await page.goto(f"{kb_server.url}/admin/kb")
    await page.get_by_label("Title").fill("Return an item")
    await page.get_by_label("Slug").fill("return-an-item")
    await page.get_by_label("Status").select_option("published")
    await page.get_by_label("Also asked as (one question per line)").fill("How do I send it back?\nAre returns free?")
    await page.get_by_label("Body (Markdown)").fill(HOSTILE)
    await page.get_by_role("button", name="Preview").click()
    preview = page.locator("#preview")
    await expect(preview).to_contain_text("Returns are free within 30 days.")
    assert await preview.locator("script, iframe, svg, [onerror], [onmouseover]").count() == 0
    await preview.get_by_text("hover here").hover()
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_contain_text("Version 1")
    await page.get_by_label("Title").fill("Send an item back")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_contain_text("Version 2")
    await expect(page.locator("#articles")).to_contain_text("Send an item back")
    await page.get_by_role("button", name="Restore version 1").click()
    await expect(page.locator("#saved")).to_contain_text("Version 3")
    await expect(page.get_by_label("Title")).to_have_value("Return an item")
    (article,) = await service.all_articles(rt)
    assert (article.title, article.version, article.phrasings) == (
        "Return an item",
        3,
        ["How do I send it back?", "Are returns free?"],
    )
    assert dialogs.seen == []


async def test_an_agent_is_refused_the_editor(
    rt: Runtime, kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The editor is for supervisors and admins: the server answers an agent 403 before any page is sent."""
    await make_agent(rt, "alice")
    _, page = await new_page(browser, dialogs)
    await agent_login(page, kb_server.url, "alice")
    response = await page.goto(f"{kb_server.url}/admin/kb")
    assert response is not None and response.status == 403
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert await page.get_by_label("Title").count() == 0

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


async def test_learned_wordings_show_under_also_asked_as_and_one_is_dropped(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The wordings the ranking learned from agents' "helpful" are listed with the article's "also asked as",
    marked learned and apart from its own phrasings (which saving keeps as they are); dropping one removes it
    from the list and from what the ranking reads."""
    await make_agent(rt, "sam", role="supervisor")
    returns = articles["returns:en"]
    for query in ("my teapot wants to go home", "<img src=x onerror=alert(1)> lid"):
        await service.record_feedback(rt, article_id=returns, helpful=True, query=query, source="agent")
    _, page = await new_page(browser, dialogs)
    await agent_login(page, kb_server.url, "sam")
    await page.goto(f"{kb_server.url}/admin/kb")
    await page.get_by_role("button", name="Return an item · en · published").click()
    await expect(page.get_by_label("Also asked as (one question per line)")).to_have_value(
        "How do I send something back?"
    )
    learned = page.get_by_role("list", name="Learned wordings").get_by_role("listitem")
    await expect(learned).to_have_count(2)
    await expect(learned.nth(1)).to_contain_text("learned")
    await expect(learned.nth(1)).to_contain_text("my teapot wants to go home")
    await expect(learned.nth(0)).to_contain_text("<img src=x onerror=alert(1)> lid")  # text, not markup
    await page.get_by_role("button", name="Drop learned wording: my teapot wants to go home").click()
    await expect(learned).to_have_count(1)
    await expect(learned.first).not_to_contain_text("teapot")
    [doc] = await service.ranking_docs(rt, article_ids=[returns])
    assert "my teapot wants to go home" not in doc.phrasings
    assert "<img src=x onerror=alert(1)> lid" in doc.phrasings
    await page.get_by_role("button", name="Save").click()  # the article's own phrasings unchanged by the list
    await expect(page.locator("#saved")).to_contain_text("Version 1")
    assert (await service.get_article(rt, article_id=returns)).phrasings == ["How do I send something back?"]
    assert dialogs.seen == []


# WCAG's contrast ratio of an element's text against the first opaque background behind it.
CONTRAST = """(el) => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  let node = el, bg = null;
  while (node && !bg) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || c[3] === 1) bg = c.slice(0, 3);
    node = node.parentElement;
  }
  const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg || [255, 255, 255])];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}"""


async def test_the_article_list_is_readable(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The list of articles beside the editor has text that can be read (WCAG AA, 4.5:1), chosen or not: it once
    took the top bar's light-on-dark button style and showed light grey on white."""
    await make_agent(rt, "sam", role="supervisor")
    _, page = await new_page(browser, dialogs)
    await agent_login(page, kb_server.url, "sam")
    await page.goto(f"{kb_server.url}/admin/kb")
    item = page.get_by_role("button", name="Return an item · en · published")
    assert await item.evaluate(CONTRAST) >= 4.5
    await item.click()
    await expect(page.get_by_label("Title")).to_have_value("Return an item")
    assert await item.evaluate(CONTRAST) >= 4.5

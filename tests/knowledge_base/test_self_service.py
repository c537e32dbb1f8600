"""Self-service in the widget, in Chromium: while the visitor types, before an agent joins, articles that may
answer are offered; "This solved it" thanks them, is counted as a deflection, and closes a conversation that
was waiting for an agent as deflected. Drafts and internal articles are never offered, and the public answers
refuse empty or huge queries."""

from __future__ import annotations

import asyncio

import httpx
from playwright.async_api import Browser, expect
from sqlalchemy import select

from hub.runtime import Runtime
from knowledge_base import service
from tests.agent_ui.conftest import Dialogs, customer_says, new_page, start_chat
from tests.conftest import LiveServer, make_agent, make_queue
from ticketing.tables import tickets as T


async def test_public_answers_offer_published_articles_only(
    articles: dict[str, int], kb_client: httpx.AsyncClient
) -> None:
    r = await kb_client.get("/api/kb/public/answers", params={"q": "goodwill zanzibar credit policy"})
    assert r.status_code == 200
    assert all(a["slug"] not in ("goodwill", "upcoming") for a in r.json())
    r = await kb_client.get("/api/kb/public/answers", params={"q": "how do I send back an item"})
    assert r.json()[0]["slug"] == "returns" and r.json()[0]["url"] == "/help/returns"
    for q in ("", " ", "y" * 201):
        assert (await kb_client.get("/api/kb/public/answers", params={"q": q})).status_code == 422
    internal = await kb_client.post("/api/kb/public/solved", json={"article_id": articles["goodwill:en"]})
    assert internal.status_code == 404
    cors = await kb_client.options(
        "/api/kb/public/answers", headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"}
    )
    assert cors.status_code == 204 and cors.headers["access-control-allow-origin"] == "*"


async def test_widget_offers_articles_while_typing_and_counts_a_deflection(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"], available=True)
    _, page = await new_page(browser, dialogs)
    await start_chat(page, kb_server.url)
    await page.get_by_label("Type your message").fill("how can I send an item back to you")
    offered = page.get_by_role("region", name="Articles that may answer your question")
    await expect(offered.get_by_role("link").first).to_have_text("Return an item")
    await expect(offered).not_to_contain_text("goodwill")
    await offered.get_by_role("button", name="“Return an item” solved my question").click()
    await expect(page.get_by_text("Glad “Return an item” helped!")).to_be_visible()
    await expect(offered).to_be_hidden()
    await expect(page.get_by_label("Type your message")).to_have_value("")
    assert await service.deflections(rt) == 1
    assert dialogs.seen == []


async def _chat_tickets(rt: Runtime) -> list[tuple[int, str, list[str]]]:
    async with rt.read() as conn:
        rows = (await conn.execute(select(T.c.id, T.c.status, T.c.tags).where(T.c.channel == "webchat"))).all()
    return [(r.id, r.status, list(r.tags)) for r in sorted(rows)]


async def test_this_solved_it_closes_a_waiting_conversation_as_deflected(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """A visitor who asked and is waiting for an agent, then finds the answer among the offered articles: their
    ticket closes as deflected (tagged, offered to nobody), no rating is asked, the deflection is counted; writing
    again opens a new ticket."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"], available=True)
    _, page = await new_page(browser, dialogs)
    await start_chat(page, kb_server.url)
    await customer_says(page, "hello, I have a question about my order")
    await expect(page.locator(".msg.in .state")).to_have_text("Sent")
    [(waiting, status, _)] = await _chat_tickets(rt)
    assert status in ("new", "open")

    await page.get_by_label("Type your message").fill("how can I send an item back to you")
    offered = page.get_by_role("region", name="Articles that may answer your question")
    await offered.get_by_role("button", name="“Return an item” solved my question").click()
    await expect(page.get_by_text("Glad “Return an item” helped!")).to_be_visible()
    for _ in range(200):  # the frame is handled after the click returns: up to 10 s on a loaded machine
        if (await _chat_tickets(rt))[0][1] == "closed":
            break
        await asyncio.sleep(0.05)
    assert await _chat_tickets(rt) == [(waiting, "closed", ["deflected"])]
    assert await service.deflections(rt) == 1
    await expect(page.get_by_role("form", name="Rate this conversation")).to_be_hidden()
    await page.reload()  # a fresh page's hello asks no rating of the deflected ticket either (reopened by itself)
    await expect(page.get_by_label("Type your message")).to_be_visible()
    await expect(page.get_by_text("hello, I have a question")).to_be_visible()
    await expect(page.get_by_role("form", name="Rate this conversation")).to_be_hidden()

    await customer_says(page, "one more thing: do you ship to Norway?")
    await expect(page.locator(".msg.in .state").last).to_have_text("Sent")
    await expect(page.get_by_text("A new conversation has started")).to_be_visible()
    after = await _chat_tickets(rt)
    assert len(after) == 2 and after[1][1] in ("new", "open") and "deflected" not in after[1][2]
    assert dialogs.seen == []


async def test_a_hostile_article_offered_in_the_widget_runs_nothing(
    rt: Runtime, articles: dict[str, int], kb_server: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The widget offers an article whose title and Markdown carry markup and scripts: the title is a link's
    text as written, no element of it is in the widget, and following the link opens no dialog."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"], available=True)
    context, page = await new_page(browser, dialogs)
    await start_chat(page, kb_server.url)
    await page.get_by_label("Type your message").fill("read this first hostile quotes")
    offered = page.get_by_role("region", name="Articles that may answer your question")
    link = offered.get_by_role("link", name='Hostile <b>title</b> & "quotes"')
    await expect(link).to_be_visible()
    assert await offered.locator("b, script, img, iframe, svg, [onerror]").count() == 0
    context.on("page", dialogs.watch)  # the article opens in a new tab: its dialogs are recorded from the start
    async with context.expect_page() as opened:
        await link.click()
    article = await opened.value
    await article.get_by_text("hover here").hover()
    await article.get_by_text("click me").click()
    assert dialogs.seen == []

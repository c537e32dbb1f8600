"""Self-service in the widget, in Chromium: while the visitor types, before an agent joins, articles that may
answer are offered; "This solved it" thanks them and is counted as a deflection. Drafts and internal articles
are never offered, and the public answers refuse empty or huge queries."""

from __future__ import annotations

import httpx
from playwright.async_api import Browser, expect

from hub.runtime import Runtime
from knowledge_base import service
from tests.agent_ui.conftest import Dialogs, new_page, start_chat
from tests.conftest import LiveServer, make_agent, make_queue


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

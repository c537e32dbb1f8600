"""The console's suggested articles, in a real browser: asked for only where the server has a route for them."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Browser, ConsoleMessage, Request, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, chatting
from tests.conftest import LiveServer

ARTICLES = [
    {"title": "Shipping times", "url": "https://help.example/shipping"},
    {"title": "Returns", "url": "https://help.example/returns"},
]


def without_suggest_route(live: LiveServer) -> None:
    """Take the knowledge base's agent API (with /api/kb/suggest) off the live app, as on a server without a
    knowledge base. An included router stands in the app's routes as a wrapper of the original."""

    def suggests(route: object) -> bool:
        inner = getattr(getattr(route, "original_router", None), "routes", [])
        return any(getattr(r, "path", None) == "/api/kb/suggest" for r in [route, *inner])

    live.app.router.routes[:] = [r for r in live.app.router.routes if not suggests(r)]


async def test_without_a_knowledge_base_the_console_asks_for_no_suggestions(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """This server mounts no /api/kb/suggest: opening a conversation sends no request there and logs no error
    in the browser's console, and the panel says the knowledge base is not set up."""
    without_suggest_route(live)
    _, agent = await chatting(rt, live, browser, dialogs)
    errors: list[str] = []
    asked: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def on_request(request: Request) -> None:
        if "/api/kb/" in request.url:
            asked.append(request.url)

    agent.on("console", on_console)
    agent.on("request", on_request)
    await agent.reload()
    await agent.locator("#conn.live").wait_for()
    await agent.locator("#mine .conv-item").click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text("first")
    # the history is asked for just before the suggestions would be: once it shows, any such request is out
    await expect(agent.locator("#history")).to_contain_text("No earlier conversations.")
    assert asked == []
    await expect(agent.locator("#no-suggestions")).to_have_text("The knowledge base is not set up.")
    await expect(agent.locator("#suggestions li")).to_have_count(0)
    assert errors == []
    assert dialogs.seen == []


async def test_with_a_suggest_route_the_console_lists_its_articles(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """With a route mounted for /api/kb/suggest (a stand-in for the knowledge base), opening a conversation
    asks it for the ticket's suggestions and lists them; choosing one puts its title and link in the reply."""
    seen: list[int] = []

    async def suggest(ticket_id: int) -> list[dict[str, Any]]:
        seen.append(ticket_id)
        return ARTICLES

    without_suggest_route(live)  # the stand-in below answers instead of the knowledge base
    live.app.add_api_route("/api/kb/suggest", suggest, methods=["GET"])
    _, agent = await chatting(rt, live, browser, dialogs)

    suggestions = agent.locator("#suggestions li")
    await expect(suggestions).to_have_text(["Shipping times", "Returns"])
    await expect(agent.locator("#no-suggestions")).to_be_hidden()
    assert len(seen) == 1
    await suggestions.get_by_role("button", name="Shipping times").click()
    await expect(agent.locator("#text")).to_have_value("Shipping times: https://help.example/shipping")
    assert dialogs.seen == []

"""/docs and /redoc work offline: their pages name no other host, and in Chromium, with every request to
another host refused, Swagger UI and ReDoc render the API."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Browser, Route, expect

from tests.agent_ui.conftest import Dialogs, new_page
from tests.conftest import LiveServer


async def test_docs_pages_name_no_other_host(client: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        page = await client.get(path)
        assert page.status_code == 200
        assert re.findall(r"https?://", page.text) == [], path
        assets = re.findall(r'(?:src|href)=["\']([^"\']+)', page.text)
        assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset
        assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_docs_render_with_other_hosts_blocked(server: LiveServer, browser: Browser, dialogs: Dialogs) -> None:
    _, page = await new_page(browser, dialogs)
    elsewhere: list[str] = []
    own = urlsplit(server.url).netloc

    async def only_this_host(route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).netloc == own:
            await route.continue_()
        else:
            elsewhere.append(url)
            await route.abort()

    await page.context.route("**/*", only_this_host)
    await page.goto(f"{server.url}/docs")
    # Swagger UI fetched /openapi.json and drew an operation of the API.
    await expect(page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible()
    await expect(page.locator(".swagger-ui")).to_contain_text("/api/auth/login")
    await page.goto(f"{server.url}/redoc")
    # ReDoc fetched /openapi.json and drew the API's title and its operations. It lays out the whole schema
    # before it draws anything: with the API's ~200 operations that takes 5-9 s in headless Chromium on a
    # 2-core machine, past Playwright's default 5 s.
    await expect(page.get_by_role("heading", name=re.compile("^Switchboard")).first).to_be_visible(timeout=30_000)
    await expect(page.locator("redoc [data-section-id^='tag/auth/operation/']").first).to_be_attached()
    assert elsewhere == []
    assert dialogs.seen == []

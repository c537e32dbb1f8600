"""The supervisor's Reports tab in Chromium: totals for a date range, narrowed to one queue or one channel from
the page (the filters the API offers), with the CSV export and the charts following the same filters."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Browser, Page, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page, shot
from tests.conftest import LiveServer, login, make_agent, make_queue


def inbound(n: int, channel: str, queue: str) -> dict[str, Any]:
    kind = "email" if channel == "email" else "webchat"
    value = f"visitor{n}@example.com" if channel == "email" else f"visitor-{n}"
    return {
        "channel": channel,
        "external_id": f"rep-{n}",
        "thread_key": f"rep-thread-{n}",
        "sender": {"kind": kind, "value": value, "name": f"Visitor {n}"},
        "subject": "Hello",
        "text": "Hello, anyone there?",
        "queue": queue,
    }


def tile(page: Page, label: str) -> Any:
    return page.locator("#r-totals .tile", has=page.locator(".label", has_text=label)).locator(".big")


async def test_reports_tab_filters_by_queue_and_channel(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_queue(rt, "support", ["webchat", "email"])
    sales = await make_queue(rt, "sales", ["email"])
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "ada", role="admin")
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        admin = await login(client, "ada", "password-123")
        for n, (channel, queue) in enumerate([("webchat", "support"), ("webchat", "support"), ("email", "sales")]):
            r = await client.post("/api/inbound", json=inbound(n, channel, queue), headers=admin)
            assert r.status_code in (200, 201, 202), r.text
    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, "sam")
    await page.goto(f"{live.url}/supervisor#reports")
    await expect(tile(page, "Tickets")).to_have_text("3")

    await page.locator("#r-queue").select_option(label="sales")
    await page.locator("#report-form button[type=submit]").click()
    await expect(tile(page, "Tickets")).to_have_text("1")
    assert f"queue_id={sales}" in (await page.locator("#r-csv").get_attribute("href") or "")
    assert f"queue_id={sales}" in (await page.locator("#r-charts img").first.get_attribute("src") or "")

    await page.locator("#r-queue").select_option(label="all queues")
    await page.locator("#r-channel").select_option("webchat")
    await page.locator("#report-form button[type=submit]").click()
    await expect(tile(page, "Tickets")).to_have_text("2")
    href = await page.locator("#r-csv").get_attribute("href") or ""
    assert "channel=webchat" in href and "queue_id" not in href
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        sup = await login(client, "sam", "password-123")
        csv_text = (await client.get(href, headers=sup)).text
    assert [line.split(",")[2] for line in csv_text.splitlines()[1:]] == ["webchat"]
    await page.screenshot(path=shot("supervisor-reports"), full_page=True)
    assert dialogs.seen == []

"""The supervisor's wallboard in Chromium: it changes, without a reload, when a ticket arrives, is answered
and is abandoned, and when an agent changes status; an agent is refused the page."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Browser, Page, expect

from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, new_page, shot
from tests.conftest import LiveServer, login, make_agent, make_queue


def inbound(n: int) -> dict[str, Any]:
    return {
        "channel": "webchat",
        "external_id": f"wb-{n}",
        "thread_key": f"wb-thread-{n}",
        "sender": {"kind": "webchat", "value": f"visitor-{n}", "name": f"Visitor {n}"},
        "text": "Hello, anyone there?",
        "queue": "support",
    }


def cell(page: Page, css: str) -> Any:
    return page.locator(f'#queues tr.queue[data-queue="support"] td.{css}')


async def test_the_wallboard_follows_arrivals_answers_abandonment_and_status(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_queue(rt, "support", ["webchat"])
    alice = await make_agent(rt, "alice", queues=["support"])
    await make_agent(rt, "bob", queues=["support"])
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "ada", role="admin")
    _, page = await new_page(browser, dialogs)
    await page.goto(f"{live.url}/supervisor")  # not logged in: the login form, then back here
    await page.wait_for_url(f"{live.url}/login?next=/supervisor")
    await page.get_by_label("Username").fill("sam")
    await page.get_by_label("Password").fill("password-123")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{live.url}/supervisor")
    await page.locator("#conn.live").wait_for()
    await page.locator("body[data-ready='1']").wait_for()
    await expect(cell(page, "waiting")).to_have_text("0")
    loaded = await page.evaluate("performance.getEntriesByType('navigation')[0].startTime")

    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        admin = await login(client, "ada", "password-123")
        agent = await login(client, "alice", "password-123")
        sup = await login(client, "sam", "password-123")
        # arrives: waiting 1
        r = await client.post("/api/inbound", json=inbound(1), headers=admin)
        ticket = r.json()["ticket_id"]
        await expect(cell(page, "waiting")).to_have_text("1")
        await expect(page.locator("#t-waiting")).to_have_text("1")
        # answered: alice goes available, is offered it and accepts
        await client.put("/api/agents/me/status", json={"status": "available"}, headers=agent)
        await expect(page.locator('#agents tr[data-agent="alice"] td.status')).to_contain_text("available")
        r = await client.post(f"/api/tickets/{ticket}/accept", headers=agent)
        assert r.status_code == 200, r.text
        await expect(cell(page, "answered")).to_have_text("1")
        await expect(cell(page, "waiting")).to_have_text("0")
        await expect(cell(page, "sl30")).to_have_text("100 %")
        await expect(page.locator('#agents tr[data-agent="alice"] td.load')).to_contain_text("webchat 1/3")
        # abandoned: a second visitor's ticket is closed while it waits (alice is now away)
        await client.put(f"/api/supervisor/agents/{alice}/status", json={"status": "away"}, headers=sup)
        await expect(page.locator('#agents tr[data-agent="alice"] td.status')).to_have_text("away")
        await expect(cell(page, "ag-away")).to_have_text("1")  # alice (bob, who never logged in, is offline)
        r = await client.post("/api/inbound", json=inbound(2), headers=admin)
        second = r.json()["ticket_id"]
        await expect(cell(page, "waiting")).to_have_text("1")
        await client.patch(f"/api/tickets/{second}", json={"status": "closed"}, headers=admin)
        await expect(cell(page, "abandoned")).to_have_text("1")
        await expect(cell(page, "waiting")).to_have_text("0")
        # the status selector on the board is a supervisor action too
        await page.get_by_label("Status of bob").select_option("available")
        await expect(page.locator('#agents tr[data-agent="bob"] td.status')).to_contain_text("available")
    assert loaded == 0  # never reloaded: every change came over the socket
    # the big-screen mode hides the actions
    await page.get_by_role("button", name="Big screen").click()
    await expect(page.locator("body.bigscreen")).to_have_count(1)
    await expect(page.locator(".actions-panel")).to_be_hidden()
    await page.screenshot(path=str(shot("supervisor-wallboard")))
    assert dialogs.seen == []


async def test_an_agent_is_refused_the_supervisor_page(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_agent(rt, "alice")
    _, page = await new_page(browser, dialogs)
    await page.goto(f"{live.url}/login?next=/supervisor")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill("password-123")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{live.url}/supervisor")
    await expect(page.locator("body")).to_contain_text("Only supervisors and admins")
    assert await page.locator("#queues").count() == 0

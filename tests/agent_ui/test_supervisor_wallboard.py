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


async def test_the_console_shows_a_tickets_sla_timers(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    from ticketing.models import QueueUpdate
    from ticketing.queues import update_queue

    qid = await make_queue(rt, "support", ["webchat"])
    await update_queue(
        rt, queue_id=qid, data=QueueUpdate(sla_first_response_seconds=3600, sla_resolution_seconds=8 * 3600)
    )
    await make_agent(rt, "alice", queues=["support"])
    await make_agent(rt, "ada", role="admin")
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        admin = await login(client, "ada", "password-123")
        agent = await login(client, "alice", "password-123")
        await client.put("/api/agents/me/status", json={"status": "available"}, headers=agent)
        ticket = (await client.post("/api/inbound", json=inbound(7), headers=admin)).json()["ticket_id"]
        assert (await client.post(f"/api/tickets/{ticket}/accept", headers=agent)).status_code == 200
    _, page = await new_page(browser, dialogs)
    await page.goto(f"{live.url}/login")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill("password-123")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{live.url}/console")
    await page.locator("#mine li").first.click()
    await expect(page.locator("#conv-sla")).to_contain_text("First response due in 59m")
    await expect(page.locator("#conv-sla")).to_contain_text("Resolution due in 7h 59m")


async def _open_board(live: LiveServer, browser: Browser, dialogs: Dialogs, **routes: Any) -> Page:
    _, page = await new_page(browser, dialogs)
    for pattern, handler in routes.items():
        await page.route_web_socket(pattern, handler)
    await page.goto(f"{live.url}/login?next=/supervisor")
    await page.get_by_label("Username").fill("sam")
    await page.get_by_label("Password").fill("password-123")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{live.url}/supervisor")
    await page.locator("#conn.live").wait_for()
    await page.locator("body[data-ready='1']").wait_for()
    await page.evaluate("window.sameDocument = true")  # gone if the page reloads
    return page


async def test_the_wallboard_catches_up_after_its_socket_dies(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The socket is cut mid-session and refused for a while (the server stays up): the arrivals and the
    answer made meanwhile show after the wallboard reconnects by itself, without a page reload, each once."""
    from playwright.async_api import WebSocketRoute

    await make_queue(rt, "support", ["webchat"])
    alice = await make_agent(rt, "alice", queues=["support"])
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "ada", role="admin")
    sockets: list[WebSocketRoute] = []
    down = False

    async def through(ws: WebSocketRoute) -> None:
        if down:
            await ws.close()  # refused while "down": the page keeps retrying
            return
        ws.connect_to_server()
        sockets.append(ws)

    page = await _open_board(live, browser, dialogs, **{"**/ws/agent*": through})
    await expect(cell(page, "waiting")).to_have_text("0")
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        admin = await login(client, "ada", "password-123")
        sup = await login(client, "sam", "password-123")
        first = (await client.post("/api/inbound", json=inbound(1), headers=admin)).json()["ticket_id"]
        await expect(cell(page, "waiting")).to_have_text("1")
        down = True
        for ws in sockets:
            await ws.close()
        await expect(page.locator("#conn")).to_have_text("Reconnecting…")
        # meanwhile: two more arrive, the first is given to alice (answered)
        await client.post("/api/inbound", json=inbound(2), headers=admin)
        await client.post("/api/inbound", json=inbound(3), headers=admin)
        r = await client.post(f"/api/supervisor/tickets/{first}/reassign", json={"agent_id": alice}, headers=sup)
        assert r.status_code == 200, r.text
        await expect(cell(page, "waiting")).to_have_text("1")  # the old figure: nothing reaches the page
        down = False
        await expect(page.locator("#conn")).to_have_text("Live", timeout=20_000)
        await expect(cell(page, "waiting")).to_have_text("2")
        await expect(cell(page, "answered")).to_have_text("1")
        await expect(page.locator('#agents tr[data-agent="alice"] td.load')).to_contain_text("webchat 1/3")
        # each queue and agent once
        await expect(page.locator('#queues tr.queue[data-queue="support"]')).to_have_count(1)
        await expect(page.locator('#agents tr[data-agent="alice"]')).to_have_count(1)
        # and it keeps following live changes on the new socket
        await client.post("/api/inbound", json=inbound(4), headers=admin)
        await expect(cell(page, "waiting")).to_have_text("3")
        await expect(cell(page, "answered")).to_have_text("1")
    assert await page.evaluate("window.sameDocument === true")
    assert dialogs.seen == []


async def test_the_wallboard_catches_up_after_a_server_restart(
    rt: Runtime, chat_settings: Any, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The server goes away; work arrives meanwhile (written by another process on the same database); the
    server comes back: the wallboard reconnects by itself and shows it, without a reload, once."""
    from tests.ticketing.routing_helpers import arrive, message

    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "sam", role="supervisor")
    await make_agent(rt, "ada", role="admin")
    page = await _open_board(live, browser, dialogs)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        admin = await login(client, "ada", "password-123")
        await client.post("/api/inbound", json=inbound(1), headers=admin)
    await expect(cell(page, "waiting")).to_have_text("1")
    live.stop()
    await expect(page.locator("#conn")).to_have_text("Reconnecting…")
    await arrive(rt, message("webchat", queue="support"), message("webchat", queue="support"))
    again = LiveServer(chat_settings, port=live.port).start()
    try:
        await expect(page.locator("#conn")).to_have_text("Live", timeout=20_000)
        await expect(cell(page, "waiting")).to_have_text("3")
        await expect(page.locator('#queues tr.queue[data-queue="support"]')).to_have_count(1)
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
            admin = await login(client, "ada", "password-123")
            await client.post("/api/inbound", json=inbound(9), headers=admin)
        await expect(cell(page, "waiting")).to_have_text("4")
    finally:
        again.stop()
    assert await page.evaluate("window.sameDocument === true")
    assert dialogs.seen == []


async def test_a_channel_accounts_expired_token_is_an_alert_on_the_wallboard(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """channels/social's ``channel.health`` event (here written by another process into the shared log) shows
    as an alert on the open wallboard without a reload, and goes when the account is ok again."""
    import channels.social.events  # noqa: F401 - registers the channel.health payload model
    from hub.events import EventType, NewEvent

    def health(status: str, detail: str | None) -> NewEvent:
        payload = {"channel": "whatsapp", "account": "1555000", "queue": "social", "status": status,
                   "detail": detail, "since": None, "last_webhook_at": None, "last_sent_at": None}  # fmt: skip
        return NewEvent(type=EventType.CHANNEL_HEALTH, payload=payload)

    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "sam", role="supervisor")
    page = await _open_board(live, browser, dialogs)
    async with rt.write() as tx:
        tx.emit(health("token_expired", "token expired — reconnect the WhatsApp number in Admin"))
    alert = page.locator('#alerts .alert.channel[data-channel="whatsapp"]')
    await expect(alert).to_have_text(
        "whatsapp 1555000 (social): token expired — reconnect the WhatsApp number in Admin",
        timeout=20_000,  # the server reads another process's events from the log within its catch-up interval
    )
    async with rt.write() as tx:
        tx.emit(health("ok", None))
    await expect(alert).to_have_count(0, timeout=20_000)
    assert await page.evaluate("window.sameDocument === true")
    assert dialogs.seen == []


async def test_a_live_call_has_a_listen_in_button_beside_its_agent(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """A voice ticket an agent holds is a live call: the wallboard shows "Listen in #N" beside the agent, and the
    button asks the phone channel to dial the supervisor in (here no call is in progress on the ticket: the
    channel's answer is shown, as every action's is). The button goes when the agent lets the ticket go."""
    from tests.ticketing.routing_helpers import arrive, message

    await make_queue(rt, "support", ["voice"])
    alice = await make_agent(rt, "alice", queues=["support"])
    await make_agent(rt, "sam", role="supervisor")
    page = await _open_board(live, browser, dialogs)
    [ticket] = await arrive(rt, message("voice", queue="support"))
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        sup = await login(client, "sam", "password-123")
        r = await client.post(f"/api/supervisor/tickets/{ticket}/reassign", json={"agent_id": alice}, headers=sup)
        assert r.status_code == 200, r.text
        button = page.locator('#agents tr[data-agent="alice"] button.listen')
        await expect(button).to_have_text(f"Listen in #{ticket}", timeout=20_000)
        await button.click()
        await expect(page.locator("#act-result.error")).to_contain_text("no call in progress")
        r = await client.patch(f"/api/tickets/{ticket}", json={"status": "solved"}, headers=sup)
        assert r.status_code == 200, r.text
        await expect(button).to_have_count(0, timeout=20_000)
    assert dialogs.seen == []

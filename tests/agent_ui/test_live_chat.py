"""Live chat end to end in a real browser: a customer on the demo page, an agent in the console."""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from playwright.async_api import Browser, expect
from pydantic import SecretStr
from sqlalchemy import select

from hub.config import Settings
from hub.runtime import Runtime
from tests.agent_ui.conftest import (
    Dialogs,
    agent_login,
    chatting,
    customer_says,
    new_page,
    offered,
    set_available,
    shot,
    start_chat,
)
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing.canned import CannedCreate, create_canned
from ticketing.tables import contact_identities as I
from ticketing.tables import outbox as O
from ticketing.tables import tickets as T


async def test_customer_and_agent_chat(rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs) -> None:
    """A customer writes on the demo page; the agent gets the offer, accepts and replies; the customer sees the
    agent join, the typing indicator and the reply; after a reload the customer still sees the whole chat."""
    customer, agent = await offered(rt, live, browser, dialogs, "Hello, where is my order?")
    await expect(customer.locator(".msg.in .state")).to_have_text("Sent")

    offer = agent.locator(".offer")
    await expect(offer).to_be_visible()
    await expect(offer.locator(".countdown")).to_have_text(re.compile(r"^\d+s$"))
    await expect(agent).to_have_title("(1) Switchboard console")
    await offer.get_by_role("button", name="Accept").click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text("Hello, where is my order?")
    await expect(agent.locator("#mine .conv-item")).to_have_count(1)
    await expect(customer.get_by_text("alice joined the chat")).to_be_visible()

    await agent.locator("#text").press_sequentially("It left our warehouse")
    await expect(customer.locator(".typing")).to_have_text("alice is typing…")
    await agent.locator("#text").press("Shift+Enter")
    await agent.locator("#text").press_sequentially("this morning.")
    await agent.locator("#text").press("Enter")
    reply = customer.locator(".msg.out .bubble")
    await expect(reply).to_have_text("It left our warehouse\nthis morning.")
    await expect(customer.locator(".typing")).to_have_text("")
    await expect(agent.locator("#timeline .msg.out .delivery")).to_have_text("delivered")

    await customer_says(customer, "Great, thanks!")
    await expect(agent.locator("#timeline .msg.in")).to_have_count(2)
    await agent.screenshot(path=shot("console"), full_page=True)
    await customer.screenshot(path=shot("widget"))

    await customer.reload()
    await expect(customer.locator(".msg.in .bubble")).to_have_text(["Hello, where is my order?", "Great, thanks!"])
    await expect(customer.locator(".msg.out .bubble")).to_have_count(1)
    assert dialogs.seen == []


XSS = ["<img src=x onerror=alert(1)>", "<script>alert(1)</script>"]


async def test_customer_html_is_shown_as_text(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Markup written by the customer (and by an agent) shows as literal text in the console and the widget:
    no element is created from it and no dialog fires."""
    customer, agent = await chatting(rt, live, browser, dialogs)
    for payload in XSS:
        await customer_says(customer, payload)
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(["first", *XSS])
    await agent.locator("#text").fill(XSS[0])
    await agent.locator("#text").press("Enter")
    await expect(customer.locator(".msg.out .bubble")).to_have_text([XSS[0]])
    await customer.reload()
    await expect(customer.locator(".msg.in .bubble")).to_have_text(["first", *XSS])
    await agent.reload()
    await agent.locator("#mine .conv-item").click()
    await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(["first", *XSS])
    await expect(agent.locator("#history, #contact")).to_have_count(2)
    for page in (customer, agent):
        assert await page.locator("img[src='x']").count() == 0
        assert await page.locator(".msg script, .msg img:not(.att img)").count() == 0
    assert dialogs.seen == []


async def test_both_sockets_reconnect_after_a_server_restart(
    rt: Runtime, chat_settings: Settings, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The server goes away and comes back: the widget and the console reconnect by themselves, the message the
    customer wrote meanwhile is stored once, and neither side loses or doubles a message."""
    customer, agent = await chatting(rt, live, browser, dialogs)
    await agent.locator("#text").fill("before the restart")
    await agent.locator("#text").press("Enter")
    await expect(customer.locator(".msg.out .bubble")).to_have_text(["before the restart"])

    live.stop()
    await expect(agent.locator("#conn")).to_have_text("Reconnecting…")
    await expect(customer.get_by_text("Connection lost. Reconnecting…")).to_be_visible()
    await customer_says(customer, "written while you were away")
    await expect(customer.locator(".msg.in .state").last).to_have_text("Sending…")

    again = LiveServer(chat_settings, port=live.port).start()
    try:
        await expect(customer.locator(".msg.in .state").last).to_have_text("Sent", timeout=20_000)
        await expect(agent.locator("#conn")).to_have_text("Live", timeout=20_000)
        await expect(agent.locator("#timeline .msg.in .msg-text")).to_have_text(
            ["first", "written while you were away"]
        )
        await agent.locator("#text").fill("after the restart")
        await agent.locator("#text").press("Enter")
        await expect(customer.locator(".msg.out .bubble")).to_have_text(["before the restart", "after the restart"])
        await expect(customer.locator(".msg.in .bubble")).to_have_text(["first", "written while you were away"])
        await expect(agent.locator("#timeline .msg.out .msg-text")).to_have_text(
            ["before the restart", "after the restart"]
        )
        await customer.reload()
        await expect(customer.locator(".msg .bubble")).to_have_count(4)
    finally:
        again.stop()


async def test_nobody_available_turns_the_chat_into_an_email_ticket(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """With no agent available the widget says so and asks for an email address; the conversation becomes a
    ticket answered by email, and an agent's reply goes to the outbox on the email channel, and to the widget
    if it is still open."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])  # offline
    _, customer = await new_page(browser, dialogs)
    await customer.goto(f"{live.url}/demo")
    await customer.get_by_role("button", name="Open chat").click()
    await expect(customer.get_by_text("Nobody is available to chat right now")).to_be_visible()
    await customer.get_by_label("Your name").fill("Li")
    await customer.get_by_role("button", name="Start chat").click()
    await expect(customer.get_by_text("Please fill in the required fields.")).to_be_visible()
    await customer.locator("form.prechat").get_by_label("Email address").fill("li.wei@example.org")
    await customer.get_by_role("button", name="Start chat").click()
    await customer_says(customer, "Can I return a kettle?")
    await expect(customer.get_by_text("We will answer you at li.wei@example.org by email.")).to_be_visible()
    await customer.screenshot(path=shot("widget-offline"))

    async with httpx.AsyncClient(base_url=live.url) as client:
        headers = await login(client, "alice", "password-123")
        tickets = (await client.get("/api/tickets", headers=headers)).json()["items"]
        assert len(tickets) == 1
        ticket = tickets[0]
        assert (ticket["channel"], ticket["reply_channel"], ticket["reply_to"]) == (
            "webchat",
            "email",
            "li.wei@example.org",
        )
        r = await client.post(
            f"/api/tickets/{ticket['id']}/reply", json={"text": "Yes, within 30 days."}, headers=headers
        )
        assert r.status_code == 201, r.text
        assert (r.json()["channel"], r.json()["recipient"]) == ("email", "li.wei@example.org")
    # The visitor still has the page open: the reply sent by email shows there too, once.
    await expect(customer.locator(".msg.out .bubble", has_text="Yes, within 30 days.")).to_have_count(1)
    async with rt.read() as conn:
        rows = (await conn.execute(select(O.c.channel, O.c.payload))).all()
    assert [(c, p["recipient"]) for c, p in rows] == [("email", "li.wei@example.org")]
    assert dialogs.seen == []


async def test_a_chat_left_waiting_when_every_agent_goes_away_offers_email(
    rt: Runtime, chat_settings: Settings, browser: Browser, dialogs: Dialogs
) -> None:
    """The only agent goes away after the chat began (their offer is taken back): while the chat waits, the
    widget finds nobody available, says so and offers to answer by email, after a reload too; the address
    given turns the conversation into a ticket answered by email."""
    live = LiveServer(chat_settings.model_copy(update={"chat_availability_check_seconds": 0.5})).start()
    try:
        customer, agent = await offered(rt, live, browser, dialogs, "Is my order on its way?", name="Noor")
        email_form = customer.get_by_role("form", name="Answer by email")
        await customer.wait_for_timeout(1500)  # three checks while alice is available: no form
        await expect(email_form).to_be_hidden()

        async with agent.expect_response(lambda r: r.url.endswith("/api/agents/me/status") and r.ok):
            await agent.get_by_label("Your status").select_option("away")
        await expect(email_form).to_be_visible()
        await expect(email_form).to_contain_text("Nobody is available to chat right now")
        await customer.reload()
        await expect(email_form).to_be_visible()
        await email_form.get_by_label("Email address").fill("noor@example.org")
        await email_form.get_by_role("button", name="Answer me by email").click()
        await expect(customer.get_by_text("We will answer you at noor@example.org by email.")).to_be_visible()
        await expect(email_form).to_be_hidden()
        async with rt.read() as conn:
            row = (await conn.execute(select(T.c.reply_channel, T.c.reply_to))).one()
        assert tuple(row) == ("email", "noor@example.org")
        assert dialogs.seen == []
    finally:
        live.stop()


async def test_a_site_whose_identity_hash_is_wrong_still_lets_its_visitor_chat_unverified(
    rt: Runtime, chat_settings: Settings, browser: Browser, dialogs: Dialogs
) -> None:
    """A shop page passes a signed-in user with a hash the server does not accept: the visitor is not stuck
    behind the error, but gets the ordinary pre-chat form (nobody is available: it asks for an email address
    too) and chats as an unverified visitor, linked to no one; the site's developer is told in the browser
    console."""
    await make_queue(rt, "support", ["webchat"])
    live = LiveServer(chat_settings.model_copy(update={"chat_identity_secret": SecretStr("shop-secret")})).start()
    shop: ThreadingHTTPServer | None = None
    try:
        _, customer = await new_page(browser, dialogs)
        warnings: list[str] = []
        customer.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
        page = (
            f'<!doctype html><title>Shop</title><script async src="{live.url}/widget.js" data-queue="support" '
            'data-user-id="42" data-user-hash="not-the-hash" data-user-name="Maria"></script>'
        ).encode()

        class Shop(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        shop = ThreadingHTTPServer(("127.0.0.1", 0), Shop)  # another origin than the server's
        threading.Thread(target=shop.serve_forever, daemon=True).start()
        await customer.goto(f"http://127.0.0.1:{shop.server_address[1]}/")
        await customer.get_by_role("button", name="Open chat").click()
        await customer.get_by_label("Your name").fill("Maria")
        await customer.locator("form.prechat").get_by_label("Email address").fill("maria@example.com")
        await customer.get_by_role("button", name="Start chat").click()
        await customer_says(customer, "Where is my parcel?")
        await expect(customer.locator("span.state", has_text="Sent")).to_have_count(1)
        assert any("chats unverified" in w for w in warnings), warnings
        async with rt.read() as conn:
            kinds = (await conn.execute(select(I.c.value).where(I.c.kind == "webchat"))).scalars().all()
        assert len(kinds) == 1 and kinds[0].startswith("visitor:")  # not user:42
        assert dialogs.seen == []
    finally:
        if shop is not None:
            shop.shutdown()
            shop.server_close()
        live.stop()


async def test_console_tools_and_satisfaction_on_a_phone(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """On a phone-width widget: the agent inserts a canned response by typing "/", adds an internal note that
    looks different and never reaches the customer, solves; the customer rates 5 stars with a comment, which is
    stored on the ticket; the agent then transfers a second conversation to a colleague."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    await make_agent(rt, "bob", queues=["support"])
    await create_canned(rt, data=CannedCreate(shortcut="hello", title="Greeting", text="Hi! How can I help?"))
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await set_available(agent)
    _, customer = await new_page(browser, dialogs, viewport={"width": 390, "height": 800}, is_mobile=True)
    await start_chat(customer, live.url)
    await customer_says(customer, "hi")
    await expect(agent.locator(".offer")).to_be_visible()
    await agent.keyboard.press("Alt+a")
    await expect(agent.locator("#timeline .msg.in")).to_have_count(1)

    await agent.locator("#text").press_sequentially("/hel")
    await expect(agent.locator("#canned li.sel")).to_contain_text("/hello")
    await agent.locator("#text").press("Enter")
    await expect(agent.locator("#text")).to_have_value("Hi! How can I help?")
    await agent.locator("#text").press("Enter")
    await expect(customer.locator(".msg.out .bubble")).to_have_text(["Hi! How can I help?"])

    await agent.keyboard.press("Alt+n")
    await agent.locator("#text").fill("VIP customer, be nice")
    await agent.locator("#text").press("Enter")
    note = agent.locator("#timeline .msg.note")
    await expect(note).to_contain_text("internal note")
    assert await note.evaluate("e => getComputedStyle(e).backgroundColor") != await agent.locator(
        "#timeline .msg.out"
    ).evaluate("e => getComputedStyle(e).backgroundColor")

    # a second conversation, accepted before the first is solved (solving may start a wrap-up time)
    _, second = await new_page(browser, dialogs)
    await start_chat(second, live.url, name="Otto")
    await customer_says(second, "another question")
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    await expect(agent.locator("#mine .conv-item")).to_have_count(2)
    await agent.locator("#mine .conv-item").filter(has_text="hi").click()
    await expect(agent.locator("#timeline .msg.note")).to_have_count(1)

    await agent.keyboard.press("Alt+s")
    await expect(agent.locator("#mine .conv-item")).to_have_count(1)
    await expect(customer.get_by_role("radio", name="5 out of 5")).to_be_attached()
    await customer.screenshot(path=shot("widget-phone-rating"))
    await customer.get_by_title("5 out of 5").click()
    await customer.get_by_label("Anything to add? (optional)").fill("Very quick, thank you")
    await customer.get_by_role("button", name="Send rating").click()
    await expect(customer.get_by_text("Thank you for your feedback!")).to_be_visible()
    await expect(customer.get_by_text("VIP customer")).to_have_count(0)
    async with rt.read() as conn:
        rated = (await conn.execute(select(T.c.rating, T.c.rating_comment).where(T.c.status == "solved"))).all()
    assert [tuple(r) for r in rated] == [(5, "Very quick, thank you")]

    await agent.locator("#mine .conv-item").filter(has_text="another question").click()
    await agent.keyboard.press("Alt+t")
    await agent.get_by_label("Or to an agent").select_option(label="bob (offline)")
    await agent.locator("#transfer-form").get_by_role("button", name="Transfer").click()
    await expect(agent.locator("#mine .conv-item")).to_have_count(0)
    await expect(second.get_by_text("bob joined the chat")).to_be_visible()
    assert dialogs.seen == []

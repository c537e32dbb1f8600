"""The defects a new user hit trying the demo (issue 24), in a real browser: each test fails without its fix."""

from __future__ import annotations

from playwright.async_api import Browser, expect
from sqlalchemy import select

from hub.messages import Identity, InboundMessage
from hub.principals import Principal
from hub.runtime import Runtime
from tests.agent_ui.conftest import (
    Dialogs,
    agent_login,
    chatting,
    customer_says,
    new_page,
    set_available,
)
from tests.conftest import LiveServer, make_agent, make_queue
from ticketing import tables
from ticketing.ingest import ingest_batch
from ticketing.ticket_updates import assign

SUPERVISOR = Principal(agent_id=0, username="root", display_name="Root", role="supervisor", queue_ids=frozenset())


async def email_ticket_of(rt: Runtime, agent_id: int, *subjects: str) -> int:
    """An email ticket with one message per subject (a reply each, by In-Reply-To), assigned to ``agent_id``."""
    ticket_id = 0
    for n, subject in enumerate(subjects):
        [r] = await ingest_batch(
            rt,
            [
                InboundMessage(
                    channel="email",
                    external_id=f"<s{n}@example.com>",
                    sender=Identity(kind="email", value="ann@example.com", name="Ann"),
                    subject=subject,
                    text=f"body {n}",
                    references=[f"<s{n - 1}@example.com>"] if n else [],
                )
            ],
        )
        assert not isinstance(r, Exception)
        ticket_id = r.ticket_id
    await assign(rt, ticket_id=ticket_id, principal=SUPERVISOR, agent_id=agent_id)
    return ticket_id


async def test_contact_attributes_show_as_text(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Defect 1: a visitor who typed an email has attributes; the customer panel lists them as name and value,
    never "[object HTMLElement]"."""
    await make_queue(rt, "support", ["webchat"])
    await make_agent(rt, "alice", queues=["support"])
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await set_available(agent)
    _, customer = await new_page(browser, dialogs)
    await customer.goto(f"{live.url}/demo")
    await customer.get_by_role("button", name="Open chat").click()
    await customer.get_by_label("Your name").fill("Maria")
    await customer.get_by_role("textbox", name="Email address (optional)").fill("maria@example.com")
    await customer.get_by_role("button", name="Start chat").click()
    await customer_says(customer, "hello")
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    attrs = agent.locator("#contact dl.attrs")
    await expect(attrs.locator("dd").first).to_be_visible()
    await expect(attrs).to_contain_text("maria@example.com")
    assert "[object" not in await agent.locator("#contact").inner_text()
    assert await attrs.locator("dt").count() == await attrs.locator("dd").count() > 0
    assert dialogs.seen == []


async def test_each_email_message_shows_its_subject(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Defect 2: the console's timeline shows each email message's subject, as text."""
    await make_queue(rt, "support", ["email"])
    alice = await make_agent(rt, "alice", queues=["support"])
    await email_ticket_of(rt, alice, "Kettle <b>leaks</b>", "Re: Kettle leaks, and a photo")
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await agent.locator("#mine .conv-item").first.click()
    subjects = agent.locator("#timeline .msg .msg-subject")
    await expect(subjects).to_have_text(["Kettle <b>leaks</b>", "Re: Kettle leaks, and a photo"])
    assert dialogs.seen == []


async def test_a_failed_delivery_says_why_in_the_message(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Defect 4: an email reply that cannot go out (no mailbox, no outgoing server) reads "failed" with the
    reason shown under it, not only in a tooltip."""
    await make_queue(rt, "support", ["email"])
    alice = await make_agent(rt, "alice", queues=["support"])
    await email_ticket_of(rt, alice, "Where is my order?")
    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await agent.locator("#mine .conv-item").first.click()
    box = agent.get_by_label("Reply to the customer")
    await box.fill("It ships today")
    await box.press("Enter")
    reply = agent.locator("#timeline .msg.out").last
    await expect(reply.locator(".delivery")).to_have_text("failed", timeout=15_000)
    await expect(reply.locator(".delivery-error")).to_be_visible()
    await expect(reply.locator(".delivery-error")).to_contain_text("no mailbox is configured")


async def test_after_solve_reply_is_off_the_widget_stays_solved_and_a_new_conversation_is_linked(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Defect 6: once the agent solves the chat, the console's reply box is off (notes still work); the widget
    says solved, also after a reload, and no longer promises an answer by email; the visitor's next message
    shows that a new conversation starts, and the agent sees the new ticket follow the solved one."""
    customer, agent = await chatting(rt, live, browser, dialogs)
    first = int(await agent.locator("#mine .conv-item").first.get_attribute("data-id") or 0)
    await agent.get_by_role("button", name="Solve").click()
    await expect(agent.locator("#conv-sub")).to_contain_text("solved")
    await expect(agent.get_by_label("Reply to the customer")).to_be_disabled()
    await expect(agent.locator("#send")).to_be_disabled()
    await expect(agent.locator("#composer-closed")).to_contain_text("opens a new ticket")
    await agent.get_by_role("tab", name="Internal note").click()
    await expect(agent.get_by_label("Internal note (not sent to the customer)")).to_be_enabled()

    await expect(customer.get_by_text("This conversation was marked as solved.")).to_be_visible()
    await customer.reload()
    await expect(customer.get_by_text("This conversation was marked as solved.")).to_be_visible()
    subtitle = customer.locator("#sb-panel header")
    await expect(subtitle).to_contain_text("Solved")
    assert "by email" not in await subtitle.inner_text()

    await set_available(agent)  # out of wrap-up, to be offered the new conversation
    await customer_says(customer, "One more thing")
    await expect(customer.get_by_text("A new conversation has started")).to_be_visible()
    await expect(subtitle).not_to_contain_text("Solved")
    await agent.locator(".offer").get_by_role("button", name="Accept").click()
    link = agent.locator("#conv-link")
    await expect(link).to_contain_text(f"Follows #{first}")
    async with rt.read() as conn:
        newest = (
            await conn.execute(
                select(tables.tickets.c.id, tables.tickets.c.linked_ticket_id).order_by(tables.tickets.c.id.desc())
            )
        ).first()
    assert newest is not None and newest.id != first and newest.linked_ticket_id == first
    await link.get_by_role("link", name=f"#{first}").click()
    await expect(agent.locator("#conv-sub")).to_contain_text(f"#{first}")
    assert dialogs.seen == []

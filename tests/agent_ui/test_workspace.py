"""The agent's workspace in a real browser: views with counts, filters and Take; ticket search with highlights;
a burst of offers accepted at once (issue 24)."""

from __future__ import annotations

from playwright.async_api import Browser, expect
from sqlalchemy import update

from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page, set_available
from tests.conftest import LiveServer, make_agent, make_queue
from tests.ticketing.routing_helpers import member
from ticketing import tables
from ticketing.ingest import ingest_batch
from ticketing.routing_service import pull_ticket


async def arrive(rt: Runtime, channel: str, n: int, subject: str = "Question", text: str = "hello") -> list[int]:
    kinds = {"email": "email", "webchat": "webchat"}
    msgs = [
        InboundMessage(
            channel=channel,
            external_id=f"{channel}-{subject}-{i}",
            sender=Identity(kind=kinds[channel], value=f"c{i}-{subject.replace(' ', '')}@example.com"),
            thread_key=f"t-{subject}-{i}" if channel == "webchat" else None,
            subject=f"{subject} {i}",
            text=text,
        )
        for i in range(n)
    ]
    out = []
    for r in await ingest_batch(rt, msgs):
        assert not isinstance(r, Exception)
        out.append(r.ticket_id)
    return out


async def test_views_show_counts_filter_and_take_within_capacity(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The waiting view counts and lists the queue's work; the channel filter narrows it; Take assigns a ticket
    (it opens, joins "My conversations"); one taken meanwhile by a colleague is refused with the reason."""
    await make_queue(rt, "support", ["email", "webchat"])
    await make_agent(rt, "alice", queues=["support"])
    bob = await make_agent(rt, "bob", queues=["support"])
    mails = await arrive(rt, "email", 2, "Mail")
    await arrive(rt, "webchat", 1, "Chat")
    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, "alice")
    waiting = page.locator('.view-btn[data-view="waiting"]')
    await expect(waiting.locator(".count")).to_have_text("3")
    await waiting.click()
    items = page.locator("#view-tickets .view-item")
    await expect(items).to_have_count(3)
    await page.get_by_label("Channel").select_option("email")
    await expect(items).to_have_count(2)
    await expect(waiting.locator(".count")).to_have_text("2")
    await page.get_by_label("Sort").select_option("oldest")
    await expect(items.first).to_have_attribute("data-id", str(mails[0]))
    await items.first.get_by_role("button", name=f"Take #{mails[0]}").click()
    await expect(page.locator(f'#mine .conv-item[data-id="{mails[0]}"]')).to_be_visible()
    await expect(page.locator("#conv-title")).to_have_text("Mail 0")
    await expect(items).to_have_count(1)
    await expect(waiting.locator(".count")).to_have_text("1")
    # A colleague takes the last one before alice clicks: refused, with the reason.
    await pull_ticket(rt, ticket_id=mails[1], principal=await member(rt, bob))
    stale = items.first.get_by_role("button", name=f"Take #{mails[1]}")
    if await stale.count():
        await stale.click()
        await expect(page.locator("#compose-error")).to_contain_text("no longer waiting")
    await expect(items).to_have_count(0)
    assert dialogs.seen == []


async def test_search_finds_tickets_and_highlights_as_text(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Searching shows the tickets whose subject or messages hold the words, with the matches in <mark> and
    any markup the customer wrote shown as text; a result opens the ticket; odd characters just find nothing."""
    await make_queue(rt, "support", ["email"])
    await make_agent(rt, "alice", queues=["support"])
    [tid] = await arrive(rt, "email", 1, "Kettle <b>leaks</b>", text="It <img src=x onerror=alert(1)> leaks a lot")
    await arrive(rt, "email", 1, "Invoice")
    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, "alice")
    box = page.get_by_label("Search tickets")
    await box.fill("leaks")
    await box.press("Enter")
    hits = page.locator("#search-results .search-hit")
    await expect(hits).to_have_count(1)
    await expect(hits.first.locator(".subject")).to_have_text("Kettle <b>leaks</b> 0")
    await expect(hits.first.locator(".subject mark")).to_have_text("leaks")
    await expect(hits.first.locator(".snippet")).to_contain_text("<img src=x onerror=alert(1)>")
    await expect(hits.first.locator(".snippet mark")).to_have_text("leaks")
    assert await hits.first.locator("b, img").count() == 0
    await hits.first.click()
    await expect(page.locator("#conv-sub")).to_contain_text(f"#{tid}")
    for odd in ['"unbalanced', "NEAR(", "a OR *", "😀", "' OR 1=1 --"]:
        await box.fill(odd)
        await box.press("Enter")
        await expect(page.locator("#search-status")).to_have_text("Nothing found.")
    assert dialogs.seen == []


async def test_a_burst_of_offers_is_one_group_with_accept_all(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """Going available with work waiting brings several offers at once: shown as one group with "Accept all"
    per channel, which takes them in one request (not one per offer); an offer that went to someone else
    meanwhile is named with its reason while the others are taken."""
    await make_queue(rt, "support", ["email"])
    await make_queue(rt, "other", ["email"])
    await make_agent(rt, "alice", queues=["support"])
    bob = await make_agent(rt, "bob", queues=["other"])
    mails = await arrive(rt, "email", 3, "Burst")
    _, page = await new_page(browser, dialogs)
    accepts: list[str] = []
    page.on("request", lambda r: accepts.append(r.url) if r.method == "POST" and "accept" in r.url else None)
    await agent_login(page, live.url, "alice")
    await set_available(page)
    burst = page.locator(".offer-burst")
    await expect(burst).to_contain_text("3 offers at once")
    # Another agent got one of them before alice clicks, and her console has not heard yet (written without
    # its event, so the group still shows three).
    async with rt.db.begin() as conn:
        await conn.execute(
            update(tables.tickets)
            .where(tables.tickets.c.id == mails[1])
            .values(offered_agent_id=None, offer_expires_at=None, assignee_id=bob)
        )
    await burst.get_by_role("button", name="Accept all 3 email").click()
    await expect(page.locator("#compose-error")).to_contain_text(f"#{mails[1]}: ticket {mails[1]} is not offered")
    for t in (mails[0], mails[2]):
        await expect(page.locator(f'#mine .conv-item[data-id="{t}"]')).to_be_visible()
    await expect(page.locator(f'#mine .conv-item[data-id="{mails[1]}"]')).to_have_count(0)
    await expect(page.locator(".offer")).to_have_count(0)
    await expect(burst).to_have_count(0)
    assert accepts == [f"{live.url}/api/offers/accept"]
    assert dialogs.seen == []

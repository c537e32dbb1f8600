"""The contacts pages in Chromium: search from the console's search box (a misspelt name, a phone number in
another format), a contact's page across channels (identities with their verified state, one timeline, notes,
edits), and the demo's two Marias suggested as duplicates, merged in the page and the merge undone."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page
from tests.conftest import LiveServer, make_agent, make_queue
from ticketing.ingest import ingest_batch


async def _marias(rt: Runtime) -> None:
    await make_queue(rt, "support", ["email", "sms", "whatsapp", "webchat"])
    results = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id="<m1@x>",
                sender=Identity(kind="email", value="Maria.Garcia@example.com", name="Maria Garcia"),
                subject="Where is my order?",
                text="The kettle has not arrived <script>alert(1)</script>",
            ),
            InboundMessage(
                channel="sms",
                external_id="SM1",
                sender=Identity(kind="phone", value="+14155550123", name="Maria Garcia"),
                text="Can I change the delivery address?",
            ),
            InboundMessage(
                channel="whatsapp",
                external_id="SM2",
                sender=Identity(kind="whatsapp", value="whatsapp:+14155550123", name="Maria"),
                text="Photo of the label",
            ),
            InboundMessage(
                channel="webchat",
                external_id="w1",
                thread_key="conv-1",
                sender=Identity(kind="webchat", value="visitor:abc", name="Visitor"),
                text="hello from the site",
            ),
        ],
    )
    assert not [r for r in results if isinstance(r, Exception)]


async def test_search_box_finds_customers_by_misspelt_name_and_phone_format(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """From the console's search box: "Mraia Garcai" lists both Marias; "(415) 555-0123" the phone one first;
    a query of quotes and emoji shows "no contact" rather than an error."""
    await _marias(rt)
    await make_agent(rt, "alice", queues=["support"])
    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, "alice")
    box = page.get_by_label("Search contacts")
    await box.fill("Mraia Garcai")
    await box.press("Enter")
    await page.wait_for_url(f"{live.url}/console/contacts?q=Mraia+Garcai")
    await expect(page.locator("#results .contact-hit a")).to_have_text(["Maria Garcia", "Maria Garcia"])
    await page.get_by_label("Search contacts").fill("(415) 555-0123")
    await page.get_by_role("button", name="Search").click()
    first = page.locator("#results .contact-hit").first
    await expect(first).to_contain_text("+14155550123")
    await expect(first).to_contain_text("100%")
    await page.get_by_label("Search contacts").fill("\"NEAR( 🙂 '")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("#results")).to_contain_text("No contact matches")
    await expect(page.locator("#dupes-box")).to_be_hidden()  # agents get no duplicates list
    assert dialogs.seen == []


async def test_contact_page_shows_every_channel_and_merges_the_demo_maria(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """A supervisor sees the duplicates list, opens the phone Maria: identities (phone and WhatsApp, verified),
    her SMS and WhatsApp messages in one timeline, the email Maria suggested. She adds a note, renames her and
    sets an attribute, merges the email Maria in (the timeline now spans email, SMS and WhatsApp; customer text
    stays text), then undoes the merge. A website visitor's identity shows as not verified."""
    await _marias(rt)
    await make_agent(rt, "sam", role="supervisor")
    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, "sam")
    await page.goto(f"{live.url}/console/contacts")
    dupe = page.locator("#dupes .dupe")
    await expect(dupe).to_have_count(1)
    await expect(dupe).to_contain_text("same name")
    await dupe.get_by_role("link", name="Maria Garcia").click()

    await expect(page.locator("#identities li")).to_have_count(2)
    await expect(page.locator("#identities")).to_contain_text("+14155550123")
    await expect(page.locator("#identities .badge.verified")).to_have_count(2)
    await expect(page.locator("#timeline li")).to_have_count(2)
    await expect(page.locator("#timeline .chan")).to_have_text(["sms", "whatsapp"])
    await expect(page.locator("#duplicates .dupe")).to_have_count(1)

    await page.get_by_label("Note on this contact").fill("Prefers SMS <b>bold</b>")
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator("#notes li div")).to_have_text(["Prefers SMS <b>bold</b>"])
    await page.get_by_label("Name", exact=True).fill("María García")
    await page.get_by_role("button", name="Save name").click()
    await expect(page).to_have_title("María García · Switchboard")
    await page.get_by_role("button", name="Add attribute").click()
    await page.get_by_label("Attribute name").last.fill("city")
    await page.get_by_label("Attribute value").last.fill("Oakland")
    await page.get_by_role("button", name="Save attributes").click()
    await expect(page.get_by_label("Attribute value")).to_have_value("Oakland")

    await page.locator("#duplicates").get_by_role("button", name="Merge into this contact").click()
    await expect(page.locator("#timeline .chan")).to_have_text(["email", "sms", "whatsapp"])
    await expect(page.locator("#identities li")).to_have_count(3)
    await expect(page.locator("#timeline li").first).to_contain_text("<script>alert(1)</script>")
    await expect(page.locator("#no-duplicates")).to_be_visible()
    await page.get_by_role("button", name="Undo merge").click()
    await expect(page.locator("#timeline .chan")).to_have_text(["sms", "whatsapp"])
    await expect(page.locator("#merges")).to_contain_text("undone")
    await expect(page.locator("#duplicates .dupe")).to_have_count(1)

    await page.get_by_label("Search contacts").fill("visitor:abc")
    await page.get_by_role("button", name="Search").click()
    await page.locator("#results .contact-hit a").first.click()
    await expect(page.locator("#identities .badge.unverified")).to_have_text(["not verified"])
    assert dialogs.seen == []

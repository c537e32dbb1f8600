"""The message templates admin page in Chromium: an admin adds an approved template, sees its variables as the
body is typed, is told what is wrong with a bad one; the console's template picker offers it at once on a
WhatsApp conversation whose window has closed."""

from __future__ import annotations

from datetime import timedelta

from playwright.async_api import Browser, expect
from sqlalchemy import select, update

from hub.db import utcnow
from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs
from tests.agent_ui.test_admin_pages import admin_page, field_error
from tests.conftest import LiveServer, make_queue
from ticketing import templates
from ticketing.ingest import ingest_batch
from ticketing.tables import agents, tickets


async def test_an_admin_adds_a_template_and_the_composer_offers_it(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_queue(rt, "social", ["whatsapp"])
    page = await admin_page(browser, dialogs, live, rt, "/admin/templates")
    await page.get_by_label("Name").fill("parcel_delayed")
    await page.get_by_label("Body").fill("Hi {{1}}, parcel {{3}} is late.")
    await expect(page.locator("#variables")).to_have_text("Variables: {{1}}, {{3}} (the agent fills in 2)")
    await page.get_by_role("button", name="Save").click()
    await expect(field_error(page, "body")).to_contain_text("without gaps")
    await page.get_by_label("Body").fill("Hi {{1}}, parcel {{2}} is late.")
    await expect(page.locator("#preview")).to_have_text("Hi [value 1], parcel [value 2] is late.")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#saved")).to_have_text("Saved parcel_delayed")
    await expect(page.locator("#items")).to_contain_text("en_US · 2 variables")
    async with rt.read() as conn:
        [stored] = await templates.templates_of(conn, "whatsapp")
    assert (stored.name, stored.body) == ("parcel_delayed", "Hi {{1}}, parcel {{2}} is late.")

    # A WhatsApp customer last wrote 30 hours ago: the composer offers the new template.
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="whatsapp",
                external_id="wamid.ADMIN1",
                sender=Identity(kind="whatsapp", value="+4915100000099"),
                recipient="1065",
                text="hello?",
                queue="social",
                received_at=utcnow() - timedelta(hours=30),
            )
        ],
    )
    assert not isinstance(result, Exception)
    async with rt.write() as tx:
        root = (await tx.conn.execute(select(agents.c.id).where(agents.c.username == "root"))).scalar_one()
        await tx.conn.execute(update(tickets).where(tickets.c.id == result.ticket_id).values(assignee_id=root))
    await page.goto(f"{live.url}/console")
    await page.locator(f'#mine li[data-id="{result.ticket_id}"]').click()
    await expect(page.get_by_label("Approved template")).to_have_value("parcel_delayed")
    await page.get_by_label("Template variable 1").fill("Maria")
    await page.get_by_label("Template variable 2").fill("P-9")
    await expect(page.locator("#template-preview")).to_have_text("Hi Maria, parcel P-9 is late.")
    assert dialogs.seen == []

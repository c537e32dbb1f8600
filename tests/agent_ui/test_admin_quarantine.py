"""The quarantine's admin page in Chromium: a refused social message is listed with its reason, shown as text (its
markup never runs), tried again once the cause is gone (it lands on a ticket and leaves the list), and a message
refused again stays with its reason until it is discarded. The page is reached from the admin's home."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import insert, select

from channels.social.models import SocialInboxRow
from hub.db import utcnow
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page
from tests.channels.social.conftest import (  # noqa: F401
    Provider,
    encode,
    fixture,
    provider,
    sign,
    social_server,
    social_settings,
    whatsapp_text,
)
from tests.channels.social.test_quarantine import REFUSED, Q, keep_quarantined, stored_messages
from tests.conftest import LiveServer, make_agent, make_queue, until

N = SocialInboxRow.__table__  # type: ignore[attr-defined]


@pytest.fixture
def live(social_server: LiveServer) -> LiveServer:  # noqa: F811
    return social_server


async def test_admin_lists_shows_reprocesses_and_discards_quarantined_messages(
    rt: Runtime,
    live: LiveServer,
    browser: Browser,
    dialogs: Dialogs,
    provider: Provider,  # noqa: F811
) -> None:
    await make_queue(rt, "social", ["whatsapp"])
    await make_agent(rt, "root", role="admin", queues=["social"])
    await keep_quarantined(rt, "wamid.UI1", "4915100000091", "my parcel never came")
    body = encode(whatsapp_text("wamid.UI2", "<img src=x onerror=alert(1)>", sender=REFUSED))
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        r = await client.post("/webhooks/meta", content=body, headers=sign(body))
        assert r.status_code == 200 and r.json()["quarantined"] == 1

    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, "root")
    await page.goto(f"{live.url}/admin")
    await page.locator('a.admin-card[href="/admin/quarantine"]').click()
    await page.wait_for_url(f"{live.url}/admin/quarantine")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    rows = page.locator("#social tr")
    await expect(rows).to_have_count(2)
    fixed = page.locator('tr[data-key="whatsapp:wamid.UI1"]')
    refused = page.locator('tr[data-key="whatsapp:wamid.UI2"]')
    await expect(fixed).to_contain_text("my parcel never came")
    await expect(refused).to_contain_text("is not a phone number")

    # Shown as text: the markup is characters in the <pre>, no element, no dialog.
    await refused.get_by_role("button", name="Show").click()
    raw = page.locator("#raw")
    await expect(raw).to_contain_text('"text": "<img src=x onerror=alert(1)>"')
    assert await raw.locator("img").count() == 0

    # Filtering by another channel hides both.
    await page.get_by_label("Channel").select_option("telegram")
    await page.locator("#filters").get_by_role("button", name="Show").click()
    await expect(page.locator("#social")).to_contain_text("Nothing in quarantine.")
    await page.get_by_label("Channel").select_option("whatsapp")
    await page.locator("#filters").get_by_role("button", name="Show").click()
    await expect(rows).to_have_count(2)

    async with page.expect_response(lambda r: r.url.endswith("/quarantine/reprocess")) as answer:
        await fixed.get_by_role("button", name="Try again").click()
    assert (await answer.value).status == 200
    await expect(rows).to_have_count(1)
    await expect(page.locator("#saved")).to_contain_text("wamid.UI1: now message")
    stored = await stored_messages(rt)
    assert [(m.external_id, m.text) for m in stored] == [("wamid.UI1", "my parcel never came")]

    async with page.expect_response(lambda r: r.url.endswith("/quarantine/reprocess")):
        await refused.get_by_role("button", name="Try again").click()
    await expect(page.locator("#saved")).to_contain_text("wamid.UI2 stays: invalid_identity")
    await expect(rows).to_have_count(1)
    async with page.expect_response(lambda r: r.url.endswith("/quarantine/discard")):
        await refused.get_by_role("button", name="Discard").click()
    await expect(page.locator("#social")).to_contain_text("Nothing in quarantine.")
    async with rt.read() as conn:
        assert (await conn.execute(select(Q))).all() == []
    assert dialogs.seen == []


async def test_admin_sees_a_failing_webhook_batch_tries_it_now_and_discards_it(
    rt: Runtime,
    live: LiveServer,
    browser: Browser,
    dialogs: Dialogs,
) -> None:
    """A bot's update whose processing failed (the bot is no longer configured) waits out its backoff in the
    inbox: the page lists it with its reason as text; "Try now" runs it again (it fails again, one attempt
    more), "Discard" removes it."""
    await make_agent(rt, "root", role="admin")
    async with rt.db.begin() as conn:
        await conn.execute(
            insert(N).values(
                provider="telegram",
                account="gone",
                body=encode(fixture("telegram_message.json")),
                received_at=utcnow(),
                claimed_until=utcnow() + timedelta(hours=1),
                attempts=1,
                error="<b>no bot</b> gone",
            )
        )
    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, "root")
    await page.goto(f"{live.url}/admin/quarantine")
    await expect(page.locator("body[data-ready=true]")).to_have_count(1)
    await expect(page.locator("#inbox-summary")).to_have_text("1 batch waiting to be stored, 1 of them failing.")
    batch = page.locator("#inbox tr[data-batch]")
    await expect(batch).to_have_count(1)
    await expect(batch).to_contain_text("<b>no bot</b> gone")
    assert await batch.locator("b").count() == 0
    await expect(batch.locator("td").nth(3)).to_have_text("1")

    async with page.expect_response(lambda r: r.url.endswith("/retry")) as answer:
        await batch.get_by_role("button", name="Try now").click()
    assert (await answer.value).status == 204
    await expect(page.locator("#saved")).to_contain_text("being tried again")

    async def failed_again() -> bool:
        async with rt.read() as conn:
            return (await conn.execute(select(N.c.attempts))).scalar_one() == 2

    await until(failed_again, 10, what="the batch tried again")
    await page.reload()
    await expect(batch.locator("td").nth(3)).to_have_text("2")
    await expect(batch).to_contain_text("gone")
    async with page.expect_response(lambda r: r.url.endswith("/discard")):
        await batch.get_by_role("button", name="Discard").click()
    await expect(page.locator("#inbox")).to_contain_text("No batch is failing.")
    await expect(page.locator("#inbox-summary")).to_have_text("No batch waiting.")
    async with rt.read() as conn:
        assert (await conn.execute(select(N))).all() == []
    assert dialogs.seen == []

"""The phone admin page in Chromium: numbers answered by flows (set and removed through the API), and every
flow drawn — with the hub's own copy of Mermaid when one is configured, else as Mermaid source."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from hub.config import Settings, TwilioNumberSettings
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page, shot
from tests.conftest import LiveServer, make_agent

MERMAID = os.environ.get("SWITCHBOARD_TEST_MERMAID_JS")
HAVE_MERMAID = bool(MERMAID) and Path(str(MERMAID)).is_file()


@pytest.fixture
def phone_live(settings: Settings) -> Iterator[LiveServer]:
    update = {"twilio_numbers": [TwilioNumberSettings(number="+14155550199", flow="demo", label="Main line")]}
    if HAVE_MERMAID:
        update["mermaid_js"] = Path(str(MERMAID))
    server = LiveServer(settings.model_copy(update=update)).start()
    try:
        yield server
    finally:
        server.stop()


async def test_admin_sets_a_number_and_sees_each_flow(
    rt: Runtime, phone_live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    await make_agent(rt, "ada", role="admin")
    _, page = await new_page(browser, dialogs)
    await agent_login(page, phone_live.url, "ada")
    await page.goto(f"{phone_live.url}/admin/phone")
    await expect(page.locator("body")).to_have_attribute("data-ready", "true")
    rows = page.locator("#numbers tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("+14155550199")
    await expect(rows.first).to_contain_text("settings")

    form = page.get_by_role("form", name="Answer a number")
    await form.get_by_label("Number").fill("(415) 555-0123")
    await form.get_by_label("Flow").select_option("demo")
    await form.get_by_label("Label").fill("Sales line")
    await form.get_by_role("button", name="Save").click()
    await expect(rows).to_have_count(2)
    await expect(page.locator("#numbers")).to_contain_text("+14155550123")

    demo = page.locator('article.flow[data-flow="demo"]')
    if HAVE_MERMAID:
        await expect(demo.locator("svg")).to_have_count(1)
    else:
        await expect(demo.locator("pre.source")).to_contain_text("flowchart TD")
    await page.screenshot(path=shot("admin-phone"), full_page=True)

    await page.get_by_role("button", name="Remove +14155550123").click()
    await expect(rows).to_have_count(1)
    assert dialogs.seen == []


async def test_only_admins_change_numbers(rt: Runtime, phone_live: LiveServer) -> None:
    """An agent is refused; an admin's changes are in the audit log (before and after)."""
    import httpx

    from hub import audit
    from tests.conftest import login

    await make_agent(rt, "alice")
    await make_agent(rt, "ada", role="admin")
    async with httpx.AsyncClient(base_url=phone_live.url) as client:
        headers = await login(client, "alice", "password-123")
        r = await client.put("/api/twilio/numbers/+14155550123", json={"flow": "demo"}, headers=headers)
        assert r.status_code == 403
        admin = await login(client, "ada", "password-123")
        for label in ("", "Sales line"):
            r = await client.put(
                "/api/twilio/numbers/+14155550123", json={"flow": "demo", "label": label}, headers=admin
            )
            assert r.status_code == 200, r.text
        assert (await client.delete("/api/twilio/numbers/+14155550123", headers=admin)).status_code == 204
        async with rt.read() as conn:
            logged = [(e.actor, e.action, e.target, e.detail) for e in await audit.entries(conn, action="phone.")]
        assert logged[::-1] == [
            ("ada", "phone.number_set", "number:+14155550123",
             {"before": None, "after": {"flow": "demo", "label": ""}}),
            ("ada", "phone.number_set", "number:+14155550123",
             {"before": {"flow": "demo", "label": ""}, "after": {"flow": "demo", "label": "Sales line"}}),
            ("ada", "phone.number_delete", "number:+14155550123", {}),
        ]  # fmt: skip
        r = await client.get("/admin/phone/mermaid.js")
        assert r.status_code in (200, 404)

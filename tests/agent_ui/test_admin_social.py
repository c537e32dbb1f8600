"""The social channels' admin page in Chromium: accounts with their health, the webhook URLs, the templates, and
reconnecting a page with a new token, which the next reply uses (kept sealed in the database)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from channels.social.models import AccountToken
from hub import audit
from hub.db import utcnow
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, new_page
from tests.channels.social.conftest import (  # noqa: F401
    PAGE,
    Provider,
    encode,
    provider,
    sign,
    social_server,
    social_settings,
)
from tests.conftest import LiveServer, login, make_agent, make_queue

_tokens = AccountToken.__table__  # type: ignore[attr-defined]


@pytest.fixture
def live(social_server: LiveServer) -> LiveServer:  # noqa: F811
    return social_server


async def test_admin_sees_accounts_and_reconnects_a_page(
    rt: Runtime,
    live: LiveServer,
    browser: Browser,
    dialogs: Dialogs,
    provider: Provider,  # noqa: F811
) -> None:
    await make_queue(rt, "social", ["messenger"])
    await make_agent(rt, "root", role="admin", queues=["social"])
    await make_agent(rt, "ann", role="agent", queues=["social"])
    _, page = await new_page(browser, dialogs)
    await agent_login(page, live.url, "root")
    await page.goto(f"{live.url}/admin/social")
    rows = page.locator("#accounts tr")
    await expect(rows).to_have_count(4)
    await expect(page.locator(f'tr[data-account="messenger:{PAGE}"]')).to_contain_text("Messenger page")
    await expect(page.locator("#setup")).to_contain_text("http://testserver.local/webhooks/meta")
    await expect(page.locator("#setup")).to_contain_text("http://testserver.local/webhooks/telegram/shop")
    await expect(page.locator("#templates")).to_contain_text("order_update (en_US)")

    await page.get_by_label(f"New access token for messenger {PAGE}").fill("EAAGnewPageToken123")
    async with page.expect_response(lambda r: r.url.endswith("/token") and r.request.method == "PUT") as answer:
        await page.locator(f'tr[data-account="messenger:{PAGE}"]').get_by_role("button", name="Save token").click()
    assert (await answer.value).status == 200
    async with rt.read() as conn:
        stored = (await conn.execute(select(_tokens.c.sealed_token))).scalar_one()
    assert stored.startswith("sealed:v1:") and "EAAGnewPageToken123" not in stored

    # The next reply on the page goes with the new token.
    at = int((utcnow() - timedelta(minutes=1)).timestamp() * 1000)
    event = {
        "sender": {"id": "2400077"},
        "recipient": {"id": PAGE},
        "timestamp": at,
        "message": {"mid": "m_adm", "text": "hi"},
    }
    body = encode({"object": "page", "entry": [{"id": PAGE, "time": at, "messaging": [event]}]})
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as client:
        assert (await client.post("/webhooks/meta", content=body, headers=sign(body))).status_code == 200
        auth = await login(client, "root", "password-123")
        tickets = (await client.get("/api/tickets", headers=auth)).json()["items"]
        r = await client.post(f"/api/tickets/{tickets[0]['id']}/reply", json={"text": "hello"}, headers=auth)
        assert r.status_code == 201, r.text
        for _ in range(300):
            if provider.sent:
                break
            await page.wait_for_timeout(50)
        assert provider.sent[-1].headers["Authorization"] == "Bearer EAAGnewPageToken123"
        # Agents may not read or change the accounts; unknown accounts are named.
        agent = await login(client, "ann", "password-123")
        assert (await client.get("/api/social/accounts", headers=agent)).status_code == 403
        put = {"access_token": "EAAGsomethingElse1"}
        assert (
            await client.put(f"/api/social/accounts/messenger/{PAGE}/token", json=put, headers=agent)
        ).status_code == 403
        missing = await client.put("/api/social/accounts/messenger/NOPE/token", json=put, headers=auth)
        assert missing.status_code == 404
        assert json.dumps((await client.get("/api/social/accounts", headers=auth)).json()).count("EAAG") == 0
    # the reconnection is in the audit log, without the token
    async with rt.read() as conn:
        logged = [(e.actor, e.action, e.target, e.detail) for e in await audit.entries(conn, action="social.")]
    assert logged == [("root", "social.token_replace", f"messenger:{PAGE}", {})]
    assert dialogs.seen == []

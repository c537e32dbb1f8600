"""Mailboxes through the admin API: created, listed without secrets, changed and removed, each change
reaching the running workers; mailboxes from settings are read-only."""

from __future__ import annotations

import httpx

from hub.config import Settings
from hub.runtime import Runtime
from tests.channels.email.conftest import message, wait_until
from tests.channels.email.servers import imap_append
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import service


async def test_a_mailbox_added_through_the_api_starts_fetching_and_can_be_changed_and_removed(
    server: LiveServer, settings: Settings, rt: Runtime
) -> None:
    """POST starts a worker for the new mailbox (its mail becomes tickets in its queue); GET never shows
    passwords; PATCH restarts it with the new settings; DELETE stops it; the settings mailbox cannot be
    shadowed or edited."""
    await make_queue(rt, "support", ["email"])
    await make_queue(rt, "sales", ["email"])
    await make_agent(rt, "root", role="admin")
    await make_agent(rt, "zoe", role="agent", queues=["sales"])
    base = settings.mailboxes[0]
    new = {
        "name": "sales",
        "address": "sales@example.org",
        "queue": "sales",
        "imap_host": "127.0.0.1",
        "imap_port": base.imap_port,
        "imap_tls": False,
        "username": "sales",
        "password": "wrong-first",
        "smtp_host": "127.0.0.1",
        "smtp_port": base.smtp_port,
        "smtp_security": "none",
    }
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        admin = await login(client, "root", "password-123")
        agent = await login(client, "zoe", "password-123")
        assert (await client.post("/api/email/mailboxes", json=new, headers=agent)).status_code == 403
        created = await client.post("/api/email/mailboxes", json=new, headers=admin)
        assert created.status_code == 201, created.text
        assert "password" not in created.json() and created.json()["source"] == "api"
        clash = await client.post("/api/email/mailboxes", json={**new, "name": "support"}, headers=admin)
        assert clash.status_code == 409
        assert (
            await client.patch("/api/email/mailboxes/support", json={"folder": "X"}, headers=admin)
        ).status_code == 409

        async def failing() -> bool:
            boxes = {b["name"]: b for b in (await client.get("/api/email/mailboxes", headers=admin)).json()}
            return bool(boxes["sales"]["error"]) and boxes["support"]["running"]

        await wait_until(failing, what="the sales mailbox to report its login error")
        fixed = await client.patch("/api/email/mailboxes/sales", json={"password": "secret2"}, headers=admin)
        assert fixed.status_code == 200 and "secret2" not in fixed.text

        async def running() -> bool:
            return (await client.get("/api/email/mailboxes/sales", headers=admin)).json()["running"]

        await wait_until(running, what="the sales mailbox to connect")
        await imap_append(base.imap_port, "sales", "secret2", [message("<sales1@example.com>")])

        async def ticket() -> bool:
            return (await client.get("/api/tickets", headers=agent)).json()["total"] == 1

        await wait_until(ticket, what="the sales ticket")
        [item] = (await client.get("/api/tickets", headers=agent)).json()["items"]
        [queue] = [q for q in (await client.get("/api/queues", headers=admin)).json() if q["name"] == "sales"]
        assert item["queue_id"] == queue["id"]

        assert (await client.delete("/api/email/mailboxes/sales", headers=admin)).status_code == 204
        names = [b["name"] for b in (await client.get("/api/email/mailboxes", headers=admin)).json()]
        assert names == ["support"]
        assert server.app.state.email.worker("sales") is None
        assert (await client.delete("/api/email/mailboxes/sales", headers=admin)).status_code == 404
    assert await _count_messages(rt) == 1


async def _count_messages(rt: object) -> int:
    from sqlalchemy import func, select

    async with rt.read() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(select(func.count()).select_from(service.M))).scalar_one())

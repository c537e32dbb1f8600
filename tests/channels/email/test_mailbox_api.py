"""Mailboxes through the admin API: created, listed without secrets, changed and removed, each change
reaching the running workers; mailboxes from settings are read-only."""

from __future__ import annotations

import httpx

from hub.config import Settings
from hub.runtime import Runtime
from tests.channels.email.conftest import message, wait_until
from tests.channels.email.servers import imap_append
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import tables


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
    new = _sales_mailbox(settings, password="wrong-first")
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
        assert server.app.state.channels["email"].service.worker("sales") is None
        assert (await client.delete("/api/email/mailboxes/sales", headers=admin)).status_code == 404
    assert await _count_messages(rt) == 1


def _sales_mailbox(settings: Settings, **passwords: str) -> dict[str, object]:
    """A mailbox for the test IMAP user ``sales`` (password ``secret2``) on the test servers."""
    base = settings.mailboxes[0]
    return {
        "name": "sales",
        "address": "sales@example.org",
        "queue": "sales",
        "imap_host": "127.0.0.1",
        "imap_port": base.imap_port,
        "imap_tls": False,
        "username": "sales",
        "smtp_host": "127.0.0.1",
        "smtp_port": base.smtp_port,
        "smtp_security": "none",
        **passwords,
    }


async def _count_messages(rt: object) -> int:
    from sqlalchemy import func, select

    async with rt.read() as conn:  # type: ignore[attr-defined]
        return int((await conn.execute(select(func.count()).select_from(tables.messages))).scalar_one())


async def _stored_config(rt: Runtime, name: str) -> dict:  # type: ignore[type-arg]
    from sqlalchemy import select

    from channels.email.models import MB

    async with rt.read() as conn:
        return (await conn.execute(select(MB.c.config).where(MB.c.name == name))).scalar_one()


async def test_mailbox_passwords_are_sealed_at_rest_and_a_changed_secret_key_says_what_to_do(
    server: LiveServer, settings: Settings, rt: Runtime
) -> None:
    """The database holds the IMAP and SMTP passwords only sealed under a key derived from the secret key;
    a mailbox stored before sealing is sealed when loaded; one sealed under another secret key is listed
    with an error that says to give its passwords again, and a PATCH with them brings it back."""
    from sqlalchemy import update

    from channels.email.models import MB
    from hub.sealing import Sealer, is_sealed

    await make_queue(rt, "sales", ["email"])
    await make_agent(rt, "root", role="admin")
    new = _sales_mailbox(settings, password="secret2", smtp_password="smtp-pass")
    channel = server.app.state.channels["email"].service
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        admin = await login(client, "root", "password-123")
        assert (await client.post("/api/email/mailboxes", json=new, headers=admin)).status_code == 201
        config = await _stored_config(rt, "sales")
        assert is_sealed(config["password"]) and is_sealed(config["smtp_password"])
        assert "secret2" not in str(config) and "smtp-pass" not in str(config)
        assert channel.worker("sales").box.password.get_secret_value() == "secret2"

        # Stored in plain text by an older version: sealed on the next load, and still works.
        async with rt.db.begin() as conn:
            plain = {**config, "password": "secret2", "smtp_password": "smtp-pass"}
            await conn.execute(update(MB).where(MB.c.name == "sales").values(config=plain))

        async def resealed() -> bool:
            stored = await _stored_config(rt, "sales")
            return is_sealed(stored["password"]) and is_sealed(stored["smtp_password"])

        await wait_until(resealed, what="the mailbox reload to seal the plain passwords")
        config = await _stored_config(rt, "sales")
        assert channel.worker("sales").box.smtp_password.get_secret_value() == "smtp-pass"

        # Sealed under another secret key: not run, listed with what to do; PATCH with the passwords fixes it.
        other = Sealer("another-secret-key")
        async with rt.db.begin() as conn:
            alien = {**config, "password": other.seal("secret2"), "smtp_password": other.seal("smtp-pass")}
            await conn.execute(update(MB).where(MB.c.name == "sales").values(config=alien))

        async def refused_to_run() -> bool:
            return channel.worker("sales") is None

        await wait_until(refused_to_run, what="the mailbox reload to stop the mailbox it cannot open")
        shown = (await client.get("/api/email/mailboxes/sales", headers=admin)).json()
        assert not shown["running"] and "SWITCHBOARD_SECRET_KEY" in shown["error"], shown
        refused = await client.patch("/api/email/mailboxes/sales", json={"folder": "INBOX"}, headers=admin)
        assert refused.status_code == 422 and "password" in refused.json()["detail"][0]["msg"], refused.text
        fixed = await client.patch(
            "/api/email/mailboxes/sales", json={"password": "secret2", "smtp_password": "smtp-pass"}, headers=admin
        )
        assert fixed.status_code == 200, fixed.text

        async def running() -> bool:
            return (await client.get("/api/email/mailboxes/sales", headers=admin)).json()["running"]

        await wait_until(running, what="the sales mailbox to connect again")

"""Message templates edited through the API (``ticketing.templates``): SWITCHBOARD_WHATSAPP_TEMPLATES seeds the
table, admins add, change and delete templates, a deletion outlives a restart, and a reply outside the window
can send exactly the templates in force, filled in."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from hub.config import MessageTemplate, Settings
from hub.db import utcnow
from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import tables
from ticketing.ingest import ingest_batch

SEEDED = MessageTemplate(name="order_update", body="Hello {{1}}, your order {{2}} has news.")


@pytest.fixture
def seeded(settings: Settings) -> Settings:
    return settings.model_copy(update={"whatsapp_templates": [SEEDED]})


@pytest.fixture
def live(seeded: Settings) -> Iterator[LiveServer]:
    server = LiveServer(seeded).start()
    try:
        yield server
    finally:
        server.stop()


async def _whatsapp_ticket(rt: Runtime, *, age: timedelta) -> int:
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="whatsapp",
                external_id="wamid.T1",
                sender=Identity(kind="whatsapp", value="+4915100000077"),
                recipient="1065",
                text="where is it?",
                queue="social",
                received_at=utcnow() - age,
            )
        ],
    )
    assert not isinstance(result, Exception)
    return result.ticket_id


async def test_admins_edit_templates_and_the_reply_path_reads_them(rt: Runtime, live: LiveServer) -> None:
    """The seed is listed; an admin adds one and changes it; a reply in a closed window sends the changed one
    filled in, the window lists it; a deleted one is refused and stays deleted after a restart."""
    await make_queue(rt, "social", ["whatsapp"])
    await make_agent(rt, "root", role="admin", queues=["social"])
    await make_agent(rt, "alice", queues=["social"])
    ticket = await _whatsapp_ticket(rt, age=timedelta(hours=30))
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as c:
        admin, agent = await login(c, "root", "password-123"), await login(c, "alice", "password-123")
        listed = (await c.get("/api/templates", headers=agent)).json()
        assert [(t["name"], t["language"], t["variables"]) for t in listed] == [("order_update", "en_US", 2)]

        new = {"name": "refund_sent", "language": "de_DE", "body": "Hallo {{1}}, Ihr Geld ist unterwegs."}
        assert (await c.post("/api/templates", json=new, headers=agent)).status_code == 403
        made = await c.post("/api/templates", json=new, headers=admin)
        assert made.status_code == 201, made.text
        tid = made.json()["id"]
        assert (await c.post("/api/templates", json=new, headers=admin)).status_code == 409
        changed = await c.patch(
            f"/api/templates/{tid}", json={"body": "Hallo {{1}}, {{2}} EUR sind unterwegs."}, headers=admin
        )
        assert changed.status_code == 200 and changed.json()["variables"] == 2

        window = (await c.get(f"/api/tickets/{ticket}/window", headers=admin)).json()
        assert window["status"] == "closed"
        assert sorted(t["name"] for t in window["templates"]) == ["order_update", "refund_sent"]
        sent = await c.post(
            f"/api/tickets/{ticket}/reply",
            json={"template": {"name": "refund_sent", "variables": ["Maria", "42"]}},
            headers=admin,
        )
        assert sent.status_code == 201, sent.text
        assert sent.json()["text"] == "Hallo Maria, 42 EUR sind unterwegs."

        # Twilio's Content SID: set, carried by the template's reply for the Twilio sender, and cleared by null.
        sid = "HX" + "ab" * 16
        with_sid = await c.patch(f"/api/templates/{tid}", json={"content_sid": sid}, headers=admin)
        assert with_sid.status_code == 200 and with_sid.json()["content_sid"] == sid
        again = await c.post(
            f"/api/tickets/{ticket}/reply",
            json={"template": {"name": "refund_sent", "variables": ["Ana", "7"]}},
            headers=admin,
        )
        assert again.status_code == 201, again.text
        async with rt.read() as conn:
            meta = (
                await conn.execute(select(tables.messages.c.meta).where(tables.messages.c.id == again.json()["id"]))
            ).scalar_one()
        assert meta["template"]["content_sid"] == sid
        cleared = await c.patch(f"/api/templates/{tid}", json={"content_sid": None}, headers=admin)
        assert cleared.status_code == 200 and cleared.json()["content_sid"] is None

        assert (await c.delete("/api/templates/1", headers=agent)).status_code == 403
        seeded_id = listed[0]["id"]
        assert (await c.delete(f"/api/templates/{seeded_id}", headers=admin)).status_code == 204
        refused = await c.post(
            f"/api/tickets/{ticket}/reply",
            json={"template": {"name": "order_update", "variables": ["Maria", "A-1"]}},
            headers=admin,
        )
        assert refused.status_code == 422 and refused.json()["code"] == "unknown_template"
        assert (await c.delete(f"/api/templates/{seeded_id}", headers=admin)).status_code == 404

    restarted = LiveServer(live.settings).start()  # the seed runs again: the deletion stands
    try:
        async with httpx.AsyncClient(base_url=restarted.url, timeout=10) as c:
            admin = await login(c, "root", "password-123")
            names = [t["name"] for t in (await c.get("/api/templates", headers=admin)).json()]
            assert names == ["refund_sent"]
            # Added again, the deleted one comes back.
            again = await c.post("/api/templates", json={"name": "order_update", "body": SEEDED.body}, headers=admin)
            assert again.status_code == 201 and again.json()["id"] == seeded_id
    finally:
        restarted.stop()


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Bad Name", "body": "x"},
        {"name": "ok", "body": "Hi {{2}}"},  # a gap: {{1}} is missing
        {"name": "ok", "body": "Hi", "channels": ["telegram"]},  # Telegram has no templates
        {"name": "ok", "body": ""},
        {"name": "ok", "body": "x" * 1025},
        {"name": "ok", "language": "english please", "body": "x"},
        {"name": "ok", "body": "x", "content_sid": "HX123"},  # not a Content SID
    ],
)
async def test_bad_templates_are_refused_with_the_reason(
    rt: Runtime, live: LiveServer, body: dict[str, object]
) -> None:
    """Whatever Meta could not have approved is a 422 naming the field, and nothing is stored."""
    await make_agent(rt, "root", role="admin")
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as c:
        admin = await login(c, "root", "password-123")
        r = await c.post("/api/templates", json=body, headers=admin)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"][0] == "body"
        assert [t["name"] for t in (await c.get("/api/templates", headers=admin)).json()] == ["order_update"]


async def test_the_old_twilio_template_settings_still_seed_with_a_warning(
    rt: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment that still sets the removed SWITCHBOARD_TWILIO_WHATSAPP_TEMPLATES (old shape: text,
    variables) and _WINDOW_HOURS keeps its templates, sendable through Twilio's Content API by their
    content_sid, and the start warns that both names are deprecated."""
    old = [{"name": "Order update", "content_sid": "HX" + "a" * 32, "text": "Hi {{1}}, order {{2}}.", "variables": []}]
    monkeypatch.setenv("SWITCHBOARD_TWILIO_WHATSAPP_TEMPLATES", json.dumps(old))
    monkeypatch.setenv("SWITCHBOARD_TWILIO_WHATSAPP_WINDOW_HOURS", "48")
    from_env = Settings(**{k: v for k, v in settings.model_dump().items() if not k.startswith("twilio_whatsapp")})
    await make_queue(rt, "social", ["whatsapp"])
    await make_agent(rt, "alice", queues=["social"])
    server = LiveServer(from_env)
    with caplog.at_level(logging.WARNING, logger="hub.app"):
        server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            listed = (await c.get("/api/templates", headers=await login(c, "alice", "password-123"))).json()
    finally:
        server.stop()
    assert [(t["name"], t["body"], t["content_sid"]) for t in listed] == [
        ("order_update", "Hi {{1}}, order {{2}}.", "HX" + "a" * 32)
    ]
    warned = [r.getMessage() for r in caplog.records if r.name == "hub.app"]
    assert any("SWITCHBOARD_TWILIO_WHATSAPP_TEMPLATES is deprecated" in w for w in warned), warned
    assert any("SWITCHBOARD_TWILIO_WHATSAPP_WINDOW_HOURS is deprecated and ignored" in w for w in warned), warned

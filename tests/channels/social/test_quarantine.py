"""The social quarantine for people: admins list the messages ingest refused (by channel and account, a page at a
time), read one as text, try it again (it becomes a message of a ticket once, or stays with the new reason) or
throw it away; each action is in the audit log; agents may do none of it."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from channels.social import meta
from channels.social.models import SocialQuarantine
from hub.audit import AuditEntry
from hub.db import insert_rows, utcnow
from hub.runtime import Runtime
from tests.channels.social.conftest import NUMBER, encode, sign, whatsapp_text
from tests.conftest import login, make_agent
from ticketing.tables import messages as M

Q = SocialQuarantine.__table__  # type: ignore[attr-defined]
A = AuditEntry.__table__  # type: ignore[attr-defined]
REFUSED = "not-a-phone-number"


async def _refused(hub: httpx.AsyncClient, wamids: list[str], text: str = "kept text") -> None:
    """A batch from a sender ingest cannot read: every message of it is quarantined."""
    entries = [whatsapp_text(w, f"{text} {w}", sender=REFUSED)["entry"][0] for w in wamids]
    body = encode({"object": "whatsapp_business_account", "entry": entries})
    r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert r.status_code == 200, r.text
    assert r.json()["quarantined"] == len(wamids)


async def stored_messages(rt: Runtime) -> list[Any]:
    async with rt.read() as conn:
        return list(await conn.execute(select(M).order_by(M.c.id)))


async def keep_quarantined(rt: Runtime, wamid: str, sender: str, text: str) -> None:
    """A WhatsApp message quarantined as the webhook quarantines one (the parsed message, whole), whose cause is
    gone now: ingest refused it then (its sender read as no phone number, under an earlier region setting)."""
    payload = whatsapp_text(wamid, text, sender=sender)
    parsed = meta.parse(payload, {}, {NUMBER: meta.Account(NUMBER, "social", "whatsapp")})
    [message] = parsed.messages
    row = {
        "channel": "whatsapp",
        "external_id": wamid,
        "account": NUMBER,
        "reason": f"invalid_identity: {sender!r} is not a phone number",
        "message": message.model_dump(mode="json"),
        "created_at": utcnow(),
    }
    async with rt.db.begin() as conn:
        await insert_rows(conn, Q, [row])


async def _audit(rt: Runtime) -> list[Any]:
    async with rt.read() as conn:
        return list(await conn.execute(select(A).where(A.c.action.startswith("social_quarantine.")).order_by(A.c.id)))


async def test_admin_lists_filters_and_pages_the_quarantine(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """Three refused WhatsApp messages: listed newest first with their reason and sender, filtered by channel and
    account, a page at a time with the total; agents are refused."""
    await make_agent(rt, "root", role="admin")
    await make_agent(rt, "ann", role="agent")
    await _refused(hub, ["wamid.L1", "wamid.L2", "wamid.L3"])
    async with httpx.AsyncClient(base_url=str(hub.base_url), timeout=30) as client:
        admin = await login(client, "root", "password-123")
        page = (await client.get("/api/social/quarantine", headers=admin)).json()
        assert page["total"] == 3 and page["offset"] == 0
        assert sorted(i["external_id"] for i in page["items"]) == ["wamid.L1", "wamid.L2", "wamid.L3"]
        first = page["items"][0]
        assert first["channel"] == "whatsapp" and first["account"] == NUMBER
        assert first["reason"].startswith("invalid_identity: ") and REFUSED in first["sender"]
        assert first["text"].startswith("kept text wamid.L")
        both = (await client.get("/api/social/quarantine", params={"limit": 2}, headers=admin)).json()
        rest = (await client.get("/api/social/quarantine", params={"limit": 2, "offset": 2}, headers=admin)).json()
        assert len(both["items"]) == 2 and len(rest["items"]) == 1 and both["total"] == rest["total"] == 3
        seen = {i["external_id"] for i in both["items"] + rest["items"]}
        assert seen == {"wamid.L1", "wamid.L2", "wamid.L3"}
        for params, total in (
            ({"channel": "whatsapp"}, 3),
            ({"channel": "telegram"}, 0),
            ({"account": NUMBER}, 3),
            ({"account": "PAGE_ID"}, 0),
        ):
            r = await client.get("/api/social/quarantine", params=params, headers=admin)
            assert r.status_code == 200 and r.json()["total"] == total, (params, r.text)
        assert (await client.get("/api/social/quarantine", params={"channel": "fax"}, headers=admin)).status_code == 422
        agent = await login(client, "ann", "password-123")
        assert (await client.get("/api/social/quarantine", headers=agent)).status_code == 403
        key = {"channel": "whatsapp", "external_id": "wamid.L1"}
        assert (await client.post("/api/social/quarantine/reprocess", json=key, headers=agent)).status_code == 403
        assert (await client.post("/api/social/quarantine/discard", json=key, headers=agent)).status_code == 403
        shown = await client.get("/api/social/quarantine/message", params=key, headers=agent)
        assert shown.status_code == 403


async def test_a_quarantined_message_is_shown_as_text(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """The kept message is answered as JSON text inside a JSON string (markup in it stays characters), with the
    reason; an unknown one is a 404 naming it."""
    await make_agent(rt, "root", role="admin")
    await _refused(hub, ["wamid.HTML"], text="<img src=x onerror=alert(1)>")
    async with httpx.AsyncClient(base_url=str(hub.base_url), timeout=30) as client:
        admin = await login(client, "root", "password-123")
        key = {"channel": "whatsapp", "external_id": "wamid.HTML"}
        r = await client.get("/api/social/quarantine/message", params=key, headers=admin)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        detail = r.json()
        assert '"text": "<img src=x onerror=alert(1)> wamid.HTML"' in detail["raw"]
        assert f'"value": "+{REFUSED}"' in detail["raw"]
        assert detail["reason"].startswith("invalid_identity: ")
        missing = await client.get(
            "/api/social/quarantine/message", params={"channel": "whatsapp", "external_id": "nope"}, headers=admin
        )
        assert missing.status_code == 404 and missing.json()["code"] == "quarantine_not_found"


async def test_reprocess_stores_the_message_once_and_it_leaves_quarantine(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """A kept message whose cause is gone: trying it again makes it a message of a new ticket as the webhook
    would have, it leaves quarantine, and the audit log says who did it; asked again it is no longer there."""
    await make_agent(rt, "root", role="admin")
    await keep_quarantined(rt, "wamid.FIX", "4915100000077", "please answer me")
    async with httpx.AsyncClient(base_url=str(hub.base_url), timeout=30) as client:
        admin = await login(client, "root", "password-123")
        key = {"channel": "whatsapp", "external_id": "wamid.FIX"}
        r = await client.post("/api/social/quarantine/reprocess", json=key, headers=admin)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["ok"] is True and answer["created"] is True and answer["reason"] is None
        stored = await stored_messages(rt)
        assert [(m.channel, m.external_id, m.text, m.ticket_id) for m in stored] == [
            ("whatsapp", "wamid.FIX", "please answer me", answer["ticket_id"])
        ]
        assert stored[0].meta["account"] == NUMBER
        assert (await client.get("/api/social/quarantine", headers=admin)).json()["total"] == 0
        again = await client.post("/api/social/quarantine/reprocess", json=key, headers=admin)
        assert again.status_code == 404
    [entry] = await _audit(rt)
    assert (entry.actor, entry.action, entry.target) == (
        "root",
        "social_quarantine.reprocess",
        "social_quarantine:whatsapp:wamid.FIX",
    )
    assert entry.detail["ok"] is True and entry.detail["message_id"] == answer["message_id"]


async def test_reprocess_of_a_message_stored_meanwhile_stores_nothing_twice(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """The provider sent the message again and ingest took it: trying the kept copy finds it (``created`` false),
    stores no second message, and the copy leaves quarantine."""
    await make_agent(rt, "root", role="admin")
    await keep_quarantined(rt, "wamid.TWICE", "4915100000078", "sent twice")
    body = encode(whatsapp_text("wamid.TWICE", "sent twice", sender="4915100000078"))
    assert (await hub.post("/webhooks/meta", content=body, headers=sign(body))).json()["stored"] == 1
    async with httpx.AsyncClient(base_url=str(hub.base_url), timeout=30) as client:
        admin = await login(client, "root", "password-123")
        r = await client.post(
            "/api/social/quarantine/reprocess",
            json={"channel": "whatsapp", "external_id": "wamid.TWICE"},
            headers=admin,
        )
        assert r.status_code == 200 and r.json()["ok"] is True and r.json()["created"] is False
    assert [m.external_id for m in await stored_messages(rt)] == ["wamid.TWICE"]
    async with rt.read() as conn:
        assert (await conn.execute(select(Q))).all() == []


async def test_reprocess_refused_again_keeps_it_with_the_new_reason_and_discard_removes_it(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """Ingest refuses the message again: it stays, its reason is the new refusal's, nothing is stored. Then it is
    discarded: gone, and a second discard is a 404. Both actions are audited."""
    await make_agent(rt, "root", role="admin")
    await _refused(hub, ["wamid.BAD"])
    async with rt.db.begin() as conn:
        await conn.execute(Q.update().values(reason="an older reason"))
    async with httpx.AsyncClient(base_url=str(hub.base_url), timeout=30) as client:
        admin = await login(client, "root", "password-123")
        key = {"channel": "whatsapp", "external_id": "wamid.BAD"}
        r = await client.post("/api/social/quarantine/reprocess", json=key, headers=admin)
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is False and r.json()["reason"].startswith("invalid_identity: ")
        async with rt.read() as conn:
            [kept] = (await conn.execute(select(Q))).all()
        assert kept.reason.startswith("invalid_identity: ") and REFUSED in kept.reason
        assert await stored_messages(rt) == []
        gone = await client.post("/api/social/quarantine/discard", json=key, headers=admin)
        assert gone.status_code == 204
        assert (await client.get("/api/social/quarantine", headers=admin)).json()["total"] == 0
        assert (await client.post("/api/social/quarantine/discard", json=key, headers=admin)).status_code == 404
        bad = await client.post(
            "/api/social/quarantine/discard", json={"channel": "email", "external_id": "x"}, headers=admin
        )
        assert bad.status_code == 422
    entries = await _audit(rt)
    assert [(e.actor, e.action) for e in entries] == [
        ("root", "social_quarantine.reprocess"),
        ("root", "social_quarantine.discard"),
    ]
    assert entries[0].detail["ok"] is False and entries[0].detail["old_reason"] == "an older reason"
    assert entries[1].target == "social_quarantine:whatsapp:wamid.BAD"

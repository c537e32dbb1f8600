"""Hostile and malformed mail through the real worker: every recorded message becomes a ticket or goes to
quarantine, none stops the mailbox, no script survives sanitizing; the quarantine can be listed and
reprocessed through the admin API."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from channels.email.models import QT
from hub.config import Settings
from hub.files import FileStore
from hub.runtime import Runtime
from tests.channels.email.conftest import FIXTURES, SUPPORT, Mail, message, wait_until
from tests.channels.email.servers import imap_append
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import tables

EXPECTED_QUARANTINE = {"binary_garbage.eml", "huge_header_block.eml", "no_sender.eml"}
FORBIDDEN_IN_HTML = (
    "<script",
    "onerror",
    "onload",
    "onclick",
    "javascript:",
    "<iframe",
    "<svg",
    "<object",
    "<embed",
    "<form",
    "<base",
    "<meta",
    "<style",
    "expression(",
    "data:text/html",
)


async def test_hostile_corpus_ends_as_tickets_or_in_quarantine_and_never_stops_the_worker(mail: Mail) -> None:
    """Unknown and lying charsets, broken MIME boundaries, huge headers, nested message/rfc822, raw 8-bit
    headers, a missing Message-ID, HTML with scripts and event handlers: each mail is stored as a message or
    quarantined, the worker goes on to the next mail, and the stored HTML carries no active content."""
    files = sorted(FIXTURES.glob("*.eml"))
    assert len(files) >= 20
    await mail.wait_connected()
    await mail.append(*(f.read_bytes() for f in files))
    await mail.append(message("<after-the-storm@example.com>", sender="calm@example.com"))

    async def sentinel() -> bool:
        return await mail.count(tables.messages, tables.messages.c.external_id == "<after-the-storm@example.com>") == 1

    await wait_until(sentinel, timeout=20, what="the ordinary mail after the hostile ones")
    worker = mail.channel.worker("support")
    assert worker is not None and worker.connected
    stored = await mail.count(tables.messages)
    quarantined = await mail.rows(select(QT))
    assert stored + len(quarantined) == len(files) + 1
    assert {q.uid for q in quarantined} == {files.index(f) + 1 for f in files if f.name in EXPECTED_QUARANTINE}
    assert all(q.error for q in quarantined)

    messages = await mail.rows(select(tables.messages))
    for m in messages:
        html = (m.html or "").lower()
        for needle in FORBIDDEN_IN_HTML:
            assert needle not in html, (m.external_id, needle, m.html)
        assert "\x00" not in m.text and "\x00" not in (m.subject or "")
    by_id = {m.external_id: m for m in messages}
    assert "Café crème" in by_id["<lying-charset@hostile.example>"].text
    assert "Grüße" in by_id["<raw-8bit@hostile.example>"].subject
    assert len(by_id["<huge-header@hostile.example>"].subject) <= 500
    nested = by_id["<nested@hostile.example>"]
    assert [a["content_type"] for a in nested.attachments] == ["message/rfc822"]
    inline = by_id["<inline-image@hostile.example>"]
    [image] = inline.attachments
    assert image["inline"] and f"/api/email/attachments/{image['sha256']}" in inline.html
    assert "/" not in image["filename"]
    generated = [m for m in messages if m.external_id.endswith("@missing-message-id.invalid>")]
    assert len(generated) == 1 and generated[0].sender == "noid@example.com"


async def test_quarantine_can_be_listed_downloaded_and_reprocessed_by_an_admin(
    server: LiveServer, settings: Settings, rt: Runtime
) -> None:
    """An admin sees quarantined mail with its reason and downloads it as kept; a mail over the size limit is
    quarantined from its header alone, never downloaded whole; reprocessing answers whether the mail now
    becomes a message (here: one an earlier parser refused); agents may not touch any of it."""
    await make_queue(rt, "support", ["email"])
    await make_agent(rt, "root", role="admin")
    await make_agent(rt, "zoe", role="agent", queues=["support"])
    settings.email_max_message_bytes = 2_000
    big = message("<big@example.com>", body="x" * 5_000)
    nobody = b"To: support@example.org\r\nSubject: who\r\nMessage-ID: <who@example.com>\r\n\r\nbody\r\n"
    await imap_append(settings.mailboxes[0].imap_port, "support", "secret", [big, nobody])
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        admin = await login(client, "root", "password-123")
        agent = await login(client, "zoe", "password-123")

        async def listed() -> bool:
            return len((await client.get("/api/email/quarantine", headers=admin)).json()) == 2

        await wait_until(listed, what="the quarantined mail")
        assert (await client.get("/api/email/quarantine", headers=agent)).status_code == 403
        items = {q["uid"]: q for q in (await client.get("/api/email/quarantine", headers=admin)).json()}
        assert "only its header is kept" in items[1]["error"] and items[1]["mailbox"] == "support"
        assert "sender" in items[2]["error"]
        header = await client.get(f"/api/email/quarantine/{items[1]['id']}/raw", headers=admin)
        assert header.status_code == 200 and header.content.startswith(b"From:") and b"xxxx" not in header.content
        raw = await client.get(f"/api/email/quarantine/{items[2]['id']}/raw", headers=admin)
        assert raw.content == nobody
        again = (await client.post(f"/api/email/quarantine/{items[2]['id']}/reprocess", headers=admin)).json()
        assert again["ok"] is False and "sender" in again["error"]

        # A mail an earlier version could not parse, kept in quarantine, reprocessed after the fix.
        fixed = message("<fixed@example.com>", body="Now readable.")
        sha = FileStore(settings.attachment_dir).put(fixed)
        async with rt.db.begin() as conn:
            await conn.execute(
                QT.insert().values(mailbox="support", uid=None, raw_sha256=sha, size=len(fixed), error="old bug")
            )
        [old] = [
            q for q in (await client.get("/api/email/quarantine", headers=admin)).json() if q["error"] == "old bug"
        ]
        done = (await client.post(f"/api/email/quarantine/{old['id']}/reprocess", headers=admin)).json()
        assert done["ok"] is True and done["ticket_id"]
        ticket = (await client.get(f"/api/tickets/{done['ticket_id']}", headers=admin)).json()
        assert ticket["messages"][0]["text"].startswith("Now readable.")
        assert len((await client.get("/api/email/quarantine", headers=admin)).json()) == 2
        history = (await client.get("/api/email/quarantine?include_reprocessed=true", headers=admin)).json()
        assert [q["message_id"] for q in history if q["id"] == old["id"]] == [done["message_id"]]
        missing = await client.post("/api/email/quarantine/999/reprocess", headers=admin)
        assert missing.status_code == 404 and missing.json()["code"] == "quarantine_not_found"


async def test_attachments_are_served_to_agents_only(server: LiveServer, settings: Settings, rt: Runtime) -> None:
    """A stored attachment is downloadable by a logged-in agent by its hash, never by anonymous visitors,
    and as an opaque download that a browser will not render as a page."""
    await make_queue(rt, "support", ["email"])
    await make_agent(rt, "zoe", role="agent", queues=["support"])
    raw = (FIXTURES / "inline_image.eml").read_bytes()
    await imap_append(settings.mailboxes[0].imap_port, "support", "secret", [raw])
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        agent = await login(client, "zoe", "password-123")

        async def ticket() -> bool:
            return (await client.get("/api/tickets", headers=agent)).json()["total"] == 1

        await wait_until(ticket, what="the ticket")
        [item] = (await client.get("/api/tickets", headers=agent)).json()["items"]
        detail = (await client.get(f"/api/tickets/{item['id']}", headers=agent)).json()
        [att] = detail["messages"][0]["attachments"]
        r = await client.get(att["url"], headers=agent)
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        assert r.headers["x-content-type-options"] == "nosniff"
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as anonymous:
            assert (await anonymous.get(att["url"])).status_code == 401
        assert (await client.get("/api/email/attachments/" + "0" * 64, headers=agent)).status_code == 404
        assert (await client.get("/api/email/attachments/..%2F..%2Fetc", headers=agent)).status_code == 404


async def test_mail_with_nul_characters_becomes_a_clean_ticket(mail: Mail) -> None:
    """NUL characters that MIME decoding yields (an encoded-word header, a base64 body, a quoted-printable HTML
    part, an attachment's name) are cleaned as the message is built, so the mail becomes a ticket on either
    database (PostgreSQL refused the text), and the mailbox goes on with the next mail."""
    import base64

    raw = "\r\n".join(
        [
            "From: =?utf-8?q?Ann=00_Customer?= <nul@example.com>",
            f"To: {SUPPORT}",
            "Subject: =?utf-8?q?Printer=00_on_fire?=",
            "Message-ID: <nul-chars@example.com>",
            "Date: Mon, 23 Nov 2026 07:00:00 +0000",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="b1"',
            "",
            "--b1",
            'Content-Type: multipart/alternative; boundary="b2"',
            "",
            "--b2",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: base64",
            "",
            base64.b64encode(b"Please\x00 help\x00.").decode(),
            "--b2",
            "Content-Type: text/html; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "<p>Please=00 help</p>",
            "--b2--",
            "--b1",
            "Content-Type: application/octet-stream",
            "Content-Disposition: attachment; filename*=utf-8''re%00port.bin",
            "Content-Transfer-Encoding: base64",
            "",
            base64.b64encode(b"\x00\x01\x02").decode(),
            "--b1--",
            "",
        ]
    ).encode()
    await mail.wait_connected()
    await mail.append(raw, message("<after-nul@example.com>", sender="calm@example.com"))

    async def both() -> bool:
        return await mail.count(tables.messages) == 2

    await wait_until(both, timeout=20, what="the mail with NULs and the one after it")
    async with mail.rt.read() as conn:
        nul = tables.messages.c.external_id == "<nul-chars@example.com>"
        row = (await conn.execute(select(tables.messages).where(nul))).one()
        ticket = (await conn.execute(select(tables.tickets).where(tables.tickets.c.id == row.ticket_id))).one()
    assert row.text == "Please help." and "\x00" not in (row.html or "")
    assert ticket.subject == "Printer on fire"
    assert [a["filename"] for a in row.attachments] == ["report.bin"]
    assert not await mail.rows(select(QT))

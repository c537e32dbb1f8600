"""Stored files are served only to who may see a message carrying them (``hub.file_access``): through every
channel's file route, on both databases; the core records which messages carry which files at ingest and
reply time, and the migration fills the record from the messages stored before it."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from hub.config import Settings
from hub.db import Database, utcnow
from hub.file_access import (
    AttachmentNotUploaded,
    Conversation,
    FileNotFound,
    may_read_file,
    record_upload,
    require_attachable,
    require_readable_file,
)
from hub.files import carried_files
from hub.messages import Attachment, Identity, InboundMessage
from hub.migrate import upgrade
from hub.principals import Principal
from hub.runtime import Runtime
from tests.channels.webchat.test_protocol import chat_url, png, recv, say, session
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing import message_files, tables
from ticketing.ingest import ingest_batch
from ticketing.models import Direction

ROUTES = ("/api/chat/attachments/{sha}", "/api/email/attachments/{sha}")


@pytest.fixture
def live(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(settings.model_copy(update={"attachment_dir": tmp_path / "files"})).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as c:
        yield c


async def _statuses(http: httpx.AsyncClient, sha: str, headers: dict[str, str] | None = None) -> list[int]:
    return [(await http.get(route.format(sha=sha), headers=headers or {})).status_code for route in ROUTES]


async def test_a_chat_file_is_served_to_its_queue_and_visitor_and_refused_to_another_queue(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """A visitor sends an image in a support chat: an agent of the support queue and the visitor get it, an
    agent of the billing queue and another visitor get 404 through both the chat and the email file route (a
    hash is no key), anonymous requests are refused. Transferred to billing, the ticket takes its file along."""
    await make_queue(rt, "support", ["webchat"])
    billing = await make_queue(rt, "billing", ["email"])
    await make_agent(rt, "sam", queues=["support"])
    await make_agent(rt, "bill", queues=["billing"])
    visitor, other = await session(http), await session(http, name="Olga")
    upload = await http.post(
        "/api/chat/attachments",
        files={"file": ("pic.png", png(), "image/png")},
        headers={"Authorization": f"Bearer {visitor['token']}"},
    )
    assert upload.status_code == 201, upload.text
    sha = upload.json()["sha256"]
    async with connect(chat_url(live, visitor["token"])) as ws:
        await recv(ws, "hello")
        ack = await say(ws, "f1", "my screenshot", attachments=[{"sha256": sha, "filename": "pic.png"}])
    sam, bill = await login(http, "sam", "password-123"), await login(http, "bill", "password-123")

    assert await _statuses(http, sha, sam) == [200, 200]
    assert await _statuses(http, sha, bill) == [404, 404]
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as anonymous:  # no session cookie
        # Without a login: the chat route asks for a visitor token (403 ``unauthorized``), the email route 401.
        assert await _statuses(anonymous, sha) == [403, 401]
        mine = await anonymous.get(ROUTES[0].format(sha=sha), params={"token": visitor["token"]})
        assert (mine.status_code, mine.content) == (200, png())
        theirs = await anonymous.get(ROUTES[0].format(sha=sha), params={"token": other["token"]})
        assert (theirs.status_code, theirs.json()["code"]) == (404, "file_not_found")
    # A file nobody sent is refused the same way, so a refusal tells nothing about what is stored.
    assert await _statuses(http, hashlib.sha256(b"never sent").hexdigest(), sam) == [404, 404]

    assert ack["message_id"]
    [item] = (await http.get("/api/tickets", headers=sam)).json()["items"]
    moved = await http.post(f"/api/tickets/{item['id']}/transfer", json={"queue_id": billing}, headers=sam)
    assert moved.status_code == 200, moved.text
    assert await _statuses(http, sha, bill) == [200, 200]
    assert await _statuses(http, sha, sam) == [404, 404]


async def _upload(http: httpx.AsyncClient, token: str, data: bytes) -> str:
    r = await http.post(
        "/api/chat/attachments",
        files={"file": ("pic.png", data, "image/png")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


async def _refused(ws: ClientConnection, client_id: str, sha: str) -> None:
    """A message carrying ``sha`` gets the ``attachment_not_uploaded`` error naming it, and no ack."""
    ref = {"sha256": sha, "filename": "mine.png"}
    await ws.send(json.dumps({"type": "message", "client_id": client_id, "text": "look", "attachments": [ref]}))
    error = await recv(ws, "error")
    assert (error["code"], error["client_id"]) == ("attachment_not_uploaded", client_id), error
    assert "uploaded in this conversation" in error["message"]


async def test_a_visitor_cannot_attach_another_conversations_file_by_its_hash(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """A visitor who knows the hash of a file sent in another conversation (of the same queue) names it in a
    message: refused with ``attachment_not_uploaded`` before anything is stored, the same answer as for a file
    never stored, and the file stays unreadable with their token; the socket goes on working. Once they upload
    the same bytes themselves (they have the file, then) it is theirs to send."""
    await make_queue(rt, "support", ["webchat"])
    victim, attacker = await session(http), await session(http, name="Mallory")
    sha = await _upload(http, victim["token"], png())
    async with connect(chat_url(live, victim["token"])) as ws:
        await recv(ws, "hello")
        await say(ws, "v1", "my passport", attachments=[{"sha256": sha, "filename": "passport.png"}])

    async with connect(chat_url(live, attacker["token"])) as ws:
        await recv(ws, "hello")
        await _refused(ws, "a1", sha)
        await _refused(ws, "a2", hashlib.sha256(b"never stored").hexdigest())
        state = await rt.ports.conversations.state(channel="webchat", thread_key=attacker["conversation_id"])
        assert state.messages == [] and state.tickets == []
        read = await http.get(f"/api/chat/attachments/{sha}", params={"token": attacker["token"]})
        assert (read.status_code, read.json()["code"]) == (404, "file_not_found")
        assert (await say(ws, "a3", "still here"))["message_id"]
        assert await _upload(http, attacker["token"], png()) == sha
        assert (await say(ws, "a4", "", attachments=[{"sha256": sha, "filename": "x.png"}]))["message_id"]
    state = await rt.ports.conversations.state(channel="webchat", thread_key=attacker["conversation_id"])
    assert [m.text for m in state.messages] == ["still here", ""]


async def test_an_agent_of_another_queue_cannot_attach_a_chat_file_to_their_queue(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """An agent of billing who learned the hash of a file sent in a support chat opens a chat of their own into
    billing and names it: refused, nothing stored in billing, and the file stays unreadable to them through
    both file routes and through their visitor token."""
    await make_queue(rt, "support", ["webchat"])
    await make_queue(rt, "billing", ["webchat"])
    await make_agent(rt, "bill", queues=["billing"])
    visitor = await session(http)
    sha = await _upload(http, visitor["token"], png())
    async with connect(chat_url(live, visitor["token"])) as ws:
        await recv(ws, "hello")
        await say(ws, "v1", "invoice scan", attachments=[{"sha256": sha, "filename": "scan.png"}])

    bill = await login(http, "bill", "password-123")
    own = await session(http, name="Bill", queue="billing")
    async with connect(chat_url(live, own["token"])) as ws:
        await recv(ws, "hello")
        await _refused(ws, "b1", sha)
    assert (await http.get("/api/tickets", headers=bill)).json()["items"] == []
    assert await _statuses(http, sha, bill) == [404, 404]
    read = await http.get(f"/api/chat/attachments/{sha}", params={"token": own["token"]})
    assert read.status_code == 404


async def test_a_conversation_attaches_its_uploads_and_files_its_messages_carry(rt: Runtime) -> None:
    """What a new message of a conversation may carry (``require_attachable``): files uploaded in it (once
    recorded), files a message of it its customer sees carries; not another conversation's, not a file only an
    internal note carries, not a malformed hash."""
    from ticketing.replies import add_note

    await make_queue(rt, "support", ["webchat"])
    sent, uploaded, noted = (hashlib.sha256(x).hexdigest() for x in (b"sent", b"uploaded", b"noted"))
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="webchat",
                external_id="k1:m1",
                sender=Identity(kind="webchat", value="visitor-k1"),
                attachments=[Attachment(filename="s.png", content_type="image/png", size=1, sha256=sent)],
                thread_key="k1",
            )
        ],
    )
    assert not isinstance(result, Exception), result
    root = await make_agent(rt, "root", role="admin")
    admin = Principal(agent_id=root, username="root", display_name="Root", role="admin", queue_ids=frozenset())
    note = await add_note(rt, ticket_id=result.ticket_id, principal=admin, text="internal file")
    async with rt.write() as tx:
        await message_files.record(tx.conn, [{"id": note.id, "attachments": [{"sha256": noted}], "meta": {}}])
    mine, theirs = Conversation("webchat", "k1"), Conversation("webchat", "k2")
    await record_upload(rt, sha256=uploaded, conversation=mine)
    await record_upload(rt, sha256=uploaded, conversation=mine)  # again: still one upload, no error

    await require_attachable(rt, sha256s=[sent, uploaded], conversation=mine)
    await require_attachable(rt, sha256s=[], conversation=theirs)
    for refused, conversation in ((sent, theirs), (uploaded, theirs), (noted, mine), ("../etc", mine)):
        with pytest.raises(AttachmentNotUploaded):
            await require_attachable(rt, sha256s=[sent, refused], conversation=conversation)
    assert await rt.ports.conversations.attachable(channel="webchat", thread_key="k1", sha256s=[sent, noted]) == {sent}


async def test_email_attachments_and_raw_mail_follow_the_ticket(rt: Runtime) -> None:
    """Ingest records an email's attachments, inline images and raw bytes: an agent of the mailbox's queue may
    read them, an agent of another queue may not, a supervisor may; the email's thread is no chat visitor's."""
    await make_queue(rt, "support", ["email"])
    other_queue = await make_queue(rt, "billing", ["email"])
    support_id = await make_queue(rt, "spare", ["email"])
    attachment, inline, raw = (hashlib.sha256(x).hexdigest() for x in (b"pdf", b"logo", b"raw mail"))
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id="<files@example.com>",
                sender=Identity(kind="email", value="ann@example.com"),
                subject="Invoice",
                queue="support",
                attachments=[
                    Attachment(filename="a.pdf", content_type="application/pdf", size=3, sha256=attachment),
                    Attachment(filename="l.png", content_type="image/png", size=4, sha256=inline, inline=True),
                ],
                metadata={"raw_sha256": raw, "mailbox": "support"},
            )
        ],
    )
    assert not isinstance(result, Exception), result
    async with rt.read() as conn:
        queue_id = (await conn.execute(select(tables.queues.c.id).where(tables.queues.c.name == "support"))).scalar()
    support = Principal(agent_id=7, username="s", display_name="S", role="agent", queue_ids=frozenset({queue_id}))
    billing = Principal(agent_id=8, username="b", display_name="B", role="agent", queue_ids=frozenset({other_queue}))
    spare = Principal(agent_id=9, username="x", display_name="X", role="agent", queue_ids=frozenset({support_id}))
    boss = Principal(agent_id=10, username="v", display_name="V", role="supervisor", queue_ids=frozenset())
    for sha in (attachment, inline, raw):
        assert await rt.ports.tickets.may_read_file(principal=support, sha256=sha)
        assert await may_read_file(rt, sha256=sha, principal=boss)
        for outsider in (billing, spare):
            assert not await may_read_file(rt, sha256=sha, principal=outsider)
            with pytest.raises(FileNotFound):
                await require_readable_file(rt, sha256=sha, principal=outsider)
        assert not await may_read_file(rt, sha256=sha, conversation=Conversation("webchat", "ann@example.com"))
    assert not await may_read_file(rt, sha256="../../etc/passwd", principal=boss)
    assert not await may_read_file(rt, sha256=attachment)


async def test_a_visitor_never_reads_the_files_of_internal_notes(rt: Runtime) -> None:
    """A file carried only by an internal note of the visitor's own conversation is not theirs to read; the
    same file in a message they see is. The record of a note's files is written as the note is stored."""
    from ticketing.replies import add_note

    await make_queue(rt, "support", ["webchat"])
    sha = hashlib.sha256(b"internal").hexdigest()
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="webchat",
                external_id="c1:m1",
                sender=Identity(kind="webchat", value="visitor-1"),
                text="hi",
                thread_key="c1",
            )
        ],
    )
    assert not isinstance(result, Exception)
    root = await make_agent(rt, "root", role="admin")
    admin = Principal(agent_id=root, username="root", display_name="Root", role="admin", queue_ids=frozenset())
    note = await add_note(rt, ticket_id=result.ticket_id, principal=admin, text="see the file")
    # Notes carry no attachments through the API yet; one that does (a future upload) is recorded the same way.
    async with rt.write() as tx:
        await tx.conn.execute(
            tables.messages.update()
            .where(tables.messages.c.id == note.id)
            .values(attachments=[{"sha256": sha, "filename": "x"}])
        )
        await message_files.record(tx.conn, [{"id": note.id, "attachments": [{"sha256": sha}], "meta": {}}])
    visitor = Conversation("webchat", "c1")
    assert not await rt.ports.conversations.carries_file(channel="webchat", thread_key="c1", sha256=sha)
    assert not await may_read_file(rt, sha256=sha, conversation=visitor)
    assert await may_read_file(rt, sha256=sha, principal=admin)
    [again] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="webchat",
                external_id="c1:m2",
                sender=Identity(kind="webchat", value="visitor-1"),
                attachments=[Attachment(filename="x", content_type="image/png", size=1, sha256=sha)],
                thread_key="c1",
            )
        ],
    )
    assert not isinstance(again, Exception)
    assert await may_read_file(rt, sha256=sha, conversation=visitor)
    assert not await may_read_file(rt, sha256=sha, conversation=Conversation("webchat", "c2"))


def test_carried_files_reads_attachments_and_the_raw_mail_and_ignores_junk() -> None:
    """What a message carries: well-formed hashes of its attachments and of its metadata's file keys."""
    a, b = "a" * 64, "b" * 64
    found = carried_files(
        [{"sha256": a}, {"sha256": "../x"}, {"filename": "no hash"}, "junk", {"sha256": None}],  # type: ignore[list-item]
        {"raw_sha256": b, "other": "c" * 64},
    )
    assert found == {a, b}
    assert carried_files(None, None) == set()


def test_the_migration_records_the_files_of_messages_stored_before_it(fresh_database_url: str) -> None:
    """Messages stored before ``message_files`` existed get their rows from their attachments' metadata and
    their raw mail, once each; messages without files get none."""
    upgrade(fresh_database_url, "0008_message_client_key")
    a, b = "a" * 64, "b" * 64

    async def seed() -> None:
        db = Database(fresh_database_url)
        try:
            async with db.begin() as conn:
                now = utcnow()
                contact = (
                    await conn.execute(
                        tables.contacts.insert()
                        .values(name="Ann", attributes={}, created_at=now, updated_at=now)
                        .returning(tables.contacts.c.id)
                    )
                ).scalar_one()
                ticket = (
                    await conn.execute(
                        tables.tickets.insert()
                        .values(
                            contact_id=contact,
                            channel="email",
                            status="open",
                            priority="normal",
                            subject="Old",
                            created_at=now,
                            updated_at=now,
                        )
                        .returning(tables.tickets.c.id)
                    )
                ).scalar_one()
                old = [
                    {"attachments": [{"sha256": a}, {"sha256": a}], "meta": {"raw_sha256": b}},
                    {"attachments": [], "meta": {}},
                    {"attachments": [{"sha256": "not-a-hash"}], "meta": {"raw_sha256": 5}},
                ]
                for n, m in enumerate(old):
                    await conn.execute(
                        tables.messages.insert().values(
                            ticket_id=ticket,
                            direction=Direction.INBOUND.value,
                            channel="email",
                            external_id=f"<old{n}@example.com>",
                            text="",
                            delivery_status="received",
                            created_at=now,
                            client_key=None,
                            **m,
                        )
                    )
        finally:
            await db.dispose()

    async def recorded() -> list[tuple[str, int]]:
        db = Database(fresh_database_url)
        try:
            async with db.begin() as conn:
                rows = await conn.execute(
                    select(tables.message_files.c.sha256, tables.message_files.c.message_id).order_by(
                        tables.message_files.c.sha256
                    )
                )
                return [(r[0], r[1]) for r in rows]
        finally:
            await db.dispose()

    asyncio.run(seed())
    upgrade(fresh_database_url)
    assert asyncio.run(recorded()) == [(a, 1), (b, 1)]

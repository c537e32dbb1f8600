"""Files agents attach to replies: uploaded for one ticket (size-bounded, checked by content), then named in a
reply, which carries them to the customer — over real SMTP as MIME attachments, and to a chat visitor, who alone
of the customers may fetch them."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from hub.config import Settings
from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.channels.email.conftest import wait_until
from tests.channels.email.servers import SmtpServer
from tests.channels.webchat.test_protocol import chat_url, png, recv, say, session
from tests.conftest import LiveServer, login, make_agent, make_queue
from ticketing.ingest import ingest_batch

LIMIT = 64 * 1024
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live(settings: Settings, smtp: SmtpServer, tmp_path: Path) -> Iterator[LiveServer]:
    """A server whose email replies go out through the real SMTP server ``smtp``; replies' files up to 64 KB."""
    server = LiveServer(
        settings.model_copy(
            update={
                "attachment_dir": tmp_path / "attachments",
                "outgoing_smtp_host": "127.0.0.1",
                "outgoing_smtp_port": smtp.port,
                "reply_attachment_max_bytes": LIMIT,
                "outbox_poll_seconds": 0.2,
            }
        )
    ).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=20) as c:
        yield c


async def email_ticket(rt: Runtime, n: int, subject: str) -> int:
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id=f"<files{n}@example.com>",
                sender=Identity(kind="email", value=f"customer{n}@example.com"),
                recipient="support@switchboard.local",
                subject=subject,
                text="Can you send me the invoice?",
            )
        ],
    )
    return result.ticket_id  # type: ignore[union-attr,no-any-return]


async def upload(
    http: httpx.AsyncClient, headers: dict[str, str], ticket_id: int, data: bytes, name: str
) -> httpx.Response:
    return await http.post(
        "/api/reply-attachments", data={"ticket_id": str(ticket_id)}, files={"file": (name, data)}, headers=headers
    )


async def test_an_emailed_reply_carries_its_files_as_mime_attachments(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    """An agent uploads a PDF and a PNG for an email ticket and replies naming them: the real SMTP server gets
    one mail with the reply's text and both files, byte for byte, under their names and types; the stored
    reply lists them, and the agent can open them."""
    await make_queue(rt, "support", ["email", "webchat"])
    await make_agent(rt, "ann", queues=["support"])
    ticket_id = await email_ticket(rt, 1, "Invoice please")
    ann = await login(http, "ann", "password-123")
    pdf = await upload(http, ann, ticket_id, PDF, "invoice-42.pdf")
    image = await upload(http, ann, ticket_id, png(), "../../etc/photo.png")
    assert pdf.status_code == 201 and image.status_code == 201, (pdf.text, image.text)
    assert (pdf.json()["content_type"], pdf.json()["size"]) == ("application/pdf", len(PDF))
    assert image.json()["filename"] == "....etcphoto.png"  # no path
    r = await http.post(
        f"/api/tickets/{ticket_id}/reply",
        json={
            "text": "Here is your invoice.",
            "attachments": [{"id": pdf.json()["id"], "filename": "invoice-42.pdf"}, {"id": image.json()["id"]}],
        },
        headers=ann,
    )
    assert r.status_code == 201, r.text
    assert [(a["filename"], a["content_type"]) for a in r.json()["attachments"]] == [
        ("invoice-42.pdf", "application/pdf"),
        ("attachment", "image/png"),
    ]

    async def sent() -> bool:
        return len(smtp.handler.messages) == 1

    await wait_until(sent, timeout=20, what="the reply over SMTP")
    [captured] = smtp.handler.messages
    assert captured.recipients == ["customer1@example.com"]
    mail = email.message_from_bytes(captured.data, policy=email.policy.default)
    assert isinstance(mail, EmailMessage)
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None and "Here is your invoice." in body.get_content()
    files = [(p.get_filename(), p.get_content_type(), p.get_content()) for p in mail.iter_attachments()]
    assert files == [("invoice-42.pdf", "application/pdf", PDF), ("attachment", "image/png", png())]
    opened = await http.get(f"/api/chat/attachments/{pdf.json()['sha256']}", headers=ann)
    assert opened.status_code == 200 and opened.content == PDF


async def test_uploads_are_bounded_typed_and_bound_to_their_ticket(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient, smtp: SmtpServer
) -> None:
    """Too large: 413; not an image or PDF by its bytes (whatever its name): 415; a ticket the agent may not see:
    403; the id of a file uploaded for another ticket, or a forged one: 422, and nothing is stored or sent."""
    await make_queue(rt, "support", ["email", "webchat"])
    await make_queue(rt, "sales", ["email"])
    await make_agent(rt, "ann", queues=["support"])
    await make_agent(rt, "bob", queues=["sales"])
    first, second = await email_ticket(rt, 1, "First"), await email_ticket(rt, 2, "Second")
    ann, bob = await login(http, "ann", "password-123"), await login(http, "bob", "password-123")
    big = await upload(http, ann, first, PDF + b"0" * LIMIT, "big.pdf")
    assert big.status_code == 413 and big.json()["code"] == "attachment_too_large"
    huge = await upload(http, ann, first, PDF + b"0" * (LIMIT + 200 * 1024), "huge.pdf")
    assert huge.status_code == 413  # refused by the body limit before it is read
    for data, name in ((b"<script>alert(1)</script>", "invoice.pdf"), (b"MZ\x90\x00", "tool.png"), (b"", "x.pdf")):
        typed = await upload(http, ann, first, data, name)
        assert typed.status_code == 415 and typed.json()["code"] == "unsupported_attachment", typed.text
    assert (await upload(http, bob, first, PDF, "a.pdf")).status_code == 403
    assert (await upload(http, ann, 999_999, PDF, "a.pdf")).status_code == 404
    own = (await upload(http, ann, first, PDF, "a.pdf")).json()
    sha = own["sha256"]
    for bad in (own["id"], f"{sha}.{'0' * 40}", f"{'f' * 64}.{own['id'].split('.')[1]}"):
        r = await http.post(
            f"/api/tickets/{second}/reply", json={"text": "wrong ticket", "attachments": [{"id": bad}]}, headers=ann
        )
        assert r.status_code == 422 and r.json()["code"] == "invalid_attachment", r.text
        assert r.json()["detail"][0]["loc"] == ["body", "attachments", 0]
    many = [{"id": own["id"]}] * 6
    r = await http.post(f"/api/tickets/{first}/reply", json={"text": "x", "attachments": many}, headers=ann)
    assert r.status_code == 422
    messages = (await http.get(f"/api/tickets/{second}", headers=ann)).json()["messages"]
    assert [m["direction"] for m in messages] == ["inbound"]
    # no message carries the upload yet: nobody may read it
    assert (await http.get(f"/api/chat/attachments/{sha}", headers=ann)).status_code == 404
    assert smtp.handler.messages == []


async def test_a_chat_visitor_is_shown_the_reply_files_and_may_fetch_them(
    rt: Runtime, live: LiveServer, http: httpx.AsyncClient
) -> None:
    """A chat reply's file reaches the visitor's open widget in the message frame; the visitor's token fetches
    it; another visitor's token does not."""
    await make_agent(rt, "sam", role="supervisor")
    sam = await login(http, "sam", "password-123")
    vera, other = await session(http), await session(http, name="Otto")
    async with connect(chat_url(live, vera["token"])) as ws:
        await recv(ws, "hello")
        ticket_id = (await say(ws, "v1", "can you send me the manual?"))["ticket_id"]
        sent = await upload(http, sam, ticket_id, PDF, "manual.pdf")
        assert sent.status_code == 201, sent.text
        r = await http.post(
            f"/api/tickets/{ticket_id}/reply",
            json={"text": "", "attachments": [{"id": sent.json()["id"], "filename": "manual.pdf"}]},
            headers=sam,
        )
        assert r.status_code == 201, r.text
        frame: dict[str, Any] = await recv(ws, "message", timeout=20)
        while frame["message"]["direction"] != "outbound":
            frame = await recv(ws, "message", timeout=20)
    [shown] = frame["message"]["attachments"]
    assert (shown["filename"], shown["content_type"], shown["sha256"]) == (
        "manual.pdf",
        "application/pdf",
        sent.json()["sha256"],
    )
    url = f"/api/chat/attachments/{shown['sha256']}"
    async with httpx.AsyncClient(base_url=live.url, timeout=20) as visitor:  # no agent's session cookie
        fetched = await visitor.get(url, params={"token": vera["token"]})
        assert fetched.status_code == 200 and fetched.content == PDF
        assert (await visitor.get(url, params={"token": other["token"]})).status_code == 404

"""Attachments in real browsers: images and PDFs from the chat widget reach the agent as a thumbnail and a
link they can open; a wrong type or an oversized file gets a clear error in the widget; another visitor's
token cannot fetch the file. An email's other files are a download link in the console."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from hub.config import Settings
from hub.files import FileStore
from hub.messages import Attachment, Identity, InboundMessage
from hub.principals import Principal
from hub.runtime import Runtime
from tests.agent_ui.conftest import Dialogs, agent_login, chatting, customer_says, new_page
from tests.channels.webchat.test_protocol import png
from tests.conftest import LiveServer, make_agent, make_queue
from ticketing.ingest import ingest_batch
from ticketing.ticket_updates import assign

LIMIT = 64 * 1024
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture
def chat_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "attachment_dir": tmp_path / "attachments",
            "offer_timeout_seconds": 60,
            "chat_attachment_max_bytes": LIMIT,
        }
    )


async def attach(customer: Page, name: str, mime: str, data: bytes) -> None:
    """Pick a file the way a customer does: the paperclip button, then the file chooser."""
    async with customer.expect_file_chooser() as chooser:
        await customer.get_by_role("button", name="Attach an image or PDF").click()
    await (await chooser.value).set_files({"name": name, "mimeType": mime, "buffer": data})


async def test_image_and_pdf_reach_the_agent_and_bad_files_are_refused_clearly(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs
) -> None:
    """The customer sends a PNG and a PDF: both show in the widget, the agent sees a loaded thumbnail and a PDF
    link and can open both with their session; a text file, HTML disguised as a PNG and a file over the size
    limit each get an error naming the file and the rule, and send nothing. The files are served to the
    customer's own token (also after a reload) and to the agent, never to another visitor's token or to nobody."""
    customer, agent = await chatting(rt, live, browser, dialogs, first="My kettle arrived broken")
    await expect(agent.locator("#timeline .msg.in")).to_have_count(1)

    await attach(customer, "broken-kettle.png", "image/png", png())
    await attach(customer, "receipt.pdf", "application/pdf", PDF)
    widget_img = customer.locator(".msg.in .att img")
    await expect(widget_img).to_have_attribute("alt", "broken-kettle.png")
    await expect(customer.locator(".msg.in .att a", has_text="receipt.pdf")).to_be_visible()
    await expect(customer.locator(".msg.in .state")).to_have_text(["Sent", "Sent", "Sent"])
    await expect(widget_img).to_have_js_property("naturalWidth", 1)  # loaded: the 1x1 PNG

    thumb = agent.locator("#timeline .msg.in .att img")
    await expect(thumb).to_have_attribute("alt", "broken-kettle.png")
    await expect(thumb).to_have_js_property("naturalWidth", 1)
    pdf_link = agent.locator("#timeline .msg.in a.att", has_text="receipt.pdf")
    await expect(pdf_link).to_be_visible()
    pdf_url = live.url + (await pdf_link.get_attribute("href") or "")
    img_url = live.url + (await thumb.get_attribute("src") or "")
    opened = await agent.request.get(pdf_url)  # the agent's browser session
    assert opened.ok and opened.headers["content-type"] == "application/pdf"
    assert await opened.body() == PDF
    assert (await agent.request.get(img_url)).headers["content-type"] == "image/png"

    for name, mime, data, error in [
        ("notes.txt", "text/plain", b"just text", "“notes.txt” cannot be sent. Only images"),
        (
            "sneaky.png",
            "image/png",
            b"<html><script>alert(1)</script></html>",
            "“sneaky.png” could not be sent. Only images",
        ),
        (
            "huge.pdf",
            "application/pdf",
            b"%PDF-" + b"0" * (LIMIT + 1),
            "“huge.pdf” is too large (64 KB); files can be at most 64 KB.",
        ),
    ]:
        await attach(customer, name, mime, data)
        await expect(customer.get_by_role("alert").filter(has_text=name)).to_contain_text(error)
    await expect(customer.locator(".msg.in")).to_have_count(3)
    await customer_says(customer, "Can you help?")
    await expect(customer.get_by_role("alert").filter(has_text="huge.pdf")).to_have_count(0)
    await expect(agent.locator("#timeline .msg.in")).to_have_count(4)

    sha = re.search(r"/api/chat/attachments/([0-9a-f]{64})", img_url)
    assert sha
    path = f"/api/chat/attachments/{sha.group(1)}"
    mine = await customer.evaluate(
        "() => JSON.parse(Object.entries(localStorage).find(([k]) => k.startsWith('switchboard-chat:'))[1]).token"
    )
    async with httpx.AsyncClient(base_url=live.url) as http:
        other = (await http.post("/api/chat/sessions", json={"name": "Eve"})).json()["token"]
        assert (await http.get(path, params={"token": mine})).status_code == 200
        assert (await http.get(path, headers={"Authorization": f"Bearer {mine}"})).status_code == 200
        assert (await http.get(path, params={"token": other})).status_code == 404
        assert (await http.get(path, headers={"Authorization": f"Bearer {other}"})).status_code == 404
        assert (await http.get(path)).status_code == 403

    await customer.reload()
    await expect(customer.locator(".msg.in")).to_have_count(4)
    await expect(widget_img).to_have_js_property("naturalWidth", 1)
    assert dialogs.seen == []


async def test_an_email_document_opens_from_the_console(
    rt: Runtime, live: LiveServer, browser: Browser, dialogs: Dialogs, chat_settings: Settings
) -> None:
    """A file an email brought that is neither an image nor a PDF (a text file) is a working download link in
    the console, served by the email channel to the logged-in agent as an attachment, never rendered."""
    body = b"Order 4711: one kettle, returned.\n"
    sha = FileStore(chat_settings.attachment_dir).put(body)
    await make_queue(rt, "support", ["email"])
    alice = await make_agent(rt, "alice", queues=["support"])
    [stored] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="email",
                external_id="<doc-1@example.com>",
                sender=Identity(kind="email", value="maria@example.com", name="Maria"),
                subject="My return",
                text="The return form is attached.",
                attachments=[
                    Attachment(
                        filename="return-form.txt",
                        content_type="text/plain",
                        size=len(body),
                        sha256=sha,
                        url=f"/api/email/attachments/{sha}",
                    )
                ],
            )
        ],
    )
    boss = Principal(agent_id=0, username="root", display_name="Root", role="admin", queue_ids=frozenset())
    await assign(rt, ticket_id=stored.ticket_id, principal=boss, agent_id=alice)  # type: ignore[union-attr]

    _, agent = await new_page(browser, dialogs)
    await agent_login(agent, live.url, "alice")
    await agent.locator("#mine .conv-item").filter(has_text="My return").click()
    link = agent.locator("#timeline .msg.in .att", has_text="return-form.txt")
    await expect(link).to_have_attribute("href", f"/api/email/attachments/{sha}")
    served = await agent.request.get(live.url + f"/api/email/attachments/{sha}")
    assert served.status == 200 and await served.body() == body
    assert served.headers["content-disposition"].startswith("attachment")
    assert served.headers["x-content-type-options"] == "nosniff"

"""The social senders and health on their own (a ``SocialService`` on the test's runtime, the provider stand-in):
Telegram media as multipart uploads, comment replies, silent webhooks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from channels.social.health import HealthStatus
from channels.social.service import SocialService
from hub.config import Settings
from hub.db import utcnow
from hub.events import Event, EventType
from hub.files import FileStore
from hub.messages import Attachment, DeliveryError, Identity, InboundMessage, OutboundMessage
from hub.runtime import Runtime
from tests.channels.social.conftest import BOT, NUMBER, PAGE, Provider, no_ingest

_events = Event.__table__  # type: ignore[attr-defined]

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


PDF = b"%PDF-1.4 a receipt"
GIF = b"GIF89a" + bytes(64)
TELEGRAM_FILES = [("photo.png", "image/png", PNG), ("receipt.pdf", "application/pdf", PDF)]


def _reply(
    store: FileStore, channel: str, account: str, files: list[tuple[str, str, bytes]], **more: object
) -> OutboundMessage:
    """A reply on ``channel`` carrying ``files`` (name, content type, bytes), stored as reply files are."""
    attachments = [Attachment(filename=n, content_type=t, size=len(b), sha256=store.put(b)) for n, t, b in files]
    fields: dict[str, object] = {
        "message_id": 0,
        "ticket_id": 1,
        "channel": channel,
        "recipient": "4915112345678" if channel == "whatsapp" else "2400001",
        "sender_address": account,
        "text": "Here you go",
        "attachments": attachments,
        **more,
    }
    return OutboundMessage.model_validate(fields)


def _parts(call_body: bytes) -> bytes:
    return call_body.replace(b"\r\n", b"\n")


async def test_telegram_files_are_uploaded_as_multipart_not_as_urls(
    service: SocialService, provider: Provider, social_settings: Settings
) -> None:
    """An image goes up with sendPhoto, a PDF with sendDocument, each as a multipart file upload of the stored
    bytes (Telegram cannot fetch our private URLs); the text follows with sendMessage."""
    store = FileStore(social_settings.attachment_dir)
    message = _reply(store, "telegram", BOT, TELEGRAM_FILES, recipient="1111111")
    result = await service.senders["telegram"].send(message)
    assert result.provider_id is not None
    photo, document, text = provider.sent
    assert photo.path == "/tg/bot123456:ABC/sendPhoto"
    assert photo.headers["Content-Type"].startswith("multipart/form-data")
    assert PNG in photo.body and b'name="photo"; filename="photo.png"' in photo.body
    assert b'name="chat_id"' in photo.body and b"1111111" in photo.body
    assert document.path == "/tg/bot123456:ABC/sendDocument"
    assert b"%PDF-1.4 a receipt" in document.body and b'filename="receipt.pdf"' in document.body
    assert text.path == "/tg/bot123456:ABC/sendMessage" and text.json()["text"] == "Here you go"
    assert all(b"http" not in c.body for c in (photo, document))


async def test_a_telegram_reply_retried_after_a_5xx_sends_each_file_once(
    service: SocialService, provider: Provider, social_settings: Settings
) -> None:
    """The photo goes up, the document gets a 500: the send fails to be retried; the retry uploads the document
    and sends the text, and does not send the photo to the customer a second time."""
    store = FileStore(social_settings.attachment_dir)
    message = _reply(store, "telegram", BOT, TELEGRAM_FILES, recipient="1111111", message_id=77)
    provider.script.extend(
        [
            (200, {"ok": True, "result": {"message_id": 901, "chat": {"id": 1}}}),
            (500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}),
        ]
    )
    with pytest.raises(DeliveryError) as failed:
        await service.senders["telegram"].send(message)
    assert not failed.value.permanent
    result = await service.senders["telegram"].send(message)
    assert result.provider_id is not None
    paths = [c.path.rsplit("/", 1)[-1] for c in provider.sent]
    assert paths == ["sendPhoto", "sendDocument", "sendDocument", "sendMessage"]


async def test_telegram_unauthorized_marks_the_bot_and_fails_permanently(
    service: SocialService, provider: Provider
) -> None:
    """Telegram's 401 (a revoked bot token): a permanent failure saying what to do, and the bot's alert."""
    provider.script.append((401, {"ok": False, "error_code": 401, "description": "Unauthorized"}))
    message = OutboundMessage(
        message_id=0, ticket_id=1, channel="telegram", recipient="1", sender_address=BOT, text="hi"
    )
    with pytest.raises(DeliveryError) as failed:
        await service.senders["telegram"].send(message)
    assert failed.value.permanent
    assert str(failed.value).startswith("token rejected — check the bot's token in Admin")
    health = service.health.get("telegram", BOT)
    assert health is not None and health.status == HealthStatus.TOKEN_EXPIRED


async def test_telegram_429_is_retried_and_403_blocked_is_final(service: SocialService, provider: Provider) -> None:
    provider.script.extend(
        [
            (429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3"}),
            (403, {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
        ]
    )
    message = OutboundMessage(
        message_id=0, ticket_id=1, channel="telegram", recipient="1", sender_address=BOT, text="hi"
    )
    with pytest.raises(DeliveryError) as throttled:
        await service.senders["telegram"].send(message)
    assert not throttled.value.permanent
    with pytest.raises(DeliveryError) as blocked:
        await service.senders["telegram"].send(message)
    assert blocked.value.permanent and "bot was blocked by the user" in str(blocked.value)


async def test_comment_replies_go_under_the_comment(service: SocialService, provider: Provider) -> None:
    """A reply on a comments ticket is a comment under the customer's comment ({graph}/{comment}/comments)."""
    message = OutboundMessage(
        message_id=0,
        ticket_id=1,
        channel="comments",
        recipient="7100000001",
        sender_address=PAGE,
        text="Sorry! We sent you a message.",
        references=["111_222"],
    )
    await service.senders["comments"].send(message)
    [call] = provider.sent
    assert call.path == "/graph/111_222/comments"
    assert call.json() == {"message": "Sorry! We sent you a message."}
    assert call.headers["Authorization"] == "Bearer page-token"


async def test_a_silent_webhook_raises_the_alert_and_the_next_webhook_clears_it(
    service: SocialService, rt: Runtime
) -> None:
    """An account that heard nothing for longer than configured turns silent (an event every console sees);
    its next webhook turns it ok again."""
    number = service.health.get("whatsapp", NUMBER)
    assert number is not None
    service.health.silence_seconds = 600
    service.health.started_at -= timedelta(minutes=30)
    await service.health.sweep_silence()
    assert number.status == HealthStatus.SILENT
    assert service.health.get("telegram", BOT).status == HealthStatus.SILENT  # type: ignore[union-attr]
    await service.heard("whatsapp", NUMBER)
    assert number.status == HealthStatus.OK
    async with rt.read() as conn:
        events = [
            (e.payload["channel"], e.payload["status"])
            for e in await conn.execute(select(_events).where(_events.c.type == EventType.CHANNEL_HEALTH))
        ]
    assert ("whatsapp", "silent") in events and events[-1] == ("whatsapp", "ok")


def _private(comment_id: str) -> OutboundMessage:
    return OutboundMessage(
        message_id=0,
        ticket_id=1,
        channel="comments",
        recipient="7100000001",
        sender_address=PAGE,
        text="We sent you the tracking link privately.",
        references=[comment_id],
        metadata={"private": True},
    )


async def test_a_private_reply_goes_once_per_comment_and_a_failed_one_can_be_retried(
    service: SocialService, provider: Provider
) -> None:
    """Asked private, the reply is a message to the comment's author ({page}/messages, recipient.comment_id);
    a second private reply to the same comment is refused without calling Meta; a call that failed does not
    use up the one private reply."""
    provider.script.append((500, {"error": {"message": "try later", "code": 2}}))
    with pytest.raises(DeliveryError) as failed:
        await service.senders["comments"].send(_private("111_222"))
    assert not failed.value.permanent
    await service.senders["comments"].send(_private("111_222"))
    with pytest.raises(DeliveryError) as again:
        await service.senders["comments"].send(_private("111_222"))
    assert again.value.permanent and "already answered privately" in str(again.value)
    assert len(provider.sent) == 2
    assert provider.sent[-1].path == f"/graph/{PAGE}/messages"
    assert provider.sent[-1].json() == {
        "recipient": {"comment_id": "111_222"},
        "message": {"text": "We sent you the tracking link privately."},
    }


async def test_a_private_reply_is_refused_after_7_days(service: SocialService, provider: Provider, rt: Runtime) -> None:
    """A comment older than 7 days gets no private reply (Meta would refuse it): final, and Meta is not called."""
    from tests.conftest import make_queue
    from ticketing.ingest import ingest_batch
    from ticketing.tables import messages as M

    await make_queue(rt, "social")
    comment = InboundMessage(
        channel="comments",
        external_id="111_old",
        sender=Identity(kind="messenger", value="7100000002"),
        recipient=PAGE,
        text="old comment",
        thread_key="cm:PAGE_ID:post:7100000002",
    )
    await ingest_batch(rt, [comment])
    async with rt.write() as tx:
        await tx.conn.execute(
            update(M).where(M.c.external_id == "111_old").values(created_at=utcnow() - timedelta(days=8))
        )
    with pytest.raises(DeliveryError) as late:
        await service.senders["comments"].send(_private("111_old"))
    assert late.value.permanent and "within 7 days" in str(late.value)
    assert provider.sent == []


async def test_a_refused_token_is_shown_by_every_process_and_after_a_restart_until_reconnected(
    service: SocialService, provider: Provider, rt: Runtime, social_settings: Settings
) -> None:
    """One process meets Meta's error 190 on a page: another process on the same database, and a process started
    afterwards, show the page's token alert with the same reason; the reconnect in the first clears it for all."""
    provider.script.append((401, {"error": {"message": "Session has expired", "code": 190}}))
    message = OutboundMessage(
        message_id=0, ticket_id=1, channel="messenger", recipient="2400001", sender_address=PAGE, text="hi"
    )
    with pytest.raises(DeliveryError):
        await service.senders["messenger"].send(message)
    mine = service.health.get("messenger", PAGE)
    assert mine is not None and mine.status == HealthStatus.TOKEN_EXPIRED
    other = SocialService(rt, no_ingest, social_settings)
    later = SocialService(rt, no_ingest, social_settings)
    try:
        await other.start()
        seen = other.health.get("messenger", PAGE)
        assert seen is not None and seen.status == HealthStatus.TOKEN_EXPIRED
        assert seen.detail == mine.detail and "Session has expired" in (seen.detail or "")
        assert other.health.get("whatsapp", NUMBER).status == HealthStatus.OK  # type: ignore[union-attr]
        await service.replace_token(channel="messenger", account=PAGE, token="EAAGfreshToken123")
        await other.health.refresh()  # what its sweep does every 30 s
        assert other.health.get("messenger", PAGE).status == HealthStatus.OK  # type: ignore[union-attr]
        await later.start()
        assert later.health.get("messenger", PAGE).status == HealthStatus.OK  # type: ignore[union-attr]
    finally:
        await other.stop()
        await later.stop()


async def test_whatsapp_files_are_uploaded_to_graph_then_sent_by_media_id(
    service: SocialService, provider: Provider, social_settings: Settings
) -> None:
    """Each file goes up to {graph}/{number}/media as multipart (messaging_product, its type, the bytes), then a
    message of its type names the media id Graph answered: the image carries the text as its caption, the PDF
    goes as a document with its file name; no URL of ours is handed to Meta, and no separate text message."""
    store = FileStore(social_settings.attachment_dir)
    message = _reply(
        store, "whatsapp", NUMBER, [("photo.png", "image/png", PNG), ("receipt.pdf", "application/pdf", PDF)]
    )
    provider.script.extend(
        [
            (200, {"id": "MEDIA_PHOTO"}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.PHOTO"}]}),
            (200, {"id": "MEDIA_PDF"}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.PDF"}]}),
        ]
    )
    result = await service.senders["whatsapp"].send(message)
    assert result.provider_id == "wamid.PDF"
    up_photo, photo, up_pdf, pdf = provider.sent
    for upload, data, kind, name in (
        (up_photo, PNG, "image/png", "photo.png"),
        (up_pdf, PDF, "application/pdf", "receipt.pdf"),
    ):
        assert upload.path == f"/graph/{NUMBER}/media"
        assert upload.headers["Authorization"] == "Bearer wa-token"
        assert upload.headers["Content-Type"].startswith("multipart/form-data")
        body = _parts(upload.body)
        assert b'name="messaging_product"\n\nwhatsapp\n' in body
        assert f'name="type"\n\n{kind}\n'.encode() in body
        assert f'name="file"; filename="{name}"\nContent-Type: {kind}'.encode() in body
        assert data in upload.body
    base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "4915112345678"}
    assert photo.path == pdf.path == f"/graph/{NUMBER}/messages"
    assert photo.json() == {**base, "type": "image", "image": {"id": "MEDIA_PHOTO", "caption": "Here you go"}}
    assert pdf.json() == {**base, "type": "document", "document": {"id": "MEDIA_PDF", "filename": "receipt.pdf"}}
    assert all(b"http" not in c.body for c in provider.sent)


async def test_whatsapp_text_goes_alone_when_the_first_file_takes_no_caption(
    service: SocialService, provider: Provider, social_settings: Settings
) -> None:
    """Audio carries no caption on WhatsApp: the file goes as audio, then the text as its own message."""
    store = FileStore(social_settings.attachment_dir)
    await service.senders["whatsapp"].send(_reply(store, "whatsapp", NUMBER, [("note.mp3", "audio/mpeg", b"ID3 x")]))
    upload, audio, text = provider.sent
    assert upload.path == f"/graph/{NUMBER}/media"
    assert audio.json()["type"] == "audio" and "caption" not in audio.json()["audio"]
    assert text.json()["text"] == {"body": "Here you go", "preview_url": False}


@pytest.mark.parametrize(
    ("name", "kind", "data", "why"),
    [
        ("funny.gif", "image/gif", GIF, "WhatsApp does not take GIF images"),
        ("big.png", "image/png", PNG + bytes(5 * 1024 * 1024), "WhatsApp takes image files up to 5.0 MB"),
    ],
    ids=["gif", "image-over-5-MB"],
)
async def test_a_file_whatsapp_cannot_take_refuses_the_reply_before_any_call(
    service: SocialService, provider: Provider, social_settings: Settings, name: str, kind: str, data: bytes, why: str
) -> None:
    """A GIF (WhatsApp takes none) or an image over 5 MB: the reply fails for good, naming the file and why, and
    nothing is sent, not even the reply's other file that WhatsApp would take."""
    store = FileStore(social_settings.attachment_dir)
    message = _reply(store, "whatsapp", NUMBER, [("receipt.pdf", "application/pdf", PDF), (name, kind, data)])
    with pytest.raises(DeliveryError) as refused:
        await service.senders["whatsapp"].send(message)
    assert refused.value.permanent
    assert repr(name) in str(refused.value) and why in str(refused.value)
    assert provider.sent == []


async def test_a_messenger_file_goes_up_with_its_message_as_filedata(
    service: SocialService, provider: Provider, social_settings: Settings
) -> None:
    """Messenger: the file is a multipart POST to {graph}/{page}/messages (recipient, the attachment's type with a
    non-reusable payload, the HUMAN_AGENT tag the window asked for, and filedata with the bytes); the text
    follows as its own message with the same tag."""
    store = FileStore(social_settings.attachment_dir)
    message = _reply(
        store, "messenger", PAGE, [("receipt.pdf", "application/pdf", PDF)], metadata={"tag": "HUMAN_AGENT"}
    )
    result = await service.senders["messenger"].send(message)
    assert result.provider_id == "m_out_2"
    upload, text = provider.sent
    assert upload.path == text.path == f"/graph/{PAGE}/messages"
    assert upload.headers["Authorization"] == "Bearer page-token"
    assert upload.headers["Content-Type"].startswith("multipart/form-data")
    body = _parts(upload.body)
    assert b'name="recipient"\n\n{"id": "2400001"}\n' in body
    assert b'name="message"\n\n{"attachment": {"type": "file", "payload": {"is_reusable": false}}}\n' in body
    assert b'name="messaging_type"\n\nMESSAGE_TAG\n' in body and b'name="tag"\n\nHUMAN_AGENT\n' in body
    assert b'name="filedata"; filename="receipt.pdf"\nContent-Type: application/pdf' in body and PDF in upload.body
    assert text.json() == {
        "recipient": {"id": "2400001"},
        "message": {"text": "Here you go"},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
    }


async def test_a_whatsapp_reply_retried_after_a_5xx_sends_each_part_once(
    service: SocialService, provider: Provider, social_settings: Settings
) -> None:
    """The photo is uploaded and sent, the PDF uploaded, and its message gets a 500: the send fails to be
    retried; the retry sends the PDF's message with the media id already uploaded, and neither sends the photo
    again nor uploads anything twice."""
    store = FileStore(social_settings.attachment_dir)
    message = _reply(
        store,
        "whatsapp",
        NUMBER,
        [("photo.png", "image/png", PNG), ("receipt.pdf", "application/pdf", PDF)],
        message_id=78,
    )
    provider.script.extend(
        [
            (200, {"id": "MEDIA_PHOTO"}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.PHOTO"}]}),
            (200, {"id": "MEDIA_PDF"}),
            (500, {"error": {"message": "An unknown error has occurred.", "code": 1}}),
        ]
    )
    with pytest.raises(DeliveryError) as failed:
        await service.senders["whatsapp"].send(message)
    assert not failed.value.permanent
    await service.senders["whatsapp"].send(message)
    paths = [c.path.rsplit("/", 1)[-1] for c in provider.sent]
    assert paths == ["media", "messages", "media", "messages", "messages"]
    sent = [c.json() for c in provider.sent if c.path.endswith("/messages")]
    assert [s["type"] for s in sent] == ["image", "document", "document"]
    assert sent[-1]["document"]["id"] == "MEDIA_PDF"


async def test_a_messenger_reply_retried_after_a_429_sends_the_file_once(
    service: SocialService, provider: Provider, social_settings: Settings
) -> None:
    """The file is taken, the text after it is throttled (429): the retry sends the text only."""
    store = FileStore(social_settings.attachment_dir)
    message = _reply(store, "messenger", PAGE, [("photo.png", "image/png", PNG)], message_id=79)
    provider.script.extend(
        [
            (200, {"recipient_id": "2400001", "message_id": "m_photo"}),
            (429, {"error": {"message": "Calls to this api have exceeded the rate limit.", "code": 613}}),
        ]
    )
    with pytest.raises(DeliveryError) as throttled:
        await service.senders["messenger"].send(message)
    assert not throttled.value.permanent
    await service.senders["messenger"].send(message)
    assert [c.headers["Content-Type"].split(";")[0] for c in provider.sent] == [
        "multipart/form-data",
        "application/json",
        "application/json",
    ]
    assert sum(PNG in c.body for c in provider.sent) == 1


@pytest.mark.parametrize(
    ("channel", "account", "more", "why"),
    [
        ("instagram", "IG_ID", {}, "Instagram takes a message's files only as public links"),
        ("comments", PAGE, {"references": ["111_222"]}, "a reply to a public comment carries text only"),
        ("comments", PAGE, {"references": ["111_333"], "metadata": {"private": True}}, "carries text only"),
    ],
    ids=["instagram", "public-comment", "private-reply"],
)
async def test_instagram_and_comment_replies_with_files_are_refused_and_nothing_is_sent(
    service: SocialService,
    provider: Provider,
    social_settings: Settings,
    channel: str,
    account: str,
    more: dict[str, object],
    why: str,
) -> None:
    """Instagram and comment replies take files only as URLs Meta fetches, and ours are private: the reply fails
    for good with a reason the agent can act on, and Meta is not called (no text without its files)."""
    store = FileStore(social_settings.attachment_dir)
    message = _reply(store, channel, account, [("photo.png", "image/png", PNG)], **more)
    with pytest.raises(DeliveryError) as refused:
        await service.senders[channel].send(message)
    assert refused.value.permanent and why in str(refused.value)
    assert provider.sent == []

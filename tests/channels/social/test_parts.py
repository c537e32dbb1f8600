"""Replies the provider takes as several messages (a WhatsApp reply's files and text, a Messenger reply's files):
every part's id names the reply, each part's receipts move that part, and the reply shows what its parts show
together (``service.reply_status``): delivered once all are, failed as soon as one is."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from channels.social.models import SocialDelivery
from channels.social.service import SocialService, reply_status
from hub.config import Settings
from hub.files import FileStore
from hub.messages import Attachment, DeliveryError, Identity, InboundMessage, OutboundMessage
from hub.runtime import Runtime
from tests.channels.social.conftest import NUMBER, PAGE, Provider, encode, sign
from tests.conftest import make_agent, make_queue
from ticketing.agents import load_principal
from ticketing.ingest import ingest_batch
from ticketing.replies import reply
from ticketing.tables import messages as M
from ticketing.tables import outbox as O

D = SocialDelivery.__table__  # type: ignore[attr-defined]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4 an invoice"
CUSTOMER = "4915112345678"


async def _stored_reply(rt: Runtime, store: FileStore, channel: str, account: str, customer: str) -> OutboundMessage:
    """A customer's message on ``channel``, an agent's reply to it (stored, pending in the outbox), and that
    reply as the outbox hands it to the sender, carrying a photo and a PDF."""
    await make_queue(rt, "social", channels=[channel])
    loaded = await load_principal(rt, agent_id=await make_agent(rt, "sam", queues=["social"]))
    assert loaded is not None
    [result] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel=channel,
                external_id=f"{channel}-in-1",
                sender=Identity(kind=channel, value=f"+{customer}" if channel == "whatsapp" else customer),
                recipient=account,
                text="where is my invoice?",
                thread_key=f"{channel}:{account}:{customer}",
                queue="social",
            )
        ],
    )
    assert not isinstance(result, BaseException)
    sent = await reply(rt, ticket_id=result.ticket_id, principal=loaded[0], text="Here you go")
    async with rt.read() as conn:
        payload = (await conn.execute(select(O.c.payload).where(O.c.message_id == sent.id))).scalar_one()
    files = [("photo.png", "image/png", PNG), ("invoice.pdf", "application/pdf", PDF)]
    attachments = [Attachment(filename=n, content_type=t, size=len(b), sha256=store.put(b)) for n, t, b in files]
    return OutboundMessage.model_validate(payload).model_copy(update={"attachments": attachments})


def _statuses(*receipts: tuple[str, str] | tuple[str, str, dict[str, Any]]) -> bytes:
    statuses = [
        {"id": r[0], "status": r[1], "timestamp": "1", "recipient_id": CUSTOMER, **(r[2] if len(r) > 2 else {})}  # type: ignore[misc]
        for r in receipts
    ]
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": NUMBER}, "statuses": statuses}
    return encode(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
        }
    )


async def _receipts(service: SocialService, body: bytes) -> int:
    return (await service.meta_webhook(body, sign(body)["X-Hub-Signature-256"]))["receipts"]


async def _status(rt: Runtime, message_id: int) -> tuple[str, str | None]:
    async with rt.read() as conn:
        row = (await conn.execute(select(M.c.delivery_status, M.c.delivery_error).where(M.c.id == message_id))).one()
    return row.delivery_status, row.delivery_error


def _whatsapp_script(provider: Provider) -> None:
    provider.script.extend(
        [
            (200, {"id": "MEDIA_PHOTO"}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.PHOTO"}]}),
            (200, {"id": "MEDIA_PDF"}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.PDF"}]}),
        ]
    )


async def test_every_part_of_a_whatsapp_reply_maps_to_it_and_the_reply_waits_for_all_of_them(
    service: SocialService, provider: Provider, rt: Runtime, social_settings: Settings
) -> None:
    """A photo (captioned with the text) and a PDF go out as two WhatsApp messages: both wamids name the reply.
    The PDF's "delivered" alone leaves the reply as it was, the photo's too makes it delivered; read likewise
    once both are read."""
    message = await _stored_reply(rt, FileStore(social_settings.attachment_dir), "whatsapp", NUMBER, CUSTOMER)
    _whatsapp_script(provider)
    await service.senders["whatsapp"].send(message)
    async with rt.read() as conn:
        parts = {r.provider_id: r.message_id for r in await conn.execute(select(D.c.provider_id, D.c.message_id))}
    assert parts == {"wamid.PHOTO": message.message_id, "wamid.PDF": message.message_id}

    assert await _receipts(service, _statuses(("wamid.PDF", "delivered"))) == 0
    assert await _status(rt, message.message_id) == ("pending", None)
    assert await _receipts(service, _statuses(("wamid.PHOTO", "delivered"))) == 1
    assert await _status(rt, message.message_id) == ("delivered", None)
    assert await _receipts(service, _statuses(("wamid.PHOTO", "read"))) == 0
    assert await _status(rt, message.message_id) == ("delivered", None)
    assert await _receipts(service, _statuses(("wamid.PDF", "read"), ("wamid.PDF", "delivered"))) == 1
    assert await _status(rt, message.message_id) == ("read", None)


async def test_a_part_failing_before_the_rest_is_sent_fails_the_reply_once_it_is_sent_whole(
    service: SocialService, provider: Provider, rt: Runtime, social_settings: Settings
) -> None:
    """The photo goes out, the PDF's message gets a 500 (the reply is retried). Meanwhile WhatsApp reports the
    photo failed: the reply is not judged while half sent, and once the retry sends the PDF it fails with the
    photo's reason, however well the PDF does."""
    message = await _stored_reply(rt, FileStore(social_settings.attachment_dir), "whatsapp", NUMBER, CUSTOMER)
    provider.script.extend(
        [
            (200, {"id": "MEDIA_PHOTO"}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.PHOTO"}]}),
            (200, {"id": "MEDIA_PDF"}),
            (500, {"error": {"message": "An unknown error has occurred.", "code": 1}}),
            (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.PDF"}]}),
        ]
    )
    with pytest.raises(DeliveryError):
        await service.senders["whatsapp"].send(message)
    failed = ("wamid.PHOTO", "failed", {"errors": [{"code": 131053, "title": "Media upload error"}]})
    assert await _receipts(service, _statuses(failed)) == 0
    assert await _status(rt, message.message_id) == ("pending", None)

    await service.senders["whatsapp"].send(message)
    assert await _status(rt, message.message_id) == ("failed", "131053: Media upload error")
    assert await _receipts(service, _statuses(("wamid.PDF", "delivered"))) == 0
    assert await _status(rt, message.message_id) == ("failed", "131053: Media upload error")


async def test_the_files_of_a_messenger_reply_name_it_in_delivery_receipts(
    service: SocialService, provider: Provider, rt: Runtime, social_settings: Settings
) -> None:
    """Messenger takes each file as a message of its own, then the text: a delivery receipt naming the text's
    mid alone leaves the reply as it was; one naming every mid makes it delivered."""
    message = await _stored_reply(rt, FileStore(social_settings.attachment_dir), "messenger", PAGE, "2400001")
    provider.script.extend(
        [
            (200, {"recipient_id": "2400001", "message_id": "m_photo"}),
            (200, {"recipient_id": "2400001", "message_id": "m_pdf"}),
            (200, {"recipient_id": "2400001", "message_id": "m_text"}),
        ]
    )
    await service.senders["messenger"].send(message)

    def delivery(*mids: str) -> bytes:
        event = {
            "sender": {"id": "2400001"},
            "recipient": {"id": PAGE},
            "timestamp": 1,
            "delivery": {"mids": list(mids)},
        }
        return encode({"object": "page", "entry": [{"id": PAGE, "time": 1, "messaging": [event]}]})

    assert await _receipts(service, delivery("m_text")) == 0
    assert await _status(rt, message.message_id) == ("pending", None)
    assert await _receipts(service, delivery("m_photo", "m_pdf")) == 1
    assert await _status(rt, message.message_id) == ("delivered", None)


def test_a_reply_shows_what_its_parts_show_together() -> None:
    """The slowest part decides; any failed part fails the reply with its reason; nothing is judged while a
    part may still be missing (not sent whole)."""
    assert reply_status([("delivered", None, True), ("read", None, True)]) == ("delivered", None)
    assert reply_status([("read", None, True), ("failed", "gone", True), ("sent", None, True)]) == ("failed", "gone")
    assert reply_status([("read", None, True), ("read", None, False)]) is None
    assert reply_status([]) is None

"""Replies the provider takes as several messages (a WhatsApp reply's files and text, a Messenger reply's files):
every part's id names the reply, each part's receipts move that part, and the reply shows what its parts show
together (``service.reply_status``): delivered once all are, failed as soon as one is. What the provider took
of a reply is kept in the database, so that the outbox's retry in another process sends no part twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select, update

from channels.social.models import SocialDelivery, SocialReplyPart
from channels.social.service import SocialService, reply_status
from hub.bus import EventHub, LocalTransport
from hub.config import Settings
from hub.db import Database, utcnow
from hub.files import FileStore
from hub.messages import Attachment, DeliveryError, Identity, InboundMessage, OutboundMessage
from hub.metrics import Metrics
from hub.runtime import Runtime
from tests.channels.social.conftest import BOT, NUMBER, PAGE, Provider, encode, no_ingest, sign
from tests.conftest import make_agent, make_queue
from ticketing.agents import load_principal
from ticketing.gdpr import erase_contact
from ticketing.ingest import ingest_batch
from ticketing.outbox import OutboxDispatcher
from ticketing.ports import register_ports
from ticketing.replies import reply
from ticketing.tables import messages as M
from ticketing.tables import outbox as O

D = SocialDelivery.__table__  # type: ignore[attr-defined]
R = SocialReplyPart.__table__  # type: ignore[attr-defined]
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4 an invoice"
CUSTOMER = "4915112345678"


async def _stored_reply(rt: Runtime, store: FileStore, channel: str, account: str, customer: str) -> OutboundMessage:
    """A customer's message on ``channel``, an agent's reply to it (stored, pending in the outbox, which hands it
    to the sender carrying a photo and a PDF), and that reply as the sender gets it."""
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
    message = OutboundMessage.model_validate(payload).model_copy(update={"attachments": attachments})
    async with rt.db.begin() as conn:
        await conn.execute(update(O).where(O.c.message_id == sent.id).values(payload=message.model_dump(mode="json")))
    return message


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


@asynccontextmanager
async def _another_process(settings: Settings) -> AsyncIterator[SocialService]:
    """What a second ``switchboard serve`` process on the same database has: its own engine, event hub, ports
    and ``SocialService``, sharing nothing in memory with the test's."""
    db = Database(settings.database_url)
    events = EventHub(db, LocalTransport())
    other = Runtime(settings=settings, db=db, events=events, metrics=Metrics())
    register_ports(other)
    await events.start()
    service = SocialService(other, no_ingest, settings)
    try:
        yield service
    finally:
        await service.stop()
        await other.stop_tasks()
        await events.stop()
        await db.dispose()


_FAILS_SECOND = {
    # The photo is taken; the PDF (WhatsApp: its message, after its upload) gets a 5xx.
    "whatsapp": [
        (200, {"id": "MEDIA_PHOTO"}),
        (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.PHOTO"}]}),
        (200, {"id": "MEDIA_PDF"}),
        (500, {"error": {"message": "An unknown error has occurred.", "code": 1}}),
    ],
    "messenger": [
        (200, {"recipient_id": "2400001", "message_id": "m_photo"}),
        (503, {"error": {"message": "Service temporarily unavailable", "code": 2}}),
    ],
    "telegram": [
        (200, {"ok": True, "result": {"message_id": 41, "chat": {"id": 1111111}}}),
        (502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}),
    ],
}
_ACCOUNTS = {"whatsapp": (NUMBER, CUSTOMER), "messenger": (PAGE, "2400001"), "telegram": (BOT, "1111111")}


@pytest.mark.parametrize("channel", ["whatsapp", "messenger", "telegram"])
async def test_a_reply_retried_by_another_process_sends_no_part_twice(
    service: SocialService, provider: Provider, rt: Runtime, social_settings: Settings, channel: str
) -> None:
    """The outbox sends a photo and a PDF; the photo is taken and the PDF gets a 5xx. The retry runs in another
    process (its own runtime and service, as after a restart or behind a load balancer): it sends the PDF (on
    WhatsApp, naming the media id already uploaded) and the text, and the customer gets the photo once. Once the
    reply is sent whole, nothing is kept for a retry any more."""
    account, customer = _ACCOUNTS[channel]
    message = await _stored_reply(rt, FileStore(social_settings.attachment_dir), channel, account, customer)
    provider.script.extend(_FAILS_SECOND[channel])
    assert await OutboxDispatcher(rt, service.senders).dispatch_due() == 1
    assert (await _status(rt, message.message_id))[0] == "pending"
    async with rt.read() as conn:
        kept = {r.part for r in await conn.execute(select(R.c.part).where(R.c.message_id == message.message_id))}
    assert kept == ({"upload:0", "file:0", "upload:1"} if channel == "whatsapp" else {"file:0"})
    async with rt.db.begin() as conn:  # due now rather than after the backoff
        await conn.execute(update(O).where(O.c.message_id == message.message_id).values(next_attempt_at=utcnow()))
    before = len(provider.sent)

    async with _another_process(social_settings) as other:
        assert await OutboxDispatcher(other.rt, other.senders).dispatch_due() == 1

    assert await _status(rt, message.message_id) == ("sent", None)
    assert sum(PNG in c.body for c in provider.sent) == 1
    retried = provider.sent[before:]
    if channel == "whatsapp":  # the PDF's message again, with the media id Graph gave: nothing uploaded twice
        assert [c.path.rsplit("/", 1)[-1] for c in retried] == ["messages"]
        assert retried[0].json()["document"]["id"] == "MEDIA_PDF"
        assert sum(PDF in c.body for c in provider.sent) == 1
    else:  # the PDF, then the text
        assert len(retried) == 2 and PDF in retried[0].body and b"Here you go" in retried[1].body
    async with rt.read() as conn:
        assert (await conn.execute(select(R.c.part))).all() == []


async def test_a_media_id_longer_than_a_column_is_kept_and_named_whole_on_the_retry(
    service: SocialService, provider: Provider, rt: Runtime, social_settings: Settings
) -> None:
    """Graph names the PDF's upload with an id of 300 characters, then answers its message 500: the id is kept
    as given (it failed the part's insert on PostgreSQL, a varchar(255)), and the retry sends it back whole."""
    long_id = "MEDIA_" + "7" * 294
    message = await _stored_reply(rt, FileStore(social_settings.attachment_dir), "whatsapp", NUMBER, CUSTOMER)
    script = list(_FAILS_SECOND["whatsapp"])
    script[2] = (200, {"id": long_id})
    provider.script.extend(script)
    assert await OutboxDispatcher(rt, service.senders).dispatch_due() == 1
    async with rt.read() as conn:
        kept = (await conn.execute(select(R.c.provider_id).where(R.c.part == "upload:1"))).scalar_one()
    assert kept == long_id
    async with rt.db.begin() as conn:
        await conn.execute(update(O).where(O.c.message_id == message.message_id).values(next_attempt_at=utcnow()))
    before = len(provider.sent)
    async with _another_process(social_settings) as other:
        assert await OutboxDispatcher(other.rt, other.senders).dispatch_due() == 1
    assert await _status(rt, message.message_id) == ("sent", None)
    assert provider.sent[before].json()["document"]["id"] == long_id


@pytest.mark.parametrize("settled_by", ["erase", "permanent failure"])
async def test_what_was_kept_of_a_reply_goes_once_it_no_longer_waits_in_the_outbox(
    service: SocialService, provider: Provider, rt: Runtime, social_settings: Settings, settled_by: str
) -> None:
    """A reply half sent waits for its retry: the sweep keeps its parts. Then its contact is erased (the outbox
    row goes with the messages), or its retry is refused for good (a 4xx): nothing will retry it, and the sweep
    removes what was kept."""
    message = await _stored_reply(rt, FileStore(social_settings.attachment_dir), "messenger", PAGE, "2400001")
    provider.script.extend(_FAILS_SECOND["messenger"])
    dispatcher = OutboxDispatcher(rt, service.senders)
    assert await dispatcher.dispatch_due() == 1
    assert await service.forget_settled_parts() == 0
    async with rt.read() as conn:
        assert (await conn.execute(select(R.c.message_id, R.c.part))).all() == [(message.message_id, "file:0")]
    if settled_by == "erase":
        loaded = await load_principal(rt, agent_id=await make_agent(rt, "ada", role="admin"))
        brief = await rt.ports.tickets.brief(ticket_id=message.ticket_id)
        assert loaded is not None and brief is not None
        await erase_contact(rt, contact_id=brief.contact_id, principal=loaded[0])
    else:
        provider.script.append((400, {"error": {"message": "(#100) Invalid parameter", "code": 100}}))
        async with rt.db.begin() as conn:
            await conn.execute(update(O).where(O.c.message_id == message.message_id).values(next_attempt_at=utcnow()))
        assert await dispatcher.dispatch_due() == 1
        assert (await _status(rt, message.message_id))[0] == "failed"

    assert await service.forget_settled_parts() == 1
    async with rt.read() as conn:
        assert (await conn.execute(select(R.c.part))).all() == []

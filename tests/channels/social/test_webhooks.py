"""Inbound webhooks of the social channels: verification before anything is stored, whole batches stored once,
every WhatsApp type shown, echoes skipped, unknown accounts and bad bodies refused with nothing stored."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
from sqlalchemy import func, select

from hub.config import Settings
from hub.files import FileStore
from hub.runtime import Runtime
from tests.channels.social.conftest import (
    BOT,
    IG,
    MEDIA,
    NUMBER,
    PAGE,
    TG_SECRET,
    VERIFY_TOKEN,
    Provider,
    encode,
    fixture,
    sign,
)
from ticketing.tables import contact_identities as I
from ticketing.tables import contacts as C
from ticketing.tables import messages as M
from ticketing.tables import tickets as T


async def _messages(rt: Runtime) -> list[Any]:
    async with rt.read() as conn:
        return list(await conn.execute(select(M).order_by(M.c.id)))


async def _count(rt: Runtime) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(M))).scalar_one())


def _whatsapp(wamid: str, text: str, sender: str = "4915112345678", name: str = "Bars Tester") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550001", "phone_number_id": NUMBER},
                            "contacts": [{"profile": {"name": name}, "wa_id": sender}],
                            "messages": [
                                {
                                    "from": sender,
                                    "id": wamid,
                                    "timestamp": "1749416383",
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


async def test_handshake_answers_the_challenge_only_for_the_verify_token(hub: httpx.AsyncClient) -> None:
    """Meta's GET handshake: the challenge back as plain text with the right token; 403 with a wrong one."""
    ok = await hub.get(
        "/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "4711"}
    )
    assert ok.status_code == 200 and ok.text == "4711"
    wrong = await hub.get(
        "/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "4711"}
    )
    assert wrong.status_code == 403
    assert (await hub.get("/webhooks/meta")).status_code == 403


async def test_signed_whatsapp_message_becomes_a_ticket_once_with_the_profile_name(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """A signed WhatsApp text is stored on a whatsapp ticket in the number's queue, the sender's profile name
    on the contact; the same body delivered again stores nothing new."""
    body = encode(_whatsapp("wamid.ONE", "whatsapp hello"))
    first = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert first.status_code == 200, first.text
    assert first.json()["stored"] == 1
    again = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert again.status_code == 200 and again.json()["stored"] == 0
    rows = await _messages(rt)
    assert [(m.channel, m.external_id, m.text) for m in rows] == [("whatsapp", "wamid.ONE", "whatsapp hello")]
    async with rt.read() as conn:
        ticket = (await conn.execute(select(T))).one()
        contact = (await conn.execute(select(C).where(C.c.id == ticket.contact_id))).one()
        identity = (await conn.execute(select(I).where(I.c.contact_id == contact.id))).one()
    assert ticket.channel == "whatsapp"
    assert contact.name == "Bars Tester"
    assert (identity.kind, identity.value) == ("whatsapp", "+4915112345678")
    assert rows[0].meta["account"] == NUMBER


async def test_wrong_or_missing_signature_is_refused_and_nothing_stored(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """A body signed with another secret, a signature of another body, or none: 403, nothing stored."""
    body = encode(_whatsapp("wamid.FORGED", "forged"))
    other = encode(_whatsapp("wamid.OTHER", "other"))
    for headers in (
        sign(body, "another-secret"),
        sign(other),
        {"Content-Type": "application/json"},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature-256": "md5=abc"},
    ):
        r = await hub.post("/webhooks/meta", content=body, headers=headers)
        assert r.status_code == 403, (headers, r.text)
    assert await _count(rt) == 0


async def test_a_batch_of_50_entries_delivered_twice_is_stored_once_each(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """Fifty entries (fifty customers) in one body, delivered twice: fifty messages, fifty tickets."""
    entries = [_whatsapp(f"wamid.B{i}", f"batch {i}", sender=f"49151000{i:05d}")["entry"][0] for i in range(50)]
    body = encode({"object": "whatsapp_business_account", "entry": entries})
    for _ in range(2):
        r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
        assert r.status_code == 200, r.text
    rows = await _messages(rt)
    assert sorted(m.external_id for m in rows) == sorted(f"wamid.B{i}" for i in range(50))
    async with rt.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(T))).scalar_one() == 50


async def test_a_message_ingest_refuses_is_quarantined_and_the_rest_of_the_batch_stored(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """One message of a batch whose sender is no phone number: ingest refuses it, but the webhook answers 200
    (Meta would send a refused batch again forever) with the good ones stored and the bad one quarantined with
    the reason; the same batch again stores and quarantines nothing more."""
    from channels.social.models import SocialQuarantine

    senders = ["4915100000001", "not-a-phone-number", "4915100000003"]
    entries = [_whatsapp(f"wamid.Q{i}", f"quarantine {i}", sender=s)["entry"][0] for i, s in enumerate(senders)]
    body = encode({"object": "whatsapp_business_account", "entry": entries})
    for attempt in range(2):
        r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
        assert r.status_code == 200, r.text
        assert r.json() == {
            "messages": 3,
            "stored": 2 if attempt == 0 else 0,
            "receipts": 0,
            "skipped": 0,
            "quarantined": 1,
            "queued": False,
        }
    assert sorted(m.external_id for m in await _messages(rt)) == ["wamid.Q0", "wamid.Q2"]
    async with rt.read() as conn:
        kept = (await conn.execute(select(SocialQuarantine.__table__))).all()  # type: ignore[attr-defined]
    assert [(q.channel, q.external_id, q.account) for q in kept] == [("whatsapp", "wamid.Q1", NUMBER)]
    assert kept[0].reason.startswith("invalid_identity: ") and "is not a phone number" in kept[0].reason
    assert kept[0].message["text"] == "quarantine 1"


async def test_every_whatsapp_type_is_shown_and_none_dropped(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """Text, media, location, contacts, interactive replies, buttons, reactions, orders are shown meaningfully;
    a type Meta cannot show us, or one we do not know, as "unsupported message type X"."""
    payload = fixture("whatsapp_types.json")
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = NUMBER
    body = encode(payload)
    r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert r.status_code == 200, r.text
    shown = {m.external_id: m for m in await _messages(rt)}
    assert len(shown) == 15
    text = {k: v.text for k, v in shown.items()}
    assert text["wamid.T1"] == "Does it come in another color?"
    assert text["wamid.T2"] == "[image] This one"
    assert shown["wamid.T2"].attachments[0]["content_type"] == "image/jpeg"
    assert text["wamid.T3"] == "[voice message]"
    assert text["wamid.T4"] == "[video]"
    assert text["wamid.T5"] == "[document: receipt.pdf]"
    assert text["wamid.T6"] == "[sticker]"
    assert text["wamid.T7"].startswith("[location] Main office - 1 Hacker Way")
    assert "37.483307" in text["wamid.T7"]
    assert text["wamid.T8"] == "[shared contact] Barbara Johnson: +1 (940) 555-1234, bjohnson@example.com"
    assert text["wamid.T9"] == "[button reply] Cancel order"
    assert text["wamid.T10"] == "[list reply] Express shipping - Next day"
    assert text["wamid.T11"] == "[button] Stop promotions"
    assert text["wamid.T12"] == "[reaction] \N{THUMBS UP SIGN} to an earlier message"
    assert text["wamid.T13"].startswith("[order] 1 item(s)")
    assert text["wamid.T14"] == "unsupported message type unsupported: Message type unknown"
    assert text["wamid.T15"] == "unsupported message type hologram"
    async with rt.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(T))).scalar_one() == 1


async def test_messenger_and_instagram_messages_are_stored_and_echoes_skipped(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """The page's own message echoed back is skipped; the customer's text and image are stored; Instagram's
    message lands on an instagram ticket."""
    body = json.dumps(fixture("messenger.json")).encode()
    r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert r.status_code == 200, r.text
    assert r.json() == {"messages": 2, "stored": 2, "receipts": 0, "skipped": 1, "quarantined": 0, "queued": False}
    body = json.dumps(fixture("instagram.json")).encode()
    r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert r.status_code == 200, r.text
    rows = await _messages(rt)
    assert [(m.channel, m.text) for m in rows] == [
        ("messenger", "Hi, where is my parcel?"),
        ("messenger", "[image]"),
        ("instagram", "Is the blue one in stock?"),
    ]
    assert rows[1].attachments[0]["url"] == "http://127.0.0.1:9/scontent/photo.jpg"
    assert all(m.recipient in (PAGE, IG) for m in rows)
    # Their profile names, asked of Graph with the page's token (the webhooks carry none), name the contacts.
    async with rt.read() as conn:
        names = {
            r.value: r.name for r in await conn.execute(select(I.c.value, C.c.name).join(C, C.c.id == I.c.contact_id))
        }
    assert names == {"24000000000001": "Profile 24000000000001", "IGSID_CUSTOMER": "ig_IGSID_CUSTOMER"}


async def test_page_comments_become_tickets_and_our_own_comments_are_skipped(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """A customer's comment on a page post opens a comments ticket; the page's own comment and likes do not."""
    body = json.dumps(fixture("page_feed_comment.json")).encode()
    r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert r.status_code == 200, r.text
    rows = await _messages(rt)
    assert [(m.channel, m.external_id, m.text) for m in rows] == [("comments", "111_222", "My order never arrived!")]
    async with rt.read() as conn:
        ticket = (await conn.execute(select(T))).one()
    assert ticket.channel == "comments" and "PAGE_ID_111" in ticket.subject


async def test_unconfigured_accounts_and_bad_bodies_are_refused_with_nothing_stored(
    hub: httpx.AsyncClient, rt: Runtime
) -> None:
    """A page or number not configured: 404 naming it. Not JSON (strict JSON: a NaN is not a number, a byte that
    is not UTF-8 is not text), not Meta's shape, an unknown object type: 422. A batch with one bad entry stores
    none of its good ones. Too large: 413."""
    unknown = _whatsapp("wamid.X", "to nobody")
    unknown["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999"
    body = encode(unknown)
    r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
    assert r.status_code == 404 and "999" in r.text
    page = copy.deepcopy(fixture("messenger.json"))
    page["entry"][0]["id"] = "OTHER_PAGE"
    body = encode(page)
    assert (await hub.post("/webhooks/meta", content=body, headers=sign(body))).status_code == 404
    mixed = _whatsapp("wamid.GOOD", "good")
    mixed["entry"].append({"id": "2", "changes": [{"field": "messages", "value": {"messages": []}}]})
    nan = encode(_whatsapp("wamid.NAN", "when?")).replace(b'"when?"', b"NaN")
    latin1 = encode(_whatsapp("wamid.LATIN1", "caf\u00e9")).replace(b"caf\\u00e9", b"caf\xe9")
    assert b"NaN" in nan and b"caf\xe9" in latin1
    for body in (
        b"not json at all",
        nan,
        latin1,
        b"[1, 2, 3]",
        encode({"object": "page"}),
        encode({"object": "permissions", "entry": []}),
        encode(mixed),
    ):
        r = await hub.post("/webhooks/meta", content=body, headers=sign(body))
        assert r.status_code == 422, (body[:40], r.text)
    huge = encode(_whatsapp("wamid.HUGE", "x" * 1_100_000))
    assert (await hub.post("/webhooks/meta", content=huge, headers=sign(huge))).status_code == 413
    assert await _count(rt) == 0


async def test_telegram_update_needs_the_bots_secret_token(hub: httpx.AsyncClient, rt: Runtime) -> None:
    """No or a wrong secret token: 403; an unknown bot: 404; the right token: stored once however often
    Telegram retries, with the sender's name."""
    body = json.dumps(fixture("telegram_message.json")).encode()
    plain = {"Content-Type": "application/json"}
    assert (await hub.post(f"/webhooks/telegram/{BOT}", content=body, headers=plain)).status_code == 403
    wrong = {**plain, "X-Telegram-Bot-Api-Secret-Token": "wrong"}
    assert (await hub.post(f"/webhooks/telegram/{BOT}", content=body, headers=wrong)).status_code == 403
    good = {**plain, "X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    assert (await hub.post("/webhooks/telegram/nobot", content=body, headers=good)).status_code == 404
    assert await _count(rt) == 0
    for _ in range(2):
        r = await hub.post(f"/webhooks/telegram/{BOT}", content=body, headers=good)
        assert r.status_code == 200, r.text
    bad = await hub.post(f"/webhooks/telegram/{BOT}", content=b'{"update": 1}', headers=good)
    assert bad.status_code == 422
    rows = await _messages(rt)
    assert [(m.channel, m.external_id, m.text) for m in rows] == [("telegram", "shop:10000", "Hello from Telegram")]
    async with rt.read() as conn:
        assert (await conn.execute(select(C.c.name))).scalar_one() == "Tilda Gram"


async def test_media_is_fetched_with_the_accounts_credentials_and_stored(
    hub: httpx.AsyncClient, rt: Runtime, provider: Provider, social_settings: Settings
) -> None:
    """A WhatsApp image is looked up through Graph with the number's token and downloaded with it; a Telegram
    photo through getFile with the bot's token; a Messenger image from its URL. Each is stored by content hash
    (as email attachments are), readable in the console; a retried webhook fetches nothing again."""
    image = {
        "from": "4915112345678",
        "id": "wamid.IMG",
        "timestamp": "1749416383",
        "type": "image",
        "image": {"mime_type": "image/jpeg", "id": "MEDIA123", "caption": "broken"},
    }
    payload = _whatsapp("wamid.IMG", "unused")
    payload["entry"][0]["changes"][0]["value"]["messages"] = [image]
    body = encode(payload)
    for _ in range(2):
        assert (await hub.post("/webhooks/meta", content=body, headers=sign(body))).status_code == 200
    messenger = fixture("messenger.json")
    messenger["entry"][0]["messaging"][2]["message"]["attachments"][0]["payload"]["url"] = (
        f"{provider.url}/media/cdn.jpg"
    )
    body = encode(messenger)
    assert (await hub.post("/webhooks/meta", content=body, headers=sign(body))).status_code == 200
    update = {
        "update_id": 777,
        "message": {
            "message_id": 5,
            "date": 1749416383,
            "chat": {"id": 42, "type": "private"},
            "from": {"id": 42, "first_name": "Pia"},
            "photo": [{"file_id": "small", "width": 90}, {"file_id": "BIGPHOTO", "width": 1280, "file_size": 300}],
            "caption": "see",
        },
    }
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
    assert (await hub.post(f"/webhooks/telegram/{BOT}", content=encode(update), headers=headers)).status_code == 200
    gets = [c for c in provider.calls if c.method == "GET" and "fields=" not in c.path]  # not profile lookups
    assert [c.path for c in gets] == [
        "/graph/MEDIA123",
        "/media/MEDIA123",
        "/media/cdn.jpg",
        "/tg/bot123456:ABC/getFile?file_id=BIGPHOTO",
        "/tg/file/bot123456:ABC/photos/file_1.jpg",
    ]
    assert gets[0].headers["Authorization"] == gets[1].headers["Authorization"] == "Bearer wa-token"
    rows = {m.external_id: m for m in await _messages(rt)}
    store = FileStore(social_settings.attachment_dir)
    for external_id in ("wamid.IMG", "m_in_2", "shop:777"):
        [attachment] = rows[external_id].attachments
        assert store.get(attachment["sha256"]) == MEDIA, external_id
        assert attachment["size"] == len(MEDIA)
    assert rows["wamid.IMG"].text == "[image] broken" and rows["shop:777"].text == "[photo] see"

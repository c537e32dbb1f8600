"""The chat channel's pure parts and the hub's ephemeral frames: visitor tokens, identity hashes, content
sniffing, and typing indicators crossing processes through Redis without a seq."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from channels.webchat.service import (
    Connection,
    VisitorClaims,
    VisitorTokens,
    identity_hash,
    verify_identity,
)
from hub.auth import TokenSigner
from hub.bus import EventHub, LocalTransport, RedisTransport
from hub.config import Settings
from hub.db import Database
from hub.events import Viewer
from hub.files import sniff_safe_type
from hub.websocket import text_frame


def test_visitor_tokens_round_trip_and_refuse_other_signers() -> None:
    """A visitor token carries its claims; one signed with another key, or an agent's session token, is refused."""
    tokens = VisitorTokens("k" * 32, 3600)
    claims = VisitorClaims("v1", "c1", "visitor:v1", name="Ann", email=None, verified=False, queue="support")
    assert tokens.verify(tokens.issue(claims)) == claims
    assert VisitorTokens("other" * 8, 3600).verify(tokens.issue(claims)) is None
    assert tokens.verify(TokenSigner("k" * 32, 3600).issue(1, "hash")) is None


def test_identity_hash_covers_the_email_when_given() -> None:
    """The site's HMAC covers the user id, and the email too when one is passed (case-insensitive)."""
    h = identity_hash("s", "42")
    assert verify_identity("s", "42", None, h)
    assert not verify_identity("s", "43", None, h)
    he = identity_hash("s", "42", "Ann@Example.com")
    assert verify_identity("s", "42", "ann@example.com", he)
    assert not verify_identity("s", "42", "eve@example.com", he)
    assert not verify_identity("s", "42", None, he)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0....", "image/jpeg"),
        (b"GIF89a....", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"%PDF-1.7\n", "application/pdf"),
        (b"<svg onload=alert(1)>", None),
        (b"<html>", None),
        (b"MZ\x90\x00", None),
    ],
)
def test_attachments_are_recognized_by_their_bytes(data: bytes, expected: str | None) -> None:
    """Only PNG, JPEG, GIF, WebP and PDF pass, whatever a file is named or declared as."""
    assert sniff_safe_type(data[:16]) == expected


async def test_typing_frames_cross_processes_through_redis_without_a_seq(settings: Settings, redis_url: str) -> None:
    """An ephemeral frame broadcast in one process reaches a subscriber of another through Redis, with seq 0,
    filtered by the same visibility rule as events, and without moving the hub's seq."""
    channel = f"switchboard:test:{uuid.uuid4().hex}"
    db = Database(settings.database_url)
    hubs = [EventHub(db, RedisTransport(redis_url, channel)) for _ in range(2)]
    try:
        for hub in hubs:
            await hub.start()
        seen: list[tuple[int, str]] = []
        hubs[1].listen(lambda event, _text: seen.append((event.seq, event.type)))
        mine = hubs[1].subscribe(Viewer(agent_id=7, sees_all=False, queue_ids=frozenset({1})))
        other = hubs[1].subscribe(Viewer(agent_id=8, sees_all=False, queue_ids=frozenset({2})))
        before = hubs[1].last_seq
        await hubs[0].broadcast_ephemeral("typing", {"who": "visitor", "active": True}, ticket_id=5, queue_id=1)
        event, text = await asyncio.wait_for(mine.queue.get(), 5)
        assert (event.seq, event.type, event.ticket_id, event.payload["who"]) == (0, "typing", 5, "visitor")
        assert json.loads(text)["seq"] == 0  # the frame the socket sends says it too
        assert other.queue.empty()
        assert seen == [(0, "typing")]
        assert hubs[1].last_seq == before
    finally:
        for hub in hubs:
            await hub.stop()
        await db.dispose()


async def test_a_listeners_only_frame_never_reaches_a_console(settings: Settings) -> None:
    """The chat's replies cross processes as listeners-only frames: every process's listeners get them, and no
    subscriber (an agent's socket), however much it may see, is sent them."""
    db = Database(settings.database_url)
    hub = EventHub(db, LocalTransport())
    try:
        await hub.start()
        seen: list[str] = []
        hub.listen(lambda event, _text: seen.append(event.type))
        supervisor = hub.subscribe(Viewer(agent_id=1, sees_all=True))
        await hub.broadcast_ephemeral("webchat.reply", {"frame": {}}, ticket_id=5, listeners_only=True)
        await hub.broadcast_ephemeral("typing", {"who": "visitor"}, ticket_id=5)
        event, _ = await asyncio.wait_for(supervisor.queue.get(), 2)
        assert event.type == "typing" and supervisor.queue.empty()
        assert seen == ["webchat.reply", "typing"]
    finally:
        await hub.stop()
        await db.dispose()


async def test_a_widget_frame_goes_out_at_once_only_when_nothing_waits_before_it() -> None:
    """With the socket keeping up and nothing queued, a frame is written at once (not queued for the writer
    task), and a message already written is not written again. Once the socket refused one, that frame and
    every later one wait in the queue, in order, even when the socket would take them again."""
    written: list[bytes] = []
    accept = True

    def direct(frame: bytes) -> bool:
        if accept:
            written.append(frame)
        return accept

    conn = Connection(ws=None, claims=VisitorClaims("v", "c", "webchat:v"))  # type: ignore[arg-type]
    conn.direct = direct
    conn.push('{"type": "ack"}')
    conn.push('{"type": "message", "id": 7}', message_id=7)
    conn.push('{"type": "message", "id": 7}', message_id=7)  # e.g. the reply and a resume both carry it
    assert written == [text_frame('{"type": "ack"}'), text_frame('{"type": "message", "id": 7}')]
    assert conn.queue.empty() and 7 in conn.seen

    accept = False
    conn.push('{"type": "message", "id": 8}', message_id=8)
    accept = True
    conn.push('{"type": "typing"}')
    assert len(written) == 2
    assert [conn.queue.get_nowait(), conn.queue.get_nowait()] == [
        (8, '{"type": "message", "id": 8}'),
        (None, '{"type": "typing"}'),
    ]

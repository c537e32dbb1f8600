"""Replies and notes sent again with the same client key (a second click after a network error) are stored once;
the repeated send answers the first message (issue 19)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from hub.messages import Identity, InboundMessage
from hub.runtime import Runtime
from tests.conftest import login, make_agent, make_queue
from ticketing.ingest import ingest_batch
from ticketing.tables import messages, outbox


@pytest.fixture
async def ticket(rt: Runtime) -> int:
    await make_queue(rt, "support", channels=["sms"])
    await make_agent(rt, "alice", queues=["support"])
    await make_agent(rt, "bob", queues=["support"])
    [r] = await ingest_batch(
        rt,
        [
            InboundMessage(
                channel="sms", external_id="SM1", text="help", sender=Identity(kind="phone", value="+14155550100")
            )
        ],
    )
    return r.ticket_id  # type: ignore[union-attr]


async def _stored(rt: Runtime, direction: str) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(select(func.count()).where(messages.c.direction == direction))).scalar_one())


async def test_a_reply_sent_twice_with_its_key_is_stored_once(
    rt: Runtime, client: httpx.AsyncClient, ticket: int
) -> None:
    """The same key answers the first reply (one message, one outbox row), also when the sends race; the same
    key with other text, or from another agent, is a 409; no key, or another key, is a new reply."""
    alice = await login(client, "alice", "password-123")
    bob = await login(client, "bob", "password-123")
    path = f"/api/tickets/{ticket}/reply"
    first = await client.post(path, json={"text": "On its way", "client_key": "k1"}, headers=alice)
    again = await client.post(path, json={"text": "On its way", "client_key": "k1"}, headers=alice)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json()["id"] == first.json()["id"]
    racing = await asyncio.gather(
        *(client.post(path, json={"text": "Racing", "client_key": "k2"}, headers=alice) for _ in range(6))
    )
    assert {r.status_code for r in racing} == {201}
    assert len({r.json()["id"] for r in racing}) == 1
    other = await client.post(path, json={"text": "Something else", "client_key": "k1"}, headers=alice)
    assert other.status_code == 409 and other.json()["code"] == "client_key_reused", other.text
    stolen = await client.post(path, json={"text": "On its way", "client_key": "k1"}, headers=bob)
    assert stolen.status_code == 409, stolen.text
    plain = [await client.post(path, json={"text": "No key"}, headers=alice) for _ in range(2)]
    assert plain[0].json()["id"] != plain[1].json()["id"]
    assert await _stored(rt, "outbound") == 4  # k1, k2 and the two without a key
    async with rt.read() as conn:
        assert (await conn.execute(select(func.count()).select_from(outbox))).scalar_one() == 4


async def test_a_note_sent_twice_with_its_key_is_stored_once(
    rt: Runtime, client: httpx.AsyncClient, ticket: int
) -> None:
    """A note repeated with its key answers the first note; the same key on a reply is another message's key."""
    alice = await login(client, "alice", "password-123")
    path = f"/api/tickets/{ticket}/notes"
    sent = await asyncio.gather(
        *(client.post(path, json={"text": "Called back", "client_key": "n1"}, headers=alice) for _ in range(4))
    )
    assert {r.status_code for r in sent} == {201}
    assert len({r.json()["id"] for r in sent}) == 1
    assert await _stored(rt, "note") == 1
    reply = await client.post(
        f"/api/tickets/{ticket}/reply", json={"text": "Called back", "client_key": "n1"}, headers=alice
    )
    assert reply.status_code == 409, reply.text

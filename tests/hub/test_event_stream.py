"""The live event stream (/ws/agent) against a real server: resume, visibility, heartbeats, errors,
slow clients, and fan-out across processes through Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hub.bus import EventHub, Subscriber
from hub.config import Settings
from hub.db import utcnow
from hub.events import Event, EventRecord, Viewer, seq_bounds
from hub.runtime import Runtime
from tests.conftest import LiveServer, free_port, login


async def recv(ws: ClientConnection, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


async def recv_events(ws: ClientConnection, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` frames that are events (skipping heartbeats)."""
    events: list[dict[str, Any]] = []
    while len(events) < count:
        frame = await recv(ws, timeout)
        if frame["type"] != "heartbeat":
            events.append(frame)
    return events


async def assert_silent(ws: ClientConnection, seconds: float = 0.5) -> None:
    try:
        frame = json.loads(await asyncio.wait_for(ws.recv(), seconds))
    except TimeoutError:
        return
    assert frame["type"] == "heartbeat", f"unexpected frame {frame}"


def ws_url(server: LiveServer, headers: dict[str, str], last_seq: int | None = None) -> str:
    token = headers["Authorization"].split()[1]
    url = f"{server.ws_url}/ws/agent?token={token}"
    return url if last_seq is None else f"{url}&last_seq={last_seq}"


async def note(client: httpx.AsyncClient, headers: dict[str, str], ticket_id: int, text: str) -> None:
    r = await client.post(f"/api/tickets/{ticket_id}/notes", json={"text": text}, headers=headers)
    assert r.status_code == 201, r.text


async def test_websocket_requires_login(world: dict[str, int], server: LiveServer) -> None:
    """Without a valid token the socket gets an unauthorized error and is closed with 4401, before any event."""
    async with connect(f"{server.ws_url}/ws/agent?token=bogus") as ws:
        assert (await recv(ws))["code"] == "unauthorized"
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 4401


async def test_resume_gets_exactly_the_missed_events_in_order(
    world: dict[str, int], server: LiveServer, client: httpx.AsyncClient
) -> None:
    """Disconnect, three changes, reconnect with the last seq: exactly those three, in order, none twice."""
    alice = await login(client, "alice", "password-123")
    async with connect(ws_url(server, alice)) as ws:
        hello = await recv(ws)
        assert hello["type"] == "hello"
        await note(client, alice, world["support_ticket"], "before")
        [seen] = await recv_events(ws, 1)
        last_seq = seen["seq"]
    for text in ("one", "two", "three"):
        await note(client, alice, world["support_ticket"], text)
    async with connect(ws_url(server, alice, last_seq)) as ws:
        assert (await recv(ws))["type"] == "hello"
        missed = await recv_events(ws, 3)
        assert [e["data"]["message"]["text"] for e in missed] == ["one", "two", "three"]
        assert [e["type"] for e in missed] == ["message.created"] * 3
        seqs = [e["seq"] for e in missed]
        assert seqs == sorted(seqs) and seqs[0] > last_seq
        await assert_silent(ws)
        # and the stream goes on live after the backlog
        await note(client, alice, world["support_ticket"], "live")
        [live] = await recv_events(ws, 1)
        assert live["data"]["message"]["text"] == "live" and live["seq"] > seqs[-1]


async def test_a_fresh_connection_starts_at_the_newest_event_in_the_log(
    world: dict[str, int], server: LiveServer, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A connection without last_seq starts at the log's newest event, even where this process has not yet
    delivered all of the log: another process wrote those events (SQLite has no push between processes, so the
    hub reads them when it next meets a gap or goes quiet). The client loads its state over REST after hello;
    those older events, arriving later, rolled that state back (the console dropped a ticket assigned since
    from its list, as the ticket.created of before the assignment came through)."""
    from hub.principals import Principal
    from ticketing.replies import add_note

    alice = await login(client, "alice", "password-123")
    elsewhere = Principal(
        agent_id=world["alice"], username="alice", display_name="alice", role="agent",
        queue_ids=frozenset({world["support"]}),
    )  # fmt: skip
    older = await add_note(rt, ticket_id=world["support_ticket"], principal=elsewhere, text="written elsewhere")
    async with connect(ws_url(server, alice)) as ws:
        hello = await recv(ws)
        async with rt.read() as conn:
            _, newest = await seq_bounds(conn)
        assert hello["seq"] == newest
        await note(client, alice, world["support_ticket"], "after hello")  # the hub meets the gap: reads the log
        [first] = await recv_events(ws, 1)
        assert first["data"]["message"]["text"] == "after hello", f"an event from before hello came: {first}"
        assert first["seq"] > newest
    # resuming from before it still gets it: nothing is lost to a client that asks
    async with connect(ws_url(server, alice, newest - 1)) as ws:
        await recv(ws)
        [resumed, _] = await recv_events(ws, 2)
        assert resumed["data"]["message"]["id"] == older.id


async def test_agents_receive_only_events_they_may_see(
    world: dict[str, int], server: LiveServer, client: httpx.AsyncClient
) -> None:
    """Alice (support) gets support's events and not billing's; Carol the reverse."""
    alice = await login(client, "alice", "password-123")
    carol = await login(client, "carol", "password-123")
    async with connect(ws_url(server, alice)) as wa, connect(ws_url(server, carol)) as wc:
        await recv(wa), await recv(wc)
        await note(client, carol, world["billing_ticket"], "billing only")
        await note(client, alice, world["support_ticket"], "support only")
        [a] = await recv_events(wa, 1)
        [c] = await recv_events(wc, 1)
        assert a["data"]["message"]["text"] == "support only"
        assert c["data"]["message"]["text"] == "billing only"
        await assert_silent(wa)
        await assert_silent(wc)


async def test_idle_connection_gets_heartbeats(settings: Settings, world: dict[str, int]) -> None:
    """With nothing happening the server sends {"type": "heartbeat"} frames."""
    live = LiveServer(settings.model_copy(update={"heartbeat_seconds": 0.2})).start()
    try:
        async with httpx.AsyncClient(base_url=live.url) as client:
            alice = await login(client, "alice", "password-123")
        async with connect(ws_url(live, alice)) as ws:
            assert (await recv(ws))["type"] == "hello"
            assert (await recv(ws, timeout=3))["type"] == "heartbeat"
    finally:
        live.stop()


async def test_resume_point_no_longer_kept_gets_resume_too_old(
    world: dict[str, int], server: LiveServer, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """After pruning, an old last_seq (and one from the future) gets the stable resume_too_old error."""
    alice = await login(client, "alice", "password-123")
    for text in ("a", "b", "c"):
        await note(client, alice, world["support_ticket"], text)
    async with rt.db.begin() as conn:
        table = Event.__table__  # type: ignore[attr-defined]
        await conn.execute(delete(table).where(table.c.seq <= 3))
    for stale in (1, 10_000):
        async with connect(ws_url(server, alice, stale)) as ws:
            frame = await recv(ws)
            assert frame == {**frame, "type": "error", "code": "resume_too_old"}
            with pytest.raises(ConnectionClosed):
                await recv(ws)
            assert ws.close_code == 4000


async def test_slow_subscriber_is_cut_off_and_never_delays_others(rt: Runtime) -> None:
    """A subscriber whose queue is full is marked overflowed; the others still get every event."""
    hub: EventHub = rt.events
    hub.queue_size = 2
    viewer = Viewer(agent_id=1, sees_all=True)
    slow: Subscriber = hub.subscribe(viewer)
    hub.queue_size = 100
    fast: Subscriber = hub.subscribe(viewer)
    base = hub.last_seq
    events = [EventRecord(seq=base + i, type="test", payload={}, created_at=utcnow()) for i in range(1, 6)]
    hub.receive(events)
    for _ in range(100):
        if fast.queue.qsize() == 5:
            break
        await asyncio.sleep(0.01)
    assert fast.queue.qsize() == 5
    assert slow.overflowed.is_set() and slow.queue.qsize() == 2


async def test_gap_in_published_events_is_filled_from_the_log(rt: Runtime, world: dict[str, int]) -> None:
    """If a later event arrives first, the hub reads the missing ones from the log and delivers in order."""
    hub = rt.events
    sub = hub.subscribe(Viewer(agent_id=0, sees_all=True))
    from hub.events import events_after

    async with rt.read() as conn:
        logged = await events_after(conn, 0)
    assert len(logged) >= 3
    hub.last_seq = logged[0].seq  # pretend we had delivered only the first
    hub.receive([logged[-1]])  # the newest arrives first
    got = [await asyncio.wait_for(sub.queue.get(), 2) for _ in logged[1:]]
    assert [e.seq for e, _ in got] == [e.seq for e in logged[1:]]


@pytest.fixture
def redis_channel() -> str:
    return f"switchboard:test:{uuid.uuid4().hex}"


@pytest.fixture
async def second_process(settings: Settings, redis_channel: str, tmp_path: Any) -> AsyncIterator[str]:
    """A second `switchboard serve` process on the same database and Redis; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": settings.database_url,
        "SWITCHBOARD_REDIS_URL": "redis://127.0.0.1:6379/0",
        "SWITCHBOARD_REDIS_CHANNEL": redis_channel,
        "SWITCHBOARD_SECRET_KEY": settings.secret_key.get_secret_value(),
        "SWITCHBOARD_EVENT_CATCH_UP_SECONDS": "600",
    }
    log = open(tmp_path / "second.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as c:
            while True:
                try:
                    if (await c.get(f"{url}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    output = (tmp_path / "second.log").read_text()[-2000:]
                    raise RuntimeError(f"second process did not start: {output}")
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


async def test_event_reaches_client_of_second_process_through_redis(
    settings: Settings, world: dict[str, int], redis_channel: str, second_process: str
) -> None:
    """A change committed by process A reaches an agent connected to process B via Redis pub/sub
    (the log catch-up is set to 10 minutes, so only Redis can bring it in time)."""
    a = LiveServer(
        settings.model_copy(
            update={
                "redis_url": "redis://127.0.0.1:6379/0",
                "redis_channel": redis_channel,
                "event_catch_up_seconds": 600.0,
            }
        )
    ).start()
    try:
        async with httpx.AsyncClient(base_url=a.url) as client_a:
            alice = await login(client_a, "alice", "password-123")
            token = alice["Authorization"].split()[1]
            b_ws = second_process.replace("http://", "ws://")
            async with connect(f"{b_ws}/ws/agent?token={token}") as ws:
                assert (await recv(ws))["type"] == "hello"
                started = time.monotonic()
                await note(client_a, alice, world["support_ticket"], "via redis")
                [event] = await recv_events(ws, 1, timeout=5)
                assert event["data"]["message"]["text"] == "via redis"
                assert time.monotonic() - started < 5
    finally:
        a.stop()

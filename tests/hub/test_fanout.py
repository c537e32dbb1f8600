"""Fan-out writes a frame straight to an idle connection's socket and queues it otherwise: per connection the
order stays that of ``seq``, nothing comes twice, a resume drops what the backlog sent, a slow client is cut
off after everything before its overflow, and a closed connection is written to no more."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hub.bus import EventHub, LocalTransport, Subscriber
from hub.config import Settings
from hub.db import json_dumps, utcnow
from hub.event_stream import write_events
from hub.events import EventRecord, Viewer, events_after
from hub.runtime import Runtime
from hub.websocket import ReadAheadWebSocketProtocol, text_frame
from tests.conftest import LiveServer, login
from tests.hub.test_event_stream import note, recv, recv_events, ws_url


class Socket:
    """A connection's direct writer as the hub sees it: takes frames, or refuses while ``full``."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.full = False

    def __call__(self, frame: bytes) -> bool:
        if self.full:
            return False
        self.frames.append(frame)
        return True


def make_events(hub: EventHub, count: int) -> list[EventRecord]:
    return [
        EventRecord(seq=hub.last_seq + i, type="test", payload={"i": i}, created_at=utcnow())
        for i in range(1, count + 1)
    ]


def numbers(frames: list[dict[str, Any]]) -> list[int]:
    """The numbers the slow-client test's notes start with (an event carries a long note's first 10,000
    characters)."""
    return [int(f["data"]["message"]["text"].split()[0]) for f in frames]


def frame_of(event: EventRecord) -> bytes:
    return text_frame(json_dumps(event.frame()))


def idle_subscriber(hub: EventHub) -> tuple[Subscriber, Socket]:
    """A subscriber whose writer waits with nothing queued, everything up to ``hub.last_seq`` sent."""
    sub = hub.subscribe(Viewer(agent_id=1, sees_all=True))
    sub.sent_upto = hub.last_seq
    sock = Socket()
    sub.direct = sock
    return sub, sock


async def test_an_event_in_order_is_delivered_before_receive_returns(rt: Runtime) -> None:
    """The publisher's call delivers an in-order batch itself: no wait for the hub's task."""
    hub = rt.events
    sub = hub.subscribe(None)
    events = make_events(hub, 2)
    hub.receive(events)
    assert [sub.queue.get_nowait()[0].seq for _ in events] == [e.seq for e in events]
    assert hub.last_seq == events[-1].seq


async def test_idle_subscriber_gets_frames_written_then_queued_after_a_refusal(rt: Runtime) -> None:
    """Frames go straight to an idle socket; once it refuses one, that one and every later one are queued
    (even when the socket would take them again), so the connection's order holds."""
    hub = rt.events
    sub, sock = idle_subscriber(hub)
    e1, e2, e3 = make_events(hub, 3)
    hub.receive([e1])
    assert sock.frames == [frame_of(e1)] and sub.queue.empty() and sub.sent_upto == e1.seq
    sock.full = True
    hub.receive([e2])
    sock.full = False
    hub.receive([e3])
    assert sock.frames == [frame_of(e1)]
    assert [sub.queue.get_nowait()[0].seq for _ in range(2)] == [e2.seq, e3.seq]


async def test_frames_the_backlog_sent_are_not_written_again(rt: Runtime) -> None:
    """After a resume the writer's ``sent_upto`` is past events the hub delivers late: they are dropped, the
    next one is written."""
    hub = rt.events
    sub, sock = idle_subscriber(hub)
    events = make_events(hub, 3)
    sub.sent_upto = events[1].seq  # the backlog went up to the second
    hub.receive(events)
    assert sock.frames == [frame_of(events[2])] and sub.queue.empty()


class HeldWebSocket:
    """The ordinary send path of a connection, held up at its first frame until ``go`` is set (as when the
    socket's buffer is full)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.go = asyncio.Event()

    async def send_text(self, text: str) -> None:
        await self.go.wait()
        self.sent.append(text)


async def test_frames_offered_while_the_writer_holds_one_queue_behind_it(rt: Runtime) -> None:
    """While the connection's writer is sending a frame the ordinary way, the next frames are queued, not
    written directly ahead of it, even though the socket would take them."""
    hub = rt.events
    sub = hub.subscribe(None)
    sock, ws = Socket(), HeldWebSocket()
    writer = asyncio.create_task(write_events(ws, sub, hub.last_seq, sock))  # type: ignore[arg-type]
    try:
        await asyncio.sleep(0)
        assert sub.direct is sock  # waiting, nothing queued: the hub may write directly
        e1, e2, e3 = make_events(hub, 3)
        sock.full = True
        hub.receive([e1])  # refused: queued, and the writer takes it and is held up sending it
        sock.full = False
        await asyncio.sleep(0)
        hub.receive([e2])
        ws.go.set()
        for _ in range(100):
            if len(ws.sent) == 2:
                break
            await asyncio.sleep(0.01)
        hub.receive([e3])  # the writer waits again with nothing queued: written directly
        assert ws.sent == [json_dumps(e.frame()) for e in (e1, e2)]
        assert sock.frames == [frame_of(e3)]
    finally:
        writer.cancel()


async def test_a_batch_reaches_an_idle_socket_in_one_write(rt: Runtime) -> None:
    """The frames of one batch for an idle socket go out in one write, in seq order, without the events the
    subscriber may not see and those its backlog already sent."""
    hub = rt.events
    sub, sock = idle_subscriber(hub)
    sub.viewer = Viewer(agent_id=1, sees_all=False)
    # Addressed to agent 2, to agent 1 (sent from the backlog already), to agent 1, to agent 2, to everyone.
    events = [
        EventRecord(seq=hub.last_seq + i, type="test", payload={"i": i}, created_at=utcnow(), agent_id=agent)
        for i, agent in enumerate((2, 1, 1, 2, None), start=1)
    ]
    sub.sent_upto = events[1].seq
    hub.receive(list(reversed(events)))
    assert sock.frames == [frame_of(events[2]) + frame_of(events[4])]
    assert sub.queue.empty() and sub.sent_upto == events[4].seq


async def test_a_batch_the_socket_refuses_is_queued_whole_and_in_order(rt: Runtime) -> None:
    """If the socket refuses the batch's write, every frame of it is queued, in order, and the next batch
    queues behind them."""
    hub = rt.events
    sub, sock = idle_subscriber(hub)
    first = make_events(hub, 3)
    sock.full = True
    hub.receive(first)
    sock.full = False
    second = make_events(hub, 2)
    hub.receive(second)
    assert sock.frames == []
    assert [sub.queue.get_nowait()[0].seq for _ in range(5)] == [e.seq for e in first + second]


async def test_overflowed_subscriber_is_not_written_to(rt: Runtime) -> None:
    """A subscriber cut off for overflow gets nothing more, directly or queued."""
    hub = rt.events
    sub, sock = idle_subscriber(hub)
    sub.overflowed.set()
    hub.receive(make_events(hub, 1))
    assert sock.frames == [] and sub.queue.empty()


async def test_ephemeral_frames_are_written_outside_the_seq_order(rt: Runtime) -> None:
    """A typing frame (seq 0) goes straight to an idle socket and leaves ``sent_upto`` alone."""
    hub = rt.events
    sub, sock = idle_subscriber(hub)
    before = sub.sent_upto
    await hub.broadcast_ephemeral("typing", {"active": True}, ticket_id=1)
    assert len(sock.frames) == 1 and b'"typing"' in sock.frames[0] and sub.sent_upto == before


async def test_a_batch_behind_a_gap_waits_for_the_gap(rt: Runtime, world: dict[str, int]) -> None:
    """While the hub reads a gap from the log, a batch that follows is not delivered ahead of it."""
    hub = rt.events
    sub = hub.subscribe(Viewer(agent_id=0, sees_all=True))
    async with rt.read() as conn:
        logged = await events_after(conn, 0)
    assert len(logged) >= 3
    hub.last_seq = logged[0].seq  # pretend we had delivered only the first
    hub.receive([logged[-1]])  # the newest arrives first: a gap
    following = EventRecord(seq=logged[-1].seq + 1, type="test", payload={}, created_at=utcnow())
    hub.receive([following])
    got = [await asyncio.wait_for(sub.queue.get(), 2) for _ in range(len(logged))]
    assert [e.seq for e, _ in got] == [e.seq for e in logged[1:]] + [following.seq]


async def _slow_log_reads(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[EventRecord], asyncio.Event, asyncio.Event]:
    """The events logged so far (at least three), and the hub's reads of the log made to wait: ``reading`` is
    set when one starts, which goes on once ``release`` is set."""
    async with rt.read() as conn:
        logged = await events_after(conn, 0)
    assert len(logged) >= 3
    reading, release = asyncio.Event(), asyncio.Event()

    async def slow_events_after(conn: Any, seq: int, limit: int = 10_000) -> list[EventRecord]:
        reading.set()
        await release.wait()
        return await events_after(conn, seq, limit)

    monkeypatch.setattr("hub.bus.events_after", slow_events_after)
    return logged, reading, release


async def test_an_event_received_while_the_hub_reads_the_log_comes_once(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the hub's task reads a gap from the log, a batch that follows on from ``last_seq`` waits its turn:
    delivered at once, it would come again with what the log read returns."""
    hub = rt.events
    sub = hub.subscribe(Viewer(agent_id=0, sees_all=True))
    logged, reading, release = await _slow_log_reads(rt, monkeypatch)
    hub.last_seq = logged[0].seq  # pretend we had delivered only the first
    hub.receive([logged[-1]])  # the newest arrives first: the hub's task reads the gap
    await asyncio.wait_for(reading.wait(), 2)
    hub.receive([logged[1]])  # the next one after last_seq, while the read is in flight
    release.set()
    got = [await asyncio.wait_for(sub.queue.get(), 2) for _ in logged[1:]]
    assert [e.seq for e, _ in got] == [e.seq for e in logged[1:]]
    await asyncio.sleep(0.1)
    assert sub.queue.empty()


async def test_batches_that_waited_for_the_hub_reach_an_idle_socket_in_one_write(
    rt: Runtime, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches received while the hub's task reads a gap from the log wait their turn, and then go to an idle
    socket together with what the read found: one write, in seq order, each event once."""
    hub = rt.events
    sub, sock = idle_subscriber(hub)
    logged, reading, release = await _slow_log_reads(rt, monkeypatch)
    hub.last_seq = sub.sent_upto = logged[0].seq  # pretend we had delivered only the first
    hub.receive([logged[-1]])  # the newest arrives first: the hub's task reads the gap
    await asyncio.wait_for(reading.wait(), 2)
    later = [EventRecord(seq=logged[-1].seq + i, type="test", payload={"i": i}, created_at=utcnow()) for i in (1, 2, 3)]
    hub.receive(later[:1])  # three batches while the read is in flight, one of them twice
    hub.receive(later[1:])
    hub.receive(later[1:2])
    release.set()
    for _ in range(100):
        if sub.sent_upto == later[-1].seq:
            break
        await asyncio.sleep(0.01)
    assert sock.frames == [b"".join(frame_of(e) for e in logged[1:]), b"".join(frame_of(e) for e in later)]
    assert sub.queue.empty()


async def test_slow_client_gets_everything_before_its_overflow_then_resumes(
    settings: Settings, world: dict[str, int]
) -> None:
    """A client that stops reading is written to directly until its socket backs up, then through its queue
    until that overflows: it receives an unbroken run of events from the first, then queue_overflow and close
    4001, and resuming from the run's last seq gives exactly the rest. A client reading along gets all."""
    live = LiveServer(settings.model_copy(update={"ws_send_queue": 4})).start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
            alice = await login(client, "alice", "password-123")
            # A tiny receive buffer, and a client library that stops reading after one message: the server's
            # socket backs up after a few frames.
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(("127.0.0.1", live.port))
            raw.setblocking(False)
            async with (
                connect(ws_url(live, alice), sock=raw, max_queue=1, max_size=None) as slow,
                connect(ws_url(live, alice), max_size=None) as fast,
            ):
                assert (await recv(slow))["type"] == "hello"
                assert (await recv(fast))["type"] == "hello"
                hub: EventHub = live.app.state.rt.events
                sent = 0
                while not any(s.overflowed.is_set() for s in list(hub._subscribers)):
                    assert sent < 500, "the slow client never overflowed"
                    await note(client, alice, world["support_ticket"], f"{sent} " + "x" * 20_000)
                    sent += 1
                everything = await recv_events(fast, sent, timeout=10)
                assert numbers(everything) == list(range(sent))
                run = []
                while (frame := await recv(slow, timeout=10))["type"] != "error":
                    run.append(frame)
                assert frame["code"] == "queue_overflow"
                with pytest.raises(ConnectionClosed):
                    await recv(slow)
                assert slow.close_code == 4001
            assert 0 < len(run) < sent
            assert numbers(run) == list(range(len(run)))
            assert [e["seq"] for e in run] == [e["seq"] for e in everything[: len(run)]]
            async with connect(ws_url(live, alice, run[-1]["seq"]), max_size=None) as again:
                assert (await recv(again))["type"] == "hello"
                rest = await recv_events(again, sent - len(run), timeout=10)
                assert numbers(rest) == list(range(len(run), sent))
    finally:
        live.stop()


async def test_a_client_leaving_mid_stream_disturbs_no_one(
    world: dict[str, int], server: LiveServer, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients close while events stream to them: the others get every event in order, the server logs no
    error, and the closed connections leave the hub."""
    caplog.set_level(logging.WARNING)
    alice = await login(client, "alice", "password-123")
    hub: EventHub = server.app.state.rt.events
    async with connect(ws_url(server, alice)) as stays:
        assert (await recv(stays))["type"] == "hello"
        leaving = [await connect(ws_url(server, alice)) for _ in range(5)]
        for ws in leaving:
            assert (await recv(ws))["type"] == "hello"
        texts = [f"note {i}" for i in range(10)]
        for i, text in enumerate(texts):
            await note(client, alice, world["support_ticket"], text)
            if i < len(leaving):
                if i % 2:
                    await leaving[i].close()
                else:
                    leaving[i].transport.abort()  # gone without a closing handshake
        got = await recv_events(stays, len(texts))
        assert [e["data"]["message"]["text"] for e in got] == texts
        for _ in range(100):
            if hub.subscriber_count == 1:
                break
            await asyncio.sleep(0.05)
        assert hub.subscriber_count == 1
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# Coalescing: a busy hub writes to each idle socket at most once per ``coalesce_seconds``.


async def until(condition: Any, timeout: float = 10.0) -> None:
    """Wait (generously bounded) until ``condition()`` is true."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_batches_within_the_window_reach_an_idle_socket_in_one_write(rt: Runtime) -> None:
    """The first batch after a quiet spell is written before ``receive`` returns; batches that follow it
    within the window are held, then written together in one write, complete and in seq order."""
    hub = rt.events
    hub.coalesce_seconds = 0.2
    sub, sock = idle_subscriber(hub)
    first = make_events(hub, 1)
    hub.receive(first)
    assert sock.frames == [frame_of(first[0])]
    second = make_events(hub, 2)
    hub.receive(second)
    third = make_events(hub, 3)
    hub.receive(list(reversed(third)))  # a batch's events in any order
    assert sock.frames == [frame_of(first[0])]  # held: nothing written, nothing queued
    assert sub.queue.empty() and sub.sent_upto == first[0].seq
    await until(lambda: len(sock.frames) == 2)
    assert sock.frames[1] == b"".join(frame_of(e) for e in second + third)
    assert sub.queue.empty() and sub.sent_upto == third[-1].seq
    await asyncio.sleep(0.3)
    assert len(sock.frames) == 2  # written once


async def test_a_batch_after_a_quiet_gap_is_written_at_once(rt: Runtime) -> None:
    """Once the window has passed since the last write, the next batch goes out in the publisher's call: a
    quiet hub adds no wait."""
    hub = rt.events
    hub.coalesce_seconds = 0.05
    sub, sock = idle_subscriber(hub)
    for n in range(1, 4):
        batch = make_events(hub, 2)
        hub.receive(batch)
        assert len(sock.frames) == n and sock.frames[-1] == b"".join(frame_of(e) for e in batch)
        await asyncio.sleep(0.1)  # longer than the window
    assert sub.queue.empty()


async def test_held_frames_skip_what_the_subscriber_may_not_see_or_has(rt: Runtime) -> None:
    """While frames are held, later batches join them under the same rules: events the viewer may not see and
    those the backlog sent are left out, ephemeral frames keep their place and leave ``sent_upto`` alone."""
    hub = rt.events
    hub.coalesce_seconds = 0.2
    sub, sock = idle_subscriber(hub)
    sub.viewer = Viewer(agent_id=1, sees_all=False)
    hub.receive(make_events(hub, 1))  # written at once: the window starts
    events = [
        EventRecord(seq=hub.last_seq + i, type="test", payload={"i": i}, created_at=utcnow(), agent_id=agent)
        for i, agent in enumerate((1, 2, 1, 1), start=1)
    ]
    sub.sent_upto = events[0].seq  # the backlog went up to the first
    hub.receive(events[:2])
    await hub.broadcast_ephemeral("typing", {"active": True}, agent_id=1)
    hub.receive(events[2:])
    assert len(sock.frames) == 1
    await until(lambda: len(sock.frames) == 2)
    written = sock.frames[1]
    typing = written[: written.index(frame_of(events[2]))]
    assert b'"typing"' in typing and written == typing + frame_of(events[2]) + frame_of(events[3])
    assert sub.sent_upto == events[3].seq and sub.queue.empty()


async def test_held_frames_the_socket_refuses_are_queued_in_order(rt: Runtime) -> None:
    """If the socket refuses the held frames' write at the release, all of them are queued, in order, and the
    next batch queues behind them."""
    hub = rt.events
    hub.coalesce_seconds = 0.2
    sub, sock = idle_subscriber(hub)
    hub.receive(make_events(hub, 1))
    held = make_events(hub, 2)
    hub.receive(held[:1])
    hub.receive(held[1:])
    sock.full = True
    await until(lambda: sub.queue.qsize() == 2)
    sock.full = False
    later = make_events(hub, 1)
    hub.receive(later)
    assert len(sock.frames) == 1
    assert [sub.queue.get_nowait()[0].seq for _ in range(3)] == [e.seq for e in held + later]


async def test_held_frames_overflow_the_queue_as_any(rt: Runtime) -> None:
    """Held frames the socket refuses go through the bounded queue: more than it holds cut the subscriber
    off, and it is offered nothing after that."""
    hub = rt.events
    hub.coalesce_seconds = 0.2
    hub.queue_size = 3
    sub, sock = idle_subscriber(hub)
    hub.receive(make_events(hub, 1))
    hub.receive(make_events(hub, 5))
    sock.full = True
    await until(sub.overflowed.is_set)
    sock.full = False
    hub.receive(make_events(hub, 1))
    await asyncio.sleep(0.3)
    assert len(sock.frames) == 1 and sub.queue.qsize() == 3


async def test_a_subscriber_leaving_with_held_frames_drops_them(rt: Runtime) -> None:
    """A subscriber that unsubscribes while frames are held for it gets none of them; the others get theirs at
    the release."""
    hub = rt.events
    hub.coalesce_seconds = 0.2
    leaving, gone = idle_subscriber(hub)
    staying, kept = idle_subscriber(hub)
    hub.receive(make_events(hub, 1))
    held = make_events(hub, 2)
    hub.receive(held)
    hub.unsubscribe(leaving)
    await until(lambda: len(kept.frames) == 2)
    assert kept.frames[1] == b"".join(frame_of(e) for e in held)
    await asyncio.sleep(0.3)
    assert len(gone.frames) == 1 and leaving.queue.empty()


async def test_stopping_the_hub_releases_held_frames_and_its_timer(rt: Runtime) -> None:
    """``stop`` writes what is held at once and cancels the pending release: nothing held is lost, and no
    timer runs after the hub has stopped."""
    hub = EventHub(rt.db, LocalTransport(), coalesce_seconds=0.2)
    await hub.start()
    sub, sock = idle_subscriber(hub)
    hub.receive(make_events(hub, 1))
    held = make_events(hub, 2)
    hub.receive(held)
    assert len(sock.frames) == 1
    await hub.stop()
    assert sock.frames[1] == b"".join(frame_of(e) for e in held)
    await asyncio.sleep(0.3)
    assert len(sock.frames) == 2


async def test_a_busy_hub_coalesces_writes_to_a_real_socket(
    settings: Settings, world: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a real server and client: batches published within the window after a write reach the client
    complete and in order, in one more write to its socket; a batch after a quiet gap is written within the
    publisher's call."""
    writes: list[int] = []
    send_frame_now = ReadAheadWebSocketProtocol.send_frame_now

    def counting(self: ReadAheadWebSocketProtocol, frame: bytes) -> bool:
        written = send_frame_now(self, frame)
        if written and b'"type":"test"' in frame:  # the test's events, not the server's own
            writes.append(frame.count(b'"type":"test"'))
        return written

    monkeypatch.setattr(ReadAheadWebSocketProtocol, "send_frame_now", counting)
    # The fast paths on whatever the run's setting: without them uvicorn's own protocol serves the socket, which
    # takes no direct writes, so nothing is held.
    live = LiveServer(settings.model_copy(update={"ws_coalesce_seconds": 0.3, "fast_paths": True})).start()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
            alice = await login(client, "alice", "password-123")
            async with connect(ws_url(live, alice)) as ws:
                assert (await recv(ws))["type"] == "hello"
                hub: EventHub = live.app.state.rt.events
                assert hub._task is not None
                loop = hub._task.get_loop()
                [sub] = list(hub._subscribers)
                await until(lambda: sub.direct is not None)  # its writer waits with nothing queued

                async def publish(batches: int) -> tuple[int, list[int]]:
                    """In the server's loop, once the hub has been quiet for its window (the server's own
                    events may come): publish ``batches`` one-event batches back to back; answer the writes made
                    before the last ``receive`` returned, and the events' seqs."""
                    for _ in range(200):
                        if hub._release_timer is None and loop.time() >= hub._released_at + hub.coalesce_seconds:
                            break
                        await asyncio.sleep(0.05)
                    seqs = []
                    for _ in range(batches):
                        batch = make_events(hub, 1)
                        hub.receive(batch)
                        seqs.append(batch[0].seq)
                    return len(writes), seqs

                def in_server(batches: int) -> Any:
                    return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(publish(batches), loop))

                written, seqs = await in_server(5)
                assert written == 1 and writes == [1]  # the first at once, the rest held
                got = await recv_events(ws, 5)
                assert [e["seq"] for e in got] == seqs
                assert writes == [1, 4]
                written, seqs = await in_server(1)  # after a quiet window
                assert written == 3 and writes == [1, 4, 1]
                assert [e["seq"] for e in await recv_events(ws, 1)] == seqs
    finally:
        live.stop()

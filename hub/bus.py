"""Publishing events after commit and fanning them out to this process's subscribers.

``EventHub`` is the one object per process that websocket connections subscribe to. It receives committed
events from a transport: ``LocalTransport`` hands them straight over (one process), ``RedisTransport``
publishes them on a Redis channel that every process listens to (several processes on PostgreSQL).

Delivery invariants, per process:
- subscribers get events in ``seq`` order, none twice: the hub keeps ``last_seq`` and drops anything at or
  below it;
- none is skipped: a transport message that arrives ahead of its predecessors (another process published
  later, or a publish was lost) makes the hub read the gap from the event log, which is the source of
  truth, before going on (see ``hub.events`` for why a committed N+1 implies N is settled);
- one slow subscriber never delays the others: each has its own bounded queue, and a subscriber whose
  queue overflows is cut off and told so; its client resumes from its last ``seq``.

Delivery is as early as the order allows: a batch that follows on from ``last_seq`` while the hub has nothing
else in hand is fanned out at once, in the publisher's call (``receive``), not after the publisher's task has
gone on to answer its request; anything else waits its turn in the hub's task. A subscriber whose connection
is waiting with nothing queued and can take a frame now (``Subscriber.direct``) gets the frame's bytes written
to its socket in that same call (see ``hub.websocket``), the others get it queued. Within one batch, the
frames for one such subscriber are held and written together when the batch is done, one write instead of
one per event (a batch of a hundred messages over twenty agents made five writes per agent, each a system
call); so are those of every batch that waited its turn in the hub's task (between two gaps in the log), so
a hub that fell behind catches up in one write per subscriber, not one per event (200 consoles of one queue
made every event 200 system calls in one stretch of the event loop).

Held frames also outlast a batch: with ``coalesce_seconds`` (W) above 0, the hub releases every held frame at
once at most every W. A batch delivered at least W after the last release is written at once, as above (no
latency added when quiet); one delivered sooner stays held, and a single timer of the hub releases it, with
every batch that joined it meanwhile, at the last release plus W. Under load each idle console then gets one
write per W instead of one per batch: a busy hub's writes are bounded by its consoles and W, not by its
events times its consoles (200 consoles and a call's five batches made a thousand system calls per call).
What a subscriber holds keeps the order of ``seq``, skips what its backlog sent (``sent_upto``), and is queued
instead if its socket refuses the write at the release, as for one batch; a subscriber that leaves drops
what it held, and ``stop`` releases what is held and cancels the timer.

Ephemeral frames (typing indicators) are not events: they have no row in the log and no ``seq`` (their
``EventRecord.seq`` is 0), are never resumed, and reach only whoever is connected when they are broadcast.

Listeners (``EventHub.listen``) are synchronous callbacks run for every event and ephemeral frame in this
process, for a channel that multiplexes many connections over one filter of its own (the chat widget's
thousands of visitors each watch one ticket: one dict lookup per event instead of one filter per visitor).
A listener must be fast and must not raise; an exception is logged and the next listener still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import orjson

from hub.db import Database, json_dumps, utcnow
from hub.events import EventRecord, Viewer, events_after, seq_bounds
from hub.websocket import text_frame

log = logging.getLogger(__name__)

LISTENERS_ONLY = "listeners_only"  # marks an ephemeral frame for listeners, never for subscribers' sockets


class Subscriber:
    """One live listener (a websocket connection): a filter and a bounded queue of frames.

    Its connection's writer (``hub.event_stream``) owns ``sent_upto`` and ``direct``: ``direct`` is set only
    while the writer waits on the empty queue, holding no frame; then ``offer`` writes the frame itself, or
    drops an event the connection already has (seq at or below ``sent_upto``), and the order stays one.
    """

    def __init__(self, viewer: Viewer | None, maxsize: int) -> None:
        self.viewer = viewer
        # (event, its frame already serialized once for every subscriber)
        self.queue: asyncio.Queue[tuple[EventRecord, str]] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = asyncio.Event()
        self._clock = asyncio.get_running_loop().time
        self.last_sent = self._clock()  # when the connection last sent a frame
        self.sent_upto = 0  # the newest seq the connection has sent (set by its writer)
        # Writes a frame's bytes to the connection's socket now, or says False (``hub.websocket.FrameWriter``).
        self.direct: Callable[[bytes], bool] | None = None
        # Frames that go to the socket directly, all at once when the hub releases them (``release``: when its
        # batch is done, or at its next release for a busy hub); while any is held, later frames join them,
        # in order.
        self._held: list[tuple[EventRecord, str, bytes]] = []

    def offer(
        self, event: EventRecord, text: str, frame: bytes | None = None, holding: list[Subscriber] | None = None
    ) -> None:
        """Send ``event`` as ``text`` (``frame``: the same as a websocket frame's bytes, for a direct write).
        With ``holding`` (the hub is delivering a batch), a frame for a direct write is held until the hub
        calls ``release``, and this subscriber is added to ``holding`` with the first."""
        if self.overflowed.is_set():
            return
        if self.viewer is not None and not event.visible_to(self.viewer):
            return
        if self._held:
            if event.seq == 0 or event.seq > self.sent_upto:
                self._held.append((event, text, text_frame(text) if frame is None else frame))
            return
        if self.direct is not None and frame is not None and self.queue.empty():
            if holding is not None and (event.seq == 0 or event.seq > self.sent_upto):
                self._held.append((event, text, frame))
                holding.append(self)
                return
            if event.seq == 0:  # ephemeral: outside the seq order
                if self.direct(frame):
                    self.last_sent = self._clock()
                    return
            elif event.seq <= self.sent_upto:
                return  # already sent from the backlog
            elif self.direct(frame):
                self.sent_upto = event.seq
                self.last_sent = self._clock()
                return
        self._enqueue(event, text)

    def release(self) -> None:
        """Write the frames held for the hub in one write, or queue them all if the socket refuses."""
        held, self._held = self._held, []
        if not held:
            return
        if self.direct is not None and self.queue.empty() and self.direct(b"".join(frame for _, _, frame in held)):
            self.sent_upto = max(self.sent_upto, *(event.seq for event, _, _ in held))
            self.last_sent = self._clock()
            return
        for event, text, _ in held:
            self._enqueue(event, text)

    def drop_held(self) -> None:
        """Forget the held frames (the connection is gone)."""
        self._held = []

    def _enqueue(self, event: EventRecord, text: str) -> None:
        if self.overflowed.is_set():
            return
        try:
            self.queue.put_nowait((event, text))
        except asyncio.QueueFull:
            self.overflowed.set()


class Transport(Protocol):
    async def start(self, hub: EventHub) -> None: ...
    async def publish(self, events: Sequence[EventRecord]) -> None: ...
    async def publish_ephemeral(self, frame: dict[str, Any]) -> None: ...
    async def stop(self) -> None: ...


Listener = Callable[[EventRecord, str], None]


class EventHub:
    """This process's view of the event stream."""

    def __init__(
        self,
        db: Database,
        transport: Transport,
        *,
        queue_size: int = 1000,
        catch_up_seconds: float = 5.0,
        coalesce_seconds: float = 0.0,
    ) -> None:
        self.db = db
        self.catch_up_seconds = catch_up_seconds
        self.coalesce_seconds = coalesce_seconds
        self.transport = transport
        self.queue_size = queue_size
        self.last_seq = 0
        self._subscribers: set[Subscriber] = set()
        # The subscribers holding frames for a direct write (``Subscriber.offer``), each once, until the next
        # release; ``_released_at``: when the last release was, on the loop's clock; ``_release_timer``: the one
        # timer of a release that waits for ``coalesce_seconds`` to pass since then.
        self._holding: list[Subscriber] = []
        self._released_at = float("-inf")
        self._release_timer: asyncio.TimerHandle | None = None
        self._listeners: list[Listener] = []
        self._inbox: asyncio.Queue[list[EventRecord]] = asyncio.Queue()
        # Batches received and not yet delivered, plus one while the hub reads the log: while any, a new
        # batch waits its turn in the inbox.
        self._in_hand = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        async with self.db.connect() as conn:
            _, self.last_seq = await seq_bounds(conn)
        self._task = asyncio.create_task(self._run(), name="event-hub")
        await self.transport.start(self)

    async def stop(self) -> None:
        await self.transport.stop()
        self._release_held()  # cancels the timer: nothing held outlives the hub
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def publish(self, events: Sequence[EventRecord]) -> None:
        """Publish committed events to every process (call after commit, never before)."""
        if events:
            await self.transport.publish(events)

    def receive(self, events: list[EventRecord]) -> None:
        """Called by the transport with events from any process."""
        if self._in_hand == 0 and self._follows_on(events):
            # Nothing before it is undelivered or in hand: deliver now rather than after the publisher's task
            # has gone on (to answer its request), which is where a change's first delivery waited. In hand
            # meanwhile, so that a batch received from inside this delivery (a listener) waits its turn.
            self._in_hand += 1
            try:
                self._deliver_in_order(events)
            except Exception:  # the publisher has committed: its caller must not see a delivery failure
                log.exception("event delivery failed")
            finally:
                self._in_hand -= 1
            return
        self._in_hand += 1
        self._inbox.put_nowait(events)

    def _follows_on(self, events: list[EventRecord]) -> bool:
        """True if ``events`` (in any order) continue ``last_seq`` without a gap, ignoring ones delivered."""
        upto = self.last_seq
        for event in sorted(events, key=lambda e: e.seq):
            if event.seq > upto + 1:
                return False
            upto = max(upto, event.seq)
        return True

    async def broadcast_ephemeral(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        ticket_id: int | None = None,
        queue_id: int | None = None,
        agent_id: int | None = None,
        listeners_only: bool = False,
    ) -> None:
        """Send a frame that is not an event (no log row, no ``seq``) to every process's subscribers who may see
        it, by the same visibility rule as events, and to its listeners. ``listeners_only``: to every process's
        listeners alone (a channel's own traffic between its processes, which no console shows)."""
        record = EventRecord(
            seq=0,
            type=type_,
            payload=payload,
            created_at=utcnow(),
            ticket_id=ticket_id,
            queue_id=queue_id,
            agent_id=agent_id,
        )
        frame = record.frame()
        if listeners_only:
            frame[LISTENERS_ONLY] = True
        await self.transport.publish_ephemeral(frame)

    def receive_ephemeral(self, frame: dict[str, Any]) -> None:
        """Called by the transport with an ephemeral frame from any process."""
        record = EventRecord.from_frame(frame)
        text = json_dumps(frame)
        if not frame.get(LISTENERS_ONLY):
            data = text_frame(text)
            try:
                for sub in self._subscribers:
                    sub.offer(record, text, data, self._holding)
            finally:
                self._release_soon()
        self._notify(record, text)

    def listen(self, listener: Listener) -> None:
        """Call ``listener(event, frame_text)`` for every event and ephemeral frame this process receives."""
        self._listeners.append(listener)

    def unlisten(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _notify(self, event: EventRecord, text: str) -> None:
        for listener in self._listeners:
            try:
                listener(event, text)
            except Exception:
                log.exception("event listener failed")

    def subscribe(self, viewer: Viewer | None) -> Subscriber:
        sub = Subscriber(viewer, self.queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        if sub in self._holding:  # its connection is gone: what it held is dropped, as a closed socket's queue
            self._holding.remove(sub)
            sub.drop_held()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def _run(self) -> None:
        while True:
            batch: list[EventRecord] = []
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races a result.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.catch_up_seconds):
                    batch = await self._inbox.get()
            taken = 1
            if batch:
                # Every batch waiting behind it joins this delivery: one write per subscriber for all of them
                # (a hub that fell behind catches up in fewer writes, instead of one per event).
                while not self._inbox.empty():
                    batch = batch + self._inbox.get_nowait()
                    taken += 1
            else:  # an empty batch means quiet for a while: check the log for anything a transport lost
                self._in_hand += 1
            try:
                if batch:
                    await self._deliver(batch)
                else:
                    await self._catch_up()
            except Exception:  # a bad batch must not stop delivery for everyone
                log.exception("event delivery failed")
            finally:
                self._in_hand -= taken

    async def _deliver(self, batch: list[EventRecord]) -> None:
        """Fan out ``batch`` in seq order, reading any gap before it from the log first; the events between
        two gaps go out together (``_fan_out_all``: one write per subscriber that takes frames directly)."""
        ready: list[EventRecord] = []
        for event in sorted(batch, key=lambda e: e.seq):
            upto = ready[-1].seq if ready else self.last_seq
            if event.seq <= upto:
                continue
            if event.seq > upto + 1:
                # A gap: what comes before it goes out, then what we missed is read from the log.
                self._fan_out_all(ready)
                ready = []
                await self._catch_up()
                if event.seq <= self.last_seq:
                    continue
            ready.append(event)
        self._fan_out_all(ready)

    def _deliver_in_order(self, batch: list[EventRecord]) -> None:
        """``_deliver`` for a batch that ``_follows_on``: nothing to read from the log."""
        self._fan_out_all([event for event in sorted(batch, key=lambda e: e.seq) if event.seq > self.last_seq])

    async def _catch_up(self) -> None:
        async with self.db.connect() as conn:
            missed = await events_after(conn, self.last_seq)
        self._fan_out_all(missed)

    def _fan_out_all(self, events: list[EventRecord]) -> None:
        """``_fan_out`` each of ``events`` (in seq order, all after ``last_seq``), with one write per
        subscriber that takes frames directly (``Subscriber.release``), now or at the hub's next release."""
        try:
            for event in events:
                self._fan_out(event)
        finally:
            self._release_soon()

    def _fan_out(self, event: EventRecord) -> None:
        self.last_seq = event.seq
        text = json_dumps(event.frame())
        data = text_frame(text)
        for sub in self._subscribers:
            sub.offer(event, text, data, self._holding)
        self._notify(event, text)

    def _release_soon(self) -> None:
        """Release what subscribers hold now if the last release was ``coalesce_seconds`` ago or more, else
        once that much time has passed since it (one timer for the hub, whatever joins meanwhile)."""
        if not self._holding or self._release_timer is not None:
            return
        loop = asyncio.get_running_loop()
        due = self._released_at + self.coalesce_seconds
        if loop.time() >= due:
            self._release_held()
        else:
            self._release_timer = loop.call_at(due, self._release_held)

    def _release_held(self) -> None:
        """Write (or queue) what every subscriber holds, one write each."""
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        holding, self._holding = self._holding, []
        if not holding:
            return
        self._released_at = asyncio.get_running_loop().time()
        for sub in holding:
            try:
                sub.release()
            except Exception:  # from a timer, nobody else would see it; the other subscribers still get theirs
                log.exception("event delivery failed")


class LocalTransport:
    """One process: events go straight to the hub."""

    def __init__(self) -> None:
        self._hub: EventHub | None = None

    async def start(self, hub: EventHub) -> None:
        self._hub = hub

    async def publish(self, events: Sequence[EventRecord]) -> None:
        assert self._hub is not None
        self._hub.receive(list(events))

    async def publish_ephemeral(self, frame: dict[str, Any]) -> None:
        assert self._hub is not None
        self._hub.receive_ephemeral(frame)

    async def stop(self) -> None:
        self._hub = None


class RedisTransport:
    """Several processes: every process publishes to and listens on one Redis pub/sub channel."""

    def __init__(self, url: str, channel: str) -> None:
        import redis.asyncio as redis

        self._redis: Any = redis.from_url(url)
        self.channel = channel
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self, hub: EventHub) -> None:
        self._task = asyncio.create_task(self._listen(hub), name="redis-events")
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def publish(self, events: Sequence[EventRecord]) -> None:
        await self._redis.publish(self.channel, json_dumps([e.frame() for e in events]))

    async def publish_ephemeral(self, frame: dict[str, Any]) -> None:
        # An object, where events are a list: the listener tells them apart.
        await self._redis.publish(self.channel, json_dumps({"ephemeral": frame}))

    async def _listen(self, hub: EventHub) -> None:
        backoff = 0.5
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(self.channel)
                self._ready.set()
                backoff = 0.5
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    data = orjson.loads(message["data"])
                    if isinstance(data, dict):
                        hub.receive_ephemeral(data["ephemeral"])
                    else:
                        hub.receive([EventRecord.from_frame(f) for f in data])
            except asyncio.CancelledError:
                raise
            except Exception:
                # Events published while we were away are read from the log at the next gap.
                log.exception("redis event listener failed; reconnecting in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

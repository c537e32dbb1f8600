"""The server side of the event-stream websocket protocol (``/ws/agent``).

Frames from the server, all JSON with a ``type``:
- ``{"type": "hello", "seq": N, ...}`` first: N is the client's resume point, without ``last_seq`` the newest
  event in the log (or that this process has delivered, if later), so no event from before hello follows it;
- every event visible to the client, as ``EventRecord.frame()`` (``type`` is the event type, plus ``seq``);
- ephemeral frames visible to the client (typing indicators), shaped like events with ``seq`` 0: never
  resumed, never counted in the client's resume point;
- ``{"type": "heartbeat"}`` after ``heartbeat_seconds`` without a frame;
- ``{"type": "error", "code": "resume_too_old"}``, then close, when the client's resume point is no longer
  in the log (or is ahead of it): the client reloads its state and reconnects without ``last_seq``;
- ``{"type": "error", "code": "queue_overflow"}``, then close, when the client reads too slowly to keep
  up: it reconnects with its last ``seq`` and loses nothing;
- ``{"type": "error", "code", "message"}``, the connection staying open, for a client frame that is not a JSON
  object (``bad_json``, ``bad_frame``), is too long (``too_long``), or is refused (the error's code).

Resume: the connection subscribes to the live hub *before* reading the backlog from the log, then drops
live events it already sent from the backlog, so nothing falls between the two and nothing comes twice.

Live frames reach the socket one of two ways: queued for the connection's writer task, or, while that
writer waits with nothing queued, written by the hub straight to the socket (``Subscriber.direct``, see
``hub.bus`` and ``hub.websocket``). The writer opens the direct way only once hello and the backlog are out,
and only while it holds no frame, so the connection's frames keep one order either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.bus import EventHub, Subscriber
from hub.db import json_dumps
from hub.errors import SwitchboardError
from hub.events import EventRecord, Viewer, events_after, seq_bounds
from hub.inputs import clean
from hub.websocket import frame_writer

log = logging.getLogger(__name__)

RESUME_TOO_OLD = "resume_too_old"
QUEUE_OVERFLOW = "queue_overflow"


async def serve_event_stream(
    ws: WebSocket,
    hub: EventHub,
    viewer: Viewer,
    last_seq: int | None,
    *,
    heartbeat_seconds: float,
    hello: dict[str, Any] | None = None,
    on_message: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
) -> None:
    """Run one accepted websocket until it closes."""
    sub = hub.subscribe(viewer)
    try:
        backlog = []
        too_old = False
        async with hub.db.connect() as conn:
            oldest, newest = await seq_bounds(conn)
            if last_seq is None:
                # A fresh client starts at the log's newest event, not at what this process has delivered: events
                # another process wrote reach this hub later (SQLite has no push between processes), and the
                # client loads its state over REST after hello, so those older events would roll that state back.
                sent_upto = max(hub.last_seq, newest)
            else:
                sent_upto = last_seq
                too_old = last_seq < oldest - 1 or last_seq > max(newest, hub.last_seq)
                if not too_old:
                    backlog = await events_after(conn, last_seq, limit=1_000_000)
        if too_old:
            await ws.send_text(
                json_dumps(
                    {
                        "type": "error",
                        "code": RESUME_TOO_OLD,
                        "message": "resume point is no longer kept; reload and reconnect",
                        "oldest_seq": oldest,
                        "newest_seq": newest,
                    }
                )
            )
            await ws.close(code=4000)
            return
        await ws.send_text(json_dumps({"type": "hello", "seq": max(sent_upto, hub.last_seq), **(hello or {})}))
        for event in backlog:
            if event.visible_to(viewer):
                await ws.send_text(json_dumps(event.frame()))
            sent_upto = event.seq
        reader = asyncio.create_task(_read(ws, on_message))
        frames = frame_writer(ws)
        writer = asyncio.create_task(write_events(ws, sub, sent_upto, frames.send_frame_now if frames else None))
        beat = asyncio.create_task(_heartbeat(sub, heartbeat_seconds))
        try:
            # Whichever ends first ends the connection: the client left, or the writer gave up on it.
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (beat, reader, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                    await task
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(sub)


_HEARTBEAT = EventRecord(seq=0, type="heartbeat", payload={}, created_at=datetime.min)


async def _heartbeat(sub: Subscriber, seconds: float) -> None:
    """Queue a heartbeat frame whenever ``seconds`` passed without one frame sent: one timer per connection
    and period, instead of one per frame on the writer's hot path."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(max(0.0, sub.last_sent + seconds - loop.time()))
        if loop.time() - sub.last_sent >= seconds and sub.queue.empty():
            sub.queue.put_nowait((_HEARTBEAT, '{"type": "heartbeat"}'))
            sub.last_sent = loop.time()


async def write_events(ws: WebSocket, sub: Subscriber, sent_upto: int, direct: Callable[[bytes], bool] | None) -> None:
    """Send what ``sub`` queues, from after ``sent_upto``; lend ``direct`` (the connection's way to write a
    frame at once, if it has one) to the hub while nothing is queued."""
    # The hot path of fan-out when the socket does not take frames directly: no task or timer per event.
    queue = sub.queue
    loop = asyncio.get_running_loop()
    sub.sent_upto = sent_upto
    while True:
        if queue.empty():
            if sub.overflowed.is_set():
                # Everything offered before the overflow has been sent: the client resumes from there.
                await ws.send_text(
                    json_dumps(
                        {
                            "type": "error",
                            "code": QUEUE_OVERFLOW,
                            "message": "too slow to keep up; reconnect with your last seq",
                        }
                    )
                )
                await ws.close(code=4001)
                return
            # Nothing queued, nothing in hand: the hub may write to the socket itself until a frame is queued
            # (the queue is not empty from then until this task takes the frame, and the hub queues behind it).
            sub.direct = direct
            try:
                event, text = await queue.get()
            finally:
                sub.direct = None
        else:
            event, text = queue.get_nowait()
        if event.seq == 0:  # ephemeral or a heartbeat: not in the log, outside the seq order
            await ws.send_text(text)
        elif event.seq > sub.sent_upto:
            await ws.send_text(text)
            sub.sent_upto = event.seq
        else:
            continue
        sub.last_sent = loop.time()


# The largest frame a client may send (the console's frames are a few dozen bytes).
MAX_CLIENT_FRAME = 64 * 1024


def _error(code: str, message: str) -> str:
    return json_dumps({"type": "error", "code": code, "message": message})


async def _read(ws: WebSocket, on_message: Callable[[dict[str, Any]], Awaitable[None]] | None) -> None:
    """Read the client's frames until it leaves. A frame that is not a JSON object of a known kind, or that
    ``on_message`` refuses or fails on, gets an ``error`` frame; the connection goes on."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if on_message is None:
            continue
        raw = message.get("text")
        if raw is None:
            await ws.send_text(_error("bad_frame", "frames must be JSON text, not binary"))
            continue
        if len(raw) > MAX_CLIENT_FRAME:
            await ws.send_text(_error("too_long", f"frames are at most {MAX_CLIENT_FRAME} characters"))
            continue
        try:
            data = orjson.loads(raw)
        except ValueError:
            await ws.send_text(_error("bad_json", "frames must be JSON"))
            continue
        if not isinstance(data, dict):
            await ws.send_text(_error("bad_frame", "frames must be JSON objects"))
            continue
        try:
            await on_message(clean(data))
        except SwitchboardError as exc:
            await ws.send_text(_error(exc.code, exc.message))
        except Exception:
            log.exception("a console frame failed")
            await ws.send_text(_error("internal", "that could not be done; try again"))

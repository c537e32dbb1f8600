"""The server side of the event-stream websocket protocol (``/ws/agent``).

Frames from the server, all JSON with a ``type``:
- ``{"type": "hello", "seq": N, ...}`` first: N is the newest event this process has delivered;
- every event visible to the client, as ``EventRecord.frame()`` (``type`` is the event type, plus ``seq``);
- ephemeral frames visible to the client (typing indicators), shaped like events with ``seq`` 0: never
  resumed, never counted in the client's resume point;
- ``{"type": "heartbeat"}`` after ``heartbeat_seconds`` without a frame;
- ``{"type": "error", "code": "resume_too_old"}``, then close, when the client's resume point is no longer
  in the log (or is ahead of it): the client reloads its state and reconnects without ``last_seq``;
- ``{"type": "error", "code": "queue_overflow"}``, then close, when the client reads too slowly to keep
  up: it reconnects with its last ``seq`` and loses nothing.

Resume: the connection subscribes to the live hub *before* reading the backlog from the log, then drops
live events it already sent from the backlog, so nothing falls between the two and nothing comes twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from hub.bus import EventHub, Subscriber
from hub.events import Viewer, events_after, seq_bounds

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
        sent_upto = hub.last_seq if last_seq is None else last_seq
        backlog = []
        if last_seq is not None:
            async with hub.db.engine.connect() as conn:
                oldest, newest = await seq_bounds(conn)
                too_old = last_seq < oldest - 1 or last_seq > max(newest, hub.last_seq)
                if not too_old:
                    backlog = await events_after(conn, last_seq, limit=1_000_000)
            if too_old:
                await ws.send_text(
                    json.dumps(
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
        await ws.send_text(json.dumps({"type": "hello", "seq": max(sent_upto, hub.last_seq), **(hello or {})}))
        for event in backlog:
            if event.visible_to(viewer):
                await ws.send_text(json.dumps(event.frame()))
            sent_upto = event.seq
        reader = asyncio.create_task(_read(ws, on_message))
        writer = asyncio.create_task(_write(ws, sub, sent_upto, heartbeat_seconds))
        try:
            # Whichever ends first ends the connection: the client left, or the writer gave up on it.
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError):
                    await task
    except WebSocketDisconnect:
        pass
    finally:
        hub.unsubscribe(sub)


async def _write(ws: WebSocket, sub: Subscriber, sent_upto: int, heartbeat: float) -> None:
    # The hot path of fan-out: no task or timer per event while the queue has items.
    queue = sub.queue
    while True:
        if queue.empty():
            if sub.overflowed.is_set():
                # Everything offered before the overflow has been sent: the client resumes from there.
                await ws.send_text(
                    json.dumps(
                        {
                            "type": "error",
                            "code": QUEUE_OVERFLOW,
                            "message": "too slow to keep up; reconnect with your last seq",
                        }
                    )
                )
                await ws.close(code=4001)
                return
            try:
                async with asyncio.timeout(heartbeat):
                    event, text = await queue.get()
            except TimeoutError:
                await ws.send_text('{"type": "heartbeat"}')
                continue
        else:
            event, text = queue.get_nowait()
        if event.seq == 0:  # ephemeral: not in the log, outside the seq order
            await ws.send_text(text)
        elif event.seq > sent_upto:
            await ws.send_text(text)
            sent_upto = event.seq


async def _read(ws: WebSocket, on_message: Callable[[dict[str, Any]], Awaitable[None]] | None) -> None:
    while True:
        raw = await ws.receive_text()
        if on_message is None:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            await ws.send_text(json.dumps({"type": "error", "code": "bad_json", "message": "frames must be JSON"}))
            continue
        if isinstance(data, dict):
            await on_message(data)
